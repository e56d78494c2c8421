"""``pointsup convert`` on the command line: outputs, --force, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pointsup.cli import main
from tests.formats.conftest import Truth
from tests.formats.test_cvat import write_cvat


def test_import_writes_a_coco_file_that_pointsup_reads(truth: Truth, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pointsup.points.format import load_point_dataset

    write_cvat(truth.coco, tmp_path / "annotations.xml")
    out = tmp_path / "out.json"
    assert (
        main(["convert", str(tmp_path / "annotations.xml"), "-o", str(out), "--from", "cvat", "--images", str(truth.images)]) == 0
    )
    assert "4 objects (4 with polygons, 0 points)" in capsys.readouterr().out
    assert len(load_point_dataset(out, require_points=False).instances) == 4


def test_export_then_import_on_the_command_line(points_file: Path, tmp_path: Path) -> None:
    xml, back = tmp_path / "out.xml", tmp_path / "back.json"
    assert main(["convert", str(points_file), "-o", str(xml), "--to", "cvat"]) == 0
    assert main(["convert", str(xml), "-o", str(back), "--from", "cvat"]) == 0
    assert [a["point_labels"] for a in json.loads(back.read_text())["annotations"] if not a["iscrowd"]] == [
        a["point_labels"] for a in json.loads(points_file.read_text())["annotations"] if not a["iscrowd"]
    ]


def test_an_existing_output_needs_force(points_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    out.write_text("keep me")
    assert main(["convert", str(points_file), "-o", str(out), "--to", "labelstudio"]) == 2
    assert "exists: give --force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert main(["convert", str(points_file), "-o", str(out), "--to", "labelstudio", "--force"]) == 0
    assert json.loads(out.read_text())[0]["data"]["image"] == "a.png"


def test_the_output_may_not_be_the_input(points_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["convert", str(points_file), "-o", str(points_file), "--to", "cvat", "--force"]) == 2
    assert "would replace the input" in capsys.readouterr().err


def test_errors_are_one_line_naming_the_file(tmp_path: Path, truth: Truth, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotations><image")
    assert main(["convert", str(bad), "-o", str(tmp_path / "o.json"), "--from", "cvat"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "malformed XML" in err
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "o.json"), "--from", "yolo"]) == 2
    assert "need --images" in capsys.readouterr().err
    assert main(["convert", str(bad), "-o", str(tmp_path / "o.json"), "--from", "cvat", "--names", str(bad)]) == 2
    assert "--names applies to --from yolo only" in capsys.readouterr().err
