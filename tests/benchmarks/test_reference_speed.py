"""benchmarks/reference_speed.py: pointsup's side of the set-up is a valid recipe, each system's
child gets its environment, the seconds per iteration are the wall-time difference, and a failing
child is one line naming the system. (The reference itself is not installed here: a stand-in child
takes its place, the harness is what is tested.)"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import reference_speed
from pointsup.engine.config import load_config

# Sleeps 0.05 s per iteration after a 0.2 s start-up and writes the environment it saw.
_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    iterations, output = int(sys.argv[1]), sys.argv[2]
    time.sleep(0.2 + 0.05 * iterations)
    names = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "POINTSUP_GLIBC_HEAP_DEFAULTS")
    open(output + ".env.json", "w").write(json.dumps({n: os.environ.get(n) for n in names}))
    """
)


def _args(tmp_path: Path, **changes) -> argparse.Namespace:
    values = {
        "detectron2": tmp_path / "detectron2",
        "reference_python": sys.executable,
        "head": "maskrcnn",
        "rounds": 1,
        "iterations": [1, 11],
        "systems": list(reference_speed.SYSTEM_ENVIRONMENTS),
    }
    return argparse.Namespace(**{**values, **changes})


@pytest.mark.parametrize("head", sorted(reference_speed.POINTSUP_CONFIGS))
def test_pointsup_command_is_a_valid_recipe_with_the_side_by_side_settings(tmp_path: Path, head: str) -> None:
    data = (tmp_path / "train_p10.json", tmp_path / "images")
    command = reference_speed.command(_args(tmp_path, head=head), "pointsup", 12, data, tmp_path / "out")
    assert command[:4] == [sys.executable, "-m", "pointsup", "train"]
    recipe, overrides = command[4], command[5:-2]
    config = load_config(recipe, overrides)
    assert (config.model.backbone.norm, config.model.fpn.norm, config.model.backbone.trainable_layers) == ("gn", "gn", 5)
    assert (config.data.min_size_train, config.data.max_size_train) == ([480], 800)
    assert (config.solver.ims_per_batch, config.solver.max_iter, config.data.num_workers) == (2, 12, 0)
    assert config.model.backbone.weights in ("", None) and config.data.val_json in ("", None)
    assert command[-2:] == ["--output", str(tmp_path / "out")]


def test_reference_command_runs_the_child_with_the_reference_python(tmp_path: Path) -> None:
    args = _args(tmp_path, reference_python="/opt/ref/bin/python", head="implicit_pointrend")
    command = reference_speed.command(args, "reference-heap-kept", 2, (tmp_path / "p.json", tmp_path / "im"), tmp_path / "o")
    assert command[:2] == ["/opt/ref/bin/python", str(reference_speed.REFERENCE_CHILD)]
    assert command[command.index("--head") + 1] == "implicit_pointrend"
    assert command[command.index("--iterations") + 1] == "2"


def test_each_system_gets_its_environment_and_seconds_per_iteration_are_the_difference(tmp_path: Path, monkeypatch) -> None:
    child = tmp_path / "child.py"
    child.write_text(_CHILD)
    monkeypatch.setattr(
        reference_speed,
        "command",
        lambda args, system, iterations, data, output: [sys.executable, str(child), str(iterations), str(output)],
    )
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "POINTSUP_GLIBC_HEAP_DEFAULTS"):
        monkeypatch.delenv(name, raising=False)
    results = reference_speed.measure(_args(tmp_path), (tmp_path / "p.json", tmp_path), tmp_path)

    assert [r["system"] for r in results] == list(reference_speed.SYSTEM_ENVIRONMENTS)
    for result in results:
        # 10 more iterations of 0.05 s each: the 0.2 s start-up cancels out
        assert 0.04 <= result["s_per_iter"] <= 0.15
        assert [run["iterations"] for run in result["runs"]] == [1, 11]
    seen = {}
    for path in tmp_path.glob("*-11-*.env.json"):
        seen[path.name.split("-11-")[0]] = json.loads(path.read_text())
    assert seen["reference"] == {
        "MALLOC_MMAP_THRESHOLD_": None,
        "MALLOC_TRIM_THRESHOLD_": None,
        "POINTSUP_GLIBC_HEAP_DEFAULTS": None,
    }
    assert seen["reference-heap-kept"]["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    assert seen["pointsup"]["POINTSUP_GLIBC_HEAP_DEFAULTS"] == "1"
    assert seen["pointsup-heap-kept"]["POINTSUP_GLIBC_HEAP_DEFAULTS"] == "0"

    text = reference_speed.table(results, list(reference_speed.SYSTEM_ENVIRONMENTS))
    assert "pointsup / reference (s/iter), per round:" in text


def test_table_gives_each_system_its_ratio_to_the_first_round_by_round() -> None:
    def result(round_index: int, system: str, s_per_iter: float) -> dict:
        run = {"system": system, "iterations": 2, "wall_s": 1.0, "system_s": 0.1, "peak_rss_mb": 10.0}
        return {"round": round_index, "system": system, "s_per_iter": s_per_iter, "runs": [run]}

    results = [result(0, "reference", 8.0), result(0, "pointsup", 6.0), result(1, "reference", 10.0), result(1, "pointsup", 9.0)]
    text = reference_speed.table(results, ["reference", "pointsup"])
    assert "pointsup / reference (s/iter), per round: 0.750x, 0.900x; median 0.825x" in text
    assert "8.000, 10.000" in text


def test_a_failing_child_is_one_line_naming_the_system_and_its_log(tmp_path: Path, monkeypatch, capsys) -> None:
    child = tmp_path / "child.py"
    child.write_text("import sys\nprint('TypeError: takes 3 positional arguments but 4 were given')\nsys.exit(1)\n")
    monkeypatch.setattr(reference_speed, "command", lambda *args: [sys.executable, str(child)])
    with pytest.raises(SystemExit) as stop:
        reference_speed.measure(_args(tmp_path, systems=["reference"]), (tmp_path / "p.json", tmp_path), tmp_path)
    assert stop.value.code == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert message.startswith("error: reference (1 iterations) failed, log ")
    assert message.endswith("TypeError: takes 3 positional arguments but 4 were given")


def test_reference_overrides_pin_the_side_by_side_set_up(tmp_path: Path) -> None:
    from benchmarks import _reference_train

    overrides = _reference_train.side_by_side_overrides(12, tmp_path)
    pairs = dict(zip(overrides[::2], overrides[1::2], strict=True))
    assert pairs["MODEL.WEIGHTS"] == "" and pairs["MODEL.DEVICE"] == "cpu"
    assert (pairs["MODEL.RESNETS.NORM"], pairs["MODEL.FPN.NORM"], pairs["MODEL.BACKBONE.FREEZE_AT"]) == ("GN", "GN", "0")
    assert (pairs["INPUT.MIN_SIZE_TRAIN"], pairs["INPUT.MAX_SIZE_TRAIN"], pairs["SOLVER.IMS_PER_BATCH"]) == ("(480,)", "800", "2")
    assert (pairs["SOLVER.MAX_ITER"], pairs["DATALOADER.NUM_WORKERS"], pairs["DATASETS.TEST"]) == ("12", "0", "()")
    assert set(_reference_train.REFERENCE_CONFIGS) == set(reference_speed.POINTSUP_CONFIGS)
