"""Mask R-CNN composed from torchvision's detection components and a pluggable mask head."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork

from pointsup.modeling.roi_heads import PointSupRoIHeads
from pointsup.structures.instances import Detections, Sample


class MaskRCNN(nn.Module):
    """Backbone + RPN + RoI heads, working on :class:`~pointsup.structures.Sample` batches.

    Unlike torchvision's ``GeneralizedRCNNTransform`` nothing is resized here: the data pipeline
    has already applied the (point-aware) augmentations. The model normalises, pads to a multiple
    of ``size_divisibility`` and batches.

    Args:
        backbone: maps (B, 3, H, W) to a dict of FPN maps.
        rpn: torchvision's region proposal network.
        roi_heads: box branch and mask head.
        pixel_mean, pixel_std: per-channel RGB normalisation on the 0-255 scale.
        size_divisibility: padded batch sides are multiples of this.
    """

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: PointSupRoIHeads,
                 pixel_mean: Sequence[float], pixel_std: Sequence[float], size_divisibility: int = 32):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, samples: Sequence[Sample]) -> ImageList:
        """Normalise and zero-pad (after normalisation) into a (B, 3, H_pad, W_pad) batch."""
        sizes = [s.image_size for s in samples]
        divisor = self.size_divisibility
        height = -(-max(h for h, _ in sizes) // divisor) * divisor
        width = -(-max(w for _, w in sizes) // divisor) * divisor
        batch = self.pixel_mean.new_zeros((len(samples), 3, height, width))
        for i, sample in enumerate(samples):
            image = sample.image.to(self.device, non_blocking=True).to(torch.float32)
            h, w = sizes[i]
            batch[i, :, :h, :w] = (image - self.pixel_mean) / self.pixel_std
        return ImageList(batch, sizes)

    def forward(self, samples: Sequence[Sample]) -> dict[str, Tensor] | list[Detections]:
        """Training: a dict of losses (``loss_*``, to be summed) and detached metrics.
        Inference: one :class:`Detections` per sample, in original image coordinates."""
        images = self.preprocess(samples)
        features = self.backbone(images.tensors)
        if self.training:
            if any(s.targets is None for s in samples):
                raise ValueError("training needs targets on every sample")
            targets = [s.targets.to(self.device) for s in samples]
            rpn_targets = [{"boxes": t.boxes} for t in targets]
            proposals, rpn_losses = self.rpn(images, features, rpn_targets)
            outputs = self.roi_heads.forward_train(features, proposals, images.image_sizes, targets)
            outputs.update(rpn_losses)
            return outputs
        proposals, _ = self.rpn(images, features)
        results = self.roi_heads.forward_test(features, proposals, images.image_sizes)
        return [self._to_original(result, sample) for result, sample in zip(results, samples)]

    @staticmethod
    def _to_original(result: dict[str, Tensor], sample: Sample) -> Detections:
        """Rescale boxes from the input image to the original image."""
        height, width = sample.image_size
        original_height, original_width = sample.original_size
        scale = result["boxes"].new_tensor([original_width / width, original_height / height] * 2)
        return Detections(
            boxes=result["boxes"] * scale,
            scores=result["scores"],
            classes=result["classes"],
            mask_probs=result.get("mask_probs"),
            image_size=(original_height, original_width),
        )


def total_loss(outputs: dict[str, Tensor]) -> Tensor:
    """The sum of the ``loss_*`` entries of a training output."""
    return sum(value for key, value in outputs.items() if key.startswith("loss"))


