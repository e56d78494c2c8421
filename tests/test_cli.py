"""Tests of the ``pointsup`` command line (pointsup.cli), mostly in-process through ``main``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pointsup.cli import main
from tests.conftest import golden_file

SIM_INPUT = golden_file("sim_input_instances_train2017.json")  # vendored: always present
SIM_REFERENCE = golden_file("sim_points_n10_v1.json")

STATS_KEYS = {
    "images",
    "instances",
    "crowd_instances",
    "points",
    "min_points_per_instance",
    "mean_points_per_instance",
    "max_points_per_instance",
    "positive_fraction",
    "instances_without_positive",
    "instances_without_negative",
    "agreement_with_masks",
    "flipped_by_boundary_noise",
    "flipped_by_label_noise",
}


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def points_of(coco: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    return [(a["id"], a.get("point_coords"), a.get("point_labels")) for a in coco["annotations"]]


def simulate(tmp_path: Path, *extra: str, name: str = "out.json", source: Path = SIM_INPUT) -> Path:
    output = tmp_path / name
    assert main(["simulate", str(source), "-o", str(output), "-q", "--force", *extra]) == 0
    return output


def assert_error(capsys: pytest.CaptureFixture[str], status: int, command: str, *fragments: str) -> str:
    """Exit status 2, nothing on stdout, a ``pointsup CMD: error: ...`` message without traceback."""
    out, err = capsys.readouterr()
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines, "no error message"
    assert lines[0].startswith(f"pointsup {command}: error: "), err
    assert sum(line.startswith("pointsup ") for line in lines) == 1, err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    return err


# --------------------------------------------------------------------------- entry point


def test_module_entry_point_help() -> None:
    result = subprocess.run([sys.executable, "-m", "pointsup", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: pointsup" in result.stdout
    for command in ("simulate", "stats"):
        assert command in result.stdout


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# --------------------------------------------------------------------------- simulate


def test_simulate_detectron2_reproduces_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "points.json"
    assert main(["simulate", str(SIM_INPUT), "-o", str(output), "--compat", "detectron2"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {output}" in out
    ours, reference = load(output), load(SIM_REFERENCE)
    assert len(ours["annotations"]) == len(reference["annotations"]) == len(load(SIM_INPUT)["annotations"])
    assert points_of(ours) == points_of(reference)
    for annotation in ours["annotations"]:
        assert "segmentation" not in annotation
        assert len(annotation["point_coords"]) == len(annotation["point_labels"]) == 10


def test_simulate_several_versions_differ(tmp_path: Path) -> None:
    simulate(tmp_path, "--versions", "3", name="pts.json")
    paths = [tmp_path / f"pts_v{k}.json" for k in (1, 2, 3)]
    assert all(p.is_file() for p in paths)
    assert not (tmp_path / "pts.json").exists()
    versions = [points_of(load(p)) for p in paths]
    assert versions[0] != versions[1] and versions[1] != versions[2] and versions[0] != versions[2]
    # same annotations, same number of points each
    assert [[a for a, _, _ in v] for v in versions] == [[a for a, _, _ in versions[0]]] * 3


def test_simulate_detectron2_versions_continue_the_reference_stream(tmp_path: Path) -> None:
    simulate(tmp_path, "--versions", "2", "--compat", "detectron2", name="d2.json")
    assert points_of(load(tmp_path / "d2_v1.json")) == points_of(load(SIM_REFERENCE))
    assert points_of(load(tmp_path / "d2_v2.json")) != points_of(load(SIM_REFERENCE))


def test_simulate_version_placeholder(tmp_path: Path) -> None:
    simulate(tmp_path, "--versions", "2", name="points_{version}_n10.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points_1_n10.json", "points_2_n10.json"]
    single = tmp_path / "single"
    single.mkdir()
    simulate(single, name="p{version}.json")
    assert [p.name for p in single.iterdir()] == ["p1.json"]


def test_simulate_stats_json(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    output = simulate(tmp_path, "--versions", "2", "--stats-json", str(stats_path), name="s.json")
    stats = load(stats_path)
    expected_paths = [str(output.with_name("s_v1.json")), str(output.with_name("s_v2.json"))]
    assert sorted(stats) == sorted(expected_paths)
    source = load(SIM_INPUT)
    num_crowd = sum(1 for a in source["annotations"] if a.get("iscrowd", 0))
    for entry in stats.values():
        assert set(entry) == STATS_KEYS
        assert entry["images"] == len(source["images"])
        assert entry["crowd_instances"] == num_crowd
        assert entry["instances"] == len(source["annotations"]) - num_crowd
        assert entry["points"] == 10 * entry["instances"]
        assert entry["min_points_per_instance"] == entry["max_points_per_instance"] == 10
        assert entry["agreement_with_masks"] == 1.0
        assert 0.0 < entry["positive_fraction"] < 1.0
        assert entry["flipped_by_label_noise"] == entry["flipped_by_boundary_noise"] == 0


def test_simulate_label_noise_is_counted(tmp_path: Path) -> None:
    stats_path = tmp_path / "stats.json"
    simulate(tmp_path, "--label-noise", "0.25", "--stats-json", str(stats_path))
    (entry,) = load(stats_path).values()
    assert entry["flipped_by_label_noise"] > 0
    assert entry["agreement_with_masks"] < 1.0
    assert entry["agreement_with_masks"] == pytest.approx(1.0 - entry["flipped_by_label_noise"] / entry["points"])


def test_simulate_keep_masks(tmp_path: Path) -> None:
    source = {a["id"]: a for a in load(SIM_INPUT)["annotations"]}
    kept = load(simulate(tmp_path, "--keep-masks", name="kept.json"))
    for annotation in kept["annotations"]:
        assert annotation["segmentation"] == source[annotation["id"]]["segmentation"]
    dropped = load(simulate(tmp_path, name="dropped.json"))
    assert all("segmentation" not in a for a in dropped["annotations"])
    assert points_of(kept) == points_of(dropped)


def test_simulate_default_mode_gives_crowd_no_points(tmp_path: Path) -> None:
    output = load(simulate(tmp_path, "--num-points", "7"))
    crowd = [a for a in output["annotations"] if a.get("iscrowd", 0)]
    assert crowd, "the golden input has a crowd annotation"
    for annotation in crowd:
        assert "point_coords" not in annotation and "point_labels" not in annotation
    for annotation in output["annotations"]:
        if not annotation.get("iscrowd", 0):
            assert len(annotation["point_coords"]) == len(annotation["point_labels"]) == 7
            assert set(annotation["point_labels"]) <= {0, 1}
    # the output is a valid point file
    from pointsup.points.format import load_point_dataset

    load_point_dataset(tmp_path / "out.json")


def test_simulate_is_deterministic(tmp_path: Path) -> None:
    for extra in ([], ["--compat", "detectron2"], ["--boundary-bias", "mild", "--label-noise", "0.1"]):
        first = simulate(tmp_path, *extra, name="a.json").read_bytes()
        second = simulate(tmp_path, *extra, name="b.json").read_bytes()
        assert first == second, extra


def test_simulate_refuses_to_replace_an_existing_file_unasked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "out.json"
    output.write_text("keep me")
    status = main(["simulate", str(SIM_INPUT), "-o", str(output), "-q"])
    assert_error(capsys, status, "simulate", f"-o {output} exists", "--force")
    assert output.read_text() == "keep me"
    assert main(["simulate", str(SIM_INPUT), "-o", str(output), "-q", "--force"]) == 0
    assert output.read_text() != "keep me"


def test_simulate_seed_changes_points(tmp_path: Path) -> None:
    a = load(simulate(tmp_path, "--seed", "1", name="a.json"))
    b = load(simulate(tmp_path, "--seed", "2", name="b.json"))
    assert points_of(a) != points_of(b)


# --------------------------------------------------------------------------- simulate: bad inputs


def test_simulate_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.json"
    status = main(["simulate", str(missing), "-o", str(tmp_path / "o.json"), "-q"])
    assert_error(capsys, status, "simulate", str(missing), "not found")
    assert not (tmp_path / "o.json").exists()


def test_simulate_malformed_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_bytes(SIM_INPUT.read_bytes()[:3000])
    status = main(["simulate", str(broken), "-o", str(tmp_path / "o.json"), "-q"])
    assert_error(capsys, status, "simulate", str(broken), "invalid JSON")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("compat", ["pointsup", "detectron2"])
def test_simulate_missing_segmentation_names_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str], compat: str) -> None:
    coco = load(SIM_INPUT)
    victim = next(a for a in coco["annotations"] if not a.get("iscrowd", 0) and a is not coco["annotations"][0])
    del victim["segmentation"]
    source = tmp_path / "noseg.json"
    source.write_text(json.dumps(coco))
    status = main(["simulate", str(source), "-o", str(tmp_path / "o.json"), "-q", "--compat", compat])
    assert_error(capsys, status, "simulate", str(source), f"annotation id {victim['id']}", "segmentation")
    assert not (tmp_path / "o.json").exists()


def test_simulate_invalid_coco_names_annotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = load(SIM_INPUT)
    coco["annotations"][2]["image_id"] = 987654
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(coco))
    status = main(["simulate", str(source), "-o", str(tmp_path / "o.json"), "-q"])
    assert_error(capsys, status, "simulate", str(source), f"annotation id {coco['annotations'][2]['id']}", "987654")


@pytest.mark.parametrize(
    "field, value",
    [
        ("iscrowd", "no"),
        ("iscrowd", 2),
        ("iscrowd", None),
        ("segmentation", [[2, 2, "12", 2, 12, 12]]),
        ("segmentation", [[2, 2, 12, 2, 12, True]]),
        ("segmentation", [[2, 2, 12, 2, None, 12]]),
        ("segmentation", [[2, 2, 12, 2]]),
        ("segmentation", {"size": [20, 20], "counts": [100, -5, 305]}),
        ("segmentation", {"size": [20, 0], "counts": "PP"}),
    ],
    ids=["crowd-no", "crowd-2", "crowd-null", "poly-string", "poly-bool", "poly-null", "poly-short", "rle-negative", "rle-size"],
)
def test_simulate_ill_typed_field_names_file_annotation_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: Any
) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {
                "id": 31,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 10, 10],
                "iscrowd": 0,
                "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]],
            }
        ],
    }
    coco["annotations"][0][field] = value
    source = tmp_path / "typed.json"
    source.write_text(json.dumps(coco))
    status = main(["simulate", str(source), "-o", str(tmp_path / "o.json"), "-q"])
    err = assert_error(capsys, status, "simulate", str(source), "annotation id 31: ", f"annotation id 31: {field}")
    assert len(err.strip().splitlines()) == 1  # one line: the file, the annotation and the field
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--label-noise", "1.5"],
        ["--label-noise", "-0.1"],
        ["--boundary-noise", "2"],
        ["--num-points", "0"],
        ["--versions", "0"],
        ["--boundary-bias", "extreme"],
        ["--compat", "other"],
    ],
)
def test_simulate_bad_options_rejected_by_argparse(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", str(SIM_INPUT), "-o", str(tmp_path / "o.json"), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "pointsup simulate: error:" in err and args[0] in err
    assert not (tmp_path / "o.json").exists()


def test_simulate_boundary_bias_not_in_detectron2_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["simulate", str(SIM_INPUT), "-o", str(tmp_path / "o.json"), "-q", "--compat", "detectron2", "--boundary-bias", "mild"]
    )
    err = assert_error(capsys, status, "simulate", "boundary")
    assert "detectron2" in err or "reference" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.json").exists()


def test_simulate_noise_sum_above_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["simulate", str(SIM_INPUT), "-o", str(tmp_path / "o.json"), "-q", "--label-noise", "0.6", "--boundary-noise", "0.6"]
    )
    err = assert_error(capsys, status, "simulate", "exceed")
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- stats


def test_stats_with_masks_agrees_fully(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = simulate(tmp_path)
    capsys.readouterr()
    assert main(["stats", str(output), "--masks", str(SIM_INPUT)]) == 0
    out = capsys.readouterr().out
    agreement = [line for line in out.splitlines() if line.startswith("agreement with masks")]
    assert len(agreement) == 1 and agreement[0].rstrip().endswith("100.00 %"), out


def test_stats_uses_kept_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = simulate(tmp_path, "--keep-masks")
    capsys.readouterr()
    assert main(["stats", str(output)]) == 0
    assert "100.00 %" in capsys.readouterr().out


def test_stats_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = simulate(tmp_path, "--num-points", "5")
    capsys.readouterr()
    assert main(["stats", str(output), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert set(stats) == STATS_KEYS
    assert stats["min_points_per_instance"] == stats["max_points_per_instance"] == 5
    assert stats["agreement_with_masks"] is None  # masks dropped, none given
    assert main(["stats", str(output), "--json", "--masks", str(SIM_INPUT)]) == 0
    assert json.loads(capsys.readouterr().out)["agreement_with_masks"] == 1.0


def test_stats_on_detectron2_file_ignores_crowd_points(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(SIM_REFERENCE), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    reference = load(SIM_REFERENCE)
    num_crowd = sum(1 for a in reference["annotations"] if a.get("iscrowd", 0))
    assert stats["crowd_instances"] == num_crowd
    assert stats["points"] == 10 * (len(reference["annotations"]) - num_crowd)


def test_stats_invalid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = load(SIM_REFERENCE)
    bad_id = coco["annotations"][1]["id"] if not coco["annotations"][1].get("iscrowd") else coco["annotations"][0]["id"]
    next(a for a in coco["annotations"] if a["id"] == bad_id)["point_labels"][0] = 3
    path = tmp_path / "bad_points.json"
    path.write_text(json.dumps(coco))
    status = main(["stats", str(path)])
    assert_error(capsys, status, "stats", str(path), f"annotation id {bad_id}", "point_labels")


def test_stats_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.json"
    assert_error(capsys, main(["stats", str(missing)]), "stats", str(missing))


def test_simulate_refuses_points_beyond_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    assert main(["simulate", str(SIM_INPUT), "-o", str(out), "--num-points", str(10**12), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--num-points 1000000000000" in err and "of memory" in err and "give fewer points" in err
    assert not out.exists()


def test_several_problems_are_one_line_that_counts_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = {
        "images": [{"id": 2**70, "file_name": "a.png", "height": 20, "width": 20}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 31, "image_id": 2**70, "category_id": 1, "bbox": [2, 2, 10, 10], "iscrowd": 0}],
    }
    source = tmp_path / "huge_ids.json"
    source.write_text(json.dumps(coco))
    status = main(["simulate", str(source), "-o", str(tmp_path / "o.json"), "-q"])
    err = assert_error(
        capsys, status, "simulate", str(source), "image #0: id must be a 64-bit integer", "beyond 64 bits", "(and 1 more problem)"
    )
    assert len(err.strip().splitlines()) == 1


def test_absurdly_deep_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "deep.json"
    source.write_text("[" * 100_000 + "]" * 100_000)
    status = main(["simulate", str(source), "-o", str(tmp_path / "o.json"), "-q"])
    err = assert_error(capsys, status, "simulate", str(source), "nested too deeply")
    assert len(err.strip().splitlines()) == 1
