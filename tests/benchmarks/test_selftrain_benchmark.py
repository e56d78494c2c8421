"""Tests of the self-training benchmark's bookkeeping (benchmarks/selftrain.py); nothing trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import selftrain
from benchmarks._datasets import CPU_CONFIGS, CustomDataset, Recipe
from benchmarks.selftrain import format_rows, run_key, selftrain_recipe, summary_records


def row(seed: int | None, p10: float, selftrained: float, dataset: str = "balloon", backbone: str | None = "lite0",
        iterations: int | None = 400) -> dict:
    """A result row as selftrain.py records it (old records lack ``seed``, ``backbone``, ``head``, ``iterations``)."""
    r = {"dataset": dataset, "p10_segm_AP": p10, "selftrained_segm_AP": selftrained, "p10_bbox_AP": p10 + 5,
         "selftrained_bbox_AP": selftrained + 5, "pseudo_mask_mean_iou": 0.8, "pseudo_mask_point_agreement": 0.95,
         "instances": 100}
    for key, value in (("seed", seed), ("backbone", backbone), ("iterations", iterations)):
        if value is not None:
            r[key] = value
    if seed is not None:
        r["head"] = "maskrcnn"
        r["change"] = selftrained - p10
    return r


def test_mean_std_of_p10_selftrained_and_change() -> None:
    (record,) = summary_records([row(0, 40.0, 41.0), row(1, 42.0, 42.5), row(2, 44.0, 44.0)])
    assert record["n"] == 3 and record["seeds"] == [0, 1, 2]
    assert record["p10_segm_AP"]["mean"] == 42.0 and record["p10_segm_AP"]["std"] == 2.0
    assert record["change"]["values"] == [1.0, 0.5, 0.0]
    assert record["change"]["mean"] == 0.5 and record["change"]["std"] == 0.5
    lines = format_rows([row(0, 40.0, 41.0), row(1, 42.0, 42.5), row(2, 44.0, 44.0)])
    assert "+1.0" in lines[1] and "+0.5" in lines[2]
    mean_line = lines[-1]
    assert "42.0 ± 2.0" in mean_line and "+0.5 ± 0.5" in mean_line and "n=3" in mean_line


def test_one_seed_and_missing_values() -> None:
    old = row(None, 10.0, 11.0, backbone=None, iterations=None)
    old["pseudo_mask_point_agreement"] = None
    lines = format_rows([old])
    assert "+1.0 ± -" in lines[-1] and "R18" in lines[-1]
    assert lines[1].split()[-2:] == ["-", "100"]  # no point agreement, 100 instances


def test_resume_key_and_old_records() -> None:
    assert run_key(row(1, 1.0, 2.0)) == ("balloon", "maskrcnn", 1, "lite0", 400)
    assert run_key(row(None, 1.0, 2.0, backbone=None, iterations=None)) == ("balloon", "maskrcnn", 0, "R18", None)


def test_custom_recipe_for_selftraining(capsys: pytest.CaptureFixture[str]) -> None:
    maskrcnn = Recipe(CPU_CONFIGS / "balloon_R18_points.yaml", "maskrcnn", "resnet18")
    pointrend = Recipe(CPU_CONFIGS / "balloon_R18_pointrend_points.yaml", "pointrend", "resnet18")
    condinst = Recipe(CPU_CONFIGS / "balloon_R18_condinst_points.yaml", "condinst", "resnet18")
    paths = [Path("t.json"), Path("t"), Path("v.json"), Path("v")]
    assert selftrain_recipe(CustomDataset("mine", *paths, (condinst, pointrend, maskrcnn)), "lite0") == maskrcnn
    assert selftrain_recipe(CustomDataset("mine", *paths, (condinst, pointrend)), "lite0") == pointrend
    with pytest.raises(SystemExit) as stop:
        selftrain_recipe(CustomDataset("mine", *paths, (condinst,)), "lite0")
    assert stop.value.code == 2 and "Mask R-CNN-family" in capsys.readouterr().err
    assert selftrain_recipe("balloon", "R18").path == CPU_CONFIGS / "balloon_R18_points.yaml"


def test_recorded_runs_are_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_training(*args: object, **kwargs: object) -> dict:
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(selftrain, "run_one", no_training)
    monkeypatch.setattr(selftrain, "prepare", no_training)
    rows = [row(3, 20.0, 21.0, dataset="synthetic", backbone="R18", iterations=5),
            row(4, 22.0, 22.0, dataset="synthetic", backbone="R18", iterations=5),
            row(5, 99.0, 99.0, dataset="synthetic", backbone="R18", iterations=5)]
    (tmp_path / "selftrain.json").write_text(json.dumps(rows))
    assert selftrain.main(["synthetic", "--backbone", "R18", "--seed", "3", "--seeds", "2", "--iterations", "5",
                           "--work-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum("not repeated" in line for line in out) == 2
    result = json.loads(out[-1])
    assert [r["seed"] for r in result["runs"]] == [3, 4]
    assert result["summary"][0]["change"]["values"] == [1.0, 0.0]
