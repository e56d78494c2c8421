"""The heap setting stops a freed large tensor's memory from being faulted in afresh."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from pointsup.utils import heap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Allocates and frees a 64 MiB tensor 40 times, printing whether the setting (asked for through the
# environment) was applied and the page faults of the last 10 allocations. A child process, so the
# test process keeps its allocator.
_FAULTS_SCRIPT = textwrap.dedent(
    """
    import resource
    import torch
    from pointsup.utils.heap import keep_freed_memory_in_heap

    applied = keep_freed_memory_in_heap()
    faults = []
    for _ in range(40):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        tensor = torch.ones((64 << 20) // 4)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        del tensor
    print(applied, sum(faults[-10:]))
    """
)


def _steady_state_faults(**environment: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k not in (*heap.ALLOCATOR_ENVIRONMENT, heap.HEAP_SETTING_VARIABLE, "LD_PRELOAD")}
    env.update(environment)
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


def test_a_freed_large_tensor_is_reused_without_page_faults():
    applied_off, faults_off = _steady_state_faults()  # glibc's defaults unless asked
    applied_on, faults_on = _steady_state_faults(POINTSUP_GLIBC_HEAP_DEFAULTS="0")
    assert not applied_off and applied_on
    # 64 MiB is above glibc's largest dynamic mmap threshold: by default it is mapped afresh and
    # every page faults again (16,384 pages of 4 KiB each time, fewer with transparent huge pages);
    # with the setting, once the heap has grown, the freed memory is served again
    assert faults_off >= 10 * 16
    assert faults_on * 8 <= faults_off


def test_an_allocator_tuned_by_the_user_is_left_alone():
    applied, faults = _steady_state_faults(POINTSUP_GLIBC_HEAP_DEFAULTS="0", MALLOC_MMAP_THRESHOLD_="131072")
    assert not applied
    assert faults >= 10 * 16


@pytest.mark.parametrize(
    "environ, left_alone",
    [
        ({}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "1"}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": ""}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0"}, False),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0", "MALLOC_TRIM_THRESHOLD_": "0"}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0", "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4096"}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0", "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, False),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0", "LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, True),
        ({"POINTSUP_GLIBC_HEAP_DEFAULTS": "0", "LD_PRELOAD": "  "}, False),
    ],
)
def test_the_heap_is_kept_only_when_asked_and_no_allocator_is_tuned(environ, left_alone):
    assert heap._heap_left_alone(environ) is left_alone
