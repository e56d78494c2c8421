"""Sampling grid predictions at points, and the box-relative point coordinates of the paper.

Conventions (design notes, section 2): a box-relative coordinate ``u = (x - x0) / (x1 - x0)``
places the point inside the box for ``0 <= u <= 1``; an ``M x M`` map over the box has its cell
centres at ``(i + 0.5) / M``, so sampling is bilinear with ``align_corners=False`` and zero
padding outside.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pointsup.structures.instances import IGNORE_LABEL


def point_sample(maps: Tensor, points: Tensor) -> Tensor:
    """Bilinearly sample ``maps`` at normalised points.

    Args:
        maps: (R, C, H, W) values on a grid covering [0, 1] x [0, 1].
        points: (R, P, 2) ``(u, v)`` in [0, 1] (values outside are sampled as zero padding).

    Returns:
        (R, C, P) sampled values.
    """
    grid = (2.0 * points - 1.0).unsqueeze(2).to(maps.dtype)  # (R, P, 1, 2)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def image_points_to_box(points: Tensor, boxes: Tensor) -> Tensor:
    """Box-relative coordinates of image points.

    Args:
        points: (R, P, 2) continuous image ``(x, y)``.
        boxes: (R, 4) xyxy boxes, one per row of ``points``.

    Returns:
        (R, P, 2) ``(u, v)``; inside the box iff both lie in [0, 1].
    """
    origin = boxes[:, None, :2]
    size = (boxes[:, None, 2:] - boxes[:, None, :2])
    return (points - origin) / size


def box_points_to_image(points: Tensor, boxes: Tensor) -> Tensor:
    """Inverse of :func:`image_points_to_box`: (R, P, 2) box-relative → image coordinates."""
    return points * (boxes[:, None, 2:] - boxes[:, None, :2]) + boxes[:, None, :2]


def ignore_points_outside_box(relative_points: Tensor, labels: Tensor) -> Tensor:
    """Labels with every point outside its box (u or v outside [0, 1]) set to ``IGNORE_LABEL``.

    Args:
        relative_points: (R, P, 2) box-relative coordinates.
        labels: (R, P) labels in {0, 1, -1}.

    Returns:
        (R, P) a new float tensor; points on the box border are kept.
    """
    outside = ((relative_points < 0) | (relative_points > 1)).any(dim=2)
    return torch.where(outside, torch.full_like(labels, IGNORE_LABEL), labels.to(torch.float32))


def regular_grid_points(side: int, num_boxes: int, device: torch.device | None = None) -> Tensor:
    """Cell centres of a ``side x side`` grid, row-major (y outer, x inner).

    Returns:
        (num_boxes, side * side, 2) box-relative ``(u, v)`` with values ``(k + 0.5) / side``.
    """
    centres = (torch.arange(side, dtype=torch.float32, device=device) + 0.5) / side
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)
    return grid.unsqueeze(0).expand(num_boxes, -1, -1).contiguous()
