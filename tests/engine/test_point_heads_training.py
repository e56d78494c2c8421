"""PointRend and Implicit PointRend through the engine: train with points or masks, resume,
evaluate, and predict from the checkpoint alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pointsup.cli import main as cli_main
from pointsup.engine.config import load_config
from pointsup.engine.trainer import train
from tests.engine.test_trainer import CPU_CONFIG, data, overrides  # noqa: F401  (data is a fixture)


def head_sizes(head: str) -> list[str]:
    """Small point heads, 196 points per subdivision step."""
    return [f"model.mask_head.{head}.{key}" for key in ("fc_dim=32", "point_fc_dim=16", "subdivision_num_points=196")]


@pytest.mark.parametrize("head, supervision", [("implicit_pointrend", "points"), ("implicit_pointrend", "masks"),
                                               ("pointrend", "points"), ("pointrend", "masks")])
def test_point_heads_train_and_evaluate(data, tmp_path, head, supervision):  # noqa: F811
    config = load_config(CPU_CONFIG, overrides(data, "solver.max_iter=2", f"model.mask_head.name={head}", *head_sizes(head),
                                               supervision=supervision))
    result = train(config, tmp_path)
    assert 0.0 <= result.metrics["segm"]["AP"] <= 100.0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "loss_mask_point" in line]
    assert [line["iteration"] for line in lines] == [1, 2]
    assert all(0.0 <= line["point_accuracy"] <= 1.0 and line["loss_mask_point"] > 0 for line in lines)
    if head == "implicit_pointrend":
        assert all(line["loss_params_l2"] >= 0 for line in lines)
    else:
        assert all(line["loss_mask"] > 0 for line in lines)


def test_implicit_pointrend_resumes_and_predicts_from_its_checkpoint(data, tmp_path):  # noqa: F811
    settings = overrides(data, "solver.max_iter=3", "model.mask_head.name=implicit_pointrend",
                         *head_sizes("implicit_pointrend"),
                         "data.val_json=null", "solver.checkpoint_period=1", supervision="masks")
    straight = train(load_config(CPU_CONFIG, settings), tmp_path / "straight")
    (tmp_path / "resumed").mkdir()  # a run that stopped after its first checkpoint
    shutil.copy(tmp_path / "straight" / "model_0000001.pth", tmp_path / "resumed" / "model_0000001.pth")
    train(load_config(CPU_CONFIG, settings), tmp_path / "resumed", resume=True)
    a = torch.load(straight.final_checkpoint, weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model_final.pth", weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert "roi_heads.point_mask_head.point_head.positional_encoding_gaussian_matrix" in a  # saved with the model
    assert all(torch.equal(a[k], b[k]) for k in a)

    images = sorted(Path(data["images"]).glob("*.png"))[:1]
    assert cli_main(["predict", *map(str, images), "--weights", str(straight.final_checkpoint), "-o", str(tmp_path / "pred"),
                     "--score-threshold", "0.0", "--device", "cpu"]) == 0
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert predictions["annotations"] and all("segmentation" in a for a in predictions["annotations"])
