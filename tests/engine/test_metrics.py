"""metrics.jsonl content, truncation on resume, survival of a killed writer, TensorBoard events,
windowed smoothing."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pointsup.engine.metrics import METRICS_FILE, MetricsWriter, SmoothedValues

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_records(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / METRICS_FILE).read_text().splitlines()]


def test_each_write_is_one_json_line_readable_at_once(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path / "run", tensorboard=False)
    writer.write(20, {"loss": torch.tensor(1.5), "lr": 0.02, "time": 3})
    # Flushed already, while the writer is still open.
    assert read_records(tmp_path / "run") == [{"iteration": 20, "loss": 1.5, "lr": 0.02, "time": 3.0}]
    writer.write(40, {"loss": float("nan"), "grad_norm": float("inf")})
    assert read_records(tmp_path / "run")[1] == {"iteration": 40, "loss": None, "grad_norm": None}
    writer.close()
    writer.write(60, {"loss": 0.5})  # writing after close reopens the file
    writer.close()
    assert [r["iteration"] for r in read_records(tmp_path / "run")] == [20, 40, 60]


def test_truncate_after_drops_the_iterations_to_be_repeated(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for iteration in range(10, 110, 10):
        writer.write(iteration, {"loss": iteration / 10})
    writer.close()
    with open(tmp_path / METRICS_FILE, "a") as handle:
        handle.write('{"iteration": 110, "lo')  # a line half-written by a killed process

    resumed = MetricsWriter(tmp_path, tensorboard=False)
    resumed.truncate_after(50)
    assert [r["iteration"] for r in read_records(tmp_path)] == [10, 20, 30, 40, 50]
    resumed.write(60, {"loss": 99.0})
    resumed.truncate_after(55)  # also works on a writer that has written already
    resumed.write(60, {"loss": 7.0})
    resumed.close()
    records = read_records(tmp_path)
    assert [r["iteration"] for r in records] == [10, 20, 30, 40, 50, 60]
    assert records[-1]["loss"] == 7.0
    assert [p.name for p in tmp_path.iterdir()] == [METRICS_FILE]  # no temporary file left

    MetricsWriter(tmp_path / "fresh", tensorboard=False).truncate_after(0)  # nothing to truncate


def test_appending_after_a_half_line_starts_a_new_line(tmp_path: Path) -> None:
    (tmp_path / METRICS_FILE).write_text('{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "lo')
    writer = MetricsWriter(tmp_path, tensorboard=False)
    writer.write(3, {"loss": 1.0})
    writer.close()
    lines = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert json.loads(lines[-1]) == {"iteration": 3, "loss": 1.0}
    assert len(lines) == 3


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pointsup.engine.metrics import MetricsWriter

    writer = MetricsWriter(sys.argv[1], tensorboard=False)
    for iteration in range(5):
        writer.write(iteration, {"loss": float(iteration)})
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_a_killed_process_keeps_every_line_it_wrote(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "written"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert [r["iteration"] for r in read_records(tmp_path)] == [0, 1, 2, 3, 4]


def test_tensorboard_event_files_hold_the_scalars(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    writer = MetricsWriter(tmp_path)
    for iteration in (0, 1, 2):
        writer.write(iteration, {"loss/total": 3.0 - iteration, "lr": 0.01})
    writer.close()
    assert list(tmp_path.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert len(events.Scalars("lr")) == 3

    resumed = MetricsWriter(tmp_path)
    resumed.truncate_after(1)
    resumed.write(2, {"loss/total": 9.0})
    resumed.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss/total")] == [(0, 3.0), (1, 2.0), (2, 9.0)]


def test_a_disabled_writer_writes_nothing(tmp_path: Path) -> None:
    writer = MetricsWriter(tmp_path / "rank1", enabled=False)
    writer.write(1, {"loss": 1.0})
    writer.truncate_after(0)
    writer.close()
    assert not (tmp_path / "rank1").exists()


@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60), window=st.integers(1, 25))
def test_smoothed_values_follow_the_last_window(values: list[float], window: int) -> None:
    smoothed = SmoothedValues(window=window)
    for value in values:
        smoothed.update({"loss": value, "double": torch.tensor(2 * value, dtype=torch.float64)})
    last = values[-window:]
    assert smoothed.median("loss") == statistics.median(last)
    assert smoothed.average("loss") == pytest.approx(statistics.fmean(last), abs=1e-6)
    assert smoothed.latest("loss") == values[-1]
    assert smoothed.medians()["double"] == pytest.approx(2 * statistics.median(last))
    assert "loss" in smoothed and "other" not in smoothed


def test_smoothed_values_window_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SmoothedValues(window=0)
