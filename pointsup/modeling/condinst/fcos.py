"""The FCOS detector underneath CondInst: locations, target assignment, the head with CondInst's
controller, and detection post-processing.

Locations follow the continuous coordinates of docs/conventions.md (section 1): cell ``(i, j)`` of a level with
stride ``s`` is centred at ``((j + 0.5) s, (i + 0.5) s)``. torchvision's ``FCOSHead`` supplies the
towers, the focal / GIoU / centre-ness losses and the box coder (distances to the four sides,
divided by the stride); each location's "anchor" is the square of side ``s`` around it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import boxes as box_ops

from pointsup.modeling.condinst.config import FCOSConfig

if TYPE_CHECKING:
    from typing import Self


@dataclass
class Locations:
    """Every location of every pyramid level of a batch, concatenated level after level.

    Attributes:
        centres: (L, 2) continuous ``(x, y)`` in input-image coordinates.
        strides: (L,) stride of each location's level.
        levels: (L,) level index (0 = the finest).
        num_per_level: locations in each level, in order.
    """

    centres: Tensor
    strides: Tensor
    levels: Tensor
    num_per_level: list[int]

    @staticmethod
    def of(sizes: list[tuple[int, int]], strides: list[int], device: torch.device) -> Locations:
        """The locations of maps of ``sizes`` (h, w) with ``strides``, row-major within a level."""
        centres, location_strides, levels = [], [], []
        for level, ((height, width), stride) in enumerate(zip(sizes, strides)):
            ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            centres.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
            location_strides.append(torch.full((height * width,), float(stride), device=device))
            levels.append(torch.full((height * width,), level, device=device, dtype=torch.int64))
        return Locations(torch.cat(centres), torch.cat(location_strides), torch.cat(levels), [h * w for h, w in sizes])

    @functools.cached_property
    def anchors(self) -> Tensor:
        """(L, 4) xyxy squares of side ``stride`` around each location (for the box coder);
        computed once per batch."""
        half = self.strides[:, None] / 2
        return torch.cat([self.centres - half, self.centres + half], dim=1)


def match_locations(locations: Locations, boxes: Tensor, center_sampling_radius: float) -> Tensor:
    """FCOS's assignment of ground-truth boxes to locations.

    A location is a candidate for a box when it lies inside the box, within
    ``center_sampling_radius * stride`` of the box centre (in each axis), and the largest of its
    four distances to the box sides falls in its level's range ``(4 s, 8 s)`` (the first level
    starts at 0, the last is unbounded). Among several candidates the smallest box wins.

    Args:
        locations: the L locations.
        boxes: (M, 4) xyxy ground-truth boxes.

    Returns:
        (L,) int64: the matched box index, or -1 for background.
    """
    num = locations.centres.shape[0]
    if boxes.numel() == 0:
        return torch.full((num,), -1, dtype=torch.int64, device=boxes.device)
    x, y = locations.centres[:, 0:1], locations.centres[:, 1:2]  # (L, 1)
    x0, y0, x1, y1 = boxes.unbind(dim=1)  # (M,)
    distances = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # (L, M, 4)
    box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    stride = locations.strides[:, None]
    near_centre = (locations.centres[:, None, :] - box_centres[None]).abs().amax(dim=2) < center_sampling_radius * stride
    inside = distances.amin(dim=2) > 0
    lower = 4 * locations.strides
    upper = 8 * locations.strides
    lower = torch.where(locations.levels == 0, torch.zeros_like(lower), lower)
    upper = torch.where(locations.levels == locations.levels.max(), torch.full_like(upper, float("inf")), upper)
    reach = distances.amax(dim=2)
    in_range = (reach > lower[:, None]) & (reach < upper[:, None])
    candidate = near_centre & inside & in_range  # (L, M)
    areas = (x1 - x0) * (y1 - y0)
    cost = torch.where(candidate, areas[None].expand_as(candidate), torch.full_like(reach, float("inf")))
    best_cost, best = cost.min(dim=1)
    return torch.where(torch.isfinite(best_cost), best, torch.full_like(best, -1))


#: Initial output of the box regression (side distances in strides) at every location.
REGRESSION_BIAS_INIT = 1.0


class CondInstHead(FCOSHead):
    """FCOS's classification and box towers plus CondInst's controller on the box tower.

    Args:
        in_channels: FPN channels.
        num_classes: C.
        num_params: parameters of one instance's dynamic mask head.
        num_convs: convolutions per tower (GroupNorm + ReLU after each).
    """

    def __init__(self, in_channels: int, num_classes: int, num_params: int, num_convs: int):
        super().__init__(in_channels, num_anchors=1, num_classes=num_classes, num_convs=num_convs)
        self.controller = nn.Conv2d(in_channels, num_params, kernel_size=3, padding=1)
        nn.init.normal_(self.controller.weight, std=0.01)
        assert self.controller.bias is not None
        nn.init.zeros_(self.controller.bias)
        # Side distances pass through a ReLU: started at zero bias, a location whose four outputs
        # are not all positive predicts a degenerate box whose GIoU loss (1.0) sends no gradient
        # through the ReLU. With pretrained features most locations start that way, and some seeds
        # never detect anything. Boxes one stride wide on every side at the start keep each side alive.
        nn.init.constant_(self.regression_head.bbox_reg.bias, REGRESSION_BIAS_INIT)

    @classmethod
    def from_config(cls, config: FCOSConfig, in_channels: int, num_classes: int, num_params: int) -> Self:
        """The towers of the ``model.condinst.fcos`` section (``num_convs``) and a controller of
        ``num_params`` outputs."""
        return cls(in_channels, num_classes, num_params, config.num_convs)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Per-location outputs over all levels, each (B, L, ·): ``cls_logits`` (C),
        ``bbox_regression`` (4, non-negative side distances / stride), ``bbox_ctrness`` (1) and
        ``params`` (the controller's dynamic-head parameters)."""
        regression = self.regression_head
        boxes, ctrness, params = [], [], []
        for level in features:
            tower = regression.conv(level)
            boxes.append(_flatten(nn.functional.relu(regression.bbox_reg(tower))))
            ctrness.append(_flatten(regression.bbox_ctrness(tower)))
            params.append(_flatten(self.controller(tower)))
        return {
            "cls_logits": self.classification_head(features),
            "bbox_regression": torch.cat(boxes, dim=1),
            "bbox_ctrness": torch.cat(ctrness, dim=1),
            "params": torch.cat(params, dim=1),
        }


def _flatten(map_: Tensor) -> Tensor:
    """(B, K, H, W) -> (B, H W, K), row-major locations."""
    return map_.flatten(2).transpose(1, 2)


@dataclass
class DetectionCandidates:
    """The detections of one image, with the location each came from (for its mask parameters)."""

    boxes: Tensor  # (K, 4) xyxy, input-image coordinates
    scores: Tensor  # (K,)
    classes: Tensor  # (K,) contiguous labels
    locations: Tensor  # (K,) index into the batch's L locations


def select_detections(
    cls_logits: Tensor,
    ctrness: Tensor,
    boxes: Tensor,
    locations: Locations,
    image_size: tuple[int, int],
    score_thresh: float,
    topk_candidates: int,
    nms_thresh: float,
    detections_per_image: int,
) -> DetectionCandidates:
    """FCOS post-processing of one image.

    Per level, (location, class) pairs whose class probability exceeds ``score_thresh`` are
    ranked by class probability x centre-ness and the best ``topk_candidates`` kept; the score
    is the square root of that product. Boxes are clipped to the image, then class-wise NMS keeps
    at most ``detections_per_image``.

    Args:
        cls_logits: (L, C); ctrness: (L, 1); boxes: (L, 4) decoded xyxy.
        image_size: (h, w) of the (unpadded) input image.
    """
    num_classes = cls_logits.shape[1]
    probs = torch.sigmoid(cls_logits)
    ranking = probs * torch.sigmoid(ctrness)
    chosen_locations, chosen_classes, chosen_scores = [], [], []
    start = 0
    for count in locations.num_per_level:
        level_probs = probs[start : start + count].flatten()
        level_ranking = ranking[start : start + count].flatten()
        candidates = torch.nonzero(level_probs > score_thresh).squeeze(1)
        if candidates.numel() > topk_candidates:
            candidates = candidates[level_ranking[candidates].topk(topk_candidates).indices]
        chosen_locations.append(start + torch.div(candidates, num_classes, rounding_mode="floor"))
        chosen_classes.append(candidates % num_classes)
        chosen_scores.append(torch.sqrt(level_ranking[candidates]))
        start += count
    where = torch.cat(chosen_locations)
    classes = torch.cat(chosen_classes)
    scores = torch.cat(chosen_scores)
    kept_boxes = box_ops.clip_boxes_to_image(boxes[where], image_size)
    keep = box_ops.batched_nms(kept_boxes, scores, classes, nms_thresh)[:detections_per_image]
    return DetectionCandidates(kept_boxes[keep], scores[keep], classes[keep], where[keep])
