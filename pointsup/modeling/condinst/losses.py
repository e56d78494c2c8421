"""Losses of CondInst's image-level masks: dice, the paper's point loss, and BoxInst's box terms.

CondInst (Tian et al., ECCV 2020) predicts one mask per instance over the whole padded input image
at output stride s (4). It trains with the dice loss against full masks; with point annotations
the logits are sampled at the points instead (:func:`image_point_loss`), and the cells outside
the annotated box are background (:func:`outside_box_loss`). BoxInst (Tian et al.,
CVPR 2021) trains from boxes alone with a projection term (:func:`projection_loss`) and a
colour-gated pairwise term (:func:`pairwise_loss`); the colour affinities come from
:mod:`pointsup.modeling.condinst.color`.

Grid convention: cell ``(r, c)`` of a stride-s map covers input pixels ``[c*s, (c+1)*s) x
[r*s, (r+1)*s)`` in continuous image coordinates (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pointsup.modeling.condinst.color import unfold_without_centre
from pointsup.modeling.losses import MaskLossOutput, point_loss


def dice_loss(probs: Tensor, targets: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-instance dice loss ``1 - 2 sum(p t) / (sum(p^2) + sum(t^2) + eps)``.

    Args:
        probs: (N, ...) probabilities, e.g. (N, H, W) or (N, 1, H, W); flattened per instance.
        targets: targets of the same shape, in [0, 1].
        eps: added to the denominator.

    Returns:
        (N,) losses (an empty tensor, still attached to ``probs``' graph, when N == 0).
    """
    probs = probs.flatten(1)
    targets = targets.flatten(1).to(probs.dtype)
    intersection = (probs * targets).sum(dim=1)
    union = (probs * probs).sum(dim=1) + (targets * targets).sum(dim=1) + eps
    return 1.0 - 2.0 * intersection / union


def image_point_loss(mask_logits: Tensor, stride: int, point_coords: Tensor, point_labels: Tensor) -> MaskLossOutput:
    """Point supervision of image-level mask logits.

    The logits are sampled bilinearly at the points with the grid convention of this module:
    the centre of cell ``(r, c)`` is at ``((c + 0.5) s, (r + 0.5) s)``, i.e. ``grid_sample`` with
    ``align_corners=False``. Points between the outermost cell centres and the map's edge read
    the edge cell (``padding_mode="border"``): the points lie inside the image, and zero padding
    would pull their logits towards 0 for no reason.

    Args:
        mask_logits: (N, h, w) logits of each instance's mask at output stride ``stride`` over
            the padded input image.
        stride: the map's output stride (4 in CondInst).
        point_coords: (N, P, 2) continuous input-image ``(x, y)`` (a stored integer point ``d``
            is at ``d + 0.5``).
        point_labels: (N, P) 1 object, 0 background, -1 ignored.

    Returns:
        loss = mean binary cross-entropy over the valid (non-ignored) points of all instances
        (:func:`~pointsup.modeling.losses.point_loss` with ``denominator="valid_points"``: unlike
        the RoI heads, ignored points are not counted in the denominator). A zero attached to the graph when there is no valid point (or N == 0).
        accuracy = share of valid points with ``(logit > 0) == label`` (0 when there are none).
    """
    if mask_logits.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return MaskLossOutput(zero, zero.detach())
    height, width = mask_logits.shape[-2:]
    scale = torch.tensor([2.0 / (width * stride), 2.0 / (height * stride)], dtype=mask_logits.dtype, device=mask_logits.device)
    grid = (point_coords.to(mask_logits.dtype) * scale - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    point_logits = F.grid_sample(mask_logits.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False)[
        :, 0, :, 0
    ]  # (N, P)
    return point_loss(point_logits, point_labels, denominator="valid_points")


def box_masks_on_grid(boxes: Tensor, height: int, width: int, stride: int) -> Tensor:
    """Boxes rasterised on the stride-s grid of a padded input image.

    Cell ``(r, c)`` stands for input pixel ``(r s + s // 2, c s + s // 2)``, the pixel AdelaiDet
    samples; it is inside a box ``(x0, y0, x1, y1)`` when that pixel's centre
    ``(c s + s // 2 + 0.5, r s + s // 2 + 0.5)`` lies in ``[x0, x1) x [y0, y1)``. (AdelaiDet
    rounds the box to whole pixels ``int(x0) .. int(x1)`` inclusive, which can add a row or
    column of cells at the right and bottom edges.)

    Args:
        boxes: (N, 4) xyxy boxes in continuous input-image coordinates.
        height, width: the padded input image size, multiples of ``stride``.
        stride: the mask map's output stride.

    Returns:
        (N, height / s, width / s) float masks (``boxes``' dtype when it is floating).
    """
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} is not a multiple of the stride {stride}")
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
    offset = stride // 2 + 0.5
    xs = torch.arange(width // stride, device=boxes.device, dtype=dtype) * stride + offset
    ys = torch.arange(height // stride, device=boxes.device, dtype=dtype) * stride + offset
    x0, y0, x1, y1 = boxes.to(dtype).unbind(dim=1)
    inside_x = (xs[None] >= x0[:, None]) & (xs[None] < x1[:, None])  # (N, W)
    inside_y = (ys[None] >= y0[:, None]) & (ys[None] < y1[:, None])  # (N, H)
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(dtype)


def outside_box_loss(mask_logits: Tensor, box_masks: Tensor) -> Tensor:
    """Binary cross-entropy towards background on the cells outside each instance's box.

    Why: docs/design.md, CondInst, "Points". Cells of the padding count as outside (no object
    reaches there). A cell is inside when the pixel :func:`box_masks_on_grid` samples is, half a
    pixel from the cell centre at which :func:`image_point_loss` reads a point: at a box's right
    or bottom edge one cell can be "outside" yet carry an object point's logit.

    Args:
        mask_logits: (N, H, W) mask logits on the stride-s grid.
        box_masks: (N, H, W) box masks on the same grid (:func:`box_masks_on_grid`): 1 inside.

    Returns:
        Scalar mean binary cross-entropy (target 0, computed in float32) over the outside cells of
        all instances; a zero attached to the graph when there are none (or N == 0).
    """
    logits = mask_logits.float()
    outside = 1.0 - box_masks.float()
    bce = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (bce * outside).sum() / outside.sum().clamp(min=1.0)


def projection_loss(mask_probs: Tensor, box_masks: Tensor) -> Tensor:
    """BoxInst's projection term: the mask's and the box's projections onto both axes agree.

    Args:
        mask_probs: (N, H, W) mask probabilities on the stride-s grid.
        box_masks: (N, H, W) box masks on the same grid (:func:`box_masks_on_grid`).

    Returns:
        (N,) ``dice(max over H) + dice(max over W)``, each on the 1-D projections.
    """
    along_x = dice_loss(mask_probs.max(dim=1).values, box_masks.max(dim=1).values)
    along_y = dice_loss(mask_probs.max(dim=2).values, box_masks.max(dim=2).values)
    return along_x + along_y


def pairwise_loss(
    mask_logits: Tensor, similarity: Tensor, box_masks: Tensor, threshold: float = 0.3, kernel_size: int = 3, dilation: int = 2
) -> Tensor:
    """BoxInst's pairwise term: similar-coloured neighbours inside the box share a label.

    For each cell and each neighbour (:func:`~pointsup.modeling.condinst.color.unfold_without_centre`
    order), ``log P(same) = logaddexp(log p_c + log p_n, log(1 - p_c) + log(1 - p_n))`` with
    ``p = sigmoid(logit)``. Neighbours off the map are zero-padded, as AdelaiDet does; they carry
    no weight because their colour similarity is zero.

    Args:
        mask_logits: (N, H, W) mask logits on the stride-s grid.
        similarity: (N, K * K - 1, H, W) colour similarity of each instance's image
            (:func:`~pointsup.modeling.condinst.color.color_similarity`).
        box_masks: (N, H, W) box masks on the grid.
        threshold: minimum similarity for a pair to count.
        kernel_size, dilation: the neighbourhood, as used for ``similarity``.

    Returns:
        Scalar ``sum(-log P(same) * w) / max(sum(w), 1)`` with
        ``w = (similarity >= threshold) * box_mask(centre cell)``; a zero attached to the graph
        when N == 0.
    """
    if mask_logits.shape[0] == 0:
        return mask_logits.sum() * 0.0
    log_fg = F.logsigmoid(mask_logits)[:, None]  # (N, 1, H, W)
    log_bg = F.logsigmoid(-mask_logits)[:, None]
    neighbour_fg = unfold_without_centre(log_fg, kernel_size, dilation)[:, 0]  # (N, K*K-1, H, W)
    neighbour_bg = unfold_without_centre(log_bg, kernel_size, dilation)[:, 0]
    log_same = torch.logaddexp(log_fg + neighbour_fg, log_bg + neighbour_bg)
    weights = (similarity >= threshold).to(mask_logits.dtype) * box_masks[:, None].to(mask_logits.dtype)
    return (-log_same * weights).sum() / weights.sum().clamp(min=1.0)


def pairwise_warmup_factor(iteration: int, warmup_iters: int) -> float:
    """Weight of the pairwise term at ``iteration``: ``min(iteration / warmup_iters, 1)``.

    Returns 1.0 when ``warmup_iters == 0`` (no warm-up).
    """
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be non-negative, got {warmup_iters}")
    if warmup_iters == 0:
        return 1.0
    return min(iteration / warmup_iters, 1.0)
