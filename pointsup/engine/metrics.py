"""Training metrics: a JSON-lines file and TensorBoard scalars, plus windowed smoothing.

``metrics.jsonl`` gets one line per :meth:`MetricsWriter.write`, e.g.
``{"iteration": 20, "loss": 1.93, "lr": 0.0004}``. Each line is flushed as it is written, so a
killed process loses at most the line it was writing. Non-finite values are written as ``null``
(JSON has no NaN). On resume, :meth:`MetricsWriter.truncate_after` first drops the lines of the
iterations that are about to be repeated.
"""

from __future__ import annotations

import math
import os
import statistics
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

import msgspec

from pointsup.utils.atomic import encode_json, output_write_error, write_bytes_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

#: The JSON-lines file in the output folder.
METRICS_FILE = "metrics.jsonl"


class MetricsWriter:
    """Appends scalars to ``output_dir/metrics.jsonl`` and to TensorBoard event files in
    ``output_dir``. With ``enabled`` False (processes other than rank 0) it does nothing.
    """

    def __init__(self, output_dir: str | os.PathLike[str], enabled: bool = True, tensorboard: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / METRICS_FILE
        self.enabled = enabled
        self.tensorboard = tensorboard
        self._handle: IO[str] | None = None
        self._summary_writer: SummaryWriter | None = None
        self._purge_step: int | None = None

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        """Record ``scalars`` (numbers or 0-d tensors) at ``iteration``."""
        if not self.enabled:
            return
        values = {key: float(value) for key, value in scalars.items()}
        record = {"iteration": int(iteration), **{k: v if math.isfinite(v) else None for k, v in values.items()}}
        try:
            handle = self._open()
            handle.write(encode_json(record).decode() + "\n")
            handle.flush()
        except OSError as exc:
            raise output_write_error(self.path, exc) from None
        if self.tensorboard:
            summary_writer = self._open_summary_writer()
            for key, value in values.items():
                summary_writer.add_scalar(key, value, iteration)
            summary_writer.flush()

    def truncate_after(self, iteration: int) -> None:
        """Drop the records of iterations after ``iteration`` (and a half-written last line) from
        ``metrics.jsonl``, atomically; TensorBoard hides its later points too (``purge_step``).
        Call it when resuming from a checkpoint of ``iteration``, before the first :meth:`write`."""
        if not self.enabled:
            return
        self._purge_step = iteration + 1
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_bytes().splitlines():
            line_iteration = _iteration_of(line)
            if line_iteration is not None and line_iteration <= iteration:
                kept.append(line + b"\n")
        write_bytes_atomic(self.path, b"".join(kept))

    def close(self) -> None:
        """Close the files (writing again reopens them)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._summary_writer is not None:
            self._summary_writer.close()
            self._summary_writer = None

    def _open(self) -> IO[str]:
        if self._handle is None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ends_mid_line = self.path.exists() and self.path.stat().st_size > 0 and not _ends_with_newline(self.path)
            self._handle = open(self.path, "a", buffering=1, encoding="utf-8")
            if ends_mid_line:  # a killed writer's half line stays on a line of its own
                self._handle.write("\n")
        return self._handle

    def _open_summary_writer(self) -> SummaryWriter:
        if self._summary_writer is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            self._summary_writer = SummaryWriter(log_dir=str(self.output_dir), purge_step=self._purge_step)
        return self._summary_writer


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def _iteration_of(line: bytes) -> int | None:
    """The ``iteration`` of one JSON line, or None for a broken (half-written) line."""
    try:
        record = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    iteration = record.get("iteration") if isinstance(record, dict) else None
    return iteration if isinstance(iteration, int) else None


class SmoothedValues:
    """The last ``window`` values of each named scalar, for steadier progress-bar numbers."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self._values: dict[str, deque[float]] = {}

    def update(self, values: Mapping[str, float]) -> None:
        """Add one value per key (numbers or 0-d tensors)."""
        for key, value in values.items():
            self._values.setdefault(key, deque(maxlen=self.window)).append(float(value))

    def median(self, key: str) -> float:
        """The median of the window of ``key`` (KeyError for a key never updated)."""
        return statistics.median(self._values[key])

    def average(self, key: str) -> float:
        """The mean of the window of ``key``."""
        return statistics.fmean(self._values[key])

    def latest(self, key: str) -> float:
        """The last value of ``key``."""
        return self._values[key][-1]

    def medians(self) -> dict[str, float]:
        """The median of every key."""
        return {key: self.median(key) for key in self._values}

    def __contains__(self, key: str) -> bool:
        return key in self._values
