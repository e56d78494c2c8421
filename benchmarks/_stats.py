"""Mean and sample standard deviation over seeds, and their one way of being printed."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean and the sample standard deviation (ddof=1) of ``values``.

    Returns (None, None) for no values and (mean, None) for one: one seed says nothing of the spread.
    """
    if not values:
        return None, None
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_std(values: Sequence[float], digits: int = 1, sign: bool = False) -> str:
    """``"mean ± std"`` with ``digits`` decimals; ``"mean ± -"`` for one value, ``"-"`` for none.

    With ``sign``, the mean carries its sign (for changes: ``"+0.6 ± 0.4"``).
    """
    mean, std = mean_std(values)
    if mean is None:
        return "-"
    spread = "-" if std is None else f"{std:.{digits}f}"
    return f"{mean:{'+' if sign else ''}.{digits}f} ± {spread}"


def value_summary(values: Sequence[float | None]) -> dict:
    """The JSON form of one metric over seeds: ``mean``, ``std`` (None below two values), ``n`` and
    the per-seed ``values`` (None where a seed has none; those do not count in ``n``)."""
    present = [v for v in values if v is not None]
    mean, std = mean_std(present)
    return {"mean": mean, "std": std, "n": len(present), "values": list(values)}
