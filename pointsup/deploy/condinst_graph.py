"""The exportable core of a trained CondInst: one image in, detections with box-relative masks out.

:class:`CondInstGraph` re-composes :meth:`~pointsup.modeling.condinst.model.CondInst.detect` from
the model's own modules for one image of any size (the same inputs and outputs as
:class:`~pointsup.deploy.graph.MaskRCNNGraph`):

* in: ``image`` (1, 3, H, W) float32 RGB on the 0-255 scale, at the test size;
* inside: normalisation and padding, backbone (p3-p7), the FCOS towers and the controller, the
  locations of every level (:func:`level_locations`), box decoding, FCOS's selection (per level:
  class probability above the threshold, the best ``topk_candidates`` by probability x
  centre-ness, score the square root of that product; :func:`select_candidates`), clipping,
  class-wise NMS and the top ``detections_per_image``; then the mask branch, the dynamic mask
  head of each kept detection over the whole image at stride 4, and its probabilities resampled
  onto the box (RoIAlign, ``mask_resolution`` squared, 2 x 2 samples per cell);
* out: ``boxes`` (K, 4), ``scores`` (K,), ``classes`` (K,) int64 and ``mask_probs`` (K, M, M).

:func:`pointsup.modeling.condinst.fcos.select_detections` slices the levels by Python counts and
``Locations.num_per_level`` is a list of integers; a trace would freeze both to the traced image's
size, so the locations and the per-level selection are computed here from the maps' shapes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import _topk_min
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align

from pointsup.deploy.pooling import padded_image
from pointsup.modeling.condinst.model import CondInst


def level_locations(level: Tensor, stride: int, index: int) -> tuple[Tensor, Tensor, Tensor]:
    """The locations of one level map, row-major, as ``Locations.of`` lays them out.

    Args:
        level: (1, C, h, w) the level's map (only its size is read).

    Returns:
        centres (h w, 2) continuous ``(x, y)``, strides (h w,) float32 and levels (h w,) int64.
    """
    height, width = level.shape[-2], level.shape[-1]
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)
    return centres, torch.full_like(centres[:, 0], float(stride)), torch.full_like(centres[:, 0], index).to(torch.int64)


def select_candidates(probs: Tensor, ranking: Tensor, score_thresh: float, topk_candidates: int) -> tuple[Tensor, Tensor, Tensor]:
    """FCOS's per-level candidates of one level.

    Args:
        probs, ranking: (L_l, C) class probabilities and probability x centre-ness.

    Returns:
        (n,) location within the level, (n,) class and (n,) score ``sqrt(ranking)`` of the at most
        ``topk_candidates`` best pairs above ``score_thresh`` (best first).
    """
    num_classes = probs.shape[1]
    flat_probs, flat_ranking = probs.flatten(), ranking.flatten()
    candidates = torch.nonzero(flat_probs > score_thresh).squeeze(1)
    candidate_ranking = flat_ranking[candidates]
    order = candidate_ranking.topk(_topk_min(candidate_ranking, topk_candidates, 0)).indices
    candidates = candidates[order]
    return (
        torch.div(candidates, num_classes, rounding_mode="floor"),
        candidates % num_classes,
        torch.sqrt(flat_ranking[candidates]),
    )


class CondInstGraph(nn.Module):
    """CondInst inference on one image as a traceable module (see the module docstring)."""

    def __init__(self, model: CondInst):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(1, 3, H, W) float32 0-255 RGB → boxes (K, 4), scores (K,), classes (K,), mask_probs (K, M, M)."""
        model, settings = self.model, self.model.inference
        height, width = image.shape[-2], image.shape[-1]
        normalised = (image - model.pixel_mean[None]) / model.pixel_std[None]
        levels = list(model.backbone(padded_image(normalised, model.size_divisibility)).values())
        outputs = model.head(levels)
        mask_features = model.mask_branch(levels[: len(model.mask_branch.refine)])
        located = [level_locations(level, stride, k) for k, (level, stride) in enumerate(zip(levels, model.strides))]
        centres = torch.cat([c for c, _, _ in located])
        strides = torch.cat([s for _, s, _ in located])
        level_index = torch.cat([lv for _, _, lv in located])
        half = strides[:, None] / 2
        decoded = model.head.box_coder.decode(outputs["bbox_regression"][0], torch.cat([centres - half, centres + half], dim=1))
        probs = torch.sigmoid(outputs["cls_logits"][0])
        ranking = probs * torch.sigmoid(outputs["bbox_ctrness"][0])
        where, classes, scores = [], [], []
        start = torch.zeros((), dtype=torch.int64)
        for level in levels:
            count = level.shape[-2] * level.shape[-1]
            level_where, level_classes, level_scores = select_candidates(
                probs[start : start + count], ranking[start : start + count], settings.score_thresh, settings.topk_candidates
            )
            where.append(start + level_where)
            classes.append(level_classes)
            scores.append(level_scores)
            start = start + count
        chosen, chosen_classes, chosen_scores = torch.cat(where), torch.cat(classes), torch.cat(scores)
        boxes = box_ops.clip_boxes_to_image(decoded[chosen], (height, width))
        keep = box_ops.batched_nms(boxes, chosen_scores, chosen_classes, settings.nms_thresh)[: settings.detections_per_image]
        boxes, kept = boxes[keep], chosen[keep]
        # a spare instance keeps the dynamic head's batch non-empty (onnxruntime cannot reshape an
        # empty one); instances are independent, so the others are unchanged
        spare_boxes = torch.cat([boxes, boxes.new_tensor([[0.0, 0.0, 1.0, 1.0]])])
        spare_params = torch.cat([outputs["params"][0, kept], outputs["params"].new_zeros((1, outputs["params"].shape[2]))])
        spare_centres = torch.cat([centres[kept], centres.new_zeros((1, 2))])
        spare_levels = torch.cat([level_index[kept], level_index.new_zeros((1,))])
        logits = model.dynamic_head(
            mask_features, model.mask_feature_stride, torch.zeros_like(spare_levels), spare_centres, spare_levels, spare_params
        )  # (K + 1, H/4, W/4)
        size = settings.mask_resolution
        rois = torch.cat([(torch.cumsum(torch.ones_like(spare_boxes[:, :1]), 0) - 1), spare_boxes], dim=1)
        mask_probs = roi_align(
            logits.sigmoid()[:, None], rois, (size, size), spatial_scale=1.0 / model.mask_stride, sampling_ratio=2, aligned=True
        )[:-1, 0]
        return boxes, chosen_scores[keep], chosen_classes[keep], mask_probs
