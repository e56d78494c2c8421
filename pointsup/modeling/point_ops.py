"""Sampling grid predictions at points, and the box-relative point coordinates of the paper.

Conventions (docs/conventions.md, section 2): a box-relative coordinate ``u = (x - x0) / (x1 - x0)``
places the point inside the box for ``0 <= u <= 1``; an ``M x M`` map over the box has its cell
centres at ``(i + 0.5) / M``, so sampling is bilinear with ``align_corners=False`` and zero
padding outside.
"""

from __future__ import annotations

from typing import cast

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
    size = boxes[:, None, 2:] - boxes[:, None, :2]
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

    Computed with ``affine_grid`` (the box [0, 1]^2 as an affine map of [-1, 1]^2), which gives
    the reference's values to the last bit; they equal ``(k + 0.5) / side`` to within 1 ulp.

    Returns:
        (num_boxes, side * side, 2) box-relative ``(u, v)``.
    """
    theta = torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]]], device=device)
    grid = F.affine_grid(theta, [1, 1, side, side], align_corners=False).view(1, side * side, 2)
    return grid.expand(num_boxes, -1, -1).contiguous()


def sample_image_features(feature_map: Tensor, stride: int, image_index: Tensor, image_points: Tensor) -> Tensor:
    """Bilinearly sample a feature map at image points (PointRend's fine-grained features).

    The map covers the padded batch image: cell ``(i, j)`` has its centre at image coordinate
    ``((j + 0.5) * stride, (i + 0.5) * stride)``; points outside read zero padding.

    Without gradient to the map (inference), each image's map is read as a batch expanded over
    its RoIs, which gives the output in (R, C, P) layout directly; with a channels-last map
    (see :func:`channels_last`) that is several times faster and gives the same values.

    Args:
        feature_map: (B, C, H_f, W_f) one FPN level of the batch.
        stride: its stride (4 for p2).
        image_index: (R,) image of each row of points.
        image_points: (R, P, 2) continuous image ``(x, y)``.

    Returns:
        (R, C, P) features.
    """
    num_rois, num_points = image_points.shape[:2]
    height, width = feature_map.shape[-2:]
    padded_size = torch.tensor([width * stride, height * stride], dtype=torch.float32, device=image_points.device)
    expand = not (torch.is_grad_enabled() and feature_map.requires_grad)  # an expanded input's gradient would be (R, C, H, W)
    images = torch.unique(image_index).tolist()
    output = None if len(images) == 1 else feature_map.new_zeros((num_rois, feature_map.shape[1], num_points))
    for b in images:
        rows = torch.nonzero(image_index == b).squeeze(1) if output is not None else slice(None)
        grid = (2.0 * (image_points[rows] / padded_size) - 1.0).to(feature_map.dtype)  # (n, P, 2)
        if expand:
            image_map = feature_map[b : b + 1].expand(grid.shape[0], -1, -1, -1)
            sampled = F.grid_sample(image_map, grid.unsqueeze(2), mode="bilinear", padding_mode="zeros", align_corners=False)[
                ..., 0
            ]
        else:
            sampled = F.grid_sample(
                feature_map[b : b + 1], grid.unsqueeze(0), mode="bilinear", padding_mode="zeros", align_corners=False
            )[0].transpose(0, 1)
        if output is None:
            return sampled
        output = output.index_put((cast(Tensor, rows),), sampled)  # rows index the output whenever there is one
    assert output is not None  # one image returns in the loop
    return output


def channels_last(feature_map: Tensor) -> Tensor:
    """The map in channels-last memory layout (the fast layout for :func:`sample_image_features`)."""
    return feature_map.contiguous(memory_format=torch.channels_last)


def point_uncertainty(logits: Tensor, classes: Tensor) -> Tensor:
    """PointRend's uncertainty: minus the absolute logit of each row's class.

    Args:
        logits: (R, C, ...) logits (C == 1 for class-agnostic ones).
        classes: (R,) the class whose channel is scored.

    Returns:
        (R, 1, ...) uncertainty, highest where the logit is closest to 0.
    """
    if logits.shape[1] == 1:
        return -logits.abs()
    return -logits[torch.arange(logits.shape[0], device=logits.device), classes].unsqueeze(1).abs()


def most_uncertain_grid_points(uncertainty: Tensor, num_points: int) -> tuple[Tensor, Tensor]:
    """The ``num_points`` most uncertain cells of each map, as flat indices and cell centres.

    Args:
        uncertainty: (R, 1, H, W).

    Returns:
        (R, k) flat indices ``i * W + j`` in descending uncertainty and (R, k, 2) box-relative
        ``(u, v)`` of the cell centres, with ``k = min(num_points, H * W)``.
    """
    num_rois, _, height, width = uncertainty.shape
    step_y, step_x = 1.0 / float(height), 1.0 / float(width)
    k = min(num_points, height * width)
    indices = torch.topk(uncertainty.view(num_rois, height * width), k=k, dim=1)[1]
    coords = torch.stack(
        [
            step_x / 2.0 + (indices % width).to(torch.float32) * step_x,
            step_y / 2.0 + (indices // width).to(torch.float32) * step_y,
        ],
        dim=2,
    )
    return indices, coords


def importance_sample_points(
    coarse_logits: Tensor,
    classes: Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PointRend's training points: the most uncertain of ``oversample_ratio * num_points``
    uniform candidates, plus uniform points (draw order as the reference, so a seeded run
    reproduces its points).

    Args:
        coarse_logits: (R, C, S, S) coarse logits over each box (not differentiated).
        classes: (R,) class of each row whose channel defines the uncertainty.
        num_points: N, points per box.
        oversample_ratio: k >= 1; ``int(k * N)`` candidates are drawn.
        importance_ratio: beta in [0, 1]; ``int(beta * N)`` points are the most uncertain candidates.

    Returns:
        (R, N, 2) box-relative ``(u, v)`` in [0, 1].
    """
    num_rois = coarse_logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    device = coarse_logits.device
    candidates = torch.rand(num_rois, num_candidates, 2, device=device, generator=generator)
    uncertainty = point_uncertainty(point_sample(coarse_logits, candidates), classes)  # (R, 1, kN)
    num_uncertain = int(importance_ratio * num_points)
    num_random = num_points - num_uncertain
    index = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]
    chosen = torch.gather(candidates, 1, index.unsqueeze(2).expand(-1, -1, 2))
    if num_random > 0:
        chosen = torch.cat([chosen, torch.rand(num_rois, num_random, 2, device=device, generator=generator)], dim=1)
    return chosen
