"""benchmarks/coco_eval_speed.py on a tiny synthetic set: the generated files are valid COCO, the
two libraries agree, and the table and JSON say so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from benchmarks import coco_eval_speed
from benchmarks.coco_eval_speed import max_difference, results_file, synthetic_dataset, uncompressed_rle


def test_synthetic_ground_truth_and_results_are_coco_like() -> None:
    data, results = synthetic_dataset(40, seed=1)
    assert len(data["images"]) == 40 and {c["id"] for c in data["categories"]} == {3 * k + 1 for k in range(10)}
    per_image = np.bincount([a["image_id"] for a in data["annotations"]], minlength=41)[1:]
    assert 4 < per_image.mean() < 10
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
    detections = np.bincount([r["image_id"] for r in results], minlength=41)[1:]
    assert detections.max() <= coco_eval_speed.MAX_DETECTIONS and detections.mean() > per_image.mean()
    segm = results_file(results, "segm")
    assert "bbox" not in segm[0] and isinstance(segm[0]["segmentation"]["counts"], str)
    assert set(results_file(results, "bbox")[0]) == {"image_id", "category_id", "bbox", "score"}


def test_uncompressed_rle_round_trips() -> None:
    mask = np.zeros((7, 5), dtype=np.uint8)
    mask[0, 0] = mask[2:5, 1:4] = 1
    rle = mask_utils.frPyObjects(uncompressed_rle(mask), 7, 5)
    assert np.array_equal(mask_utils.decode(rle), mask)


def test_max_difference_needs_nothing_to_measure_at_the_same_places() -> None:
    assert max_difference(np.array([0.5, np.nan]), np.array([0.25, np.nan])) == 0.25
    assert max_difference(np.array([0.5, np.nan]), np.array([0.5, 0.1])) == float("inf")


def test_tiny_run_agrees_and_prints_a_table(tmp_path: Path, capsys) -> None:
    pytest.importorskip("faster_coco_eval")
    out = tmp_path / "speed.json"
    argv = ["--datasets", "synthetic", "--images", "30", "--repeats", "1", "--pointsup", "--json", str(out)]
    assert coco_eval_speed.main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    headers = [k for k, line in enumerate(printed) if line.startswith("| dataset |")]
    assert len(headers) == 2  # the libraries, then pointsup's path
    for k in headers:
        assert [line.split("|")[5].strip() for line in printed[k + 2 : k + 4]] == ["bbox", "segm"]
    summary = json.loads(out.read_text())
    assert summary["agree"] and json.loads(printed[-1]) == summary
    for row in summary["rows"] + summary["pointsup_rows"]:
        assert row["images"] == 30 and row["max_stat_difference"] < 1e-9 and row["eval_speedup"] > 0
    assert all(0.0 < row["stats"]["pycocotools"][0] < 1.0 for row in summary["rows"])
    assert [row["backends"]["faster_coco_eval"].split()[0] for row in summary["pointsup_rows"]] == ["faster_coco_eval"] * 2
