"""Properties of the coordinate conversions (pointsup.formats.geometry)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from pointsup.formats import geometry

sizes = st.integers(min_value=1, max_value=10_000)
fractions = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def image_and_box(draw: st.DrawFn) -> tuple[int, int, tuple[float, float, float, float]]:
    width, height = draw(sizes), draw(sizes)
    xs = sorted(draw(st.lists(fractions, min_size=2, max_size=2)))
    ys = sorted(draw(st.lists(fractions, min_size=2, max_size=2)))
    return width, height, (xs[0] * width, ys[0] * height, xs[1] * width, ys[1] * height)


def close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9 * max(scale, 1.0))


@given(image_and_box())
def test_yolo_round_trip(case: tuple[int, int, tuple[float, float, float, float]]) -> None:
    width, height, box = case
    back = geometry.yolo_to_xyxy(*geometry.xyxy_to_yolo(*box, width, height), width, height)
    assert all(close(a, b, max(width, height)) for a, b in zip(back, box))


@given(image_and_box())
def test_yolo_values_are_fractions_of_the_image(case: tuple[int, int, tuple[float, float, float, float]]) -> None:
    width, height, box = case
    cx, cy, w, h = geometry.xyxy_to_yolo(*box, width, height)
    assert all(-1e-12 <= v <= 1 + 1e-12 for v in (cx, cy, w, h))
    assert close(w * width, box[2] - box[0], width) and close(h * height, box[3] - box[1], height)


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 500), st.integers(0, 500))
def test_voc_pixels_are_one_based_and_inclusive(x: int, y: int, w: int, h: int) -> None:
    xmin, ymin, xmax, ymax = x + 1, y + 1, x + 1 + w, y + 1 + h  # pixels x .. x + w (0-based), inclusive
    x0, y0, x1, y1 = geometry.voc_to_xyxy(xmin, ymin, xmax, ymax)
    assert (x0, y0) == (x, y)
    assert (x1 - x0, y1 - y0) == (w + 1, h + 1)  # a box of one VOC pixel is one pixel wide
    assert geometry.xyxy_to_voc(x0, y0, x1, y1) == (xmin, ymin, xmax, ymax)


@given(sizes, st.floats(min_value=0, max_value=1, allow_nan=False))
def test_percent_round_trip(size: int, fraction: float) -> None:
    pixels = fraction * size
    assert close(geometry.percent_to_pixels(geometry.pixels_to_percent(pixels, size), size), pixels, size)
    assert 0 <= geometry.pixels_to_percent(pixels, size) <= 100 + 1e-9


@given(sizes, st.data())
def test_a_pixel_centre_in_percent_reads_back_as_its_pixel(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    percent = geometry.pixels_to_percent(geometry.pixel_centre(index), size)
    assert geometry.pixel_index(geometry.percent_to_pixels(percent, size), size) == index


@given(sizes, st.floats(min_value=-2, max_value=20_002, allow_nan=False))
def test_pixel_index_is_the_pixel_holding_the_point(size: int, coordinate: float) -> None:
    index = geometry.pixel_index(coordinate, size)
    assert 0 <= index < size
    if 0 <= coordinate < size:
        assert index <= coordinate < index + 1


@given(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=3, max_size=12))
def test_polygon_bounds_contain_every_vertex(vertices: list[tuple[float, float]]) -> None:
    flat = [v for xy in vertices for v in xy]
    x0, y0, x1, y1 = geometry.polygon_bounds(flat)
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in vertices)
    assert geometry.polygon_area(flat) >= 0


def test_polygon_area_of_a_rectangle() -> None:
    assert geometry.polygon_area([1, 1, 4, 1, 4, 3, 1, 3]) == 6
