"""Tests of the fixed train/val split by image id (pointsup.data.split)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.data.split import split_by_image_id
from tests.conftest import DATASETS, require

CATEGORIES = [{"id": 1, "name": "date"}, {"id": 2, "name": "fig"}, {"id": 3, "name": "hazelnut"}]


def make_coco(image_ids: list[int], annotation_images: list[int]) -> dict[str, Any]:
    """A COCO dict with the given image ids and one annotation per entry of ``annotation_images``."""
    return {
        "info": {"description": "test"},
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 6} for i in image_ids],
        "annotations": [{"id": k + 1, "image_id": i, "category_id": 1 + k % 3, "bbox": [0, 0, 2, 2], "iscrowd": 0}
                        for k, i in enumerate(annotation_images)],
        "categories": CATEGORIES,
    }


def test_fruits_nuts_sized_split_holds_out_every_third_id() -> None:
    coco = make_coco(list(range(18)), [i for i in range(18) for _ in range(2)])
    train, val = split_by_image_id(coco)
    assert [im["id"] for im in val["images"]] == [2, 5, 8, 11, 14, 17]
    assert [im["id"] for im in train["images"]] == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16]
    assert len(train["annotations"]) == 24 and len(val["annotations"]) == 12


def test_keeps_categories_and_other_entries() -> None:
    train, val = split_by_image_id(make_coco([0, 1, 2], [0, 2]))
    for part in (train, val):
        assert part["categories"] == CATEGORIES
        assert part["info"] == {"description": "test"}


def test_input_is_not_modified() -> None:
    coco = make_coco(list(range(7)), [0, 2, 2, 5, 6])
    before = copy.deepcopy(coco)
    split_by_image_id(coco)
    assert coco == before


def test_annotations_of_unknown_images_are_dropped() -> None:
    train, val = split_by_image_id(make_coco([0, 1, 2], [0, 2, 99]))
    assert [a["image_id"] for a in train["annotations"]] == [0]
    assert [a["image_id"] for a in val["annotations"]] == [2]


def test_image_order_does_not_matter() -> None:
    ids = [5, 0, 17, 3, 2]
    train, val = split_by_image_id(make_coco(ids, ids))
    assert [im["id"] for im in val["images"]] == [5, 17, 2]  # original order kept
    assert [im["id"] for im in train["images"]] == [0, 3]


@pytest.mark.parametrize(("val_every", "val_remainder"), [(1, 0), (0, 0), (3, 3), (3, -1)])
def test_rejects_a_bad_rule(val_every: int, val_remainder: int) -> None:
    with pytest.raises(ValueError, match="val_"):
        split_by_image_id(make_coco([0, 1], []), val_every, val_remainder)


def test_rejects_non_integer_ids() -> None:
    with pytest.raises(ValueError, match="integers"):
        split_by_image_id(make_coco(["a", "b"], []))  # type: ignore[list-item]


@settings(max_examples=60, deadline=None)
@given(
    image_ids=st.lists(st.integers(0, 10_000), unique=True, max_size=40),
    picks=st.lists(st.integers(0, 1_000), max_size=80),
    val_every=st.integers(2, 7),
    data=st.data(),
)
def test_split_is_disjoint_complete_and_deterministic(image_ids: list[int], picks: list[int], val_every: int,
                                                      data: st.DataObject) -> None:
    val_remainder = data.draw(st.integers(0, val_every - 1))
    annotation_images = [image_ids[p % len(image_ids)] for p in picks] if image_ids else []
    coco = make_coco(image_ids, annotation_images)
    train, val = split_by_image_id(coco, val_every, val_remainder)
    train_ids = {im["id"] for im in train["images"]}
    val_ids = {im["id"] for im in val["images"]}
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(image_ids)
    assert all(i % val_every == val_remainder for i in val_ids)
    assert all(i % val_every != val_remainder for i in train_ids)
    # every annotation lands in the split of its image, exactly once
    assert all(a["image_id"] in train_ids for a in train["annotations"])
    assert all(a["image_id"] in val_ids for a in val["annotations"])
    assert sorted(a["id"] for a in train["annotations"] + val["annotations"]) == [a["id"] for a in coco["annotations"]]
    assert train["categories"] == val["categories"] == CATEGORIES
    again = split_by_image_id(copy.deepcopy(coco), val_every, val_remainder)
    assert json.dumps(again) == json.dumps((train, val))


def test_fruits_nuts() -> None:
    path = require(DATASETS / "fruits_nuts" / "data" / "trainval.json")
    coco = json.loads(path.read_text())
    train, val = split_by_image_id(coco)
    assert len(train["images"]) == 12 and len(val["images"]) == 6
    assert sorted(im["id"] for im in val["images"]) == [2, 5, 8, 11, 14, 17]
    assert len(train["annotations"]) + len(val["annotations"]) == len(coco["annotations"])
    assert len(train["categories"]) == 3
