"""The COCO evaluation backends: how one is chosen, and that faster-coco-eval gives pycocotools' numbers.

The equality tests generate a small dataset with what changes the matching: crowd regions
(uncompressed RLE), polygons of several parts, a category without objects, an image without
objects, detections of a wrong category, duplicates, false positives, tied scores and more than
100 detections in one image. They are skipped only when faster-coco-eval is not installed.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pointsup.evaluation.coco_backend import (
    ENV_VAR,
    FASTER,
    PYCOCOTOOLS,
    CocoBackend,
    CocoBackendError,
    coco_backend,
    faster_coco_eval_available,
)
from pointsup.evaluation.coco_evaluator import load_ground_truth
from pointsup.utils.atomic import write_json_atomic

needs_faster = pytest.mark.skipif(not faster_coco_eval_available(), reason="faster-coco-eval is not installed")
HEIGHT, WIDTH = 96, 128


def polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> list[float]:
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 12))))
    r = radius * rng.uniform(0.6, 1.3, angles.size)
    xs, ys = np.clip(cx + r * np.cos(angles), 0, WIDTH), np.clip(cy + r * np.sin(angles), 0, HEIGHT)
    return np.round(np.stack([xs, ys], 1).ravel(), 2).tolist()


def uncompressed(mask: np.ndarray) -> dict[str, Any]:
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [HEIGHT, WIDTH], "counts": [0, *counts] if flat[0] else counts}


def generated(seed: int, images: int = 12) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ground truth of ``images`` images (the last without objects) and results for it, seeded."""
    rng = np.random.default_rng(seed)
    categories = [{"id": cid, "name": f"c{cid}"} for cid in (1, 2, 5, 9)]  # 9: no objects
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for image_id in range(1, images + 1):
        objects = 0 if image_id == images else int(rng.integers(1, 8))
        for _ in range(objects):
            category = int(rng.choice([1, 2, 5]))
            parts = [
                polygon(rng, rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(3, 30))
                for _ in range(int(rng.integers(1, 3)))
            ]
            rle = mask_utils.merge(mask_utils.frPyObjects(parts, HEIGHT, WIDTH))
            area = float(mask_utils.area(rle))
            if area == 0:
                continue
            crowd = rng.random() < 0.1
            segmentation: Any = uncompressed(mask_utils.decode(rle)) if crowd else parts
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": segmentation,
                    "area": area,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": int(crowd),
                }
            )
            for strength in [0.05] + [0.2] * int(rng.random() < 0.4):  # some objects are found twice
                if rng.random() < 0.15:
                    continue
                moved = [
                    (np.asarray(p).reshape(-1, 2) + rng.normal(0, strength * 20, 2)).clip(0, [WIDTH, HEIGHT]).ravel().tolist()
                    for p in parts
                ]
                label = category if rng.random() > 0.1 else int(rng.choice([1, 2, 5, 9]))
                results.append(result(image_id, label, mask_utils.merge(mask_utils.frPyObjects(moved, HEIGHT, WIDTH)), rng, 0.3))
        for _ in range(int(rng.integers(0, 6))):  # false positives
            fp = mask_utils.frPyObjects(
                [polygon(rng, rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT), rng.uniform(3, 20))], HEIGHT, WIDTH
            )[0]
            results.append(result(image_id, int(rng.choice([1, 2, 5, 9])), fp, rng, 0.0))
    first = results[0]["image_id"]  # one image with more than maxDets (100) detections
    results += [dict(r, score=round(r["score"] * 0.5, 1)) for r in results if r["image_id"] == first] * 40
    images_list = [{"id": i, "height": HEIGHT, "width": WIDTH, "file_name": f"{i}.png"} for i in range(1, images + 1)]
    return {"images": images_list, "categories": categories, "annotations": annotations}, [r for r in results if r["area"] > 0]


def result(image_id: int, category: int, rle: dict[str, Any], rng: np.random.Generator, low: float) -> dict[str, Any]:
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    return {
        "image_id": image_id,
        "category_id": category,
        "score": round(float(rng.uniform(low, 1.0)), 1),  # 1 decimal: many ties
        "bbox": [x + rng.normal(0, 1), y + rng.normal(0, 1), w, h],
        "iscrowd": 0,
        "area": float(mask_utils.area(rle)),
        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
    }


def run(
    backend: CocoBackend, data: dict[str, Any], results: list[dict[str, Any]], iou_type: str, image_ids: list[int] | None = None
):
    """The evaluator after evaluate, accumulate and summarize (fresh copies of the inputs)."""
    import copy

    ground_truth = backend.coco(copy.deepcopy(data))
    annotations = [dict(copy.deepcopy(r), id=k) for k, r in enumerate(results, start=1)]
    if iou_type == "bbox":
        for ann in annotations:
            ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    detections = backend.coco({"images": data["images"], "categories": data["categories"], "annotations": annotations})
    evaluator = backend.cocoeval(ground_truth, detections, iou_type)
    if image_ids is not None:
        evaluator.params.imgIds = image_ids
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, printed.getvalue()


@needs_faster
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_gives_pycocotools_numbers(seed, iou_type):
    data, results = generated(seed)
    assert any(a["iscrowd"] for a in data["annotations"]), "the case needs a crowd region"
    reference, printed = run(coco_backend(PYCOCOTOOLS), data, results, iou_type)
    faster, faster_printed = run(coco_backend(FASTER), data, results, iou_type)
    assert "Average Precision" in printed and faster_printed == ""  # faster-coco-eval is silenced
    assert len(faster.stats) == len(reference.stats) == 12
    assert 0.05 < reference.stats[0] < 0.95  # between the extremes
    np.testing.assert_allclose(faster.stats, reference.stats, rtol=0, atol=1e-12)
    assert faster.eval["precision"].shape == reference.eval["precision"].shape
    np.testing.assert_allclose(faster.eval["precision"], reference.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(faster.eval["recall"], reference.eval["recall"], rtol=0, atol=1e-12)
    assert list(faster.params.catIds) == list(reference.params.catIds)


@needs_faster
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_empty_results_and_a_subset_of_images_agree(iou_type):
    data, results = generated(3)
    for subset, dets in (([1, 2, 3], results), (None, []), ([data["images"][-1]["id"]], results)):
        reference, _ = run(coco_backend(PYCOCOTOOLS), data, dets, iou_type, subset)
        faster, _ = run(coco_backend(FASTER), data, dets, iou_type, subset)
        np.testing.assert_allclose(faster.stats, reference.stats, rtol=0, atol=1e-12)


@needs_faster
def test_ground_truth_of_either_backend_reads_the_same(tmp_path):
    data, _ = generated(4)
    path = tmp_path / "gt.json"
    write_json_atomic(path, data)
    faster, reference = (
        load_ground_truth(path, True, coco_backend(FASTER)),
        load_ground_truth(path, True, coco_backend(PYCOCOTOOLS)),
    )
    assert type(faster).__module__.startswith("faster_coco_eval") and type(reference).__module__.startswith("pycocotools")
    assert faster.getAnnIds(imgIds=[1], catIds=[1, 2]) == reference.getAnnIds(imgIds=[1], catIds=[1, 2])
    for ann in reference.loadAnns(reference.getAnnIds()):
        assert mask_utils.area(faster.annToRLE(faster.anns[ann["id"]])) == mask_utils.area(reference.annToRLE(ann))


def test_pycocotools_is_chosen_by_argument_or_environment(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    backend = coco_backend("pycocotools")
    assert backend.name == PYCOCOTOOLS and backend.label.startswith("pycocotools ")
    assert coco_backend("auto").name == (FASTER if faster_coco_eval_available() else PYCOCOTOOLS)
    assert coco_backend().name == coco_backend("auto").name
    monkeypatch.setenv(ENV_VAR, "pycocotools")
    assert coco_backend().name == PYCOCOTOOLS
    monkeypatch.setenv(ENV_VAR, "")
    assert coco_backend().name == coco_backend("auto").name


def test_unknown_or_missing_backends_are_refused(monkeypatch):
    with pytest.raises(CocoBackendError, match=r"backend='cocoapi'.*one of auto, faster_coco_eval, pycocotools"):
        coco_backend("cocoapi")
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(CocoBackendError, match=rf"{ENV_VAR}='fast'"):
        coco_backend()
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # as if not installed: importing it fails
    monkeypatch.delenv(ENV_VAR)
    assert not faster_coco_eval_available()
    assert coco_backend().name == PYCOCOTOOLS
    with pytest.raises(CocoBackendError, match="faster-coco-eval is not installed"):
        coco_backend("faster-coco-eval")


def test_pycocotools_backend_keeps_its_api():
    """What the evaluator relies on, in pycocotools: -1 for nothing to measure, [T, R, K, A, M] precision."""
    data, results = generated(5)
    evaluator, _ = run(coco_backend(PYCOCOTOOLS), data, results, "segm")
    t, r, k, a, m = evaluator.eval["precision"].shape
    assert (t, r, k, a, m) == (10, 101, 4, 4, 3)
    assert math.isclose(float(np.mean(evaluator.eval["precision"][:, :, 3, 0, -1])), -1.0)  # category 9 has no objects


@needs_faster
@pytest.mark.filterwarnings("ignore:Found annotation id 0")
def test_an_annotation_id_0_is_treated_alike():
    """Both libraries mark "unmatched" with id 0, so an object with id 0 is never matched, in both
    alike (faster-coco-eval warns about it)."""
    data, results = generated(6)
    for ann in data["annotations"]:
        ann["id"] -= 1
    for iou_type in ("bbox", "segm"):
        reference, _ = run(coco_backend(PYCOCOTOOLS), data, results, iou_type)
        faster, _ = run(coco_backend(FASTER), data, results, iou_type)
        np.testing.assert_allclose(faster.stats, reference.stats, rtol=0, atol=1e-12)


@needs_faster
def test_matched_mask_iou_reads_either_backends_ground_truth(tmp_path):
    from pointsup.evaluation.mask_quality import matched_mask_iou

    data, results = generated(7)
    path = tmp_path / "gt.json"
    write_json_atomic(path, data)
    results = [dict(r, score=max(r["score"], 0.3)) for r in results]
    faster = matched_mask_iou(load_ground_truth(path, True, coco_backend(FASTER)), results, box_iou_threshold=0.5)
    reference = matched_mask_iou(load_ground_truth(path, True, coco_backend(PYCOCOTOOLS)), results, box_iou_threshold=0.5)
    assert faster.matched == reference.matched > 0 and faster.mean_iou == pytest.approx(reference.mean_iou, abs=1e-12)
