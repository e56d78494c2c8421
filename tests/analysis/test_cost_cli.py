"""``pointsup cost``: Table 7 from the preset, other count sources, JSON, the Figure 9 analysis."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pointsup.analysis.budget_curves import (
    crossover_spotting_time,
    load_curves,
    time_to_target,
)
from pointsup.analysis.cli import SPOTTING_TABLE_S, add_cost_parser
from pointsup.analysis.cost import COCO2017_TRAIN, AnnotationCosts, count_instances
from pointsup.errors import CommandError

FIGURE9_RUNS = {"masks": [(0.25, 12.0), (0.5, 20.0), (1.0, 26.0)], "P10": [(0.25, 9.0), (0.5, 16.0), (1.0, 24.0)]}


def run_cost(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="pointsup")
    add_cost_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cost", *argv])
    args.handler(args)


def output_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    run_cost(argv)
    return capsys.readouterr().out


@pytest.fixture
def curves_path(tmp_path: Path) -> Path:
    costs, instances = AnnotationCosts(), 480
    runs = [{"form": form, "fraction": f, "instances": round(f * instances),
             "annotation_hours": f * instances * costs.seconds_per_instance(form) / 3600, "segm_AP": ap, "bbox_AP": ap + 5}
            for form, points in FIGURE9_RUNS.items() for f, ap in points]
    path = tmp_path / "curves.json"
    path.write_text(json.dumps({"dataset": "synthetic", "images": 72, "instances": instances, "costs": costs.to_dict(), "runs": runs}))
    return path


def test_preset_table_shows_table7_whole_days(capsys: pytest.CaptureFixture[str]) -> None:
    table = output_of(["--preset", "coco2017-train"], capsys)
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.split() and line.split()[0] in ("boxes", "P10", "masks")}
    assert {form: int(cells[4].replace(",", "")) for form, cells in rows.items()} == {"boxes": 493, "P10": 582, "masks": 1204}
    assert "118,287 images, 849,949 instances" in table
    assert "P10: (43.2 spotting + 7 box + 10 × 0.9 points) s × 849,949 instances" in table


def test_json_output_with_custom_costs(capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(output_of(["--images", "10", "--instances", "1000", "--points", "10", "5",
                                   "--spotting-seconds", "2", "--point-seconds", "1.5", "--json"], capsys))
    assert (report["images"], report["instances"]) == (10, 1000)
    assert report["costs"] == AnnotationCosts(spotting_s=2.0, point_s=1.5).to_dict()
    by_form = {row["form"]: row for row in report["forms"]}
    assert list(by_form) == ["boxes", "P5", "P10", "masks"]
    assert by_form["P5"]["seconds"] == pytest.approx(1000 * (2 + 7 + 5 * 1.5))
    assert by_form["masks"]["seconds"] == pytest.approx(1000 * (2 + 79.2))
    assert "time_to_target" not in report


def test_counts_from_a_dataset_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8} for i in range(4)]
    annotations = [{"id": k, "image_id": k % 4, "category_id": 1, "bbox": [0, 0, 1, 1], "iscrowd": int(k == 3)} for k in range(9)]
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    report = json.loads(output_of([str(path), "--json"], capsys))
    assert (report["images"], report["instances"]) == count_instances(path) == (4, 8)


@pytest.mark.parametrize("argv, message", [
    (["--preset", "coco2017-train", "--images", "3", "--instances", "9"], "one source of counts"),
    (["data.json", "--preset", "coco2017-train"], "one source of counts"),
    (["--images", "3"], "--images and --instances go together"),
    ([], "give DATASET.json"),
    (["--preset", "coco2017-train", "--target-ap", "20"], "need --curves"),
    (["--preset", "coco2017-train", "--plot", "x.png"], "need --curves"),
])
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_cost(argv)


@pytest.mark.parametrize("argv", [["--box-seconds", "-1"], ["--point-seconds", "nan"], ["--points", "0"], ["--preset", "voc"]])
def test_bad_option_values_are_argparse_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cost(["--images", "3", "--instances", "9", *argv])
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_curves_need_a_target_and_a_valid_file(curves_path: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--curves needs --target-ap"):
        run_cost(["--curves", str(curves_path)])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"instances": 3, "images": 1, "runs": [{"form": "masks"}]}))
    with pytest.raises(CommandError, match=f"{bad}: run #0.*missing fraction"):
        run_cost(["--curves", str(bad), "--target-ap", "10"])


def test_time_to_target_report_uses_the_curves(curves_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = json.loads(output_of(["--curves", str(curves_path), "--target-ap", "18", "--json"], capsys))
    curves = load_curves(curves_path)
    assert report["instances"] == curves.instances  # counts taken from the curves file
    target = report["time_to_target"]
    assert target["spotting_s"] == list(SPOTTING_TABLE_S)
    for form in ("masks", "P10"):
        np.testing.assert_allclose(target["hours"][form], time_to_target(curves, form, 18.0, np.array(SPOTTING_TABLE_S)))
    assert target["crossover_spotting_s"] == pytest.approx(crossover_spotting_time(curves, 18.0, (0.0, 250.0)))


def test_time_to_target_table_and_plot(curves_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "figure9.png"
    out = output_of(["--preset", "coco2017-train", "--curves", str(curves_path), "--target-ap", "18",
                     "--max-spotting-seconds", "200", "--plot", str(plot)], capsys)
    curves = load_curves(curves_path)
    assert f"on {COCO2017_TRAIN.instances:,} instances" in out  # the preset's counts win over the curves'
    table = out.split("hours to reach 18 mask AP")[1].splitlines()
    spotting_rows = [line.split() for line in table[2:] if line and line.split()[0][0].isdigit()]
    assert [float(cells[0]) for cells in spotting_rows] == [s for s in SPOTTING_TABLE_S if s <= 200]
    expected = time_to_target(curves, "masks", 18.0, np.array([0.0]), instances=COCO2017_TRAIN.instances)[0]
    assert float(spotting_rows[0][1].replace(",", "")) == pytest.approx(expected, abs=0.05)
    crossing = crossover_spotting_time(curves, 18.0, (0.0, 200.0))
    assert f"masks become cheaper than P10 above {crossing:.1f} s" in out
    assert f"wrote {plot}" in out
    with Image.open(io.BytesIO(plot.read_bytes())) as image:
        assert image.format == "PNG" and image.width > 0


def test_unreachable_target_is_reported(curves_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = output_of(["--curves", str(curves_path), "--target-ap", "25"], capsys)
    assert "P10 never" in out and "masks never become cheaper than P10" in out


def test_errors_exit_2_through_pointsup_main(capsys: pytest.CaptureFixture[str]) -> None:
    from pointsup.cli import build_parser, main

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert "cost" in commands.choices
    assert main(["cost", "--images", "3"]) == 2
    assert "pointsup cost: error: --images and --instances go together" in capsys.readouterr().err
    assert main(["cost", "--preset", "coco2017-train"]) == 0
