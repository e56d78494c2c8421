"""Progress bars for long loops (tqdm), quiet when output is not a terminal or when disabled."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_enabled() -> bool:
    """Progress bars are shown unless ``POINTSUP_NO_PROGRESS`` is set to a non-empty value."""
    return not os.environ.get("POINTSUP_NO_PROGRESS")


def progress(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True
) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr (disabled when ``enabled`` is False)."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=not (enabled and progress_enabled()),
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
