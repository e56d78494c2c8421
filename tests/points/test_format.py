"""Tests of the P_N annotation format reader/validator/writer (pointsup.points.format)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.points.format import (
    BOX_TOLERANCE,
    MAX_LISTED_PROBLEMS,
    PointDataset,
    PointFormatError,
    PointInstance,
    check_coco,
    load_point_dataset,
    read_coco_json,
    save_point_dataset,
    validate_coco,
)

SOURCE = "points_train.json"
WIDTH, HEIGHT = 40, 30  # image 1
WIDTH2, HEIGHT2 = 20, 50  # image 2


def make_coco() -> dict[str, Any]:
    """A valid two-image point file: annotations 10 and 11 on image 1, 12 (crowd) and 13 on image 2."""
    return {
        "info": {"description": "test", "year": 2024},
        "licenses": [{"id": 1, "name": "CC"}],
        "images": [
            {"id": 1, "file_name": "a.jpg", "height": HEIGHT, "width": WIDTH},
            {"id": 2, "file_name": "b.jpg", "height": HEIGHT2, "width": WIDTH2},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 3,
                "bbox": [2.5, 3.0, 10.0, 8.25],
                "iscrowd": 0,
                "segmentation": [[2.5, 3.0, 12.5, 3.0, 12.5, 11.25, 2.5, 11.25]],
                "point_coords": [[3, 4], [12, 10], [0, 0]],
                "point_labels": [1, 1, 0],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 7,
                "bbox": [0.0, 0.0, 40.0, 30.0],
                "iscrowd": 0,
                "point_coords": [[39, 29], [20, 15]],
                "point_labels": [0, 1],
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 3,
                "bbox": [1.0, 1.0, 5.0, 5.0],
                "iscrowd": 1,
                "segmentation": {"size": [HEIGHT2, WIDTH2], "counts": [26, 5, 15, 5, 949]},
            },
            {
                "id": 13,
                "image_id": 2,
                "category_id": 7,
                "bbox": [4.0, 10.0, 6.0, 20.0],
                "point_coords": [[5, 12], [9, 29], [19, 49], [4, 10]],
                "point_labels": [1, 0, 0, 1],
            },
        ],
    }


def modified(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    coco = make_coco()
    change(coco)
    return coco


def ann(coco: dict[str, Any], annotation_id: int) -> dict[str, Any]:
    return next(a for a in coco["annotations"] if a["id"] == annotation_id)


def set_ann(annotation_id: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(coco: dict[str, Any]) -> None:
        ann(coco, annotation_id).update(fields)

    return change


def del_ann(annotation_id: int, *keys: str) -> Callable[[dict[str, Any]], None]:
    def change(coco: dict[str, Any]) -> None:
        target = ann(coco, annotation_id)
        for key in keys:
            del target[key]

    return change


def expect_error(coco: dict[str, Any], *fragments: str, require_points: bool = True) -> PointFormatError:
    """validate_coco and check_coco both reject ``coco``; the message names the file and has every fragment."""
    with pytest.raises(PointFormatError) as info:
        validate_coco(coco, SOURCE, require_points=require_points)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert info.value.source == SOURCE
    with pytest.raises(PointFormatError):
        check_coco(coco, SOURCE, require_points=require_points)
    return info.value


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


# --------------------------------------------------------------------------- the valid file


def test_helper_file_is_valid() -> None:
    dataset = validate_coco(make_coco(), SOURCE)
    assert [inst.annotation_id for inst in dataset.instances] == [10, 11, 12, 13]
    assert dataset.source == SOURCE
    assert list(dataset.images) == [1, 2]
    assert dataset.category_names() == {3: "cat", 7: "dog"}
    assert check_coco(make_coco(), SOURCE) == dataset.images


def test_instance_arrays() -> None:
    dataset = validate_coco(make_coco(), SOURCE)
    first = dataset.instances[0]
    assert isinstance(first, PointInstance)
    assert first.point_coords.dtype == np.int64 and first.point_coords.shape == (3, 2)
    assert first.point_labels.dtype == np.int64 and first.point_labels.shape == (3,)
    np.testing.assert_array_equal(first.point_coords, [[3, 4], [12, 10], [0, 0]])
    np.testing.assert_array_equal(first.point_labels, [1, 1, 0])
    assert first.num_points == 3
    assert first.bbox_xywh.dtype == np.float64
    np.testing.assert_array_equal(first.bbox_xywh, [2.5, 3.0, 10.0, 8.25])
    assert first.image_id == 1 and first.category_id == 3 and not first.is_crowd


def test_continuous_point_coords_are_pixel_centres() -> None:
    first = validate_coco(make_coco(), SOURCE).instances[0]
    continuous = first.continuous_point_coords()
    assert continuous.dtype == np.float64
    np.testing.assert_array_equal(continuous, [[3.5, 4.5], [12.5, 10.5], [0.5, 0.5]])
    np.testing.assert_array_equal(continuous, first.point_coords + 0.5)


def test_box_xyxy() -> None:
    first = validate_coco(make_coco(), SOURCE).instances[0]
    assert first.box_xyxy.dtype == np.float64
    np.testing.assert_array_equal(first.box_xyxy, [2.5, 3.0, 12.5, 11.25])


def test_instances_by_image_includes_images_without_annotations() -> None:
    coco = make_coco()
    coco["images"].append({"id": 5, "file_name": "empty.jpg", "height": 10, "width": 10})
    grouped = validate_coco(coco, SOURCE).instances_by_image()
    assert list(grouped) == [1, 2, 5]
    assert [inst.annotation_id for inst in grouped[1]] == [10, 11]
    assert [inst.annotation_id for inst in grouped[2]] == [12, 13]
    assert grouped[5] == []


def test_crowd_annotation_points_are_ignored() -> None:
    # The reference writes points on crowd regions; they are accepted (even if out of range) and dropped.
    coco = modified(set_ann(12, point_coords=[[1, 1], [999, 999]], point_labels=[1, 7]))
    dataset = validate_coco(coco, SOURCE)
    crowd = dataset.instances[2]
    assert crowd.annotation_id == 12 and crowd.is_crowd
    assert crowd.point_coords.shape == (0, 2) and crowd.point_labels.shape == (0,)
    assert crowd.num_points == 0
    written = dataset.to_coco()
    assert "point_coords" not in ann(written, 12) and "point_labels" not in ann(written, 12)


def test_crowd_annotation_without_points_accepted_with_require_points() -> None:
    dataset = validate_coco(make_coco(), SOURCE, require_points=True)
    assert dataset.instances[2].is_crowd and dataset.instances[2].num_points == 0


def test_integral_floats_accepted_as_coords_and_labels() -> None:
    coco = modified(set_ann(10, point_coords=[[12.0, 4], [3, 29.0], [0.0, 0.0]], point_labels=[1.0, 0, 0.0]))
    inst = validate_coco(coco, SOURCE).instances[0]
    assert inst.point_coords.dtype == np.int64
    np.testing.assert_array_equal(inst.point_coords, [[12, 4], [3, 29], [0, 0]])
    np.testing.assert_array_equal(inst.point_labels, [1, 0, 0])


def test_empty_point_lists_are_accepted() -> None:
    inst = validate_coco(modified(set_ann(10, point_coords=[], point_labels=[])), SOURCE).instances[0]
    assert inst.point_coords.shape == (0, 2) and inst.point_labels.shape == (0,)


def test_points_on_the_last_pixel_are_inside() -> None:
    coco = modified(set_ann(10, point_coords=[[WIDTH - 1, HEIGHT - 1], [0, HEIGHT - 1], [WIDTH - 1, 0]], point_labels=[0, 0, 0]))
    np.testing.assert_array_equal(validate_coco(coco, SOURCE).instances[0].point_coords[0], [WIDTH - 1, HEIGHT - 1])


def test_missing_points_accepted_without_require_points() -> None:
    coco = modified(del_ann(10, "point_coords", "point_labels"))
    expect_error(coco, "annotation id 10", "missing point_coords")
    inst = validate_coco(coco, SOURCE, require_points=False).instances[0]
    assert inst.annotation_id == 10
    assert inst.point_coords.shape == (0, 2) and inst.point_coords.dtype == np.int64
    assert inst.point_labels.shape == (0,) and inst.point_labels.dtype == np.int64
    # points present are still checked without require_points
    bad = modified(set_ann(11, point_coords=[[WIDTH, 0]], point_labels=[1]))
    expect_error(bad, "annotation id 11", "outside", require_points=False)


def test_box_within_tolerance_is_accepted() -> None:
    over = BOX_TOLERANCE / 2
    coco = modified(set_ann(11, bbox=[-over, -over, WIDTH + 2 * over, HEIGHT + 2 * over]))
    np.testing.assert_allclose(validate_coco(coco, SOURCE).instances[1].bbox_xywh, [-over, -over, WIDTH + 2 * over, HEIGHT + 2 * over])
    exact = modified(set_ann(11, bbox=[1.0, 2.0, WIDTH - 1.0 + BOX_TOLERANCE, HEIGHT - 2.0 + BOX_TOLERANCE]))
    validate_coco(exact, SOURCE)


def test_integer_boxes_accepted() -> None:
    inst = validate_coco(modified(set_ann(10, bbox=[2, 3, 10, 8])), SOURCE).instances[0]
    assert inst.bbox_xywh.dtype == np.float64
    np.testing.assert_array_equal(inst.bbox_xywh, [2, 3, 10, 8])


# --------------------------------------------------------------------------- reading files


def test_invalid_json_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "images": [1, 2,, 3]\n}\n')
    with pytest.raises(PointFormatError) as info:
        read_coco_json(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "invalid JSON" in message
    assert "line 2" in message and "column" in message
    with pytest.raises(PointFormatError):
        load_point_dataset(path)


def test_truncated_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "truncated.json"
    text = json.dumps(make_coco(), indent=2)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(PointFormatError) as info:
        load_point_dataset(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "invalid JSON" in message
    assert "line" in message and "column" in message


def test_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(PointFormatError) as info:
        load_point_dataset(path)
    assert str(path) in str(info.value) and "not found" in str(info.value)


def test_top_level_list(tmp_path: Path) -> None:
    path = write_json(tmp_path / "list.json", [make_coco()])
    with pytest.raises(PointFormatError) as info:
        load_point_dataset(path)
    assert str(path) in str(info.value) and "JSON object" in str(info.value) and "list" in str(info.value)


def test_folder_path(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.json"
    folder.mkdir()
    with pytest.raises(PointFormatError) as info:
        load_point_dataset(folder)
    assert str(folder) in str(info.value) and "folder" in str(info.value)


def test_load_reports_the_path(tmp_path: Path) -> None:
    path = write_json(tmp_path / "bad.json", modified(set_ann(13, point_labels=[1, 0, 2, 1])))
    with pytest.raises(PointFormatError) as info:
        load_point_dataset(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "annotation id 13" in str(info.value)


# --------------------------------------------------------------------------- top level


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_field(key: str) -> None:
    coco = make_coco()
    del coco[key]
    expect_error(coco, f"'{key}'", "missing")


def test_all_missing_top_level_fields_listed() -> None:
    error = expect_error({"info": {}}, "3 problems", "'images'", "'annotations'", "'categories'")
    assert len(error.problems) == 3


def test_non_list_annotations() -> None:
    expect_error(modified(lambda c: c.update(annotations={"id": 1})), "'annotations' must be a list")


# --------------------------------------------------------------------------- points


@pytest.mark.parametrize(
    "change, fragments",
    [
        (set_ann(13, point_labels=[1, 0, 0]), ["4 point_coords but 3 point_labels"]),
        (set_ann(13, point_coords=[[5, 12]]), ["1 point_coords but 4 point_labels"]),
        (set_ann(13, point_labels=[1, 0, 2, 1]), ["point_labels", "got 2"]),
        (set_ann(13, point_labels=[1, -1, 0, 1]), ["point_labels", "got -1"]),
        (set_ann(13, point_labels=[1, 0, 0.5, 1]), ["point_labels", "got 0.5"]),
        (set_ann(13, point_labels=[1, 0, "1", 1]), ["point_labels", "got '1'"]),
        (set_ann(13, point_labels=[1, 0, None, 1]), ["point_labels", "got None"]),
        (set_ann(13, point_labels=[1, 0, True, 1]), ["point_labels", "got True"]),
        (set_ann(13, point_labels="1001"), ["point_labels"]),
        (set_ann(13, point_coords=[[5, 12], [9.5, 29], [19, 49], [4, 10]]), ["point_coords", "integer"]),
        (set_ann(13, point_coords=[[5, 12.5], [9, 29], [19, 49], [4, 10]]), ["point_coords", "integer"]),
        (set_ann(13, point_coords=[[5, "12"], [9, 29], [19, 49], [4, 10]]), ["point_coords", "integer"]),
        (set_ann(13, point_coords=[[5, 12], [9, 29, 1], [19, 49], [4, 10]]), ["point_coords", "pairs"]),
        (set_ann(13, point_coords=[[5], [9, 29], [19, 49], [4, 10]]), ["point_coords", "pairs"]),
        (set_ann(13, point_coords=[5, 12, 9, 29, 19, 49, 4, 10]), ["point_coords", "pairs"]),
        (set_ann(13, point_coords="5,12"), ["point_coords", "pairs"]),
        (set_ann(13, point_coords=[[WIDTH2, 12], [9, 29], [19, 49], [4, 10]]), ["1 point(s) outside image id 2", "20x50", "[20, 12]"]),
        (set_ann(13, point_coords=[[5, HEIGHT2], [9, 29], [19, 49], [4, 10]]), ["1 point(s) outside image id 2", "[5, 50]"]),
        (set_ann(13, point_coords=[[-1, 12], [9, 29], [19, 49], [4, 10]]), ["1 point(s) outside image id 2", "[-1, 12]"]),
        (set_ann(13, point_coords=[[5, -1], [9, -3], [19, 49], [4, 10]]), ["2 point(s) outside image id 2", "[5, -1]"]),
        (del_ann(13, "point_labels"), ["missing point_labels"]),
        (del_ann(13, "point_coords"), ["missing point_coords"]),
        (del_ann(13, "point_coords", "point_labels"), ["missing point_coords"]),
    ],
    ids=[
        "fewer-labels", "fewer-coords", "label-2", "label-minus-1", "label-0.5", "label-string", "label-none",
        "label-bool", "labels-not-list", "x-12.5", "y-12.5", "coord-string", "coord-triple", "coord-single",
        "coords-flat", "coords-string", "x-eq-width", "y-eq-height", "x-negative", "y-negative",
        "missing-labels", "missing-coords", "missing-both",
    ],
)
def test_bad_points(change: Callable[[dict[str, Any]], None], fragments: list[str]) -> None:
    error = expect_error(modified(change), "annotation id 13", "1 problem:", *fragments)
    assert len(error.problems) == 1


def test_outside_check_uses_each_annotations_own_image() -> None:
    # (30, 25) lies inside image 1 (40x30) but outside image 2 (20x50); (10, 45) the other way round.
    inside_image_1 = modified(set_ann(13, point_coords=[[30, 25], [9, 29], [19, 49], [4, 10]]))
    expect_error(inside_image_1, "annotation id 13", "outside image id 2")
    inside_image_2 = modified(set_ann(11, point_coords=[[10, 45], [20, 15]]))
    expect_error(inside_image_2, "annotation id 11", "outside image id 1", "40x30")


# --------------------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    "bbox, fragment",
    [
        ([1.0, 1.0, 0.0, 5.0], "zero or negative size"),
        ([1.0, 1.0, 5.0, -2.0], "zero or negative size"),
        ([float("nan"), 1.0, 5.0, 5.0], "4 finite numbers"),
        ([1.0, 1.0, float("inf"), 5.0], "4 finite numbers"),
        ([1.0, float("-inf"), 5.0, 5.0], "4 finite numbers"),
        ([1.0, 1.0, 5.0], "4 finite numbers"),
        ([1.0, 1.0, 5.0, 5.0, 1.0], "4 finite numbers"),
        ([], "4 finite numbers"),
        ([1.0, "1", 5.0, 5.0], "4 finite numbers"),
        (["a", "b", "c", "d"], "4 finite numbers"),
        ([1.0, None, 5.0, 5.0], "4 finite numbers"),
        ([[1.0, 1.0], [5.0, 5.0]], "4 finite numbers"),
        ("1,1,5,5", "4 finite numbers"),
        (None, "4 finite numbers"),
        ([WIDTH - 5.0, 1.0, 5.0 + BOX_TOLERANCE + 0.5, 5.0], "outside image id 1 (40x30)"),
        ([1.0, HEIGHT - 5.0, 5.0, 5.0 + BOX_TOLERANCE + 0.5], "outside image id 1"),
        ([-BOX_TOLERANCE - 0.5, 1.0, 5.0, 5.0], "outside image id 1"),
        ([1.0, -BOX_TOLERANCE - 0.01, 5.0, 5.0], "outside image id 1"),
        ([100.0, 100.0, 5.0, 5.0], "outside image id 1"),
    ],
    ids=[
        "zero-width", "negative-height", "nan", "inf", "minus-inf", "three-values", "five-values", "empty",
        "string-inside", "all-strings", "none-inside", "nested", "string", "none", "past-right", "past-bottom",
        "past-left", "past-top", "far-away",
    ],
)
def test_bad_boxes(bbox: Any, fragment: str) -> None:
    error = expect_error(modified(set_ann(11, bbox=bbox)), "annotation id 11", "bbox", fragment)
    assert len(error.problems) == 1


def test_bad_box_among_good_ones_is_named() -> None:
    # the vectorised check must attribute the problem to the right annotation
    coco = modified(set_ann(13, bbox=[4.0, 10.0, 6.0, HEIGHT2]))
    error = expect_error(coco, "annotation id 13", "outside image id 2 (20x50)")
    assert len(error.problems) == 1
    assert "annotation id 10" not in str(error) and "annotation id 11" not in str(error)


# --------------------------------------------------------------------------- iscrowd and segmentation types

POLYGON = [2.5, 3.0, 12.5, 3.0, 12.5, 11.25, 2.5, 11.25]  # annotation 10's polygon
COUNTS = [26, 5, 15, 5, 949]  # annotation 12's uncompressed RLE (image 2 is 20x50)


@pytest.mark.parametrize("value", ["no", "1", 2, -1, None, 0.5, math.nan, [1], {}], ids=repr)
def test_iscrowd_must_be_zero_or_one(value: Any) -> None:
    error = expect_error(modified(set_ann(11, iscrowd=value)), "annotation id 11", "iscrowd must be 0 or 1", f"got {value!r}")
    assert len(error.problems) == 1


@pytest.mark.parametrize("value, crowd", [(0, False), (1, True), (0.0, False), (1.0, True), (False, False), (True, True)])
def test_iscrowd_accepts_zero_one_and_booleans(value: Any, crowd: bool) -> None:
    coco = modified(set_ann(11, iscrowd=value))
    assert next(i for i in validate_coco(coco, SOURCE).instances if i.annotation_id == 11).is_crowd is crowd
    assert validate_coco(modified(del_ann(11, "iscrowd")), SOURCE).instances[1].is_crowd is False  # absent: 0


@pytest.mark.parametrize(
    "segmentation, fragments",
    [
        ([["2.5", *POLYGON[1:]]], ["polygon 0 holds '2.5'", "numbers (not str)"]),
        ([[True, *POLYGON[1:]]], ["polygon 0 holds True", "not bool"]),
        ([[None, *POLYGON[1:]]], ["polygon 0 holds None", "not NoneType"]),
        ([POLYGON, [math.nan, *POLYGON[1:]]], ["polygon 1 holds nan", "finite"]),
        ([[math.inf, *POLYGON[1:]]], ["polygon 0 holds inf", "finite"]),
        ([[*POLYGON[:-1], -math.inf]], ["polygon 0 holds -inf", "finite"]),
        ([[10**400, *POLYGON[1:]]], ["polygon 0 holds", "finite"]),
        ([POLYGON[:7]], ["polygon 0", "even count of at least 6", "got 7"]),
        ([POLYGON[:4]], ["polygon 0", "even count of at least 6", "got 4"]),
        ([POLYGON, "2.5 3.0 12.5"], ["polygon 1 must be a list", "got str"]),
        (POLYGON, ["polygon 0 must be a list", "got float"]),
        ("2.5 3.0 12.5 3.0", ["segmentation must be a list of polygons or an RLE", "got str"]),
        (42, ["segmentation must be", "got int"]),
        ({"counts": COUNTS}, ["segmentation must be", "got dict"]),
    ],
    ids=["string", "bool", "null", "nan", "inf", "minus-inf", "huge-int", "odd-count", "four-numbers", "part-string",
         "flat-list", "string", "number", "rle-without-size"],
)
def test_bad_polygons_name_annotation_and_field(segmentation: Any, fragments: list[str]) -> None:
    error = expect_error(modified(set_ann(10, segmentation=segmentation)), "annotation id 10: segmentation", *fragments,
                         require_points=False)
    assert len(error.problems) == 1


@pytest.mark.parametrize(
    "rle, fragments",
    [
        ({"size": [HEIGHT2, WIDTH2], "counts": [26, -5, 25, 5, 949]}, ["RLE counts", "non-negative integers", "got -5"]),
        ({"size": [HEIGHT2, WIDTH2], "counts": [26, 5.0, 15, 5, 949]}, ["RLE counts", "got 5.0"]),
        ({"size": [HEIGHT2, WIDTH2], "counts": [26, True, 15, 5, 949]}, ["RLE counts", "got True"]),
        ({"size": [HEIGHT2, WIDTH2], "counts": [26, None, 15, 5, 949]}, ["RLE counts", "got None"]),
        ({"size": [HEIGHT2, WIDTH2], "counts": None}, ["RLE counts", "list of non-negative integers or a string", "NoneType"]),
        ({"size": [HEIGHT2, WIDTH2], "counts": 1000}, ["RLE counts", "got int"]),
        ({"size": [HEIGHT2], "counts": COUNTS}, ["RLE size", "two positive integers", "got [50]"]),
        ({"size": [HEIGHT2, 0], "counts": COUNTS}, ["RLE size", "got [50, 0]"]),
        ({"size": [50.0, 20], "counts": COUNTS}, ["RLE size", "got [50.0, 20]"]),
        ({"size": [True, 20], "counts": COUNTS}, ["RLE size", "got [True, 20]"]),
        ({"size": "50x20", "counts": "abc"}, ["RLE size", "got '50x20'"]),
    ],
    ids=["negative", "float", "bool", "null", "counts-null", "counts-number", "size-one", "size-zero", "size-float",
         "size-bool", "size-string"],
)
def test_bad_rles_name_annotation_and_field(rle: dict[str, Any], fragments: list[str]) -> None:
    error = expect_error(modified(set_ann(12, segmentation=rle)), "annotation id 12: segmentation", *fragments)
    assert len(error.problems) == 1


@pytest.mark.parametrize(
    "segmentation",
    [None, [], [[2, 3, 12, 3, 12, 11]], [POLYGON, [1, 1, 2.5, 1, 2, 2]], {"size": [HEIGHT, WIDTH], "counts": "PPYo0"}],
    ids=["null", "no-polygon", "integers", "two-parts", "compressed"],
)
def test_well_typed_segmentations_are_accepted(segmentation: Any) -> None:
    dataset = validate_coco(modified(set_ann(10, segmentation=segmentation)), SOURCE)
    assert dataset.instances[0].segmentation == segmentation


def test_one_bad_polygon_among_many_is_the_only_one_named() -> None:
    def change(coco: dict[str, Any]) -> None:
        for k in range(50):
            coco["annotations"].append({**ann(coco, 10), "id": 100 + k, "segmentation": [list(POLYGON), list(POLYGON)]})
        ann(coco, 130)["segmentation"][1][3] = math.nan
        ann(coco, 12)["iscrowd"] = "yes"

    error = expect_error(modified(change), "annotation id 130: segmentation polygon 1 holds nan", "annotation id 12: iscrowd")
    assert len(error.problems) == 2


def test_bad_types_are_reported_when_loading_a_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "bad.json", modified(set_ann(10, iscrowd="no", segmentation=[[1, 2, 3, 4]])))
    with pytest.raises(PointFormatError, match=r"bad\.json: 1 problem:\n  - annotation id 10: iscrowd must be 0 or 1"):
        load_point_dataset(path)


# --------------------------------------------------------------------------- ids and structure


def test_unknown_image_id() -> None:
    expect_error(modified(set_ann(11, image_id=99)), "annotation id 11", "unknown image_id 99")


def test_unknown_category_id() -> None:
    expect_error(modified(set_ann(11, category_id=1)), "annotation id 11", "unknown category_id 1")


def test_duplicate_annotation_ids() -> None:
    error = expect_error(modified(set_ann(13, id=10)), "annotation id 10", "duplicate annotation id")
    assert len(error.problems) == 1


def test_duplicate_image_ids() -> None:
    def change(coco: dict[str, Any]) -> None:
        coco["images"].append({"id": 2, "file_name": "c.jpg", "height": 5, "width": 5})

    expect_error(modified(change), "image id 2", "duplicate image id")


def test_duplicate_category_ids() -> None:
    expect_error(modified(lambda c: c["categories"].append({"id": 3, "name": "again"})), "category id 3", "duplicate")


@pytest.mark.parametrize("width, height", [(0, 30), (-5, 30), (40, 0), (40, -1)])
def test_image_with_non_positive_size(width: int, height: int) -> None:
    def change(coco: dict[str, Any]) -> None:
        coco["images"][0].update(width=width, height=height)

    expect_error(modified(change), "image id 1", "positive")


def test_image_missing_fields() -> None:
    def change(coco: dict[str, Any]) -> None:
        del coco["images"][1]["width"]

    expect_error(modified(change), "id 2", "missing width")


@pytest.mark.parametrize(
    "keys, name, fragment",
    [
        (("bbox",), "annotation id 11", "missing bbox"),
        (("image_id",), "annotation id 11", "missing image_id"),
        (("category_id",), "annotation id 11", "missing category_id"),
        (("id",), "annotation #1", "missing id"),
        (("id", "bbox"), "annotation #1", "missing id, bbox"),
    ],
)
def test_missing_annotation_fields(keys: tuple[str, ...], name: str, fragment: str) -> None:
    error = expect_error(modified(del_ann(11, *keys)), name, fragment)
    assert len(error.problems) == 1


@pytest.mark.parametrize("field", ["id", "image_id", "category_id"])
def test_list_valued_id_is_a_format_error(field: str) -> None:
    expect_error(modified(set_ann(11, **{field: [11]})), "annotation")



def test_huge_coordinate_is_a_format_error() -> None:
    expect_error(modified(set_ann(11, point_coords=[[2**70, 0], [20, 15]])), "annotation id 11", "too large")


def test_boolean_in_bbox_is_rejected() -> None:
    expect_error(modified(set_ann(11, bbox=[True, 1.0, 5.0, 5.0])), "annotation id 11", "bbox")


def test_annotation_not_an_object() -> None:
    expect_error(modified(lambda c: c["annotations"].append([1, 2, 3])), "annotation #4", "must be an object")


# --------------------------------------------------------------------------- several problems


def test_several_problems_are_all_listed() -> None:
    def change(coco: dict[str, Any]) -> None:
        ann(coco, 10)["point_labels"] = [1, 2, 0]
        ann(coco, 11)["bbox"] = [0.0, 0.0, 0.0, 1.0]
        ann(coco, 13)["image_id"] = 42
        coco["images"][0]["height"] = 0

    error = expect_error(modified(change), "annotation id 13", "unknown image_id 42", "image id 1")
    message = str(error)
    # image 1 is invalid, so annotations 10 and 11 now point to an unknown image.
    assert "annotation id 10" in message and "annotation id 11" in message
    assert f"{len(error.problems)} problems:" in message
    assert len(error.problems) == 4
    assert "more" not in message


def test_several_independent_problems() -> None:
    def change(coco: dict[str, Any]) -> None:
        ann(coco, 10)["point_labels"] = [1, 2, 0]
        ann(coco, 11)["bbox"] = [0.0, 0.0, 0.0, 1.0]
        ann(coco, 13)["category_id"] = 5

    error = expect_error(modified(change), "3 problems:", "annotation id 10", "got 2", "annotation id 11", "zero or negative size",
                         "annotation id 13", "unknown category_id 5")
    assert len(error.problems) == 3
    assert len(str(error).splitlines()) == 4


def test_problem_listing_is_capped() -> None:
    extra = 7
    count = MAX_LISTED_PROBLEMS + extra

    def change(coco: dict[str, Any]) -> None:
        for k in range(count):
            coco["annotations"].append(
                {"id": 100 + k, "image_id": 1, "category_id": 3, "bbox": [1, 1, 2, 2], "point_coords": [[1, 1]], "point_labels": [5]}
            )

    error = expect_error(modified(change), f"{count} problems:", f"... and {extra} more", "annotation id 100")
    message = str(error)
    assert len(error.problems) == count
    assert sum(1 for line in message.splitlines() if line.startswith("  - ")) == MAX_LISTED_PROBLEMS
    assert f"annotation id {100 + MAX_LISTED_PROBLEMS - 1}:" in message
    assert f"annotation id {100 + MAX_LISTED_PROBLEMS}:" not in message


def test_exactly_max_problems_has_no_tail() -> None:
    error = PointFormatError("f.json", [f"p{k}" for k in range(MAX_LISTED_PROBLEMS)])
    assert "more" not in str(error)
    assert str(error).startswith(f"f.json: {MAX_LISTED_PROBLEMS} problems:")
    assert str(PointFormatError("f.json", ["only"])) == "f.json: 1 problem:\n  - only"


# --------------------------------------------------------------------------- saving


def assert_same_dataset(a: PointDataset, b: PointDataset) -> None:
    assert a.images == b.images
    assert a.categories == b.categories
    assert a.extra == b.extra
    assert len(a.instances) == len(b.instances)
    for x, y in zip(a.instances, b.instances):
        assert (x.annotation_id, x.image_id, x.category_id, x.is_crowd) == (y.annotation_id, y.image_id, y.category_id, y.is_crowd)
        np.testing.assert_array_equal(x.bbox_xywh, y.bbox_xywh)
        assert x.point_coords.shape == y.point_coords.shape and x.point_coords.dtype == y.point_coords.dtype
        np.testing.assert_array_equal(x.point_coords, y.point_coords)
        assert x.point_labels.shape == y.point_labels.shape and x.point_labels.dtype == y.point_labels.dtype
        np.testing.assert_array_equal(x.point_labels, y.point_labels)
        assert x.segmentation == y.segmentation


def test_save_load_round_trip(tmp_path: Path) -> None:
    original = validate_coco(make_coco(), SOURCE)
    path = tmp_path / "out" / "points.json"
    save_point_dataset(original, path)
    loaded = load_point_dataset(path)
    assert_same_dataset(original, loaded)
    assert loaded.source == str(path)
    assert loaded.extra == {"info": {"description": "test", "year": 2024}, "licenses": [{"id": 1, "name": "CC"}]}
    assert loaded.instances[2].is_crowd and not loaded.instances[0].is_crowd
    assert loaded.instances[0].segmentation == [[2.5, 3.0, 12.5, 3.0, 12.5, 11.25, 2.5, 11.25]]
    assert loaded.instances[1].segmentation is None
    # the file itself: plain COCO, points as integer lists, crowd without points
    data = json.loads(path.read_text())
    assert ann(data, 10)["point_coords"] == [[3, 4], [12, 10], [0, 0]]
    assert ann(data, 10)["point_labels"] == [1, 1, 0]
    assert ann(data, 12)["iscrowd"] == 1 and "point_coords" not in ann(data, 12)
    assert ann(data, 13)["iscrowd"] == 0
    assert data["info"] == {"description": "test", "year": 2024}
    # saving the loaded dataset again gives the same file
    second = tmp_path / "again.json"
    save_point_dataset(loaded, second)
    assert json.loads(second.read_text()) == data


def test_round_trip_of_points_on_crowd_drops_them(tmp_path: Path) -> None:
    dataset = validate_coco(modified(set_ann(12, point_coords=[[1, 1]], point_labels=[1])), SOURCE)
    path = tmp_path / "p.json"
    save_point_dataset(dataset, path)
    assert "point_coords" not in ann(json.loads(path.read_text()), 12)
    assert_same_dataset(dataset, load_point_dataset(path))


def test_round_trip_without_points(tmp_path: Path) -> None:
    dataset = validate_coco(modified(del_ann(10, "point_coords", "point_labels")), SOURCE, require_points=False)
    path = tmp_path / "p.json"
    save_point_dataset(dataset, path)
    # written with empty point lists, so now valid even with require_points
    loaded = load_point_dataset(path)
    assert ann(json.loads(path.read_text()), 10)["point_coords"] == []
    assert_same_dataset(dataset, loaded)


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    dataset = validate_coco(make_coco(), SOURCE)
    path = tmp_path / "points.json"
    save_point_dataset(dataset, path)
    save_point_dataset(dataset, path)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.json"]


def test_failed_save_keeps_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "points.json"
    save_point_dataset(validate_coco(make_coco(), SOURCE), path)
    before = path.read_bytes()
    dataset = validate_coco(make_coco(), SOURCE)
    dataset.extra["unserialisable"] = object()
    with pytest.raises((TypeError, ValueError)):
        save_point_dataset(dataset, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.json"]


def test_failed_save_creates_no_file(tmp_path: Path) -> None:
    dataset = validate_coco(make_coco(), SOURCE)
    dataset.extra["unserialisable"] = [1, object()]
    with pytest.raises((TypeError, ValueError)):
        save_point_dataset(dataset, tmp_path / "new.json")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- property


@st.composite
def point_datasets(draw: st.DrawFn) -> dict[str, Any]:
    num_images = draw(st.integers(1, 3))
    images, annotations = [], []
    next_id = draw(st.integers(1, 10**9))
    for image_id in range(1, num_images + 1):
        width, height = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": height, "width": width})
        for _ in range(draw(st.integers(0, 3))):
            n = draw(st.integers(0, 12))
            xs = draw(st.lists(st.integers(0, width - 1), min_size=n, max_size=n))
            ys = draw(st.lists(st.integers(0, height - 1), min_size=n, max_size=n))
            labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
            x0 = draw(st.floats(0, width, allow_nan=False, exclude_max=True))
            y0 = draw(st.floats(0, height, allow_nan=False, exclude_max=True))
            w = draw(st.floats(min_value=1e-3, max_value=max(width - x0, 1e-3), allow_nan=False))
            h = draw(st.floats(min_value=1e-3, max_value=max(height - y0, 1e-3), allow_nan=False))
            annotations.append(
                {
                    "id": next_id,
                    "image_id": image_id,
                    "category_id": draw(st.sampled_from([1, 2])),
                    "bbox": [x0, y0, w, h],
                    "iscrowd": 0,
                    "point_coords": [[x, y] for x, y in zip(xs, ys)],
                    "point_labels": labels,
                }
            )
            next_id += 1
    return {"images": images, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "annotations": annotations}


@settings(max_examples=60, deadline=None)
@given(point_datasets())
def test_property_save_load_round_trips_exactly(coco: dict[str, Any]) -> None:
    dataset = validate_coco(coco, SOURCE)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.json"
        save_point_dataset(dataset, path)
        loaded = load_point_dataset(path)
        assert os.listdir(folder) == ["p.json"]
    assert_same_dataset(dataset, loaded)
    for original, inst in zip(coco["annotations"], loaded.instances):
        assert inst.annotation_id == original["id"]
        assert inst.point_coords.tolist() == original["point_coords"] or (not original["point_coords"] and inst.num_points == 0)
        assert inst.point_labels.tolist() == original["point_labels"]
        assert inst.bbox_xywh.tolist() == original["bbox"]  # floats survive exactly
        assert all(math.isfinite(v) for v in inst.bbox_xywh)


def test_other_fields_survive_a_round_trip(tmp_path: Path) -> None:
    coco = make_coco()
    coco["categories"][0]["supercategory"] = "animal"
    coco["images"][0]["license"] = 3
    coco["annotations"][0]["area"] = 12.5
    coco["annotations"][0]["attributes"] = {"occluded": True}
    source = tmp_path / "in.json"
    source.write_text(json.dumps(coco))
    target = tmp_path / "out.json"
    save_point_dataset(load_point_dataset(source), target)
    written = json.loads(target.read_text())
    assert written["categories"][0]["supercategory"] == "animal"
    assert written["images"][0]["license"] == 3
    assert written["annotations"][0]["area"] == 12.5
    assert written["annotations"][0]["attributes"] == {"occluded": True}
