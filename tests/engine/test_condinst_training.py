"""CondInst and BoxInst through the ordinary engine: train, evaluate, resume, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pointsup.cli import main as cli_main
from pointsup.engine.config import ConfigError, load_config
from pointsup.engine.distributed import launch
from pointsup.engine.trainer import train, train_main
from tests.conftest import REPO_ROOT
from tests.engine.test_trainer import data, overrides  # noqa: F401  (data is a fixture)

CONDINST_CPU = REPO_ROOT / "configs" / "cpu" / "synthetic_R18_condinst_points.yaml"
TINY_CONDINST = ["model.fpn.channels=64", "model.condinst.fcos.num_convs=1", "model.condinst.mask_branch.channels=16",
                 "model.condinst.mask_branch.num_convs=1", "model.condinst.boxinst.pairwise_warmup_iters=1"]


def condinst_overrides(data: dict[str, str], *extra: str, supervision: str = "points") -> list[str]:  # noqa: F811
    base = overrides(data, supervision="masks" if supervision == "masks" else "points")
    if supervision == "boxes":
        base.append("supervision=boxes")
    return [*base, *TINY_CONDINST, *extra]


@pytest.mark.parametrize("supervision", ["points", "masks", "boxes"])
def test_training_and_evaluation(data, tmp_path, supervision):  # noqa: F811
    config = load_config(CONDINST_CPU, condinst_overrides(data, "solver.max_iter=2", supervision=supervision))
    assert config.model.architecture == "condinst" and config.supervision == supervision
    result = train(config, tmp_path)
    assert set(result.metrics) == {"bbox", "segm"}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    expected = {"points": "loss_mask_point", "masks": "loss_mask", "boxes": "loss_projection"}[supervision]
    training = [line for line in lines if "total_loss" in line]
    assert [line["iteration"] for line in training] == [1, 2]
    assert all(expected in line and "loss_cls" in line for line in training)


def test_resume_continues_the_iteration_count(data, tmp_path):  # noqa: F811
    config = load_config(CONDINST_CPU, condinst_overrides(data, "solver.max_iter=2", "solver.checkpoint_period=1",
                                                            "data.val_json=", supervision="boxes"))
    train(config, tmp_path)
    longer = load_config(CONDINST_CPU, condinst_overrides(data, "solver.max_iter=3", "solver.checkpoint_period=1",
                                                            "data.val_json=", supervision="boxes"))
    train(longer, tmp_path, resume=True)
    state = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    assert int(state["iteration"]) == 3  # BoxInst's pairwise warmup counts on it


def test_predict_command_writes_masks(data, tmp_path, capsys):  # noqa: F811
    config = load_config(CONDINST_CPU, condinst_overrides(data, "solver.max_iter=1", "data.val_json=",
                                                            "model.condinst.fcos.score_thresh=0.0"))
    weights = train(config, tmp_path / "run").final_checkpoint
    image = sorted(Path(data["images"]).iterdir())[0]
    assert cli_main(["predict", str(image), "--weights", str(weights), "-o", str(tmp_path / "out"),
                     "--score-threshold", "0", "--device", "cpu"]) == 0
    predictions = json.loads((tmp_path / "out" / "predictions.json").read_text())["annotations"]
    assert predictions and all("segmentation" in p for p in predictions)


def _ddp_worker(settings: list[str], output: str) -> None:
    train_main(load_config(CONDINST_CPU, settings), output, False)


def test_two_process_ddp_on_cpu(data, tmp_path):  # noqa: F811
    settings = condinst_overrides(data, "solver.max_iter=2", "solver.ims_per_batch=2", "data.val_json=")
    launch(_ddp_worker, 2, (settings, str(tmp_path)), backend="gloo")
    assert (tmp_path / "model_final.pth").is_file()


def test_boxes_supervision_needs_condinst(data):  # noqa: F811
    with pytest.raises(ConfigError, match="condinst"):
        load_config(REPO_ROOT / "configs" / "cpu" / "synthetic_R18_points.yaml", [*overrides(data), "supervision=boxes"])
