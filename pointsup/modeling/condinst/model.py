"""CondInst (Tian et al., ECCV 2020) trained with masks, with the paper's points, or with boxes
alone (BoxInst, Tian et al., CVPR 2021).

FCOS detects; every positive location also predicts the parameters of a tiny mask network that
runs on a shared stride-8 feature map plus coordinates relative to the location. Masks come out
over the whole (padded) image at stride 4, and are supervised there:

* ``masks``: dice loss against the ground-truth mask, area-averaged onto the stride-4 grid;
* ``points``: binary cross-entropy at the annotated points, read bilinearly from the stride-4
  logits, plus (``outside_box_weight`` > 0) binary cross-entropy towards background on the cells
  outside the annotated box;
* ``boxes`` (BoxInst): the projection loss against the box, plus the pairwise loss between
  neighbouring cells of similar colour inside the box, warmed up over the first iterations.

At inference each detection's mask probabilities are resampled onto a box-relative grid
(``mask_resolution`` squared), i.e. cut to the predicted box, and pasted like any other head's.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from pointsup.modeling.backbone import P3_P7_STRIDES, backbone_fpn_from_config
from pointsup.modeling.condinst.color import color_similarity, downsample_for_pairwise
from pointsup.modeling.condinst.config import BoxInstConfig
from pointsup.modeling.condinst.dynamic_head import CollapseWatch, DynamicMaskHead
from pointsup.modeling.condinst.fcos import CondInstHead, Locations, match_locations, select_detections
from pointsup.modeling.condinst.losses import (
    box_masks_on_grid,
    dice_loss,
    image_point_loss,
    outside_box_loss,
    pairwise_loss,
    pairwise_warmup_factor,
    projection_loss,
)
from pointsup.modeling.condinst.mask_branch import MaskBranch
from pointsup.modeling.config import ModelConfig
from pointsup.modeling.detector import Detector
from pointsup.modeling.normalization import resolve_normalization
from pointsup.structures.instances import Detections, InstanceTargets, Sample

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger(__name__)

CondInstSupervision = Literal["masks", "points", "boxes"]
CONDINST_SUPERVISIONS = ("masks", "points", "boxes")


@dataclass
class InferenceSettings:
    """FCOS post-processing and the box-relative mask grid (from the ``model.condinst.fcos``
    section, ``model.detections_per_image`` and ``model.condinst.mask_resolution``; the model's
    copy may be changed to predict differently)."""

    score_thresh: float
    topk_candidates: int
    nms_thresh: float
    detections_per_image: int
    mask_resolution: int


@dataclass
class _Positives:
    """The positive locations of a batch chosen for the mask losses (N of them)."""

    image_index: Tensor  # (N,)
    location_index: Tensor  # (N,)
    gt_index: Tensor  # (N,) index into the image's targets


class CondInst(Detector):
    """Backbone (p3-p7) + FCOS head with controller + mask branch + dynamic mask head.

    Args:
        backbone: maps (B, 3, H, W) to the p3..p7 maps, finest first.
        strides: the strides of those maps.
        head: FCOS towers and the controller.
        mask_branch: the shared stride-8 mask features (from the first three levels).
        dynamic_head: the per-instance mask network.
        supervision: "masks", "points" or "boxes".
        center_sampling_radius: FCOS's assignment radius, in strides.
        max_proposals: at most this many positive locations per batch train the mask head
            (chosen at random when there are more).
        boxinst: BoxInst's pairwise settings (``boxes`` supervision).
        inference: post-processing settings.
        outside_box_weight: with ``points`` supervision, the weight of the background term on
            the cells outside each instance's box (0: the points alone).
        pixel_mean, pixel_std, size_divisibility: as for :class:`Detector`.
    """

    iteration: Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        backbone: nn.Module,
        strides: Sequence[int],
        head: CondInstHead,
        mask_branch: MaskBranch,
        dynamic_head: DynamicMaskHead,
        supervision: CondInstSupervision,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        center_sampling_radius: float,
        max_proposals: int,
        boxinst: BoxInstConfig,
        inference: InferenceSettings,
        outside_box_weight: float = 0.0,
        size_divisibility: int = 32,
    ):
        super().__init__(pixel_mean, pixel_std, size_divisibility)
        if supervision not in CONDINST_SUPERVISIONS:
            raise ValueError(f"supervision must be one of {CONDINST_SUPERVISIONS}, got {supervision!r}")
        self.backbone = backbone
        self.strides = list(strides)
        self.head = head
        self.mask_branch = mask_branch
        self.dynamic_head = dynamic_head
        self.supervision = supervision
        self.center_sampling_radius = center_sampling_radius
        self.max_proposals = max_proposals
        self.boxinst = boxinst
        self.inference = inference
        self.outside_box_weight = outside_box_weight
        #: training iterations seen (BoxInst's pairwise warmup); saved with the weights
        self.register_buffer("iteration", torch.zeros((), dtype=torch.int64))
        self.collapse_watch = CollapseWatch()

    @classmethod
    def from_config(cls, config: ModelConfig, num_classes: int, supervision: CondInstSupervision) -> Self:
        """The CondInst of the ``model`` section: ``backbone`` + ``fpn`` on p3-p7 and the
        ``condinst`` section; ``num_classes`` excludes the background. Null pixel statistics are
        the backbone's own."""
        section = config.condinst
        channels = config.fpn.channels
        body = backbone_fpn_from_config(config.backbone, config.fpn, levels="p3-p7")
        dynamic_head = DynamicMaskHead.from_config(
            section.dynamic_head, section.mask_branch.out_channels, output_stride=P3_P7_STRIDES[0] // 2
        )
        normalization = resolve_normalization(config.backbone.name, config.pixel_mean, config.pixel_std)
        fcos = section.fcos
        return cls(
            body,
            P3_P7_STRIDES,
            CondInstHead.from_config(fcos, channels, num_classes, dynamic_head.num_params),
            MaskBranch.from_config(section.mask_branch, channels),
            dynamic_head,
            supervision,
            normalization.pixel_mean,
            normalization.pixel_std,
            center_sampling_radius=fcos.center_sampling_radius,
            max_proposals=section.max_proposals,
            boxinst=dataclasses.replace(section.boxinst),  # the model's own copy
            inference=InferenceSettings(
                fcos.score_thresh, fcos.topk_candidates, fcos.nms_thresh, config.detections_per_image, section.mask_resolution
            ),
            outside_box_weight=section.outside_box_weight,
        )

    @property
    def mask_feature_stride(self) -> int:
        return self.strides[0]

    @property
    def mask_stride(self) -> int:
        return self.dynamic_head.output_stride

    def forward(self, samples: Sequence[Sample]) -> dict[str, Tensor] | list[Detections]:
        images = self.preprocess(samples)
        levels = list(self.backbone(images.tensors).values())
        outputs = self.head(levels)
        locations = Locations.of([tuple(level.shape[-2:]) for level in levels], self.strides, self.device)
        mask_features = self.mask_branch(levels[: len(self.mask_branch.refine)])
        if self.training:
            if any(s.targets is None for s in samples):
                raise ValueError("training needs targets on every sample")
            targets = [cast(InstanceTargets, s.targets).to(self.device) for s in samples]
            return self.losses(samples, targets, outputs, locations, mask_features)
        results = [self.detect(b, outputs, locations, mask_features, size) for b, size in enumerate(images.image_sizes)]
        return [self.to_original(result, sample) for result, sample in zip(results, samples)]

    # training ---------------------------------------------------------------------------------

    def losses(
        self,
        samples: Sequence[Sample],
        targets: list[InstanceTargets],
        outputs: dict[str, Tensor],
        locations: Locations,
        mask_features: Tensor,
    ) -> dict[str, Tensor]:
        """FCOS's losses and the supervision's mask losses, plus detached metrics."""
        matched = [match_locations(locations, t.boxes, self.center_sampling_radius) for t in targets]
        anchors = locations.anchors
        detector = self.head.compute_loss(
            [{"boxes": t.boxes, "labels": t.classes} for t in targets],
            {key: outputs[key] for key in ("cls_logits", "bbox_regression", "bbox_ctrness")},
            [anchors] * len(targets),
            matched,
        )
        result: dict[str, Tensor] = {
            "loss_cls": detector["classification"],
            "loss_box_reg": detector["bbox_regression"],
            "loss_ctrness": detector["bbox_ctrness"],
        }
        positives = self._positives(matched)
        mask_logits, activity = self.dynamic_head.logits_and_activity(
            mask_features,
            self.mask_feature_stride,
            positives.image_index,
            locations.centres[positives.location_index],
            locations.levels[positives.location_index],
            outputs["params"][positives.image_index, positives.location_index],
        )  # (N, H/4, W/4)
        result.update(self._mask_losses(samples, targets, positives, mask_logits))
        with torch.no_grad():
            result["num_pos"] = torch.stack([(m >= 0).sum() for m in matched]).float().mean()
        result["mask_head_active"] = activity
        if self.training:
            self.iteration += 1
            if self.dynamic_head.negative_slope == 0:
                self._report_collapse(float(activity), int(positives.image_index.numel()))
        return result

    def _report_collapse(self, activity: float, num_instances: int) -> None:
        if self.collapse_watch.update(activity, num_instances):
            log.warning(
                "CondInst's dynamic mask head has collapsed: under %.0f %% of its last hidden layer was active for %d "
                "training batches in a row (now %.2f %%). Its ReLU units get no gradient, so it now predicts one constant "
                "mask per instance (the box, once cut at inference) and will not recover. Train with "
                "model.condinst.dynamic_head.negative_slope: 0.1 (leaky ReLU), as the CPU recipes do.",
                100 * self.collapse_watch.threshold,
                self.collapse_watch.patience,
                100 * activity,
            )

    def _positives(self, matched: list[Tensor]) -> _Positives:
        image_index, location_index = torch.nonzero(torch.stack(matched) >= 0, as_tuple=True)
        if image_index.numel() > self.max_proposals:
            keep = torch.randperm(image_index.numel(), device=image_index.device)[: self.max_proposals]
            image_index, location_index = image_index[keep], location_index[keep]
        gt_index = torch.stack(matched)[image_index, location_index]
        return _Positives(image_index, location_index, gt_index)

    def _mask_losses(
        self, samples: Sequence[Sample], targets: list[InstanceTargets], positives: _Positives, mask_logits: Tensor
    ) -> dict[str, Tensor]:
        """The supervision's losses on the (N, h, w) stride-4 logits of the positives."""
        if self.supervision == "points":
            return self._point_losses(targets, positives, mask_logits)
        if self.supervision == "masks":
            return self._dice_losses(targets, positives, mask_logits)
        return self._boxinst_losses(samples, targets, positives, mask_logits)

    def _point_losses(self, targets: list[InstanceTargets], positives: _Positives, mask_logits: Tensor) -> dict[str, Tensor]:
        coords, labels = _positive_points(targets, positives)
        output = image_point_loss(mask_logits, self.mask_stride, coords, labels)
        losses = {"loss_mask_point": output.loss, "point_accuracy": output.accuracy}
        if self.outside_box_weight > 0:
            losses["loss_mask_outside_box"] = self.outside_box_weight * outside_box_loss(
                mask_logits, self._box_masks(targets, positives, mask_logits)
            )
        return losses

    def _box_masks(self, targets: list[InstanceTargets], positives: _Positives, mask_logits: Tensor) -> Tensor:
        """(N, h, w) masks of each positive's ground-truth box on the grid of the (N, h, w) logits."""
        stride = self.mask_stride
        boxes = torch.cat([t.boxes for t in targets])[_flat_index(targets, positives)]
        return box_masks_on_grid(boxes, mask_logits.shape[-2] * stride, mask_logits.shape[-1] * stride, stride)

    def _dice_losses(self, targets: list[InstanceTargets], positives: _Positives, mask_logits: Tensor) -> dict[str, Tensor]:
        stride = self.mask_stride
        height, width = mask_logits.shape[-2] * stride, mask_logits.shape[-1] * stride
        coverage = []  # per image, (n_i, h, w): the share of each stride-4 cell the GT mask covers
        for t in targets:
            if t.masks is None:
                raise ValueError("mask supervision needs masks in the targets")
            padded = mask_logits.new_zeros((len(t), height, width))
            padded[:, : t.masks.shape[1], : t.masks.shape[2]] = t.masks.to(mask_logits.dtype)
            coverage.append(F.avg_pool2d(padded[:, None], stride)[:, 0])
        truth = torch.cat(coverage)[_flat_index(targets, positives)]
        probs = mask_logits.sigmoid()
        if len(probs) == 0:
            zero = mask_logits.sum() * 0
            return {"loss_mask": zero, "mask_accuracy": zero.detach()}
        with torch.no_grad():
            accuracy = ((probs > 0.5) == (truth > 0.5)).float().mean()
        return {"loss_mask": dice_loss(probs, truth).mean(), "mask_accuracy": accuracy}

    def _boxinst_losses(
        self, samples: Sequence[Sample], targets: list[InstanceTargets], positives: _Positives, mask_logits: Tensor
    ) -> dict[str, Tensor]:
        stride = self.mask_stride
        height, width = mask_logits.shape[-2] * stride, mask_logits.shape[-1] * stride
        box_masks = self._box_masks(targets, positives, mask_logits)
        probs = mask_logits.sigmoid()
        loss_projection = projection_loss(probs, box_masks).mean() if len(probs) else mask_logits.sum() * 0
        lab, valid = self._image_colours(samples, height, width)
        boxinst = self.boxinst
        similarity = color_similarity(lab, valid, boxinst.pairwise_size, boxinst.pairwise_dilation)
        loss_pairwise = pairwise_loss(
            mask_logits,
            similarity[positives.image_index],
            box_masks,
            boxinst.pairwise_color_thresh,
            boxinst.pairwise_size,
            boxinst.pairwise_dilation,
        )
        warmup = pairwise_warmup_factor(int(self.iteration), boxinst.pairwise_warmup_iters)
        return {"loss_projection": loss_projection, "loss_pairwise": loss_pairwise * warmup}

    def _image_colours(self, samples: Sequence[Sample], height: int, width: int) -> tuple[Tensor, Tensor]:
        """CIE Lab of the raw padded images and their validity, both at the mask stride."""
        raw = self.pixel_mean.new_zeros((len(samples), 3, height, width))
        valid = self.pixel_mean.new_zeros((len(samples), height, width))
        for i, sample in enumerate(samples):
            h, w = sample.image_size
            raw[i, :, :h, :w] = sample.image.to(self.device, torch.float32)
            valid[i, :h, :w] = 1
        return downsample_for_pairwise(raw, valid, self.mask_stride)

    # inference --------------------------------------------------------------------------------

    def detect(
        self, index: int, outputs: dict[str, Tensor], locations: Locations, mask_features: Tensor, image_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """Boxes, scores, classes and (K, M, M) box-relative mask probabilities of image ``index``
        (input-image coordinates)."""
        settings = self.inference
        boxes = self.head.box_coder.decode(outputs["bbox_regression"][index], locations.anchors)
        found = select_detections(
            outputs["cls_logits"][index],
            outputs["bbox_ctrness"][index],
            boxes,
            locations,
            image_size,
            settings.score_thresh,
            settings.topk_candidates,
            settings.nms_thresh,
            settings.detections_per_image,
        )
        image_index = torch.full_like(found.locations, index)
        logits = self.dynamic_head(
            mask_features,
            self.mask_feature_stride,
            image_index,
            locations.centres[found.locations],
            locations.levels[found.locations],
            outputs["params"][index, found.locations],
        )
        return {
            "boxes": found.boxes,
            "scores": found.scores,
            "classes": found.classes,
            "mask_probs": self.box_relative_masks(logits.sigmoid(), found.boxes),
        }

    def box_relative_masks(self, image_probs: Tensor, boxes: Tensor) -> Tensor:
        """(K, h, w) probabilities at the mask stride -> (K, M, M) on each box's own grid
        (bilinear, 2x2 samples per cell, continuous coordinates)."""
        size = self.inference.mask_resolution
        if boxes.shape[0] == 0:
            return image_probs.new_zeros((0, size, size))
        rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], dim=1)
        return roi_align(
            image_probs[:, None], rois, (size, size), spatial_scale=1.0 / self.mask_stride, sampling_ratio=2, aligned=True
        )[:, 0]


def _flat_index(targets: list[InstanceTargets], positives: _Positives) -> Tensor:
    """Index of each positive's ground truth in the concatenation of all images' targets."""
    offsets = torch.tensor([0] + [len(t) for t in targets], device=positives.gt_index.device).cumsum(0)[:-1]
    return offsets[positives.image_index] + positives.gt_index


def _positive_points(targets: list[InstanceTargets], positives: _Positives) -> tuple[Tensor, Tensor]:
    """(N, P, 2) point coordinates and (N, P) labels of each positive's instance; images with
    fewer points than the batch's largest count are padded with ignored points."""
    width = max(t.num_points for t in targets)
    padded = [t.padded_points(width) for t in targets]
    coords, labels = [c for c, _ in padded], [lab for _, lab in padded]
    index = _flat_index(targets, positives)
    return torch.cat(coords)[index], torch.cat(labels)[index]
