"""What every pointsup detector shares: pixel normalisation, batching of
:class:`~pointsup.structures.Sample` images, and detections mapped back to the image file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from pointsup.structures.instances import Detections, Sample


class Detector(nn.Module):
    """Base class of the models: ``forward(samples)`` returns a dict of losses (``loss_*``, to be
    summed) and detached metrics in training, and one :class:`Detections` per sample otherwise.

    Unlike torchvision's ``GeneralizedRCNNTransform`` nothing is resized here: the data pipeline
    has already applied the (point-aware) augmentations. The model normalises, pads to a multiple
    of ``size_divisibility`` and batches.

    Args:
        pixel_mean, pixel_std: per-channel RGB normalisation on the 0-255 scale.
        size_divisibility: padded batch sides are multiples of this.
    """

    pixel_mean: Tensor  # buffers (registered in __init__)
    pixel_std: Tensor
    #: the feature extractor (backbone + FPN), set by every subclass
    backbone: nn.Module

    def __init__(self, pixel_mean: Sequence[float], pixel_std: Sequence[float], size_divisibility: int = 32):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.size_divisibility = size_divisibility

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def padded_size(self, samples: Sequence[Sample]) -> tuple[int, int]:
        """(H_pad, W_pad): the largest image sides rounded up to ``size_divisibility``."""
        divisor = self.size_divisibility
        height = -(-max(s.image_size[0] for s in samples) // divisor) * divisor
        width = -(-max(s.image_size[1] for s in samples) // divisor) * divisor
        return height, width

    def preprocess(self, samples: Sequence[Sample]) -> ImageList:
        """Normalise and zero-pad (after normalisation) into a (B, 3, H_pad, W_pad) batch."""
        height, width = self.padded_size(samples)
        batch = self.pixel_mean.new_zeros((len(samples), 3, height, width))
        for i, sample in enumerate(samples):
            image = sample.image.to(self.device, non_blocking=True).to(torch.float32)
            h, w = sample.image_size
            batch[i, :, :h, :w] = (image - self.pixel_mean) / self.pixel_std
        return ImageList(batch, [s.image_size for s in samples])

    @staticmethod
    def to_original(result: dict[str, Tensor], sample: Sample) -> Detections:
        """Detections of the model's input image rescaled to the original image (boxes only: the
        masks are box-relative grids)."""
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
    """The sum of the ``loss_*`` entries of a detector's training output (every detector sums its losses this way)."""
    return cast(Tensor, sum(value for key, value in outputs.items() if key.startswith("loss")))
