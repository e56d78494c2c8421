"""benchmarks/head_speed.py at smoke sizes: every head runs, the fast paths' masks equal the
straightforward ones', and the summary says whether the C heap was kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pointsup.utils.heap import ALLOCATOR_ENVIRONMENT, HEAP_SETTING_VARIABLE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "head_speed.py"
SMOKE = ["--classes", "3", "--channels", "16", "--conv-dim", "16", "--fc-dim", "64", "--point-fc-dim", "16",
         "--image-size", "64", "96", "--detections", "6", "--repeats", "1", "--warmup", "0", "--device", "cpu",
         "--threads", "1"]  # fmt: skip


def run_head_speed(setting: str) -> dict:
    env = {**os.environ, HEAP_SETTING_VARIABLE: setting}
    for name in (*ALLOCATOR_ENVIRONMENT, "LD_PRELOAD", "GLIBC_TUNABLES"):  # nothing that overrides the setting
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(SCRIPT), *SMOKE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_fast_paths_match_and_the_heap_setting_is_reported() -> None:
    kept, defaults = run_head_speed("0"), run_head_speed("1")
    assert kept["heap_kept"] is True and defaults["heap_kept"] is False
    for summary in (kept, defaults):
        assert set(summary["seconds_per_image"]) == {
            "maskrcnn", "pointrend (fast)", "pointrend (straightforward)", "implicit (fast)", "implicit (straightforward)"
        }  # fmt: skip
        assert all(seconds > 0 for seconds in summary["seconds_per_image"].values())
        assert all(check["equal"] for check in summary["equality"].values())
