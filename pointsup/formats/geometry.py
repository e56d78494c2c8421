"""Coordinate conversions between pointsup's conventions and those of the other formats.

pointsup (docs/conventions.md, section 1) works in continuous image coordinates: pixel
``(row i, column j)`` is the square ``[j, j + 1) x [i, i + 1)``, the image spans ``[0, W] x [0, H]``
and a box is ``(x0, y0, x1, y1)``. A stored P_N point is an integer pixel index ``d`` standing for
the pixel centre ``d + 0.5``. Each function here maps one format's numbers to that convention or
back; docs/formats.md states the conventions in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Box = tuple[float, float, float, float]


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> Box:
    """COCO ``[x, y, w, h]`` to ``(x0, y0, x1, y1)``."""
    return (x, y, x + w, y + h)


def xyxy_to_xywh(x0: float, y0: float, x1: float, y1: float) -> Box:
    """``(x0, y0, x1, y1)`` to COCO ``[x, y, w, h]``."""
    return (x0, y0, x1 - x0, y1 - y0)


def yolo_to_xyxy(cx: float, cy: float, w: float, h: float, width: int, height: int) -> Box:
    """YOLO's normalised ``(centre x, centre y, width, height)`` (fractions of the image width
    and height) to a box in pixels."""
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def xyxy_to_yolo(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Box:
    """A box in pixels to YOLO's normalised ``(centre x, centre y, width, height)``."""
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def normalised_to_pixels(values: Sequence[float], width: int, height: int) -> list[float]:
    """YOLO segmentation ``x1 y1 x2 y2 ...`` (fractions) to pixel coordinates."""
    return [v * (width if k % 2 == 0 else height) for k, v in enumerate(values)]


def voc_to_xyxy(xmin: float, ymin: float, xmax: float, ymax: float) -> Box:
    """Pascal VOC's 1-based inclusive pixel box to a continuous box.

    VOC names the first and the last pixel column and row of the object, counting from 1: the
    pixels ``xmin .. xmax`` cover ``[xmin - 1, xmax)`` in continuous coordinates.
    """
    return (xmin - 1, ymin - 1, xmax, ymax)


def xyxy_to_voc(x0: float, y0: float, x1: float, y1: float) -> Box:
    """A continuous box to Pascal VOC's 1-based inclusive pixel box (inverse of :func:`voc_to_xyxy`)."""
    return (x0 + 1, y0 + 1, x1, y1)


def percent_to_pixels(value: float, size: int) -> float:
    """Label Studio's percent of the image width (or height) to pixels."""
    return value * size / 100.0


def pixels_to_percent(value: float, size: int) -> float:
    """Pixels to Label Studio's percent of the image width (or height)."""
    return value * 100.0 / size


def pixel_centre(index: int) -> float:
    """The continuous coordinate of the centre of pixel ``index``: ``index + 0.5``."""
    return index + 0.5


def pixel_index(coordinate: float, size: int) -> int:
    """The pixel holding the continuous ``coordinate``, clamped to ``0 .. size - 1`` (a point on
    the image's far border belongs to the last pixel)."""
    return min(max(math.floor(coordinate), 0), size - 1)


def polygon_bounds(flat: Sequence[float]) -> Box:
    """The bounding box of a polygon given as ``[x1, y1, x2, y2, ...]``."""
    xs, ys = flat[0::2], flat[1::2]
    return (min(xs), min(ys), max(xs), max(ys))


def polygon_area(flat: Sequence[float]) -> float:
    """The area of a simple polygon ``[x1, y1, x2, y2, ...]`` (shoelace formula)."""
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[k] * ys[(k + 1) % n] - xs[(k + 1) % n] * ys[k] for k in range(n))) / 2.0
