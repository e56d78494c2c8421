"""Tests of the synthetic COCO shape dataset generator (pointsup.data.synthetic)."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from scipy import ndimage

from pointsup.data.synthetic import (
    CATEGORY_NAMES,
    MIN_VISIBLE_AREA,
    MIN_VISIBLE_FRACTION,
    SyntheticDataset,
    encode_png,
    generate_synthetic_dataset,
    render_synthetic_image,
)

# pycocotools' decode triggers a NumPy 2 DeprecationWarning that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

NUM_IMAGES = 16
IMAGE_SIZE = 192


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    out = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_dataset(out, num_images=NUM_IMAGES, seed=7, image_size=IMAGE_SIZE, show_progress=False)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _bbox_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def test_layout_and_counts(dataset: SyntheticDataset, tmp_path: Path) -> None:
    assert dataset.image_dir == dataset.root / "images"
    assert dataset.train_json == dataset.root / "instances_train.json"
    assert dataset.val_json == dataset.root / "instances_val.json"
    assert dataset.num_images == NUM_IMAGES
    train, val = _load(dataset.train_json), _load(dataset.val_json)
    assert [im["id"] for im in train["images"]] == list(range(1, 13))  # round(16 * 0.25) = 4 in val
    assert [im["id"] for im in val["images"]] == list(range(13, 17))
    annotations = train["annotations"] + val["annotations"]
    assert [a["id"] for a in annotations] == list(range(1, len(annotations) + 1))
    assert dataset.num_instances == len(annotations)
    expected_categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CATEGORY_NAMES)]
    for doc in (train, val):
        assert doc["categories"] == expected_categories
        assert doc["licenses"] == [] and {"description", "version"} <= set(doc["info"])


def test_written_files_are_readable_by_others_as_open_would_make_them(dataset: SyntheticDataset) -> None:
    import os

    umask = os.umask(0o022)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in [dataset.train_json, dataset.val_json, *sorted(dataset.image_dir.iterdir())[:3]]:
        assert path.stat().st_mode & 0o777 == expected, path


def test_coco_annotations_are_consistent(dataset: SyntheticDataset) -> None:
    seen_categories: set[int] = set()
    for path in (dataset.train_json, dataset.val_json):
        coco = COCO(str(path))
        for image_id, image_info in coco.imgs.items():
            assert image_info["file_name"] == f"{image_id:06d}.png"
            with Image.open(dataset.image_dir / image_info["file_name"]) as img:
                assert img.size == (image_info["width"], image_info["height"]) == (IMAGE_SIZE, IMAGE_SIZE)
                assert img.mode == "RGB"
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            assert 2 <= len(anns) <= 8
            union = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.int32)
            for ann in anns:
                assert isinstance(ann["segmentation"]["counts"], str)
                assert ann["iscrowd"] == 0 and isinstance(ann["area"], float)
                mask = coco.annToMask(ann).astype(bool)
                assert mask.sum() == ann["area"] >= MIN_VISIBLE_AREA
                assert ann["bbox"] == _bbox_of(mask)
                assert all(isinstance(v, float) for v in ann["bbox"])
                union += mask
                seen_categories.add(ann["category_id"])
            assert union.max() <= 1, "masks of one image overlap"
    assert seen_categories == set(range(1, len(CATEGORY_NAMES) + 1))


def test_same_seed_is_deterministic_and_other_seed_differs(dataset: SyntheticDataset, tmp_path: Path) -> None:
    again = generate_synthetic_dataset(tmp_path / "a", num_images=NUM_IMAGES, seed=7, image_size=IMAGE_SIZE, show_progress=False)
    assert again.train_json.read_bytes() == dataset.train_json.read_bytes()
    assert again.val_json.read_bytes() == dataset.val_json.read_bytes()
    for name in ("000001.png", "000009.png", "000016.png"):
        first = np.asarray(Image.open(dataset.image_dir / name))
        second = np.asarray(Image.open(again.image_dir / name))
        assert np.array_equal(first, second)
    other = generate_synthetic_dataset(tmp_path / "b", num_images=4, seed=8, image_size=IMAGE_SIZE, show_progress=False)
    assert other.train_json.read_bytes() != dataset.train_json.read_bytes()
    assert not np.array_equal(
        np.asarray(Image.open(other.image_dir / "000001.png")), np.asarray(Image.open(dataset.image_dir / "000001.png"))
    )


def test_images_do_not_depend_on_num_images(dataset: SyntheticDataset, tmp_path: Path) -> None:
    small = generate_synthetic_dataset(tmp_path, num_images=3, seed=7, image_size=IMAGE_SIZE, val_fraction=0.0, show_progress=False)
    big_anns = _load(dataset.train_json)["annotations"]
    small_anns = _load(small.train_json)["annotations"]
    assert small_anns == big_anns[: len(small_anns)]
    assert _load(small.val_json)["images"] == []
    for name in ("000001.png", "000003.png"):
        assert np.array_equal(np.asarray(Image.open(small.image_dir / name)), np.asarray(Image.open(dataset.image_dir / name)))


@pytest.mark.parametrize(
    ("num_images", "val_fraction", "num_val"),
    [(1, 0.25, 0), (1, 0.6, 0), (2, 0.1, 1), (5, 0.25, 1), (8, 0.5, 4), (3, 0.0, 0)],
)
def test_split_sizes(tmp_path: Path, num_images: int, val_fraction: float, num_val: int) -> None:
    ds = generate_synthetic_dataset(tmp_path, num_images=num_images, image_size=64, val_fraction=val_fraction, show_progress=False)
    val_ids = [im["id"] for im in _load(ds.val_json)["images"]]
    train_ids = [im["id"] for im in _load(ds.train_json)["images"]]
    assert train_ids + val_ids == list(range(1, num_images + 1))
    assert len(val_ids) == num_val


def test_render_objects_are_visible_parts() -> None:
    for index in range(10):
        image, objects = render_synthetic_image(np.random.default_rng([3, index]), 256)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
        assert 2 <= len(objects) <= 8
        union = np.zeros((256, 256), dtype=np.int32)
        for obj in objects:
            assert obj.mask.shape == (256, 256) and obj.mask.dtype == bool
            assert 1 <= obj.category_id <= len(CATEGORY_NAMES)
            assert obj.area >= MIN_VISIBLE_AREA
            assert obj.full_area >= obj.area >= MIN_VISIBLE_FRACTION * obj.full_area
            assert obj.bbox == _bbox_of(obj.mask)
            union += obj.mask
        assert union.max() <= 1
        assert objects[-1].area == objects[-1].full_area  # the top object is never occluded


def test_shapes_are_non_convex_and_rings_have_holes() -> None:
    ratios: dict[int, list[float]] = defaultdict(list)
    ring_holes: list[bool] = []
    for index in range(40):
        _, objects = render_synthetic_image(np.random.default_rng([11, index]), 256)
        for obj in objects:
            _, _, w, h = obj.bbox
            ratios[obj.category_id].append(obj.area / (w * h))
            if CATEGORY_NAMES[obj.category_id - 1] == "ring":
                has_hole = bool(ndimage.binary_fill_holes(obj.mask).sum() > obj.area)
                ring_holes.append(has_hole)
                if obj.area == obj.full_area:
                    assert has_hole, "an unoccluded ring must enclose background"
    assert set(ratios) == set(range(1, len(CATEGORY_NAMES) + 1))
    for category_id, values in ratios.items():
        assert np.mean(values) < 0.8, (CATEGORY_NAMES[category_id - 1], np.mean(values))
    assert len(ring_holes) >= 10 and np.mean(ring_holes) > 0.5


def test_encode_png_round_trips() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    assert np.array_equal(decoded, image)


def test_segmentation_is_pycocotools_rle(dataset: SyntheticDataset) -> None:
    ann = _load(dataset.train_json)["annotations"][0]
    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode("ascii")}
    mask = mask_utils.decode(rle)
    assert ann["segmentation"]["size"] == [IMAGE_SIZE, IMAGE_SIZE]
    assert mask_utils.encode(np.asfortranarray(mask))["counts"].decode("ascii") == ann["segmentation"]["counts"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": 0},
        {"num_images": -3},
        {"num_images": 2.5},
        {"image_size": 63},
        {"image_size": 0},
        {"val_fraction": 1.0},
        {"val_fraction": -0.1},
        {"val_fraction": float("nan")},
        {"seed": -1},
    ],
)
def test_invalid_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate_synthetic_dataset(tmp_path, show_progress=False, **kwargs)
    assert not (tmp_path / "images").exists()


def test_render_rejects_small_images() -> None:
    with pytest.raises(ValueError, match="image_size"):
        render_synthetic_image(np.random.default_rng(0), 32)
