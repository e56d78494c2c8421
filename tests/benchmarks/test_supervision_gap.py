"""Tests of the supervision-gap benchmark's bookkeeping (benchmarks/supervision_gap.py), its shared
dataset and option handling (benchmarks/_datasets.py) and the mean ± std (benchmarks/_stats.py).

Nothing here trains: results are hand-built rows, and runs the benchmark would train are stubbed out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from benchmarks import _datasets, supervision_gap
from benchmarks._datasets import (
    CPU_CONFIGS,
    CustomDataset,
    add_dataset_arguments,
    parse_dataset_arguments,
    prepare,
    recipe_path,
    schedule_overrides,
)
from benchmarks._stats import format_mean_std, mean_std, value_summary
from benchmarks.supervision_gap import plan_runs, run_key, summarise, summary_records
from tests.conftest import DATASETS, require


def row(head: str, supervision: str, seed: int | None, segm: float, bbox: float | None = None, iou: float | None = None,
        dataset: str = "balloon", backbone: str | None = "lite0", iterations: int = 400) -> dict:
    """A result row as supervision_gap.py records it (without ``seed``/``backbone`` when None, like old records)."""
    r = {"dataset": dataset, "head": head, "supervision": supervision, "segm_AP": segm, "segm_AP50": segm + 10,
         "bbox_AP": segm + 5 if bbox is None else bbox, "mask_iou": iou, "iterations": iterations, "minutes": 1.0}
    if seed is not None:
        r["seed"] = seed
    if backbone is not None:
        r["backbone"] = backbone
    return r


def seeds_of(head: str, supervision: str, values: list[float], **kwargs) -> list[dict]:
    return [row(head, supervision, seed, value, **kwargs) for seed, value in enumerate(values)]


def parser() -> argparse.ArgumentParser:
    """The options of supervision_gap.py that the dataset handling reads."""
    p = argparse.ArgumentParser()
    p.add_argument("--heads", nargs="+", default=list(_datasets.HEADS))
    add_dataset_arguments(p, "work dir")
    return p


# --- mean ± std ---------------------------------------------------------------------------------

def test_mean_and_sample_std() -> None:
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # ddof=1: population std would be 0.816
    assert mean_std([40.0, 44.0]) == (42.0, pytest.approx(2.8284271))
    assert mean_std([5.0]) == (5.0, None)
    assert mean_std([]) == (None, None)


def test_format_mean_std() -> None:
    assert format_mean_std([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert format_mean_std([5.0]) == "5.0 ± -"
    assert format_mean_std([]) == "-"
    assert format_mean_std([0.81, 0.83], digits=2) == "0.82 ± 0.01"
    assert format_mean_std([0.5, 0.7], sign=True) == "+0.6 ± 0.1"
    assert format_mean_std([-1.0], sign=True) == "-1.0 ± -"


def test_value_summary_keeps_per_seed_values_and_skips_missing() -> None:
    assert value_summary([0.8, None, 0.6]) == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1414214), "n": 2,
                                               "values": [0.8, None, 0.6]}


# --- summary records and table ------------------------------------------------------------------

def test_summary_records_mean_std_n_and_ratio_of_means() -> None:
    rows = seeds_of("maskrcnn", "masks", [40.0, 42.0, 44.0]) + seeds_of("maskrcnn", "points", [37.0, 40.0, 43.0])
    masks, points = summary_records(rows)
    assert (masks["supervision"], masks["n"], masks["seeds"]) == ("masks", 3, [0, 1, 2])
    assert masks["segm_AP"] == {"mean": 42.0, "std": 2.0, "n": 3, "values": [40.0, 42.0, 44.0]}
    assert points["segm_AP"]["mean"] == 40.0 and points["segm_AP"]["std"] == 3.0
    assert points["bbox_AP"]["values"] == [42.0, 45.0, 48.0]
    assert points["p10_over_masks"] == pytest.approx(40.0 / 42.0)
    assert "p10_over_masks" not in masks


def test_summary_table_line() -> None:
    rows = [*seeds_of("maskrcnn", "masks", [40.0, 44.0], iou=0.8), *seeds_of("maskrcnn", "points", [38.0, 40.0])]
    lines = summarise(rows)
    masks_line = next(line for line in lines if " masks " in line and "maskrcnn" in line)
    points_line = next(line for line in lines if " points " in line and "maskrcnn" in line)
    assert "42.0 ± 2.8" in masks_line and "47.0 ± 2.8" in masks_line and "0.80 ± 0.00" in masks_line
    assert masks_line.split()[:6] == ["balloon", "lite0", "maskrcnn", "masks", "400", "2"]
    assert "39.0 ± 1.4" in points_line and "92.9%" in points_line  # 39 / 42
    assert points_line.rstrip().endswith("92.9%")


def test_one_seed_has_no_std() -> None:
    lines = summarise([row("maskrcnn", "points", 0, 30.0)])
    assert "30.0 ± -" in lines[1] and lines[1].split()[5] == "1"


def test_missing_mask_iou_shows_a_dash() -> None:
    record = summary_records([row("maskrcnn", "masks", 0, 1.0, iou=None)])[0]
    assert record["mask_iou"] == {"mean": None, "std": None, "n": 0, "values": [None]}
    assert summarise([row("maskrcnn", "masks", 0, 1.0)])[1].split()[-2:] == ["-", "-"]


def test_a_seed_recorded_twice_counts_once() -> None:
    rows = [row("maskrcnn", "masks", 0, 10.0), row("maskrcnn", "masks", 0, 20.0), row("maskrcnn", "masks", 1, 30.0)]
    (record,) = summary_records(rows)
    assert record["n"] == 2 and record["segm_AP"]["values"] == [20.0, 30.0]


def test_backbones_and_schedules_are_not_mixed() -> None:
    rows = [row("maskrcnn", "masks", 0, 40.0), row("maskrcnn", "masks", 0, 10.0, backbone="R18"),
            row("maskrcnn", "masks", 1, 5.0, backbone="R18", iterations=5)]
    records = summary_records(rows)
    assert [(r["backbone"], r["iterations"], r["segm_AP"]["mean"]) for r in records] == [
        ("lite0", 400, 40.0), ("R18", 5, 5.0), ("R18", 400, 10.0)]


# --- old records and the resume key -------------------------------------------------------------

def test_old_records_are_seed_0_with_r18() -> None:
    old = row("maskrcnn", "points", None, 12.0, backbone=None)
    assert run_key(old) == ("balloon", "maskrcnn", "points", 0, "R18", 400)
    assert run_key(row("maskrcnn", "points", 0, 12.0, backbone="R18")) == run_key(old)
    (record,) = summary_records([old, row("maskrcnn", "points", 1, 14.0, backbone="R18")])
    assert (record["backbone"], record["seeds"], record["segm_AP"]["mean"]) == ("R18", [0, 1], 13.0)


def test_resume_key_tells_runs_apart() -> None:
    base = row("condinst", "boxes", 0, 1.0)
    keys = {run_key(base), run_key({**base, "seed": 1}), run_key({**base, "backbone": "R18"}),
            run_key({**base, "iterations": 5}), run_key({**base, "supervision": "points"}),
            run_key({**base, "head": "maskrcnn"}), run_key({**base, "dataset": "synthetic"})}
    assert len(keys) == 7
    assert run_key({**base, "segm_AP": 99.0, "minutes": 3.0}) == run_key(base)


# --- verdicts -----------------------------------------------------------------------------------

def all_heads(maskrcnn: tuple[float, float], implicit_p10: float, condinst: tuple[float, float, float],
              backbone: str = "lite0") -> list[dict]:
    """Two seeds per run with the given means (values mean - 1 and mean + 1)."""
    def two(head: str, supervision: str, mean: float) -> list[dict]:
        return seeds_of(head, supervision, [mean - 1, mean + 1], backbone=backbone)

    return [*two("maskrcnn", "masks", maskrcnn[0]), *two("maskrcnn", "points", maskrcnn[1]),
            *two("implicit_pointrend", "points", implicit_p10),
            *two("condinst", "masks", condinst[0]), *two("condinst", "points", condinst[1]),
            *two("condinst", "boxes", condinst[2])]


def verdict_lines(rows: list[dict]) -> list[str]:
    return [line for line in summarise(rows) if line.endswith(("ok", "NOT MET"))]


def test_all_verdicts_met() -> None:
    lines = verdict_lines(all_heads(maskrcnn=(40.0, 38.0), implicit_p10=39.5, condinst=(30.0, 28.0, 20.0)))
    assert lines == [
        "balloon lite0: Implicit PointRend P10 39.5 (n=2) vs Mask R-CNN P10 38.0 (n=2) mask AP (means): ok",
        "balloon lite0: Mask R-CNN P10 / masks 95.0% (means, n=2/2; target >= 94%): ok",
        "balloon lite0: Implicit PointRend P10 39.5 (n=2) vs Mask R-CNN masks 40.0 (n=2) mask AP (means; target: at most "
        "1.0 below): ok",
        "balloon lite0: CondInst P10 / masks 93.3% (means, n=2/2; target >= 90%): ok",
        "balloon lite0: CondInst P10 28.0 (n=2) vs BoxInst 20.0 (n=2) mask AP (means): ok",
    ]


def test_all_verdicts_not_met() -> None:
    lines = verdict_lines(all_heads(maskrcnn=(40.0, 37.0), implicit_p10=36.0, condinst=(30.0, 26.0, 27.0)))
    assert len(lines) == 5 and all(line.endswith("NOT MET") for line in lines)
    assert "92.5%" in lines[1] and "86.7%" in lines[3]


def test_implicit_pointrend_may_beat_mask_rcnn_masks() -> None:
    lines = verdict_lines(all_heads(maskrcnn=(40.0, 38.0), implicit_p10=45.0, condinst=(30.0, 28.0, 20.0)))
    assert lines[2].endswith(": ok")
    lines = verdict_lines(all_heads(maskrcnn=(40.0, 38.0), implicit_p10=38.9, condinst=(30.0, 28.0, 20.0)))
    assert lines[2].endswith("NOT MET")


def test_verdicts_are_per_backbone_and_need_both_sides() -> None:
    rows = all_heads((40.0, 38.0), 39.5, (30.0, 28.0, 20.0)) + seeds_of("maskrcnn", "points", [10.0], backbone="R18")
    lines = verdict_lines(rows)
    assert len(lines) == 5 and not any("R18" in line for line in lines)
    assert verdict_lines(seeds_of("maskrcnn", "masks", [40.0])) == []


def test_verdicts_use_the_longest_schedule() -> None:
    rows = [row("condinst", "masks", 0, 30.0), row("condinst", "points", 0, 10.0, iterations=100),
            row("condinst", "points", 0, 29.0, iterations=1000)]
    (line,) = verdict_lines(rows)
    assert "96.7%" in line and line.endswith(": ok")


# --- datasets, recipes and options --------------------------------------------------------------

def test_recipe_names() -> None:
    assert recipe_path("balloon", "lite0", "maskrcnn") == CPU_CONFIGS / "balloon_lite0_points.yaml"
    assert recipe_path("synthetic", "R18", "implicit_pointrend") == CPU_CONFIGS / "synthetic_R18_implicit_pointrend_points.yaml"
    assert recipe_path("fruits_nuts", "lite0", "condinst") == CPU_CONFIGS / "fruits_nuts_lite0_condinst_points.yaml"
    with pytest.raises(ValueError, match="backbone"):
        recipe_path("balloon", "R50", "maskrcnn")


def test_fruits_nuts_has_no_r18_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        _datasets.builtin_recipe("fruits_nuts", "R18", "maskrcnn")
    assert stop.value.code == 2
    assert "fruits_nuts has no R18 recipe" in capsys.readouterr().err


def test_schedule_overrides() -> None:
    assert schedule_overrides(None) == []
    assert schedule_overrides(400) == ["solver.max_iter=400", "solver.steps=[300,368]", "solver.warmup_iters=40"]


@pytest.fixture
def coco_files(tmp_path: Path) -> list[str]:
    """A custom dataset's four paths (the files need not be valid for parsing)."""
    (tmp_path / "train.json").write_text("{}")
    (tmp_path / "val.json").write_text("{}")
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    return [str(tmp_path / "train.json"), str(tmp_path / "train"), str(tmp_path / "val.json"), str(tmp_path / "val")]


def test_parse_custom_dataset(coco_files: list[str]) -> None:
    args = parse_dataset_arguments(parser(), [
        "balloon", "--dataset", "mine=" + ":".join(coco_files), "--config", str(CPU_CONFIGS / "balloon_R18_points.yaml"),
        "--config", str(CPU_CONFIGS / "balloon_R18_condinst_points.yaml"), "--seed", "2", "--seeds", "3",
        "solver.base_lr=0.01", "--backbone", "R18", "test.detections_per_image=50"])
    builtin, custom = args.datasets
    assert builtin == "balloon"
    assert isinstance(custom, CustomDataset) and custom.name == "mine"
    assert [str(p) for p in (custom.train_json, custom.train_images, custom.val_json, custom.val_images)] == coco_files
    assert [(r.head, r.backbone) for r in custom.recipes] == [("maskrcnn", "resnet18"), ("condinst", "resnet18")]
    assert args.seed_list == [2, 3, 4]
    assert args.overrides == ["solver.base_lr=0.01", "test.detections_per_image=50"]
    assert args.backbone == "R18"


def test_default_backbone_and_seeds() -> None:
    args = parse_dataset_arguments(parser(), ["synthetic", "--seed", "5"])
    assert (args.backbone, args.seed_list, args.datasets, args.overrides) == ("lite0", [5], ["synthetic"], [])


def stops(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of a benchmark that refuses ``argv`` with exit status 2."""
    with pytest.raises(SystemExit) as stop:
        parse_dataset_arguments(parser(), argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    return err


def test_bad_dataset_path_names_it(coco_files: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = ["--config", str(CPU_CONFIGS / "balloon_R18_points.yaml")]
    for index, what in enumerate(("training JSON", "training image folder", "validation JSON", "validation image folder")):
        bad = list(coco_files)
        bad[index] = str(tmp_path / "missing" / "thing")
        err = stops(["--dataset", "mine=" + ":".join(bad), *config], capsys)
        assert what in err and str(tmp_path / "missing" / "thing") in err
    err = stops(["--dataset", "mine=" + ":".join(coco_files[::-1]), *config], capsys)  # a folder where a JSON belongs
    assert "training JSON not found" in err


def test_bad_config_path_names_it(coco_files: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = stops(["--dataset", "mine=" + ":".join(coco_files), "--config", str(tmp_path / "nope.yaml")], capsys)
    assert str(tmp_path / "nope.yaml") in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--dataset", "mine=a:b"], "expected NAME=TRAIN_JSON"),
    (["--dataset", "a/b=w:x:y:z"], "NAME must be"),
    (["--dataset", "balloon=w:x:y:z"], "built-in dataset"),
    (["mars"], "unknown dataset 'mars'"),
    ([], "no dataset"),
    (["balloon", "--config", "x.yaml"], "--config is for --dataset"),
    (["balloon", "--unknown-option"], "unrecognised argument"),
])
def test_refused_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert message in stops(argv, capsys)


def test_custom_dataset_needs_config(coco_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert "--dataset needs --config" in stops(["--dataset", "mine=" + ":".join(coco_files)], capsys)


def test_two_recipes_for_one_head_are_refused(coco_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CPU_CONFIGS / "balloon_R18_points.yaml")
    err = stops(["--dataset", "mine=" + ":".join(coco_files), "--config", config, "--config",
                 str(CPU_CONFIGS / "synthetic_R18_points.yaml")], capsys)
    assert "two recipes with mask head maskrcnn" in err


# --- the plan and resuming (no training) --------------------------------------------------------

def test_plan_runs_seeds_heads_and_boxes_only_for_condinst() -> None:
    runs = plan_runs(["synthetic"], list(supervision_gap.HEADS), list(supervision_gap.SUPERVISIONS), "R18", [3, 4], None, [])
    assert len(runs) == 2 * (3 * 2 + 3)
    assert {r.seed for r in runs} == {3, 4}
    assert {r.recipe.head for r in runs if r.supervision == "boxes"} == {"condinst"}
    maskrcnn = next(r for r in runs if r.recipe.head == "maskrcnn")
    assert maskrcnn.recipe.path == CPU_CONFIGS / "synthetic_R18_points.yaml" and maskrcnn.recipe.backbone == "R18"
    assert maskrcnn.key == ("synthetic", "maskrcnn", "masks", 3, "R18", maskrcnn.iterations)
    assert {r.iterations for r in plan_runs(["synthetic"], ["maskrcnn"], ["points"], "R18", [0], 7, [])} == {7}


def test_plan_runs_skips_heads_without_a_custom_recipe(coco_files: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_dataset_arguments(parser(), ["--dataset", "mine=" + ":".join(coco_files), "--config",
                                              str(CPU_CONFIGS / "balloon_R18_condinst_points.yaml")])
    runs = plan_runs(args.datasets, list(supervision_gap.HEADS), ["points", "boxes"], "lite0", [0], None, [])
    assert [(r.recipe.head, r.supervision) for r in runs] == [("condinst", "points"), ("condinst", "boxes")]
    assert runs[0].recipe.backbone == "resnet18"  # a custom recipe names its own backbone
    assert "no --config recipe with mask head maskrcnn, pointrend, implicit_pointrend: skipped" in capsys.readouterr().out


def test_recorded_runs_are_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_training(*args: object, **kwargs: object) -> dict:
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(supervision_gap, "train_one", no_training)
    monkeypatch.setattr(supervision_gap, "prepare", no_training)
    rows = [row("maskrcnn", "masks", None, 40.0, dataset="synthetic", backbone=None, iterations=5),  # an old record
            row("maskrcnn", "points", 0, 38.0, dataset="synthetic", backbone="R18", iterations=5),
            row("maskrcnn", "masks", 1, 42.0, dataset="synthetic", backbone="R18", iterations=5),
            row("maskrcnn", "points", 1, 40.0, dataset="synthetic", backbone="R18", iterations=5),
            row("maskrcnn", "points", 2, 99.0, dataset="synthetic", backbone="R18", iterations=5),  # not asked for
            row("maskrcnn", "points", 0, 99.0, dataset="synthetic", backbone="lite0", iterations=5)]
    (tmp_path / "supervision_gap.json").write_text(json.dumps(rows))
    assert supervision_gap.main(["synthetic", "--backbone", "R18", "--heads", "maskrcnn", "--supervisions", "masks",
                                 "points", "--seeds", "2", "--iterations", "5", "--work-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum("not repeated" in line for line in out) == 4
    assert "Mask R-CNN P10 / masks 95.1% (means, n=2/2; target >= 94%): ok" in "\n".join(out)
    result = json.loads(out[-1])
    assert [(r["seed"], r["backbone"], r["supervision"]) for r in result["runs"]] == [
        (0, "R18", "masks"), (0, "R18", "points"), (1, "R18", "masks"), (1, "R18", "points")]
    assert [s["segm_AP"]["values"] for s in result["summary"]] == [[40.0, 42.0], [38.0, 40.0]]
    assert json.loads((tmp_path / "supervision_gap.json").read_text()) == rows  # the record is left as it was
    assert json.loads((tmp_path / "supervision_gap_summary.json").read_text()) == result["summary"]


# --- fruits_nuts ---------------------------------------------------------------------------------

def test_prepare_fruits_nuts_splits_into_the_work_dir(tmp_path: Path) -> None:
    require(DATASETS / "fruits_nuts" / "data" / "trainval.json")
    data = prepare("fruits_nuts", tmp_path, seed=0, backbone="lite0")
    train, val = json.loads(data.train_masks.read_text()), json.loads(data.val_json.read_text())
    assert data.train_masks.parent == tmp_path and data.val_json.parent == tmp_path
    assert sorted(im["id"] for im in val["images"]) == [2, 5, 8, 11, 14, 17]
    assert sorted(im["id"] for im in train["images"]) == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16]
    assert len(train["categories"]) == len(val["categories"]) == 3
    assert {a["image_id"] for a in val["annotations"]} <= {2, 5, 8, 11, 14, 17}
    assert data.train_images == data.val_images == DATASETS / "fruits_nuts" / "data" / "images"
    points = json.loads(data.train_points.read_text())
    assert len(points["images"]) == 12 and all(len(a["point_coords"]) == 10 for a in points["annotations"])
    assert recipe_path("fruits_nuts", "lite0", "maskrcnn").name == "fruits_nuts_lite0_points.yaml"
    assert prepare("fruits_nuts", tmp_path / "again", seed=0).val_json.read_bytes() == data.val_json.read_bytes()
