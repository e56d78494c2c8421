"""Adaptive subdivision: PointRend's inference, shared by PointRend and Implicit PointRend.

A point head predicts mask logits at any box-relative point. Inference evaluates it on a regular
``S0 x S0`` grid, then repeatedly doubles the resolution by bilinear upsampling and re-evaluates
the head only at the ``N`` cells whose logit is closest to zero, ending at ``S0 * 2**steps``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pointsup.modeling.mask_heads.base import RoIMaskHead
from pointsup.modeling.point_ops import most_uncertain_grid_points, point_uncertainty, regular_grid_points

#: (R, P, 2) box-relative points → (R, C, P) logits (C = 1 when only the predicted class is evaluated).
PointLogitsFn = Callable[[Tensor], Tensor]


def initial_resolution(coarse_side: int, steps: int, num_points: int) -> tuple[int, int]:
    """PointRend's start: double the coarse side while ``4 * side**2 <= num_points``, one step less
    each time (7 with 5 steps and 784 points → 28 with 3 steps)."""
    side = coarse_side
    while 4 * side * side <= num_points and steps > 0:
        side *= 2
        steps -= 1
    return side, steps


def subdivide(
    point_logits: PointLogitsFn,
    num_rois: int,
    classes: Tensor,
    initial_side: int,
    steps: int,
    num_points: int,
    device: torch.device,
) -> Tensor:
    """Mask logits by adaptive subdivision.

    Args:
        point_logits: evaluates the point head at box-relative points.
        num_rois: R.
        classes: (R,) predicted classes; the uncertainty is read from their channel (ignored
            when ``point_logits`` returns one channel).
        initial_side: S0, the side of the first, regular grid.
        steps: number of refinement steps.
        num_points: N, points re-evaluated per step.

    Returns:
        (R, C, S0 * 2**steps, S0 * 2**steps) logits.
    """
    logits = point_logits(regular_grid_points(initial_side, num_rois, device))
    logits = logits.reshape(num_rois, logits.shape[1], initial_side, initial_side)
    if num_rois == 0:
        return logits.new_zeros((0, logits.shape[1], initial_side << steps, initial_side << steps))
    for _ in range(steps):
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        channels, height, width = logits.shape[1:]
        indices, points = most_uncertain_grid_points(point_uncertainty(logits, classes), num_points)
        refined = point_logits(points)
        logits = logits.reshape(num_rois, channels, height * width)
        logits = logits.scatter(2, indices.unsqueeze(1).expand(-1, channels, -1), refined.to(logits.dtype))
        logits = logits.view(num_rois, channels, height, width)
    return logits


class SubdivisionMaskHead(RoIMaskHead):
    """A mask head whose masks come from :func:`subdivide`: subclasses give the logits of all
    detections at once and the side of the final grid; this class splits them by image."""

    def output_side(self) -> int:
        """S, the side of the predicted masks."""
        raise NotImplementedError

    def predict_logits(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor, classes: Tensor) -> Tensor:
        """(R, 1, S, S) logits of each detection's class; boxes (R, 4), image_index and classes (R,)."""
        raise NotImplementedError

    def predict(self, features: dict[str, Tensor], boxes: list[Tensor], classes: list[Tensor]) -> list[Tensor]:
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            side = self.output_side()
            return [b.new_zeros((0, side, side)) for b in boxes]
        image_index = torch.cat(
            [torch.full((n,), i, dtype=torch.int64, device=b.device) for i, (b, n) in enumerate(zip(boxes, counts))]
        )
        logits = self.predict_logits(features, torch.cat(boxes), image_index, torch.cat(classes))
        return list(logits[:, 0].sigmoid().split(counts))
