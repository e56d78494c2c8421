"""COCO AP of detections built from the ground truth itself, against pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import roi_align

from pointsup.data.synthetic import CATEGORY_NAMES, generate_synthetic_dataset
from pointsup.evaluation import COCOEvaluator, format_ap_table, format_per_category_table
from pointsup.evaluation.coco_backend import ENV_VAR, faster_coco_eval_available
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.structures import Detections
from pointsup.utils.atomic import write_json_atomic

SUMMARY = ("AP", "AP50", "AP75", "APs", "APm", "APl")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 images of 128 px, all in instances_train.json."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, num_images=4, image_size=128, val_fraction=0.0, show_progress=False)
    return root / "instances_train.json"


def label_map(gt_json: Path) -> list[int]:
    return [c["id"] for c in read_coco_json(gt_json)["categories"]]


def ground_truth_detections(
    gt_json: Path, grid_size: int = 28, shift: float = 0.0, shift_category: int | None = None
) -> dict[int, Detections]:
    """Per image: GT boxes with score 1 and the GT masks resampled into their boxes
    (aligned RoIAlign, grid_size^2); boxes of ``shift_category`` (all if None) moved by ``shift``."""
    coco = read_coco_json(gt_json)
    labels = {cid: k for k, cid in enumerate(label_map(gt_json))}
    detections = {}
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        masks = torch.from_numpy(np.stack([mask_utils.decode(a["segmentation"]) for a in anns])).float()
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=torch.float32)
        rois = torch.cat([torch.arange(len(anns), dtype=torch.float32)[:, None], boxes], dim=1)
        probs = roi_align(masks[:, None], rois, (grid_size, grid_size), spatial_scale=1.0, sampling_ratio=2, aligned=True)[:, 0]
        moved = torch.tensor([shift_category is None or a["category_id"] == shift_category for a in anns])
        boxes[moved] += shift
        detections[image["id"]] = Detections(
            boxes=boxes,
            scores=torch.ones(len(anns)),
            classes=torch.tensor([labels[a["category_id"]] for a in anns]),
            mask_probs=probs,
            image_size=(image["height"], image["width"]),
        )
    return detections


def evaluate(gt_json: Path, detections: dict[int, Detections], output_dir: Path | None = None, **kwargs) -> dict:
    evaluator = COCOEvaluator(gt_json, label_map(gt_json), output_dir, **kwargs)
    for image_id, dets in detections.items():
        evaluator.process(image_id, dets)
    return evaluator.evaluate()


@pytest.mark.parametrize("grid_size", [28, 112])
def test_ground_truth_as_detections_scores_full_marks(dataset, grid_size):
    metrics = evaluate(dataset, ground_truth_detections(dataset, grid_size))
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert metrics["bbox"]["AP50"] == pytest.approx(100.0)
    assert metrics["segm"]["AP"] >= 95.0
    assert set(metrics["segm"]["per_category"]) <= set(CATEGORY_NAMES)
    assert set(metrics["bbox"]["per_category"]) == {c["name"] for c in read_coco_json(dataset)["categories"]}


def test_shifted_boxes_score_low(dataset):
    metrics = evaluate(dataset, ground_truth_detections(dataset, shift=40.0))
    assert metrics["bbox"]["AP"] < 10.0
    assert metrics["segm"]["AP"] < 10.0


def test_per_category_ap_follows_the_category_that_was_shifted(dataset):
    coco = read_coco_json(dataset)
    present = sorted({a["category_id"] for a in coco["annotations"]})
    names = {c["id"]: c["name"] for c in coco["categories"]}
    moved = present[0]
    metrics = evaluate(dataset, ground_truth_detections(dataset, shift=40.0, shift_category=moved))
    per_category = metrics["bbox"]["per_category"]
    assert per_category[names[moved]] < 10.0
    assert all(per_category[names[c]] == pytest.approx(100.0) for c in present[1:])
    absent = set(names) - set(present)
    assert all(math.isnan(per_category[names[c]]) for c in absent)


def test_no_detections_give_zero_ap_and_files(dataset, tmp_path):
    detections = ground_truth_detections(dataset)
    empty = {
        image_id: Detections(
            torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28), d.image_size
        )
        for image_id, d in detections.items()
    }
    metrics = evaluate(dataset, empty, tmp_path)
    for task in ("bbox", "segm"):
        assert metrics[task]["AP"] == 0.0 and metrics[task]["AP50"] == 0.0
    assert json.loads((tmp_path / "coco_instances_results.json").read_text()) == []
    assert json.loads((tmp_path / "metrics.json").read_text())["segm"]["AP"] == 0.0


def test_output_files_and_nan_as_null(dataset, tmp_path):
    metrics = evaluate(dataset, ground_truth_detections(dataset), tmp_path)
    assert math.isnan(metrics["bbox"]["APl"])  # no object of a 128 px image is large
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["bbox"]["APl"] is None
    assert written["segm"]["AP"] == pytest.approx(metrics["segm"]["AP"])
    results = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert len(results) == len(read_coco_json(dataset)["annotations"])
    assert all(isinstance(r["segmentation"]["counts"], str) and len(r["bbox"]) == 4 for r in results)


@pytest.mark.parametrize("task", ["bbox", "segm"])
def test_results_file_gives_the_same_numbers_with_plain_pycocotools(dataset, tmp_path, task):
    """The written results evaluated with COCO.loadRes + COCOeval (for segm without the box, so
    the area is the mask's) give the same stats as the evaluator."""
    detections = ground_truth_detections(dataset, shift=1.0)
    metrics = evaluate(dataset, detections, tmp_path)
    results = json.loads((tmp_path / "coco_instances_results.json").read_text())
    if task == "segm":
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset))
        evaluator = COCOeval(gt, gt.loadRes(results), iouType=task)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    expected = [math.nan if s < 0 else 100 * s for s in evaluator.stats[:6]]
    np.testing.assert_allclose([metrics[task][name] for name in SUMMARY], expected, rtol=1e-9)
    assert 0.0 < metrics[task]["AP"] < 100.0  # a case between the extremes


def test_only_processed_images_are_evaluated(dataset):
    detections = ground_truth_detections(dataset)
    first = min(detections)
    metrics = evaluate(dataset, {first: detections[first]})
    assert metrics["bbox"]["AP"] == pytest.approx(100.0)


def test_point_only_ground_truth_cannot_be_used_for_masks(dataset, tmp_path):
    points = tmp_path / "points.json"
    write_json_atomic(points, simulate(read_coco_json(dataset), SimulationConfig(num_points=10)).coco)
    with pytest.raises(ValueError, match=r"points\.json: mask AP needs the true masks"):
        COCOEvaluator(points, label_map(dataset), None)
    metrics = evaluate(points, ground_truth_detections(dataset), tasks=("bbox",))
    assert set(metrics) == {"bbox"} and metrics["bbox"]["AP"] == pytest.approx(100.0)


def test_annotations_without_area_get_their_mask_area(dataset, tmp_path):
    coco = read_coco_json(dataset)
    for ann in coco["annotations"]:
        del ann["area"]
    no_area = tmp_path / "no_area.json"
    write_json_atomic(no_area, coco)
    detections = ground_truth_detections(dataset, shift=1.0)
    without, with_area = evaluate(no_area, detections), evaluate(dataset, detections)
    for task in ("bbox", "segm"):
        np.testing.assert_allclose([without[task][m] for m in SUMMARY], [with_area[task][m] for m in SUMMARY])


def test_bad_input_is_refused_with_clear_errors(dataset):
    evaluator = COCOEvaluator(dataset, label_map(dataset), None)
    detections = ground_truth_detections(dataset)
    image_id, dets = next(iter(detections.items()))
    with pytest.raises(ValueError, match="image id 999 is not in"):
        evaluator.process(999, dets)
    with pytest.raises(ValueError, match="height, width"):
        evaluator.process(image_id, Detections(dets.boxes, dets.scores, dets.classes, dets.mask_probs, (64, 64)))
    with pytest.raises(ValueError, match="class labels"):
        evaluator.process(image_id, Detections(dets.boxes, dets.scores, dets.classes + 50, dets.mask_probs, dets.image_size))
    with pytest.raises(ValueError, match="needs mask predictions"):
        evaluator.process(image_id, Detections(dets.boxes, dets.scores, dets.classes, None, dets.image_size))
    with pytest.raises(ValueError, match="no image was processed"):
        evaluator.evaluate()
    with pytest.raises(ValueError, match="category ids"):
        COCOEvaluator(dataset, [1, 2, 77], None)
    with pytest.raises(ValueError, match="tasks"):
        COCOEvaluator(dataset, label_map(dataset), None, tasks=("keypoints",))


def test_tables_list_tasks_metrics_and_categories(dataset):
    metrics = evaluate(dataset, ground_truth_detections(dataset))
    table = format_ap_table(metrics, title="val").splitlines()
    assert table[0] == "val" and table[1].split() == list(SUMMARY)
    assert table[2].split()[:2] == ["bbox", "100.00"] and table[3].split()[0] == "segm"
    assert table[2].split()[-1] == "-"  # APl is NaN
    per_category = format_per_category_table(metrics).splitlines()
    assert per_category[0].split() == ["category", "bbox", "AP", "segm", "AP"]
    assert [line.split()[0] for line in per_category[1:]] == list(metrics["bbox"]["per_category"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _distributed_worker(rank: int, world_size: int, port: int, gt_json: str, output: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        detections = ground_truth_detections(Path(gt_json), shift=1.0)
        evaluator = COCOEvaluator(gt_json, label_map(Path(gt_json)), None)
        image_ids = sorted(detections)
        for image_id in image_ids[rank::world_size] + image_ids[:1]:  # image 1 on both ranks, as a padded sampler does
            evaluator.process(image_id, detections[image_id])
        metrics = evaluator.evaluate()
        if rank == 0:
            write_json_atomic(output, metrics)
        else:
            assert metrics == {}
    finally:
        dist.destroy_process_group()


def test_distributed_gather_matches_one_process(dataset, tmp_path):
    output = tmp_path / "metrics.json"
    mp.spawn(_distributed_worker, args=(2, free_port(), str(dataset), str(output)), nprocs=2, join=True)
    gathered = json.loads(output.read_text())
    single = json.loads(json.dumps(evaluate(dataset, ground_truth_detections(dataset, shift=1.0)), allow_nan=True))
    for task in ("bbox", "segm"):
        for name in SUMMARY:
            expected = single[task][name]
            assert (gathered[task][name] is None and math.isnan(expected)) or gathered[task][name] == pytest.approx(expected)


def test_more_than_255_mask_detections_are_evaluated(dataset):
    """pycocotools' ``area`` overflows a uint8 count beyond 255 masks under NumPy 2; the
    evaluator must not inherit that (a real model emits 100 detections per image)."""
    perfect = ground_truth_detections(dataset)
    image_id, detections = next(iter(perfect.items()))
    copies = 300 // max(len(detections), 1) + 1
    many = Detections(
        boxes=detections.boxes.repeat(copies, 1),
        scores=torch.linspace(1.0, 0.1, copies).repeat_interleave(len(detections)),
        classes=detections.classes.repeat(copies),
        mask_probs=detections.mask_probs.repeat(copies, 1, 1),
        image_size=detections.image_size,
    )
    assert len(many) > 255
    metrics = evaluate(dataset, {image_id: many})
    assert metrics["segm"]["AP"] > 90.0


@pytest.mark.parametrize("shift", [0.0, 2.0])
def test_both_backends_give_the_same_metrics_and_say_which_ran(dataset, tmp_path, shift):
    if not faster_coco_eval_available():
        pytest.skip("faster-coco-eval is not installed")
    detections = ground_truth_detections(dataset, shift=shift)
    reference = evaluate(dataset, detections, tmp_path, backend="pycocotools")
    assert json.loads((tmp_path / "metrics.json").read_text())["segm"]["backend"].startswith("pycocotools ")
    faster = evaluate(dataset, detections, backend="faster_coco_eval")
    for task in ("bbox", "segm"):
        assert reference[task]["backend"].startswith("pycocotools ") and faster[task]["backend"].startswith("faster_coco_eval ")
        np.testing.assert_allclose([faster[task][m] for m in SUMMARY], [reference[task][m] for m in SUMMARY], rtol=0, atol=1e-9)
        names = list(reference[task]["per_category"])
        assert list(faster[task]["per_category"]) == names
        np.testing.assert_allclose(
            [faster[task]["per_category"][n] for n in names],
            [reference[task]["per_category"][n] for n in names],
            rtol=0,
            atol=1e-9,
        )


def test_environment_forces_pycocotools(dataset, monkeypatch, caplog):
    monkeypatch.setenv(ENV_VAR, "pycocotools")
    with caplog.at_level("INFO", logger="pointsup.evaluation.coco_evaluator"):
        metrics = evaluate(dataset, ground_truth_detections(dataset))
    assert metrics["bbox"]["backend"].startswith("pycocotools ") and metrics["segm"]["backend"] == metrics["bbox"]["backend"]
    assert f"with {metrics['bbox']['backend']}" in caplog.text
    assert "backend" not in format_ap_table(metrics) and set(metrics) == {"bbox", "segm"}
