"""Label Studio JSON: ground truth written here (percent units) and imported; P_N files exported and read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pointsup.formats.common import ConversionError
from pointsup.formats.labelstudio import image_file_name
from pointsup.formats.registry import export_points, import_annotations
from pointsup.points.format import load_point_dataset, read_coco_json
from tests.formats.conftest import Truth
from tests.formats.helpers import assert_same_objects


def write_labelstudio(coco: dict[str, Any], path: Path) -> None:
    """One task per image (uploaded-file references); rectangles and polygons in percent of the
    width and height, each polygon an object of its own (no parentID), as Label Studio exports them."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    tasks = []
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        size = {"original_width": w, "original_height": h, "image_rotation": 0, "to_name": "image"}
        result: list[dict[str, Any]] = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            polygon = ann["segmentation"][0]
            points = [[100 * polygon[j] / w, 100 * polygon[j + 1] / h] for j in range(0, len(polygon), 2)]
            result.append(
                {
                    "id": f"p{ann['id']}",
                    "type": "polygonlabels",
                    "from_name": "poly",
                    **size,
                    "value": {"points": points, "closed": True, "polygonlabels": [names[ann["category_id"]]]},
                }
            )
        result.append({"id": "c1", "type": "choices", "from_name": "quality", "to_name": "image", "value": {"choices": ["ok"]}})
        reference = f"/data/upload/3/0a1b2c3d-{Path(image['file_name']).name}"
        if "/" in image["file_name"]:
            reference = f"/data/local-files/?d={image['file_name']}"
        tasks.append(
            {
                "id": image["id"],
                "data": {"image": reference},
                "annotations": [{"was_cancelled": True, "result": []}, {"result": result}],
            }
        )
    path.write_text(json.dumps(tasks))


def test_label_studio_polygons_are_imported(truth: Truth, tmp_path: Path) -> None:
    write_labelstudio(truth.coco, tmp_path / "export.json")
    result = import_annotations("labelstudio", tmp_path / "export.json", truth.images)
    assert result.coco is not None
    assert_same_objects(result.coco, truth.coco, tolerance=1e-9)
    assert result.skipped == {"choices": 3}


def test_export_to_label_studio_and_back_keeps_boxes_points_and_labels(points_file: Path, tmp_path: Path) -> None:
    payload = export_points("labelstudio", load_point_dataset(points_file)).payload
    assert payload is not None
    tasks = json.loads(payload)
    assert {
        r["value"]["keypointlabels"][0] for t in tasks for r in t["annotations"][0]["result"] if r["type"] == "keypointlabels"
    } == {"object", "background"}
    (tmp_path / "out.json").write_bytes(payload)
    back = import_annotations("labelstudio", tmp_path / "out.json").coco
    assert back is not None
    assert_same_objects(back, read_coco_json(points_file), tolerance=1e-9, points=True)


@pytest.mark.parametrize(
    ("reference", "file_name"),
    [
        ("/data/upload/3/0a1b2c3d-cat.jpg", "cat.jpg"),
        ("/data/local-files/?d=train/cat%201.jpg", "train/cat 1.jpg"),
        ("https://example.org/images/cat.jpg?x=1", "cat.jpg"),
        ("sub/cat.jpg", "sub/cat.jpg"),
    ],
)
def test_image_references(reference: str, file_name: str) -> None:
    assert image_file_name(reference) == file_name


def labelstudio_file(tmp_path: Path, result: list[dict[str, Any]]) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"data": {"image": "a.png", "width": 40, "height": 30}, "annotations": [{"result": result}]}]))
    return path


def rectangle(x: float, w: float, **extra: Any) -> dict[str, Any]:
    value = {"x": x, "y": 10, "width": w, "height": 10, "rectanglelabels": ["cat"]}
    return {"id": "r", "type": "rectanglelabels", "value": value, **extra}


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([rectangle(10, 0)], "task #1, object #1: degenerate box"),
        ([rectangle(10, 10), {"type": "keypointlabels", "parentID": "zz", "value": {"x": 1, "y": 1, "keypointlabels": ["object"]}}], "task #1, region #2: its parentID 'zz' names no rectangle"),
        ([rectangle(10, 10), {"type": "keypointlabels", "parentID": "r", "value": {"x": 1, "y": 1, "keypointlabels": ["maybe"]}}], "task #1, region #2: a keypoint's label must be object or background"),
        ([{**rectangle(10, 10), "value": {**rectangle(10, 10)["value"], "rotation": 45}}], "task #1, region #1: rotated rectangles"),
    ],
)  # fmt: skip
def test_bad_label_studio_files_are_named(tmp_path: Path, result: list[dict[str, Any]], message: str) -> None:
    path = labelstudio_file(tmp_path, result)
    with pytest.raises(ConversionError) as error:
        import_annotations("labelstudio", path)
    assert error.value.one_line().startswith(f"{path}: {message}")


def test_malformed_json_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"data": ')
    with pytest.raises(ConversionError, match=r"bad.json: malformed JSON"):
        import_annotations("labelstudio", path)
