"""Matched-detection mask IoU on hand-built masks whose IoUs are known."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from pointsup.evaluation.mask_quality import matched_mask_iou

HEIGHT, WIDTH = 40, 60


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": encoded["size"], "counts": encoded["counts"].decode("ascii")}


def rectangle(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def ground_truth() -> COCO:
    """Image 1: a 20x20 square (category 1) at (0, 0) and a crowd region (category 1) at
    (30, 0); image 2: a 10x20 rectangle (category 2) at (10, 10)."""
    anns = [
        (1, 1, 1, rectangle(0, 0, 20, 20), [0, 0, 20, 20], 0),
        (2, 1, 1, rectangle(30, 0, 50, 20), [30, 0, 20, 20], 1),
        (3, 2, 2, rectangle(10, 10, 20, 30), [10, 10, 10, 20], 0),
    ]
    dataset = {
        "images": [{"id": i, "height": HEIGHT, "width": WIDTH, "file_name": f"{i}.png"} for i in (1, 2)],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {
                "id": a,
                "image_id": i,
                "category_id": c,
                "segmentation": rle(m),
                "bbox": box,
                "area": float(m.sum()),
                "iscrowd": crowd,
            }
            for a, i, c, m, box, crowd in anns
        ],
    }
    coco = COCO()
    coco.dataset = json.loads(json.dumps(dataset))
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def result(image_id: int, category_id: int, box: list[float], mask: np.ndarray, score: float = 0.9) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score, "segmentation": rle(mask)}


def test_averages_the_mask_iou_of_matched_detections_only() -> None:
    results = [
        # the square's own box; the mask covers its left half: IoU 0.5
        result(1, 1, [0, 0, 20, 20], rectangle(0, 0, 10, 20)),
        # image 2's rectangle, box exact, mask exact: IoU 1
        result(2, 2, [10, 10, 10, 20], rectangle(10, 10, 20, 30)),
        # left out: below the score threshold
        result(1, 1, [0, 0, 20, 20], rectangle(0, 0, 20, 20), score=0.1),
        # left out: box IoU with the square is 0.25 (< 0.7)
        result(1, 1, [0, 0, 10, 10], rectangle(0, 0, 10, 10)),
        # left out: overlaps only the crowd region
        result(1, 1, [30, 0, 20, 20], rectangle(30, 0, 50, 20)),
        # left out: right place, wrong category
        result(2, 1, [10, 10, 10, 20], rectangle(10, 10, 20, 30)),
    ]
    quality = matched_mask_iou(ground_truth(), results)
    assert quality.matched == 2
    assert quality.mean_iou == pytest.approx(0.75)


def test_box_threshold_decides_what_counts() -> None:
    # box 18x20 inside the square's 20x20: box IoU 0.9; mask = the square: IoU 1
    detection = result(1, 1, [0, 0, 18, 20], rectangle(0, 0, 20, 20))
    assert matched_mask_iou(ground_truth(), [detection], box_iou_threshold=0.85).matched == 1
    assert matched_mask_iou(ground_truth(), [detection], box_iou_threshold=0.95).matched == 0


def test_nothing_matched_is_nan() -> None:
    quality = matched_mask_iou(ground_truth(), [])
    assert quality.matched == 0 and math.isnan(quality.mean_iou)


def test_bad_input_is_refused() -> None:
    detection = result(1, 1, [0, 0, 20, 20], rectangle(0, 0, 20, 20))
    del detection["segmentation"]
    with pytest.raises(ValueError, match="image 1 has no segmentation"):
        matched_mask_iou(ground_truth(), [detection])
    with pytest.raises(ValueError, match="thresholds"):
        matched_mask_iou(ground_truth(), [], box_iou_threshold=1.5)
