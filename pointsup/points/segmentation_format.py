"""Type checks of COCO ``segmentation`` values, for the annotation-file reader.

A segmentation is accepted when it has one of COCO's forms with values of the right type:

* polygons: a list of parts, each a flat list ``[x0, y0, x1, y1, ...]`` of finite numbers
  (JSON integers or floats; not booleans, strings or null) with an even count of at least 6
  (three vertices). pycocotools would read a 4-number part as a *box*, and the rasteriser
  would turn strings, booleans or NaN into nonsense masks. An empty list (no polygon) is
  accepted here, as exporters write it on box-only annotations; whatever needs the mask then
  reports it as empty.
* RLE: an object with ``size`` ``[height, width]`` (two positive integers) and ``counts``,
  either a list of non-negative integers (uncompressed) or a string (compressed).

Whether the mask fits its image (counts summing to ``height * width``, a size equal to the
image's) is checked where masks are decoded (:mod:`pointsup.points.rle`).

The check runs over all polygons at once (the set of the value types; the sum of the values,
which is finite only when they all are), so it adds little to reading a COCO-size file; only
when that finds a problem are the annotations looked at one by one to name them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

#: The fewest numbers of one polygon part (three vertices).
MIN_POLYGON_NUMBERS = 6


def _is_number_type(kind: type) -> bool:
    return issubclass(kind, (int, float)) and not issubclass(kind, bool)


def _is_count_type(kind: type) -> bool:
    return issubclass(kind, int) and not issubclass(kind, bool)


def _is_finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _shown(value: Any) -> str:
    """``repr(value)``, cut to 40 characters."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python prints
        return "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def _polygon_problem(parts: list[Any]) -> str | None:
    for k, part in enumerate(parts):
        if not isinstance(part, list):
            return f"segmentation polygon {k} must be a list of numbers [x0, y0, x1, y1, ...], got {type(part).__name__}"
        if len(part) < MIN_POLYGON_NUMBERS or len(part) % 2:
            return (
                f"segmentation polygon {k} must hold an even count of at least {MIN_POLYGON_NUMBERS} numbers "
                f"(3 vertices or more), got {len(part)}"
            )
        for value in part:
            if not _is_number_type(type(value)):
                return f"segmentation polygon {k} holds {_shown(value)}: coordinates must be numbers (not {type(value).__name__})"
            if not _is_finite(value):
                return f"segmentation polygon {k} holds {_shown(value)}: coordinates must be finite"
    return None


def _rle_problem(rle: dict[str, Any]) -> str | None:
    size, counts = rle["size"], rle["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(_is_count_type(type(v)) and v > 0 for v in size)):
        return f"segmentation RLE size must be [height, width], two positive integers, got {_shown(size)}"
    if isinstance(counts, str):
        return None
    if not isinstance(counts, list):
        return f"segmentation RLE counts must be a list of non-negative integers or a string, got {type(counts).__name__}"
    for value in counts:
        if not (_is_count_type(type(value)) and value >= 0):
            return f"segmentation RLE counts must be non-negative integers, got {_shown(value)}"
    return None


def segmentation_problem(segmentation: Any) -> str | None:
    """Why ``segmentation`` (not None) is not a well-typed COCO segmentation; None when it is."""
    if isinstance(segmentation, list):
        return _polygon_problem(segmentation)
    if isinstance(segmentation, dict) and "size" in segmentation and "counts" in segmentation:
        return _rle_problem(segmentation)
    return f"segmentation must be a list of polygons or an RLE object with size and counts, got {type(segmentation).__name__}"


def _polygons_look_valid(polygons: list[list[Any]]) -> bool:
    """One pass over all polygons at once: True when none can have a problem."""
    parts = list(chain.from_iterable(polygons))
    if not all(type(part) is list and len(part) >= MIN_POLYGON_NUMBERS and not len(part) % 2 for part in parts):
        return False
    values = list(chain.from_iterable(parts))
    if not all(_is_number_type(kind) for kind in set(map(type, values))):
        return False
    try:
        return math.isfinite(sum(values))  # a NaN or infinity carries into the sum (and an overflow only costs time)
    except OverflowError:  # an integer too large for a float
        return False


def segmentation_problems(segmentations: Sequence[Any]) -> dict[int, str]:
    """Index to the problem of each ill-typed segmentation (see :func:`segmentation_problem`).

    Args:
        segmentations: ``segmentation`` values, none of them None.
    """
    polygons = [k for k, s in enumerate(segmentations) if isinstance(s, list)]
    others = [k for k, s in enumerate(segmentations) if not isinstance(s, list)]
    checked = others if _polygons_look_valid([segmentations[k] for k in polygons]) else range(len(segmentations))
    problems = {k: segmentation_problem(segmentations[k]) for k in checked}
    return {k: message for k, message in problems.items() if message is not None}
