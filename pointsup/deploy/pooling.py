"""Traceable pieces shared by the exported graphs: padding an image of unknown size and pooling
one image's boxes with the number of boxes a graph dimension."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign, assign_fpn_levels


def padded_image(image: Tensor, divisor: int) -> Tensor:
    """(1, 3, H, W) → (1, 3, H_pad, W_pad), zeros at the bottom and right; sides multiples of ``divisor``."""
    height, width = image.shape[-2], image.shape[-1]
    pad_height = (divisor - height % divisor) % divisor
    pad_width = (divisor - width % divisor) % divisor
    return F.pad(image, (0, pad_width, 0, pad_height))


def pool_one_image(pooler: AlignedMultiScaleRoIAlign, features: dict[str, Tensor], boxes: Tensor) -> Tensor:
    """What ``pooler(features, [boxes])`` computes for one image, with the number of boxes
    (possibly 0) a dimension of the graph rather than a Python integer.

    Args:
        features: FPN maps, each (1, C, H_l, W_l).
        boxes: (K, 4) xyxy boxes in input-image coordinates.

    Returns:
        (K, C, S, S) aligned RoIAlign features, each box from its FPN level.
    """
    maps = [features[name] for name in pooler.feature_names]
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1).to(maps[0].dtype)
    size, ratio = pooler.output_size, pooler.sampling_ratio
    if len(maps) == 1:
        return roi_align(maps[0], rois, size, 1.0 / pooler.strides[0], ratio, aligned=True)
    levels = assign_fpn_levels(boxes, pooler.min_level, pooler.max_level)
    output = maps[0].new_zeros((boxes.shape[0], maps[0].shape[1], size, size))
    for level, (feature_map, stride) in enumerate(zip(maps, pooler.strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        pooled = roi_align(feature_map, rois[index], size, 1.0 / stride, ratio, aligned=True)
        output = output.index_put((index,), pooled)
    return output
