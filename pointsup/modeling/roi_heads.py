"""RoI heads: torchvision's box branch (matching, sampling, box loss, post-processing) plus a
pluggable :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead`.

torchvision's ``RoIHeads`` only passes masks and keypoints on to its heads; the point
annotations of each matched instance have to reach the mask head too, so the forward pass is
re-composed here from its public pieces. The heads build themselves from the ``model.roi_heads``
and ``model.mask_head`` config sections (:meth:`PointSupRoIHeads.from_config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import boxes as box_ops

from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES, norm_factory
from pointsup.modeling.config import ROIHeadsConfig
from pointsup.modeling.mask_heads import mask_head_class
from pointsup.modeling.mask_heads.base import RoIMaskHead, Supervision
from pointsup.modeling.mask_heads.config import MaskHeadConfig
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign
from pointsup.modeling.roi_targets import RoIMaskTargets
from pointsup.structures.instances import InstanceTargets

if TYPE_CHECKING:
    from typing import Self

#: The box heads ``model.roi_heads.box_head`` names.
BOX_HEADS = ("2fc", "4conv1fc")


def build_box_head(kind: str, channels: int, norm: str | None) -> tuple[nn.Module, int]:
    """The box head on 7x7 RoI features and its output width: "2fc" (two FC 1024) or "4conv1fc"
    (four 3x3 convs, optionally normalised, then FC 1024; the usual choice with GroupNorm)."""
    if kind == "2fc":
        return TwoMLPHead(channels * 7 * 7, 1024), 1024
    if kind == "4conv1fc":
        return FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024], norm_layer=norm_factory(norm)), 1024
    raise ValueError(f"unknown box head {kind!r}; choose from {BOX_HEADS}")


class PointSupRoIHeads(RoIHeads):
    """Box branch + mask head.

    Class labels inside torchvision's box branch are shifted by one (0 = background); everything
    this class takes or returns uses contiguous labels ``0..C-1``.

    Args:
        box_pooler, box_head, box_predictor: as for torchvision's ``RoIHeads``.
        mask_head: the mask head (None for a box-only detector).
        train_mask_on_pred_boxes: train the mask head on the box branch's refined boxes of the
            foreground RoIs (detached, clipped; PointRend's recipe) instead of the proposals.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights,
        score_thresh, nms_thresh, detections_per_img: torchvision's ``RoIHeads`` settings.
    """

    def __init__(
        self,
        box_pooler: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_head: RoIMaskHead | None,
        *,
        batch_size_per_image: int,
        positive_fraction: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        train_mask_on_pred_boxes: bool,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
    ):
        super().__init__(
            box_pooler,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
        )
        self.point_mask_head = mask_head
        self.train_mask_on_pred_boxes = train_mask_on_pred_boxes

    @classmethod
    def from_config(
        cls,
        config: ROIHeadsConfig,
        mask_config: MaskHeadConfig,
        num_classes: int,
        supervision: Supervision,
        in_channels: int,
        detections_per_image: int,
        box_head_norm: str | None = None,
    ) -> Self:
        """The box branch of the ``model.roi_heads`` section on ``in_channels``-wide FPN maps, and
        the mask head of ``model.mask_head`` (the registered class of ``mask_config.name``).

        Args:
            num_classes: object classes (the background excluded).
            box_head_norm: normalisation of the "4conv1fc" box head's convolutions.
        """
        box_head, width = build_box_head(config.box_head, in_channels, box_head_norm)
        box_predictor = FastRCNNPredictor(width, num_classes + 1)
        mask_head = mask_head_class(mask_config.name).from_config(mask_config, num_classes, supervision, in_channels)
        return cls(
            AlignedMultiScaleRoIAlign(FEATURE_NAMES, FEATURE_STRIDES, output_size=7),
            box_head,
            box_predictor,
            mask_head,
            batch_size_per_image=config.batch_size_per_image,
            positive_fraction=config.positive_fraction,
            score_thresh=config.score_thresh,
            nms_thresh=config.nms_thresh,
            detections_per_img=detections_per_image,
            train_mask_on_pred_boxes=config.train_mask_on_pred_boxes,
        )

    def refined_boxes(
        self, box_regression: Tensor, proposals: list[Tensor], labels: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[Tensor]:
        """Per image, each proposal decoded with its label's regression, clipped to the image,
        without gradient; a proposal whose refined box is degenerate is kept as it is."""
        with torch.no_grad():
            decoded = self.box_coder.decode(box_regression.detach(), proposals)  # (sum R_i, C + 1, 4)
            rows = torch.arange(decoded.shape[0], device=decoded.device)
            chosen = decoded[rows, torch.cat(labels)].split([len(p) for p in proposals])
            refined = []
            for boxes, proposal, shape in zip(chosen, proposals, image_shapes):
                boxes = box_ops.clip_boxes_to_image(boxes, shape)
                degenerate = ((boxes[:, 2] - boxes[:, 0]) < 1e-2) | ((boxes[:, 3] - boxes[:, 1]) < 1e-2)
                refined.append(torch.where(degenerate[:, None], proposal, boxes))
            return refined

    def box_outputs(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """(sum R_i, C + 1) class logits and (sum R_i, 4 (C + 1)) box deltas of the proposals."""
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        return self.box_predictor(box_features)

    def forward_train(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[InstanceTargets],
    ) -> dict[str, Tensor]:
        """Losses (``loss_classifier``, ``loss_box_reg``, the mask head's) and metrics."""
        box_targets = [{"boxes": t.boxes, "labels": t.classes + 1} for t in targets]
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, box_targets)
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        with torch.no_grad():
            all_labels = torch.cat(labels)
            outputs: dict[str, Tensor] = {
                "loss_classifier": loss_classifier,
                "loss_box_reg": loss_box_reg,
                "box_accuracy": (class_logits.argmax(1) == all_labels).float().mean(),
                "num_fg_rois": (all_labels > 0).sum().float() / len(labels),
            }
        if self.point_mask_head is not None:
            foreground = [torch.nonzero(image_labels > 0).squeeze(1) for image_labels in labels]
            if self.train_mask_on_pred_boxes:
                proposals = self.refined_boxes(box_regression, proposals, labels, image_shapes)
            roi_targets = RoIMaskTargets.from_matches(
                [p[keep] for p, keep in zip(proposals, foreground)],
                [m[keep] for m, keep in zip(matched_idxs, foreground)],
                targets,
            )
            outputs.update(self.point_mask_head.losses(features, roi_targets))
        return outputs

    def forward_test(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (K, 4), scores (K,), classes (K,) and, with a mask head,
        mask_probs (K, M, M); coordinates of the input image."""
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        results = [{"boxes": b, "scores": s, "classes": c - 1} for b, s, c in zip(boxes, scores, labels)]
        if self.point_mask_head is not None:
            mask_probs = self.point_mask_head.predict(features, boxes, [r["classes"] for r in results])
            for result, probs in zip(results, mask_probs):
                result["mask_probs"] = probs
        return results
