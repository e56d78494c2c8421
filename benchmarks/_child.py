"""One benchmark child process, timed, with its own resource usage (one place for the wait4 dance)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ChildRun:
    """How a child process ended: exit code, wall seconds and its own ``rusage``."""

    exit_code: int
    wall_s: float
    usage: resource.struct_rusage

    @property
    def peak_rss_mb(self) -> float:
        return self.usage.ru_maxrss / 1024  # kilobytes on Linux


def run_child(command: list[str], env: dict[str, str], log_file: Path, *, log_stdout: bool) -> ChildRun:
    """Run ``command`` to its end with its stderr (and its stdout when ``log_stdout``, else discarded)
    in ``log_file``. ``os.wait4`` gives the child's own usage, unlike ``RUSAGE_CHILDREN``."""
    with open(log_file, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=log if log_stdout else subprocess.DEVNULL, stderr=subprocess.STDOUT if log_stdout else log
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    return ChildRun(os.waitstatus_to_exitcode(status), wall, usage)


def last_log_line(log_file: Path) -> str:
    """The log's last non-empty line, for a one-line error."""
    lines = log_file.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"
