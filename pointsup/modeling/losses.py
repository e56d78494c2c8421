"""Mask losses on grid predictions: the paper's point loss and the standard mask loss.

Both take class-specific (or class-agnostic) logits ``(R, C, M, M)`` of the foreground RoIs and
select the ground-truth class channel, as Mask R-CNN does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from pointsup.modeling.point_ops import point_sample
from pointsup.structures.instances import IGNORE_LABEL

#: what a point loss is divided by (see :func:`point_loss`)
PointLossDenominator = Literal["all_points", "valid_points"]


@dataclass
class MaskLossOutput:
    """A loss and the accuracy metric logged beside it (a detached float tensor)."""

    loss: Tensor
    accuracy: Tensor


def select_class_channel(logits: Tensor, classes: Tensor) -> Tensor:
    """(R, C, ...) logits → (R, 1, ...) logits of each row's class (channel 0 if C == 1)."""
    if logits.shape[1] == 1:
        return logits
    index = torch.arange(logits.shape[0], device=logits.device)
    return logits[index, classes].unsqueeze(1)


def point_loss(point_logits: Tensor, labels: Tensor, denominator: PointLossDenominator = "all_points") -> MaskLossOutput:
    """The point loss of every model: binary cross-entropy on logits already sampled at the
    points, ignored points (``IGNORE_LABEL``) weighted 0 (docs/conventions.md, section 4).

    Args:
        point_logits: (R, P) logits at the points.
        labels: (R, P) float labels in {0, 1} (or soft in [0, 1]), ``IGNORE_LABEL`` = ignored.
        denominator: what the summed loss is divided by. ``"all_points"`` (the RoI heads, as the
            reference's ``reduction="mean"`` with zero weights): ``R * P``, ignored points
            included. ``"valid_points"`` (CondInst): the number of non-ignored points (at least 1).

    Returns:
        The loss, and accuracy = share of non-ignored points with ``(logit > 0) == label``, the
        label truncated to an integer as the reference does.
    """
    valid = labels != IGNORE_LABEL
    if point_logits.numel() == 0:
        zero = point_logits.sum() * 0.0
        return MaskLossOutput(zero, zero.detach())
    weight = valid.to(point_logits.dtype)
    targets = torch.where(valid, labels, torch.zeros_like(labels)).to(point_logits.dtype)
    if denominator == "all_points":
        loss = F.binary_cross_entropy_with_logits(point_logits, targets, weight=weight, reduction="mean")
    elif denominator == "valid_points":
        summed = F.binary_cross_entropy_with_logits(point_logits, targets, weight=weight, reduction="sum")
        loss = summed / weight.sum().clamp(min=1.0)
    else:
        raise ValueError(f"denominator must be 'all_points' or 'valid_points', not {denominator!r}")
    with torch.no_grad():
        correct = ((point_logits > 0) == targets.to(torch.uint8).bool()) & valid
        accuracy = correct.sum().float() / valid.sum().clamp(min=1).float()
    return MaskLossOutput(loss, accuracy)


def roi_point_loss(mask_logits: Tensor, classes: Tensor, relative_points: Tensor, labels: Tensor) -> MaskLossOutput:
    """Point supervision of grid mask logits (docs/conventions.md, section 4).

    Args:
        mask_logits: (R, C, M, M) logits over each RoI box.
        classes: (R,) ground-truth class of each RoI.
        relative_points: (R, P, 2) box-relative ``(u, v)`` of the annotated points.
        labels: (R, P) labels after the ignore rule (-1 = ignored).

    Returns:
        The loss (zero, with a graph, when R == 0) and the point accuracy.
    """
    if mask_logits.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return MaskLossOutput(zero, zero.detach())
    logits = select_class_channel(mask_logits, classes)
    point_logits = point_sample(logits, relative_points).squeeze(1)
    return point_loss(point_logits, labels)


def roi_mask_loss(mask_logits: Tensor, classes: Tensor, mask_targets: Tensor) -> MaskLossOutput:
    """Standard Mask R-CNN loss: mean BCE over the M x M grid against cropped GT masks.

    Args:
        mask_logits: (R, C, M, M).
        classes: (R,).
        mask_targets: (R, M, M) float GT masks resampled into each RoI box, binarised.

    Returns:
        The loss (zero when R == 0) and the pixel accuracy.
    """
    if mask_logits.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return MaskLossOutput(zero, zero.detach())
    logits = select_class_channel(mask_logits, classes).squeeze(1)
    loss = F.binary_cross_entropy_with_logits(logits, mask_targets.to(logits.dtype), reduction="mean")
    with torch.no_grad():
        accuracy = ((logits > 0) == (mask_targets > 0.5)).float().mean()
    return MaskLossOutput(loss, accuracy)
