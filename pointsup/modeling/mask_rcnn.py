"""Mask R-CNN composed from torchvision's detection components and a pluggable mask head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn
from torchvision.models.detection.rpn import RegionProposalNetwork

from pointsup.modeling.backbone import backbone_fpn_from_config
from pointsup.modeling.config import ModelConfig
from pointsup.modeling.detector import Detector
from pointsup.modeling.mask_heads.base import Supervision
from pointsup.modeling.normalization import resolve_normalization
from pointsup.modeling.roi_heads import PointSupRoIHeads
from pointsup.modeling.rpn import rpn_from_config
from pointsup.structures.instances import Detections, InstanceTargets, Sample

if TYPE_CHECKING:
    from typing import Self


class MaskRCNN(Detector):
    """Backbone + RPN + RoI heads, working on :class:`~pointsup.structures.Sample` batches.

    Args:
        backbone: maps (B, 3, H, W) to a dict of FPN maps.
        rpn: torchvision's region proposal network.
        roi_heads: box branch and mask head.
        pixel_mean, pixel_std: per-channel RGB normalisation on the 0-255 scale.
        size_divisibility: padded batch sides are multiples of this.
    """

    def __init__(
        self,
        backbone: nn.Module,
        rpn: RegionProposalNetwork,
        roi_heads: PointSupRoIHeads,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        size_divisibility: int = 32,
    ):
        super().__init__(pixel_mean, pixel_std, size_divisibility)
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    @classmethod
    def from_config(cls, config: ModelConfig, num_classes: int, supervision: Supervision) -> Self:
        """The Mask R-CNN of the ``model`` section: ``backbone`` + ``fpn``, ``rpn``, ``roi_heads``
        with the mask head of ``mask_head``, trained with ``supervision`` ("points" or "masks");
        ``num_classes`` excludes the background. Null pixel statistics are the backbone's own."""
        channels = config.fpn.channels
        body = backbone_fpn_from_config(config.backbone, config.fpn)
        rpn = rpn_from_config(config.rpn, channels)
        roi_heads = PointSupRoIHeads.from_config(
            config.roi_heads,
            config.mask_head,
            num_classes,
            supervision,
            channels,
            config.detections_per_image,
            box_head_norm=config.mask_head.norm if config.backbone.norm == "gn" else None,
        )
        normalization = resolve_normalization(config.backbone.name, config.pixel_mean, config.pixel_std)
        return cls(body, rpn, roi_heads, normalization.pixel_mean, normalization.pixel_std)

    def forward(self, samples: Sequence[Sample]) -> dict[str, Tensor] | list[Detections]:
        """Training: a dict of losses (``loss_*``, to be summed) and detached metrics.
        Inference: one :class:`Detections` per sample, in original image coordinates."""
        images = self.preprocess(samples)
        features = self.backbone(images.tensors)
        if self.training:
            if any(s.targets is None for s in samples):
                raise ValueError("training needs targets on every sample")
            targets = [cast(InstanceTargets, s.targets).to(self.device) for s in samples]
            rpn_targets = [{"boxes": t.boxes} for t in targets]
            proposals, rpn_losses = self.rpn(images, features, rpn_targets)
            outputs = self.roi_heads.forward_train(features, proposals, images.image_sizes, targets)
            outputs.update(rpn_losses)
            return outputs
        proposals, _ = self.rpn(images, features)
        results = self.roi_heads.forward_test(features, proposals, images.image_sizes)
        return [self.to_original(result, sample) for result, sample in zip(results, samples)]

    def segment_boxes(self, samples: Sequence[Sample], boxes: Sequence[Tensor], classes: Sequence[Tensor]) -> list[Tensor]:
        """Mask probabilities for given boxes and classes, skipping detection (for pseudo masks).

        Args:
            samples: the images (targets are not used).
            boxes: per sample, (K_i, 4) xyxy boxes in the coordinates of ``sample.image``.
            classes: per sample, (K_i,) contiguous class indices.

        Returns:
            per sample, (K_i, M, M) probabilities on the box-relative grid.
        """
        head = self.roi_heads.point_mask_head
        if head is None:
            raise ValueError("this model has no mask head")
        images = self.preprocess(samples)
        features = self.backbone(images.tensors)
        return head.predict(features, [b.to(self.device, torch.float32) for b in boxes], [c.to(self.device) for c in classes])
