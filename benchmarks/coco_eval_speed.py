"""COCO evaluation speed: pycocotools' COCOeval against faster-coco-eval's, with equal numbers checked.

Usage: python benchmarks/coco_eval_speed.py [--datasets balloon fruits_nuts coco_mini synthetic]
                                            [--images 5000] [--repeats 3] [--seed 0] [--pointsup]
                                            [--json OUT.json]

For every dataset and both IoU types (``bbox``, ``segm``) the script evaluates one results file
with each library, in the same process, alternating them over ``--repeats`` repeats:

* ``pycocotools``: ``pycocotools.coco.COCO`` + ``pycocotools.cocoeval.COCOeval`` (the baseline);
* ``faster-coco-eval``: ``faster_coco_eval.COCO`` + ``faster_coco_eval.COCOeval_faster`` (what
  ``pointsup.evaluation.coco_backend`` picks when it is installed).

Timed: **load** (the ground-truth file read and indexed, ``loadRes`` of the results file) and
**eval** (``COCOeval(...)``, ``evaluate()``, ``accumulate()``, ``summarize()``), each with
pycocotools' prints swallowed. Reported: the minimum and the median over the repeats, the
speed-up of faster-coco-eval on the minimum, and the largest difference between the two
libraries over the 12 summary statistics (AP, AP50, AP75, APs/m/l, AR1/10/100, ARs/m/l) and over
the per-category APs (from ``eval["precision"]``, as pointsup computes them). The numbers must
agree to ``--tolerance`` (1e-4); a larger difference fails the run (exit status 1).

With ``--pointsup`` a second table times pointsup's own evaluation path with each backend of
:mod:`pointsup.evaluation.coco_backend`: ``load_ground_truth`` (load) and ``evaluate_task`` for
all images (eval: the results COCO built from the result dicts, as ``COCOEvaluator.evaluate``
does, no ``loadRes``), and compares the AP, AP50, AP75, APs/m/l and per-category APs it returns.

Datasets (the ground truth is the file itself; the results are generated from it, seeded):

* ``balloon`` (val, 13 images), ``fruits_nuts`` (the whole file, 18 images), ``coco_mini`` (val,
  79 images, with crowd regions), read from ``../shared/datasets`` (or ``$POINTSUP_SHARED``);
  skipped with a note when absent. Results: each object (crowd regions too) is found with
  probability 0.9 (5 % of them under a wrong category), its mask shifted by a few pixels and
  eroded or dilated by up to 3, its box the mask's box jittered by 3 %; a third of the found
  objects get a second, worse and lower-scored detection; each image gets about 20 false
  positives (random polygons, random categories, low scores).
* ``synthetic``: ``--images`` images (5,000 by default, COCO val2017's size) of 480-800 px,
  10 categories, about 7 objects per image (Poisson; some images have none), polygon masks of
  sizes spread over COCO's small / medium / large ranges, 1 % crowd regions stored as
  uncompressed RLE, as COCO stores them. Results as above (masks from jittered polygons), at most
  100 detections per image.

Scores are rounded to 3 decimals, so that ties occur and their order is tested too. Results
carry compressed RLE masks (``segm``, without the box, as pointsup's evaluator evaluates them:
the area is the mask's) or boxes (``bbox``). Prints a Markdown table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared")) / "datasets"
#: the shared datasets' evaluated file (the val split, or the whole file where there is no split)
SHARED_FILES = {
    "balloon": "balloon/instances_val.json",
    "fruits_nuts": "fruits_nuts/data/trainval.json",
    "coco_mini": "coco_mini/annotations/instances_val2017.json",
}
DATASETS = (*SHARED_FILES, "synthetic")
IOU_TYPES = ("bbox", "segm")
LIBRARIES = ("pycocotools", "faster_coco_eval")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
MAX_DETECTIONS = 100
FALSE_POSITIVES_PER_IMAGE = 20
IMAGE_SIZES = ((640, 480), (480, 640), (640, 427), (500, 375), (800, 600), (612, 612))


# --- results from ground truth -------------------------------------------------------------------


def random_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, width: int, height: int) -> list[float]:
    """A star-shaped polygon of 8-20 vertices around (cx, cy) with radii about (rx, ry), clipped to the image."""
    n = int(rng.integers(8, 21))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = 1.0 + 0.25 * rng.standard_normal(n).clip(-2, 2)
    xs = np.clip(cx + rx * radius * np.cos(angles), 0, width)
    ys = np.clip(cy + ry * radius * np.sin(angles), 0, height)
    return np.round(np.stack([xs, ys], axis=1).ravel(), 2).tolist()


def jitter_polygon(rng: np.random.Generator, polygon: list[float], strength: float, width: int, height: int) -> list[float]:
    """``polygon`` moved, scaled and its vertices perturbed, by ``strength`` of its size."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    centre = points.mean(axis=0)
    size = max(float(np.ptp(points[:, 0])), float(np.ptp(points[:, 1])), 1.0)
    scale = math.exp(strength * rng.standard_normal())
    moved = centre + (points - centre) * scale + strength * size * rng.standard_normal(2)
    moved += 0.5 * strength * size * rng.standard_normal(points.shape)
    moved[:, 0] = moved[:, 0].clip(0, width)
    moved[:, 1] = moved[:, 1].clip(0, height)
    return np.round(moved.ravel(), 2).tolist()


def rle_of_polygon(polygon: list[float], height: int, width: int) -> dict[str, Any]:
    return mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))


def json_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """A compressed RLE as a results file stores it (``counts`` as a string)."""
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a binary mask (column-major run lengths, starting with zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def box_of(rle: dict[str, Any], rng: np.random.Generator, strength: float = 0.03) -> list[float]:
    """The box of a mask, its sides jittered by ``strength`` of its size (box and mask heads disagree)."""
    x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
    dx0, dy0, dx1, dy1 = strength * rng.standard_normal(4) * [w, h, w, h]
    return [round(x + dx0, 2), round(y + dy0, 2), round(max(w + dx1 - dx0, 1.0), 2), round(max(h + dy1 - dy0, 1.0), 2)]


def score(rng: np.random.Generator, low: float, high: float) -> float:
    return round(float(rng.uniform(low, high)), 3)


def finish_image(detections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most :data:`MAX_DETECTIONS` detections, the best-scored ones, as a detector keeps them."""
    detections.sort(key=lambda d: -d["score"])
    return detections[:MAX_DETECTIONS]


def false_positives(rng: np.random.Generator, image: dict[str, Any], category_ids: list[int]) -> list[dict[str, Any]]:
    """About :data:`FALSE_POSITIVES_PER_IMAGE` random polygons of random categories with low scores."""
    height, width = int(image["height"]), int(image["width"])
    found = []
    for _ in range(int(rng.poisson(FALSE_POSITIVES_PER_IMAGE))):
        radius = math.exp(rng.uniform(math.log(4), math.log(max(min(width, height) / 3, 5))))
        polygon = random_polygon(
            rng, rng.uniform(0, width), rng.uniform(0, height), radius, radius * rng.uniform(0.5, 2), width, height
        )
        rle = rle_of_polygon(polygon, height, width)
        if mask_utils.area(rle) == 0:
            continue
        found.append(
            {"image_id": image["id"], "category_id": int(rng.choice(category_ids)), "rle": rle, "score": score(rng, 0.01, 0.5)}
        )
    return found


def detections_of_object(
    rng: np.random.Generator, category_id: int, category_ids: list[int], make_rle: Callable[[float], dict[str, Any] | None]
) -> list[tuple[int, dict[str, Any], float]]:
    """(category, mask, score) of one object's detections: found with probability 0.9 (5 % under
    a wrong category); a third of the found get a second, worse, lower-scored detection.
    ``make_rle(strength)`` makes the object's mask jittered by ``strength``."""
    if rng.random() > 0.9:
        return []
    wrong = rng.random() < 0.05
    found = []
    rle = make_rle(0.04)
    if rle is not None:
        label = int(rng.choice(category_ids)) if wrong else category_id
        found.append((label, rle, score(rng, 0.3, 1.0)))
    if rng.random() < 1 / 3:
        second = make_rle(0.15)
        if second is not None:
            found.append((category_id, second, score(rng, 0.05, 0.6)))
    return found


def results_from_ground_truth(data: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Seeded detections of a real COCO file's objects (masks shifted and eroded or dilated), and false positives.

    Each result has ``image_id``, ``category_id``, ``score``, ``rle`` (compressed) and ``bbox``.
    """
    rng = np.random.default_rng(seed)
    images = {image["id"]: image for image in data["images"]}
    category_ids = [c["id"] for c in data["categories"]]
    by_image: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(ann)
    results = []
    for image_id, image in images.items():
        height, width = int(image["height"]), int(image["width"])
        found: list[dict[str, Any]] = []
        for ann in by_image[image_id]:
            segmentation = ann["segmentation"]
            if isinstance(segmentation, list):
                truth = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation.get("counts"), list):
                truth = mask_utils.frPyObjects(segmentation, height, width)
            else:
                truth = segmentation
            mask = mask_utils.decode(truth)

            def make_rle(strength: float, mask: np.ndarray = mask) -> dict[str, Any] | None:
                return morphed_rle(rng, mask, strength)

            for label, rle, value in detections_of_object(rng, ann["category_id"], category_ids, make_rle):
                found.append({"image_id": image_id, "category_id": label, "rle": rle, "score": value})
        found += false_positives(rng, image, category_ids)
        for detection in finish_image(found):
            detection["bbox"] = box_of(detection["rle"], rng)
            results.append(detection)
    return results


def morphed_rle(rng: np.random.Generator, mask: np.ndarray, strength: float) -> dict[str, Any] | None:
    """``mask`` eroded or dilated by up to 3 pixels and shifted by ``strength`` of its size (None if nothing is left)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    margin = 4 + int(strength * max(y1 - y0, x1 - x0) * 3)
    y0, x0 = max(y0 - margin, 0), max(x0 - margin, 0)
    y1, x1 = min(y1 + margin, mask.shape[0]), min(x1 + margin, mask.shape[1])
    crop = mask[y0:y1, x0:x1].astype(bool)
    steps = int(rng.integers(-3, 4))
    if steps > 0:
        crop = ndimage.binary_dilation(crop, iterations=steps)
    elif steps < 0:
        crop = ndimage.binary_erosion(crop, iterations=-steps)
    dy, dx = np.round(strength * rng.standard_normal(2) * [y1 - y0, x1 - x0]).astype(int)
    out = np.zeros(mask.shape, dtype=np.uint8)
    ty0, tx0 = y0 + dy, x0 + dx
    sy0, sx0 = max(-ty0, 0), max(-tx0, 0)
    ey, ex = min(crop.shape[0], mask.shape[0] - ty0), min(crop.shape[1], mask.shape[1] - tx0)
    if ey <= sy0 or ex <= sx0:
        return None
    out[ty0 + sy0 : ty0 + ey, tx0 + sx0 : tx0 + ex] = crop[sy0:ey, sx0:ex]
    if not out.any():
        return None
    return mask_utils.encode(np.asfortranarray(out))


def synthetic_dataset(num_images: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A COCO-like ground truth of ``num_images`` images and its seeded results (see the module docstring)."""
    rng = np.random.default_rng(seed)
    categories = [{"id": 3 * k + 1, "name": f"class{k}", "supercategory": "thing"} for k in range(10)]
    category_ids = [c["id"] for c in categories]
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
        image = {"id": image_id, "width": width, "height": height, "file_name": f"{image_id:012d}.jpg"}
        images.append(image)
        found: list[dict[str, Any]] = []
        for _ in range(int(rng.poisson(7))):
            category_id = int(rng.choice(category_ids))
            crowd = rng.random() < 0.01
            # radius log-uniform in [4, 160] px: about 40 % small, 30 % medium, 30 % large, as in COCO
            radius = math.exp(rng.uniform(math.log(4), math.log(160))) * (2.0 if crowd else 1.0)
            aspect = math.exp(rng.uniform(-0.7, 0.7))
            polygon = random_polygon(
                rng, rng.uniform(0, width), rng.uniform(0, height), radius * aspect, radius / aspect, width, height
            )
            rle = rle_of_polygon(polygon, height, width)
            area = float(mask_utils.area(rle))
            if area == 0:
                continue
            xs, ys = polygon[0::2], polygon[1::2]
            segmentation: Any = uncompressed_rle(mask_utils.decode(rle)) if crowd else [polygon]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": segmentation,
                    "area": area,
                    "bbox": [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)],
                    "iscrowd": int(crowd),
                }
            )

            def make_rle(
                strength: float, polygon: list[float] = polygon, width: int = width, height: int = height
            ) -> dict[str, Any] | None:
                moved = rle_of_polygon(jitter_polygon(rng, polygon, strength, width, height), height, width)
                return moved if mask_utils.area(moved) > 0 else None

            for label, moved, value in detections_of_object(rng, category_id, category_ids, make_rle):
                found.append({"image_id": image_id, "category_id": label, "rle": moved, "score": value})
        found += false_positives(rng, image, category_ids)
        for detection in finish_image(found):
            detection["bbox"] = box_of(detection["rle"], rng)
            results.append(detection)
    data = {
        "info": {"description": f"coco_eval_speed synthetic, seed {seed}"},
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }
    return data, results


def results_file(results: list[dict[str, Any]], iou_type: str) -> list[dict[str, Any]]:
    """The results file of one IoU type: boxes for ``bbox``, masks without the box for ``segm``."""
    if iou_type == "bbox":
        return [
            {"image_id": r["image_id"], "category_id": r["category_id"], "bbox": r["bbox"], "score": r["score"]} for r in results
        ]
    return [
        {"image_id": r["image_id"], "category_id": r["category_id"], "segmentation": json_rle(r["rle"]), "score": r["score"]}
        for r in results
    ]


# --- measurement ---------------------------------------------------------------------------------


def library(name: str) -> tuple[type, type, dict[str, Any]]:
    """``COCO``, the evaluator class and its extra keyword arguments (faster-coco-eval's print function)."""
    if name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval, {}
    import faster_coco_eval

    return faster_coco_eval.COCO, faster_coco_eval.COCOeval_faster, {"print_function": lambda *a, **k: None}


def run_once(name: str, gt_path: Path, results_path: Path, iou_type: str) -> tuple[float, float, Any]:
    """Load and evaluate once: (load seconds, eval seconds, the evaluator)."""
    coco_class, eval_class, kwargs = library(name)
    gc.collect()
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        ground_truth = coco_class(str(gt_path))
        detections = ground_truth.loadRes(str(results_path))
        loaded = time.perf_counter()
        evaluator = eval_class(ground_truth, detections, iouType=iou_type, **kwargs)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        done = time.perf_counter()
    return loaded - start, done - loaded, evaluator


def per_category_ap(evaluator: Any) -> np.ndarray:
    """The AP of every category (NaN where nothing to measure), as pointsup computes it."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    values = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k]
        p = p[p > -1]
        values.append(float(np.mean(p)) if p.size else math.nan)
    return np.asarray(values)


def max_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest |a - b|; NaN and -1 (nothing to measure) must sit at the same places (else inf)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    keep = ~np.isnan(a)
    return float(np.max(np.abs(a[keep] - b[keep]), initial=0.0))


def add_timings(row: dict[str, Any], times: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """``row`` with each library's load and eval times (min, median, all) and the two speed-ups
    (eval alone on the minima; load + eval on the best repeat)."""
    for lib in LIBRARIES:
        for part in ("load", "eval"):
            row[f"{lib}_{part}_s"] = {
                "min": min(times[lib][part]),
                "median": statistics.median(times[lib][part]),
                "all": times[lib][part],
            }
    row["eval_speedup"] = row["pycocotools_eval_s"]["min"] / row["faster_coco_eval_eval_s"]["min"]
    total = {lib: min(a + b for a, b in zip(times[lib]["load"], times[lib]["eval"])) for lib in LIBRARIES}
    row["total_speedup"] = total["pycocotools"] / total["faster_coco_eval"]
    return row


def measure(name: str, gt_path: Path, results_path: Path, iou_type: str, repeats: int) -> dict[str, Any]:
    """Both libraries on one results file, alternating their order over the repeats."""
    times: dict[str, dict[str, list[float]]] = {lib: {"load": [], "eval": []} for lib in LIBRARIES}
    evaluators: dict[str, Any] = {}
    for repeat in range(repeats):
        for lib in LIBRARIES if repeat % 2 == 0 else LIBRARIES[::-1]:
            load, evaluation, evaluators[lib] = run_once(lib, gt_path, results_path, iou_type)
            times[lib]["load"].append(load)
            times[lib]["eval"].append(evaluation)
            print(f"  {name} {iou_type} {lib}: load {load:.2f} s, eval {evaluation:.2f} s", file=sys.stderr, flush=True)
    reference, faster = evaluators["pycocotools"], evaluators["faster_coco_eval"]
    row: dict[str, Any] = {
        "dataset": name,
        "iou_type": iou_type,
        "stats": {lib: [float(v) for v in evaluators[lib].stats[:12]] for lib in LIBRARIES},
        "max_stat_difference": max_difference(reference.stats[:12], faster.stats[:12]),
        "max_category_ap_difference": max_difference(per_category_ap(reference), per_category_ap(faster)),
        "max_precision_difference": max_difference(reference.eval["precision"], faster.eval["precision"]),
    }
    return add_timings(row, times)


def measure_pointsup(name: str, gt_path: Path, results: list[dict[str, Any]], iou_type: str, repeats: int) -> dict[str, Any]:
    """pointsup's ``load_ground_truth`` + ``evaluate_task`` with each backend, alternating."""
    import copy

    from pointsup.evaluation.coco_backend import coco_backend
    from pointsup.evaluation.coco_evaluator import SUMMARY_METRICS, evaluate_task, load_ground_truth

    dicts = results_file(results, iou_type)
    if iou_type == "segm":  # pointsup's results carry both; its evaluator uses the mask's area for segm
        for full, result in zip(results, dicts):
            result["bbox"] = full["bbox"]
    times: dict[str, dict[str, list[float]]] = {lib: {"load": [], "eval": []} for lib in LIBRARIES}
    metrics: dict[str, dict[str, Any]] = {}
    for repeat in range(repeats):
        for lib in LIBRARIES if repeat % 2 == 0 else LIBRARIES[::-1]:
            backend, inputs = coco_backend(lib), copy.deepcopy(dicts)
            gc.collect()
            start = time.perf_counter()
            ground_truth = load_ground_truth(gt_path, needs_masks=iou_type == "segm", backend=backend)
            loaded = time.perf_counter()
            metrics[lib] = evaluate_task(ground_truth, inputs, iou_type, sorted(ground_truth.getImgIds()), backend)
            done = time.perf_counter()
            times[lib]["load"].append(loaded - start)
            times[lib]["eval"].append(done - loaded)
            print(
                f"  pointsup {name} {iou_type} {lib}: load {loaded - start:.2f} s, eval {done - loaded:.2f} s",
                file=sys.stderr,
                flush=True,
            )
    reference, faster = metrics["pycocotools"], metrics["faster_coco_eval"]
    names = list(reference["per_category"])
    row: dict[str, Any] = {
        "dataset": name,
        "iou_type": iou_type,
        "backends": {lib: metrics[lib]["backend"] for lib in LIBRARIES},
        # pointsup reports percent; the differences are in fractions, as the 12 stats above
        "max_stat_difference": max_difference(
            np.array([reference[m] for m in SUMMARY_METRICS]) / 100, np.array([faster[m] for m in SUMMARY_METRICS]) / 100
        ),
        "max_category_ap_difference": max_difference(
            np.array([reference["per_category"][n] for n in names]) / 100,
            np.array([faster["per_category"].get(n, math.nan) for n in names]) / 100,
        ),
    }
    return add_timings(row, times)


def prepare(name: str, folder: Path, images: int, seed: int) -> tuple[Path, list[dict[str, Any]], dict[str, int]] | None:
    """The ground-truth file and the results of one dataset (None when a shared dataset is absent)."""
    if name == "synthetic":
        data, results = synthetic_dataset(images, seed)
        gt_path = folder / "synthetic.json"
        gt_path.write_text(json.dumps(data))
    else:
        gt_path = SHARED_DATASETS / SHARED_FILES[name]
        if not gt_path.is_file():
            print(f"note: {name} skipped, {gt_path} not found", file=sys.stderr)
            return None
        data = json.loads(gt_path.read_text())
        results = results_from_ground_truth(data, seed)
    sizes = {"images": len(data["images"]), "objects": len(data["annotations"]), "detections": len(results)}
    return gt_path, results, sizes


def seconds(cell: dict[str, float]) -> str:
    return f"{cell['min']:.3f} / {cell['median']:.3f}" if cell["min"] < 1 else f"{cell['min']:.2f} / {cell['median']:.2f}"


def format_table(rows: list[dict[str, Any]], pointsup: bool = False) -> list[str]:
    stats = "6 AP" if pointsup else "12 stats"
    lines = [
        "| dataset | images | objects | detections | IoU type | pycocotools eval s | faster-coco-eval eval s | speed-up "
        f"| pycocotools load s | faster-coco-eval load s | speed-up load+eval | max \\|ΔAP\\| ({stats}) | max \\|ΔAP\\| (per category) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['images']} | {row['objects']} | {row['detections']} | {row['iou_type']} "
            f"| {seconds(row['pycocotools_eval_s'])} | {seconds(row['faster_coco_eval_eval_s'])} | {row['eval_speedup']:.1f}x "
            f"| {seconds(row['pycocotools_load_s'])} | {seconds(row['faster_coco_eval_load_s'])} | {row['total_speedup']:.1f}x "
            f"| {row['max_stat_difference']:.1e} | {row['max_category_ap_difference']:.1e} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--images", type=int, default=5000, help="images of the synthetic dataset (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each library (min and median reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pointsup", action="store_true", help="also time pointsup's evaluation path with each backend")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed difference of any statistic")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be positive")
    import faster_coco_eval
    import pycocotools

    versions = {"pycocotools": getattr(pycocotools, "__version__", None), "faster_coco_eval": faster_coco_eval.__version__}
    try:
        import importlib.metadata

        versions["pycocotools"] = importlib.metadata.version("pycocotools")
    except Exception:  # noqa: BLE001  (a version string is only informative)
        pass
    rows, pointsup_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.datasets:
            started = time.perf_counter()
            prepared = prepare(name, folder, args.images, args.seed)
            if prepared is None:
                continue
            gt_path, results, sizes = prepared
            print(f"{name}: {sizes} generated in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
            for iou_type in IOU_TYPES:
                results_path = folder / f"{name}_{iou_type}_results.json"
                results_path.write_text(json.dumps(results_file(results, iou_type)))
                rows.append({**sizes, **measure(name, gt_path, results_path, iou_type, args.repeats)})
                if args.pointsup:
                    pointsup_rows.append({**sizes, **measure_pointsup(name, gt_path, results, iou_type, args.repeats)})
    print("COCOeval of pycocotools and faster-coco-eval (seconds: min / median)\n")
    for line in format_table(rows):
        print(line)
    if pointsup_rows:
        print("\npointsup's load_ground_truth (load) and evaluate_task (eval) with each backend\n")
        for line in format_table(pointsup_rows, pointsup=True):
            print(line)
    worst = max((max(r["max_stat_difference"], r["max_category_ap_difference"]) for r in rows + pointsup_rows), default=0.0)
    agree = worst <= args.tolerance
    print(f"\nlargest difference {worst:.1e}: the libraries {'agree' if agree else 'DISAGREE'} to {args.tolerance:g}")
    summary = {
        "versions": versions,
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "seed": args.seed,
        "tolerance": args.tolerance,
        "agree": agree,
        "rows": rows,
        "pointsup_rows": pointsup_rows,
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
