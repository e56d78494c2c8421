"""How well the masks fit the objects a model did find, apart from how well it finds them.

Mask AP mixes detection and segmentation: two models with equal box AP can still differ in mask
AP only through their masks, but a model that detects worse loses mask AP too. The matched mask
IoU isolates the masks: every confident detection whose box overlaps a ground-truth box of its
category tightly (box IoU >= ``box_iou_threshold``) is compared, mask against mask, with that
object, and the IoUs are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


@dataclass(frozen=True)
class MatchedMaskQuality:
    """The mean mask IoU over ``matched`` detections (NaN when none matched)."""

    mean_iou: float
    matched: int


def matched_mask_iou(
    ground_truth: COCO, results: Sequence[dict[str, Any]], box_iou_threshold: float = 0.7, score_threshold: float = 0.2
) -> MatchedMaskQuality:
    """Mean mask IoU of the detections that found an object.

    Args:
        ground_truth: the evaluated split, with masks (e.g. from
            :func:`pointsup.evaluation.coco_evaluator.load_ground_truth`).
        results: COCO result dicts with ``image_id``, ``category_id``, ``bbox`` (xywh),
            ``score`` and ``segmentation`` (an RLE of the image's size), as the evaluator writes
            them.
        box_iou_threshold: a detection counts when its box overlaps a non-crowd ground-truth
            box of the same image and category by at least this IoU; it is compared with the
            object whose box overlaps it most.
        score_threshold: detections scoring at or below this are left out.

    Raises:
        ValueError: a result without a segmentation, or a threshold outside [0, 1].
    """
    if not (0.0 <= box_iou_threshold <= 1.0 and 0.0 <= score_threshold <= 1.0):
        raise ValueError(f"thresholds must be in [0, 1], got box IoU {box_iou_threshold} and score {score_threshold}")
    ious: list[float] = []
    truths: dict[int, dict] = {}  # annotation id -> RLE, decoded once however many detections match it
    for result in results:
        if float(result["score"]) <= score_threshold:
            continue
        if "segmentation" not in result:
            raise ValueError(f"result for image {result.get('image_id')} has no segmentation; mask IoU needs masks")
        ann_ids = ground_truth.getAnnIds(imgIds=[result["image_id"]], catIds=[result["category_id"]])
        objects = [obj for obj in ground_truth.loadAnns(ann_ids) if not obj.get("iscrowd", 0)]
        if not objects:
            continue
        box_ious = mask_utils.iou([result["bbox"]], [obj["bbox"] for obj in objects], [0] * len(objects))[0]
        best = int(np.argmax(box_ious))
        if box_ious[best] < box_iou_threshold:
            continue
        match = objects[best]
        if match["id"] not in truths:
            truths[match["id"]] = ground_truth.annToRLE(match)
        truth = truths[match["id"]]
        ious.append(float(mask_utils.iou([result["segmentation"]], [truth], [0])[0, 0]))
    return MatchedMaskQuality(float(np.mean(ious)) if ious else math.nan, len(ious))
