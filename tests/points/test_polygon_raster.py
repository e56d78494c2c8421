"""The point-wise polygon rasteriser must agree with pycocotools pixel for pixel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pointsup.points.polygon_raster import PolygonBatch, polygon_values_at
from tests.conftest import DATASETS, require


def reference_mask(parts: list[list[float]], height: int, width: int) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(parts, height, width)))


def values_everywhere(parts: list[list[float]], height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    batch = PolygonBatch.from_segmentations([parts])
    owner = np.zeros(xs.size, dtype=np.int64)
    return polygon_values_at(batch, np.array([height]), owner, xs.ravel(), ys.ravel()).reshape(height, width)


coordinate = st.floats(min_value=-8.0, max_value=48.0, allow_nan=False, width=64)
polygon_part = st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=9).map(lambda pts: [v for p in pts for v in p])


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(polygon_part, min_size=1, max_size=3), height=st.integers(1, 40), width=st.integers(1, 40))
def test_random_polygons_match_pycocotools_everywhere(parts, height, width):
    """Self-intersecting, out-of-image, multi-part polygons: every pixel agrees."""
    np.testing.assert_array_equal(values_everywhere(parts, height, width), reference_mask(parts, height, width))


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(
        st.lists(st.tuples(st.integers(-2, 30), st.integers(-2, 30)), min_size=3, max_size=8).map(
            lambda pts: [float(v) for p in pts for v in p]
        ),
        min_size=1,
        max_size=2,
    )
)
def test_integer_vertices_match_pycocotools(parts):
    """Vertices on pixel corners hit the rounding ties of the scan conversion."""
    np.testing.assert_array_equal(values_everywhere(parts, 28, 28), reference_mask(parts, 28, 28))


@pytest.mark.parametrize(
    "relative",
    ["coco_mini/annotations/instances_val2017.json", "balloon/instances_val.json", "fruits_nuts/data/trainval.json"],
)
def test_real_polygons_match_pycocotools_in_their_boxes(relative):
    data = json.loads(require(DATASETS / relative).read_text())
    images = {image["id"]: image for image in data["images"]}
    annotations = [a for a in data["annotations"] if isinstance(a["segmentation"], list)][:150]
    rng = np.random.default_rng(0)
    owners, xs, ys, truth = [], [], [], []
    for k, ann in enumerate(annotations):
        image = images[ann["image_id"]]
        height, width = image["height"], image["width"]
        mask = reference_mask(ann["segmentation"], height, width)
        x, y, w, h = ann["bbox"]
        px = np.clip(np.floor(x - 2 + rng.random(400) * (w + 4)).astype(int), 0, width - 1)
        py = np.clip(np.floor(y - 2 + rng.random(400) * (h + 4)).astype(int), 0, height - 1)
        owners.append(np.full(400, k))
        xs.append(px)
        ys.append(py)
        truth.append(mask[py, px])
    heights = np.array([images[a["image_id"]]["height"] for a in annotations])
    batch = PolygonBatch.from_segmentations([a["segmentation"] for a in annotations])
    values = polygon_values_at(batch, heights, np.concatenate(owners), np.concatenate(xs), np.concatenate(ys))
    np.testing.assert_array_equal(values, np.concatenate(truth))


def test_pixels_given_in_any_order_and_repeated():
    parts = [[2.0, 2.0, 20.0, 3.0, 11.0, 18.0]]
    mask = reference_mask(parts, 24, 24)
    rng = np.random.default_rng(1)
    xs, ys = rng.integers(0, 24, 500), rng.integers(0, 24, 500)
    batch = PolygonBatch.from_segmentations([parts, parts])
    owner = rng.integers(0, 2, 500)
    values = polygon_values_at(batch, np.array([24, 24]), owner, xs, ys)
    np.testing.assert_array_equal(values, mask[ys, xs])
