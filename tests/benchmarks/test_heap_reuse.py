"""benchmarks/heap_reuse.py: each child runs under its setting, its own resource usage is read, and
the table pairs the runs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from benchmarks import heap_reuse

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Stands in for train_throughput.py: writes its --json row, with the heap setting's outcome as the
# "time", and touches 200 MiB so that its peak resident set is visible.
_CHILD = textwrap.dedent(
    """
    import json, sys
    from pointsup.utils.heap import keep_freed_memory_in_heap
    applied = keep_freed_memory_in_heap()
    block = bytearray(200 << 20)
    path = sys.argv[sys.argv.index("--json") + 1]
    row = {"precision": "fp32", "median_s_per_iter": 2.0 if applied else 3.0}
    open(path, "w").write(json.dumps([{"precision": "amp", "median_s_per_iter": 9.0}, row]))
    """
)


def test_each_setting_reaches_its_child_and_the_table_pairs_them(tmp_path: Path, monkeypatch, capsys) -> None:
    child = tmp_path / "child.py"
    child.write_text(_CHILD)
    monkeypatch.setattr(heap_reuse, "THROUGHPUT_SCRIPT", child)
    monkeypatch.delenv(heap_reuse.HEAP_SETTING_VARIABLE, raising=False)
    runs = heap_reuse.measure(2, [])
    assert [(r["pair"], r["setting"]) for r in runs] == [
        (0, "glibc defaults"),
        (0, "heap kept"),
        (1, "glibc defaults"),
        (1, "heap kept"),
    ]
    assert [r["s_per_iter"] for r in runs] == [3.0, 2.0, 3.0, 2.0]
    assert all(r["peak_rss_mb"] >= 200 and r["minor_faults"] > 0 for r in runs)
    text = heap_reuse.table(runs)
    assert "s/iter 3.000 -> 2.000" in text
    assert "speed-up per pair (defaults / kept): 1.500x, 1.500x; median 1.500x" in text


def test_a_failing_child_is_one_line_naming_the_setting(tmp_path: Path, monkeypatch) -> None:
    child = tmp_path / "child.py"
    child.write_text("import sys\nprint('boom: no such recipe', file=sys.stderr)\nsys.exit(2)\n")
    monkeypatch.setattr(heap_reuse, "THROUGHPUT_SCRIPT", child)
    with pytest.raises(SystemExit, match="failed under 'glibc defaults': boom: no such recipe"):
        heap_reuse.measure(1, [])
