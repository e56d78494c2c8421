"""COCO box and mask AP of :class:`~pointsup.structures.Detections`, with faster-coco-eval or pycocotools.

:class:`COCOEvaluator` collects per-image detections as COCO result dicts (``bbox`` as xywh,
``segmentation`` as a compressed RLE pasted at threshold 0.5, ``category_id`` mapped back from
the contiguous label), gathers them to rank 0 under ``torch.distributed``, and runs
``COCOeval`` for each task on the images that were processed. Numbers are in percent, as
detectron2 reports them: ``AP`` (IoU .50:.95), ``AP50``, ``AP75``, ``APs``/``APm``/``APl`` (area
ranges) and the AP of every category by name. A metric with no ground truth to measure (e.g.
``APs`` when there are no small objects) is NaN, written as ``null`` in JSON.

For ``segm`` the result area is the mask's pixel count (pycocotools' ``loadRes`` would use the box
area when a result also carries a box; detectron2 drops the box for the same reason).

``COCOeval`` comes from faster-coco-eval when it is installed (the same numbers, computed in C++),
else from pycocotools; ``backend="pycocotools"`` or ``POINTSUP_COCO_EVAL=pycocotools`` forces the
latter (:mod:`pointsup.evaluation.coco_backend`). The metrics of every task record which one ran
(``"backend": "faster_coco_eval 1.8.0"``), and the choice is logged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from pycocotools import mask as mask_utils

from pointsup.errors import PointsupError
from pointsup.evaluation.coco_backend import CocoBackend, coco_backend
from pointsup.modeling.postprocess import masks_to_rles
from pointsup.points.format import read_coco_json
from pointsup.points.rle import segmentation_to_rle
from pointsup.structures import Detections
from pointsup.utils.atomic import write_json_atomic

TASKS = ("bbox", "segm")
SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RESULTS_FILE = "coco_instances_results.json"
METRICS_FILE = "metrics.json"
#: the key, in each task's metrics, of the library that computed them ("faster_coco_eval 1.8.0")
BACKEND_KEY = "backend"

log = logging.getLogger(__name__)


class GroundTruthError(PointsupError, ValueError):
    """A ground-truth file that cannot serve the evaluation asked for (no masks for mask AP)."""


def check_has_masks(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`GroundTruthError` unless every annotation of ``data`` (read from ``path``)
    has a segmentation, which mask AP needs."""
    annotations = data.get("annotations", [])
    missing = [ann.get("id") for ann in annotations if isinstance(ann, dict) and not ann.get("segmentation")]
    if missing:
        raise GroundTruthError(
            f"{path}: mask AP needs the true masks, but {len(missing)} of {len(annotations)} annotations have no "
            f"segmentation (first: annotation id {missing[0]}); give the validation file with masks "
            f"(from Python, COCOEvaluator(..., tasks=('bbox',)) evaluates boxes only)"
        )


def load_ground_truth(path: str | os.PathLike[str], needs_masks: bool, backend: CocoBackend | None = None) -> Any:
    """A ``COCO`` of ``path`` built without printing, of ``backend`` (default: :func:`coco_backend`'s choice).

    Annotations without ``area`` get the area of their mask (or box, when evaluating boxes only).

    Raises:
        PointFormatError: the file is missing or not a COCO JSON object.
        GroundTruthError: ``needs_masks`` and some annotation has no segmentation.
    """
    data = read_coco_json(path)
    annotations = data.setdefault("annotations", [])
    if needs_masks:
        check_has_masks(data, path)
    images = {img["id"]: img for img in data.get("images", [])}
    for ann in annotations:
        if "area" not in ann:
            ann["area"] = _annotation_area(ann, images.get(ann.get("image_id")), needs_masks)
    return (backend or coco_backend()).coco(data)


def _annotation_area(ann: dict, image: dict | None, from_mask: bool) -> float:
    if from_mask and image is not None:
        return float(mask_utils.area(segmentation_to_rle(ann["segmentation"], image["height"], image["width"])))
    _, _, w, h = ann["bbox"]
    return float(w * h)


class COCOEvaluator:
    """Accumulates detections image by image and computes COCO AP.

    Args:
        ground_truth_json: COCO instances file of the evaluated split (masks needed for "segm").
        label_to_category_id: the COCO category id of each contiguous label.
        output_dir: where :meth:`evaluate` writes ``coco_instances_results.json`` and
            ``metrics.json``; None writes nothing.
        tasks: a subset of ``("bbox", "segm")``.
        mask_threshold: probability at which a pasted mask pixel is on.
        backend: the COCO evaluation library, ``"auto"``, ``"faster_coco_eval"`` or
            ``"pycocotools"`` (None: ``$POINTSUP_COCO_EVAL``, else auto; see
            :func:`~pointsup.evaluation.coco_backend.coco_backend`).
    """

    def __init__(
        self,
        ground_truth_json: str | os.PathLike[str],
        label_to_category_id: Sequence[int],
        output_dir: str | os.PathLike[str] | None = None,
        tasks: Sequence[str] = TASKS,
        mask_threshold: float = 0.5,
        backend: str | None = None,
    ) -> None:
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tuple(tasks)}")
        self.backend = coco_backend(backend)
        self.ground_truth_json = Path(ground_truth_json)
        self.tasks = tuple(dict.fromkeys(tasks))
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.mask_threshold = mask_threshold
        self.ground_truth = load_ground_truth(self.ground_truth_json, needs_masks="segm" in self.tasks, backend=self.backend)
        self.category_ids = np.asarray(list(label_to_category_id), dtype=np.int64)
        missing = sorted(set(self.category_ids.tolist()) - set(self.ground_truth.getCatIds()))
        if missing:
            raise ValueError(
                f"{self.ground_truth_json}: label_to_category_id names category ids {missing} that the file does not define"
            )
        self._results: dict[int, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        """Forget all processed images."""
        self._results = {}

    def process(self, image_id: int, detections: Detections) -> None:
        """Convert the detections of one image to COCO results and keep them.

        A repeated ``image_id`` replaces that image's earlier results.

        Raises:
            ValueError: an unknown image id, an image size that differs from the annotation
                file, a label without a category, or no masks while evaluating "segm".
        """
        image = self.ground_truth.imgs.get(int(image_id))
        if image is None:
            raise ValueError(f"image id {image_id} is not in {self.ground_truth_json}")
        expected_size = (int(image["height"]), int(image["width"]))
        if tuple(detections.image_size) != expected_size:
            raise ValueError(
                f"image id {image_id}: detections are for an image of (height, width) {tuple(detections.image_size)}, "
                f"but {self.ground_truth_json} says {expected_size}"
            )
        self._results[int(image_id)] = self._to_coco_results(int(image_id), detections)

    def _to_coco_results(self, image_id: int, detections: Detections) -> list[dict[str, Any]]:
        if len(detections) == 0:
            return []
        labels = detections.classes.detach().cpu().numpy()
        if labels.min() < 0 or labels.max() >= len(self.category_ids):
            raise ValueError(
                f"image id {image_id}: class labels must lie in [0, {len(self.category_ids)}), got {labels.min()}..{labels.max()}"
            )
        boxes = detections.boxes.detach().float().cpu().numpy()
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
        scores = detections.scores.detach().float().cpu().numpy().tolist()
        category_ids = self.category_ids[labels].tolist()
        results = [{"image_id": image_id, "category_id": c, "bbox": b, "score": s} for c, b, s in zip(category_ids, xywh, scores)]
        if "segm" in self.tasks:
            if detections.mask_probs is None:
                raise ValueError(f"image id {image_id}: the 'segm' task needs mask predictions, but the detections have none")
            rles = masks_to_rles(detections.mask_probs, detections.boxes, detections.image_size, self.mask_threshold)
            for result, rle in zip(results, rles):
                result["segmentation"] = rle
        return results

    def _gathered_results(self, gather: bool) -> dict[int, list[dict[str, Any]]] | None:
        """All ranks' results on rank 0 (None elsewhere); an image processed by several ranks
        keeps the lowest rank's results."""
        if not (gather and dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self._results
        rank = dist.get_rank()
        received: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
        dist.gather_object(self._results, received, dst=0)
        if rank != 0:
            return None
        merged: dict[int, list[dict[str, Any]]] = {}
        for part in received or []:
            for image_id, results in part.items():
                merged.setdefault(image_id, results)
        return merged

    def evaluate(self, gather: bool = True) -> dict[str, Any]:
        """COCO metrics of everything processed (on all ranks when ``gather``).

        Returns:
            ``{task: {"AP", "AP50", "AP75", "APs", "APm", "APl": percent or NaN,
            "per_category": {name: percent or NaN}, "backend": "library version"}}`` on rank 0;
            ``{}`` on other ranks.

        Raises:
            ValueError: no image was processed.
        """
        by_image = self._gathered_results(gather)
        if by_image is None:
            return {}
        if not by_image:
            raise ValueError(f"no image was processed; nothing to evaluate against {self.ground_truth_json}")
        image_ids = sorted(by_image)
        results = [result for image_id in image_ids for result in by_image[image_id]]
        log.info("COCO evaluation of %d images with %s", len(image_ids), self.backend.label)
        metrics = {task: evaluate_task(self.ground_truth, results, task, image_ids, self.backend) for task in self.tasks}
        if self.output_dir is not None:
            write_json_atomic(self.output_dir / RESULTS_FILE, results)
            write_json_atomic(self.output_dir / METRICS_FILE, metrics, indent=2)
        return metrics


#: pycocotools' ``area`` builds a uint8 array of the RLE count, which overflows under NumPy 2 for
#: more than 255 masks in one call; it is called in chunks of this size.
_AREA_CHUNK = 255


def _mask_areas(rles: list[dict[str, Any]]) -> list[float]:
    """Pixel counts of RLE masks."""
    areas: list[float] = []
    for start in range(0, len(rles), _AREA_CHUNK):
        areas.extend(float(a) for a in mask_utils.area(rles[start : start + _AREA_CHUNK]))
    return areas


def _result_coco(ground_truth: Any, results: list[dict[str, Any]], task: str, backend: CocoBackend) -> Any:
    """A ``COCO`` of ``backend`` holding the results for one task (empty results allowed)."""
    annotations = []
    if task == "segm":
        areas = _mask_areas([r["segmentation"] for r in results])
    for number, result in enumerate(results, start=1):
        ann = {
            "id": number,
            "image_id": result["image_id"],
            "category_id": result["category_id"],
            "score": result["score"],
            "iscrowd": 0,
        }
        if task == "bbox":
            ann["bbox"] = result["bbox"]
            ann["area"] = result["bbox"][2] * result["bbox"][3]
        else:
            ann["segmentation"] = result["segmentation"]
            ann["area"] = float(areas[number - 1])
        annotations.append(ann)
    dataset = {
        "images": ground_truth.dataset["images"],
        "categories": ground_truth.dataset["categories"],
        "annotations": annotations,
    }
    return backend.coco(dataset)


def evaluate_task(
    ground_truth: Any, results: list[dict[str, Any]], task: str, image_ids: Sequence[int], backend: CocoBackend | None = None
) -> dict[str, Any]:
    """Run ``COCOeval`` for ``task`` on ``image_ids`` and return the percent metrics.

    ``ground_truth`` is a ``COCO`` of ``backend`` (default: :func:`coco_backend`'s choice), e.g.
    from :func:`load_ground_truth` with the same backend.
    """
    backend = backend or coco_backend()
    evaluator = backend.cocoeval(ground_truth, _result_coco(ground_truth, results, task, backend), task)
    evaluator.params.imgIds = list(image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics: dict[str, Any] = {name: _percent(value) for name, value in zip(SUMMARY_METRICS, evaluator.stats[:6])}
    # precision: (iou thresholds, recall thresholds, categories, area ranges, max dets)
    precision = evaluator.eval["precision"]
    names = _category_names(ground_truth, evaluator.params.catIds)
    per_category = {}
    for k, name in enumerate(names):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_category[name] = float(np.mean(values)) * 100.0 if values.size else math.nan
    metrics["per_category"] = per_category
    metrics[BACKEND_KEY] = backend.label
    return metrics


def _percent(value: float) -> float:
    """pycocotools' -1 (nothing to measure) becomes NaN; other values are scaled to percent."""
    return math.nan if value < 0 else float(value) * 100.0


def _category_names(ground_truth: Any, category_ids: Sequence[int]) -> list[str]:
    """Category names in ``category_ids`` order; a repeated name gets its id appended."""
    names = [str(ground_truth.cats[cid].get("name", cid)) for cid in category_ids]
    return [f"{name} (id {cid})" if names.count(name) > 1 else name for name, cid in zip(names, category_ids)]


def _cell(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def format_ap_table(results: dict[str, Any], title: str | None = None) -> str:
    """A fixed-width table: one row per task, columns AP AP50 AP75 APs APm APl (NaN as "-")."""
    tasks = [t for t in TASKS if t in results] + [t for t in results if t not in TASKS]
    lines = [title] if title else []
    lines.append(f"{'':<6}" + "".join(f"{name:>8}" for name in SUMMARY_METRICS))
    for task in tasks:
        lines.append(f"{task:<6}" + "".join(f"{_cell(results[task].get(name, math.nan)):>8}" for name in SUMMARY_METRICS))
    return "\n".join(lines)


def format_per_category_table(results: dict[str, Any], title: str | None = None) -> str:
    """A fixed-width table: one row per category, one AP column per task (NaN as "-")."""
    tasks = [t for t in TASKS if t in results] + [t for t in results if t not in TASKS]
    names = list(dict.fromkeys(name for task in tasks for name in results[task].get("per_category", {})))
    width = max([len("category")] + [len(name) for name in names])
    lines = [title] if title else []
    lines.append(f"{'category':<{width}}" + "".join(f"{task + ' AP':>10}" for task in tasks))
    for name in names:
        cells = "".join(f"{_cell(results[task].get('per_category', {}).get(name, math.nan)):>10}" for task in tasks)
        lines.append(f"{name:<{width}}" + cells)
    return "\n".join(lines)
