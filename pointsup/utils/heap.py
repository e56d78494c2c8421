"""Keep freed memory in the C heap, so a CPU model's large tensors re-use pages instead of faulting in fresh ones.

glibc's ``malloc`` serves a request above its mmap threshold (dynamic, at most 32 MiB by default)
with a fresh ``mmap`` and unmaps it on ``free``; the next iteration's tensor of the same size then
page-faults every 4 KiB page in again, the kernel zeroing each one. A training iteration of the
R50-FPN at 480-800 px allocates hundreds of such tensors (feature maps, their gradients), and the
faults cost it system time. Raising the mmap and trim thresholds keeps that memory in the heap for
the next iteration, for a higher resident peak (figures: docs/results_speed.md, "glibc heap").

It is opt-in (``POINTSUP_GLIBC_HEAP_DEFAULTS=0``): the kept heap fragments, and over a run its
resident set rises higher and faster than with glibc's defaults (the R50-FPN's: 6.4 against 5.2
GB by iteration 30, 7.4 GB before iteration 46), which a long training run cannot afford by
default.

The setting is process-wide and only changes where memory comes from, never a computed value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# Requests above this still get their own mapping (returned to the system on free): 1 GiB.
MMAP_THRESHOLD_BYTES = 1 << 30
# Free memory at the heap's top is returned to the system only above this (mallopt takes an int).
TRIM_THRESHOLD_BYTES = (1 << 31) - 1

# A user who tunes the allocator (or replaces it) keeps the choice: these leave the heap alone.
ALLOCATOR_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
# glibc's defaults unless this is "0", which keeps freed memory in the heap (fewer page faults,
# a resident set that grows over a long run).
HEAP_SETTING_VARIABLE = "POINTSUP_GLIBC_HEAP_DEFAULTS"

_applied = False


def _heap_left_alone(environ: Mapping[str, str]) -> bool:
    """True unless the user asked for the kept heap and tunes or replaces no allocator themselves."""
    if environ.get(HEAP_SETTING_VARIABLE, "1") != "0":
        return True
    if any(name in environ for name in ALLOCATOR_ENVIRONMENT):
        return True
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return True
    return bool(environ.get("LD_PRELOAD", "").strip())  # jemalloc, tcmalloc...


def keep_freed_memory_in_heap() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; True when they are set.

    Does nothing (False) unless ``POINTSUP_GLIBC_HEAP_DEFAULTS=0``; nor off Linux, without glibc,
    or when the environment already tunes or replaces the allocator (:data:`ALLOCATOR_ENVIRONMENT`,
    ``GLIBC_TUNABLES``, ``LD_PRELOAD``).
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or _heap_left_alone(os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        log.debug("mallopt refused the heap thresholds; the allocator keeps its defaults")
        return False
    _applied = True
    return True
