"""The self-training loop in one command: points -> pseudo masks -> masks, resumable by stage."""

from __future__ import annotations

import pytest
import yaml

from pointsup.cli import main as cli_main
from pointsup.engine.config import ConfigError
from pointsup.engine.selftrain import FINAL_WEIGHTS, SelfTrainingPaths, run_selftraining
from pointsup.points.format import read_coco_json
from tests.engine.test_trainer import CPU_CONFIG, data, overrides  # noqa: F401  (data is a fixture)


def test_three_stages_then_nothing_to_redo(data, tmp_path, capsys):  # noqa: F811
    run_overrides = overrides(data, "solver.max_iter=2", "data.sample_points=5")
    result = run_selftraining(CPU_CONFIG, tmp_path, run_overrides, device="cpu", reference_json=data["train_masks"])
    paths = SelfTrainingPaths(tmp_path)
    outputs = [paths.points_dir / FINAL_WEIGHTS, paths.pseudo_json, paths.masks_dir / FINAL_WEIGHTS]
    assert all(path.is_file() for path in outputs)

    points_config = yaml.safe_load((paths.points_dir / "config.yaml").read_text())
    masks_config = yaml.safe_load((paths.masks_dir / "config.yaml").read_text())
    assert points_config["supervision"] == "points" and points_config["data"]["train_json"] == data["train_json"]
    assert masks_config["supervision"] == "masks" and masks_config["data"]["train_json"] == str(paths.pseudo_json)
    assert masks_config["data"]["sample_points"] == 0 and points_config["data"]["sample_points"] == 5
    assert masks_config["solver"] == points_config["solver"] and masks_config["model"] == points_config["model"]

    pseudo = read_coco_json(paths.pseudo_json)["annotations"]
    assert len(pseudo) == len(read_coco_json(data["train_json"])["annotations"])
    assert all("segmentation" in a for a in pseudo)
    assert result.pseudo_report is not None and 0.0 <= result.pseudo_report.mean_iou <= 1.0
    assert set(result.points_metrics) == set(result.selftrained_metrics) == {"bbox", "segm"}
    assert "self-trained on pseudo masks" in result.format()

    stamps = [path.stat().st_mtime_ns for path in outputs]
    again = run_selftraining(CPU_CONFIG, tmp_path, run_overrides, device="cpu")
    assert [path.stat().st_mtime_ns for path in outputs] == stamps
    assert again.pseudo_report is None and again.selftrained_metrics == result.selftrained_metrics


def test_mask_supervised_recipe_is_refused(data, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="point-supervised"):
        run_selftraining(CPU_CONFIG, tmp_path, overrides(data, supervision="masks"))
    assert list(tmp_path.iterdir()) == []
    status = cli_main(["selftrain", str(CPU_CONFIG), *overrides(data, supervision="masks"), "--output", str(tmp_path)])
    assert status == 2
