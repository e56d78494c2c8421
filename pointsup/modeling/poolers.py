"""Multi-level RoIAlign with the *aligned* sampling the paper's conventions need.

torchvision's ``MultiScaleRoIAlign`` calls ``roi_align(aligned=False)``, which shifts every RoI by
half a feature cell; point supervision compares logits with points in exact box coordinates, so
the mask branch (and, for consistency, the box branch) pools with ``aligned=True``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align


def assign_fpn_levels(
    boxes: Tensor, min_level: int, max_level: int, canonical_size: float = 224.0, canonical_level: int = 4
) -> Tensor:
    """FPN level of each box (FPN paper, eq. 1): ``floor(4 + log2(sqrt(area) / 224))``, clamped.

    Args:
        boxes: (K, 4) xyxy in image coordinates.

    Returns:
        (K,) int64 offsets from ``min_level`` (0 for the finest level).
    """
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + 1e-8))
    return (levels.clamp(min=min_level, max=max_level) - min_level).to(torch.int64)


def boxes_with_batch_index(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image (K_i, 4) boxes → (sum K_i, 5) rows ``(image_index, x0, y0, x1, y1)``."""
    rows = [torch.cat([torch.full((len(b), 1), i, dtype=b.dtype, device=b.device), b], dim=1) for i, b in enumerate(boxes)]
    if not rows:
        return torch.zeros((0, 5))
    return torch.cat(rows, dim=0)


class AlignedMultiScaleRoIAlign(nn.Module):
    """Pools a fixed-size feature grid for every box from its FPN level.

    Called like torchvision's ``MultiScaleRoIAlign``: ``pooler(features, boxes, image_shapes)``.

    Args:
        feature_names: keys of the FPN levels to pool from, finest first (e.g. "0".."3" = p2..p5).
        strides: the stride of each of those levels (e.g. 4, 8, 16, 32).
        output_size: side of the pooled grid (7 for boxes, 14 for masks).
        sampling_ratio: samples per bin side; 0 = adaptive (ceil(bin size)), as detectron2.
    """

    def __init__(self, feature_names: Sequence[str], strides: Sequence[int], output_size: int, sampling_ratio: int = 0):
        super().__init__()
        if len(feature_names) != len(strides):
            raise ValueError("one stride per feature level is needed")
        self.feature_names = list(feature_names)
        self.strides = list(strides)
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.min_level = int(round(math.log2(self.strides[0])))
        self.max_level = int(round(math.log2(self.strides[-1])))

    def forward(
        self, features: dict[str, Tensor], boxes: Sequence[Tensor], image_shapes: Sequence[tuple[int, int]] | None = None
    ) -> Tensor:
        """
        Args:
            features: FPN maps, each (B, C, H_l, W_l).
            boxes: per image (K_i, 4) xyxy boxes in input-image coordinates.

        Returns:
            (sum K_i, C, S, S) pooled features, rows in the order of the concatenated boxes.
        """
        maps = [features[name] for name in self.feature_names]
        rois = boxes_with_batch_index(boxes).to(device=maps[0].device, dtype=maps[0].dtype)
        channels = maps[0].shape[1]
        output = maps[0].new_zeros((rois.shape[0], channels, self.output_size, self.output_size))
        if rois.shape[0] == 0:
            return output + sum(m.sum() * 0 for m in maps)  # keeps every level in the graph
        if len(maps) == 1:
            return roi_align(maps[0], rois, self.output_size, 1.0 / self.strides[0], self.sampling_ratio, aligned=True)
        levels = assign_fpn_levels(rois[:, 1:], self.min_level, self.max_level)
        for level, (feature_map, stride) in enumerate(zip(maps, self.strides)):
            index = torch.nonzero(levels == level).squeeze(1)
            pooled = roi_align(feature_map, rois[index], self.output_size, 1.0 / stride, self.sampling_ratio, aligned=True)
            output = output.index_put((index,), pooled.to(output.dtype))
        return output
