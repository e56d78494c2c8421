"""Ground truth for the format tests: a tiny COCO dataset with real image files, and the
comparison of a converted file with it (objects matched by image file name and order)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

#: (file name, width, height): non-square, and different, so that a swapped width and height shows
IMAGES = [("a.png", 40, 30), ("sub/b.jpg", 50, 64), ("c.png", 24, 24)]
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog house"}]
#: (image index, category id, polygon): vertices at awkward fractions, inside the images
OBJECTS = [
    (0, 3, [2.25, 3.5, 20.75, 1.0, 30.125, 17.5, 9.0, 25.0]),
    (0, 7, [25.5, 10.0, 39.0, 12.25, 33.0, 29.5]),
    (1, 7, [0.0, 0.0, 49.5, 0.5, 48.0, 63.75, 3.25, 40.0]),
    (1, 3, [10.0, 20.0, 14.0, 20.0, 14.0, 31.0, 10.0, 31.0]),
]


def bounds_xywh(polygon: list[float]) -> list[float]:
    xs, ys = polygon[0::2], polygon[1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def ground_truth() -> dict[str, Any]:
    """The COCO ground truth: boxes are the polygons' bounds; image ids and annotation ids not from 1."""
    images = [{"id": 10 + k, "file_name": name, "width": w, "height": h} for k, (name, w, h) in enumerate(IMAGES)]
    annotations = [
        {
            "id": 100 + k,
            "image_id": 10 + i,
            "category_id": c,
            "bbox": bounds_xywh(p),
            "area": 1.0,
            "iscrowd": 0,
            "segmentation": [p],
        }
        for k, (i, c, p) in enumerate(OBJECTS)
    ]
    return {"images": images, "categories": copy.deepcopy(CATEGORIES), "annotations": annotations}


def write_images(folder: Path, coco: dict[str, Any]) -> Path:
    """An image file of the right size for every image of ``coco``, under ``folder``."""
    for image in coco["images"]:
        path = folder / image["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (image["width"], image["height"]), (90, 120, 150)).save(path)
    return folder


def objects_by_image(coco: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """file name -> its annotations in file order, each with its category name as ``name``."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {i["id"]: i["file_name"] for i in coco["images"]}
    grouped: dict[str, list[dict[str, Any]]] = {name: [] for name in files.values()}
    for ann in coco["annotations"]:
        grouped[files[ann["image_id"]]].append({**ann, "name": names[ann["category_id"]]})
    return grouped


def assert_same_objects(
    actual: dict[str, Any], expected: dict[str, Any], *, tolerance: float = 1e-9, polygons: bool = True, points: bool = False
) -> None:
    """Same images (names, sizes), and per image the same objects in order: category name,
    box (within ``tolerance``), polygons (when ``polygons``), points and labels (when ``points``)."""
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in actual["images"]}
    assert sizes == {i["file_name"]: (i["width"], i["height"]) for i in expected["images"]}
    got, want = objects_by_image(actual), objects_by_image(expected)
    for file_name, objects in want.items():
        assert len(got[file_name]) == len(objects), file_name
        for a, e in zip(got[file_name], objects):
            assert a["name"] == e["name"]
            np.testing.assert_allclose(a["bbox"], e["bbox"], rtol=0, atol=tolerance)
            assert bool(a.get("iscrowd", 0)) == bool(e.get("iscrowd", 0))
            if polygons:
                assert len(a["segmentation"]) == len(e["segmentation"])
                for pa, pe in zip(a["segmentation"], e["segmentation"]):
                    np.testing.assert_allclose(pa, pe, rtol=0, atol=tolerance)
            if points:
                assert a.get("point_coords", []) == e.get("point_coords", [])
                assert a.get("point_labels", []) == e.get("point_labels", [])
