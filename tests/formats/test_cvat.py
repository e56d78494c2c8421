"""CVAT for images 1.1 XML: ground truth written here and imported; P_N files exported and read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pointsup.formats.common import ConversionError
from pointsup.formats.registry import export_points, import_annotations
from pointsup.points.format import load_point_dataset, read_coco_json
from tests.formats.conftest import Truth
from tests.formats.helpers import assert_same_objects


def write_cvat(coco: dict[str, Any], path: Path) -> None:
    """Boxes (continuous corners) and polygons of one object share a group id; CVAT's 2-decimal
    rounding is not applied, the values are written exactly."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labels = "".join(f"<label><name>{c['name']}</name></label>" for c in coco["categories"])
    body = ""
    for k, image in enumerate(coco["images"]):
        shapes = ""
        for group, ann in enumerate((a for a in coco["annotations"] if a["image_id"] == image["id"]), start=1):
            x, y, w, h = ann["bbox"]
            label = names[ann["category_id"]]
            shapes += (
                f'<box label="{label}" xtl="{x!r}" ytl="{y!r}" xbr="{x + w!r}" ybr="{y + h!r}" occluded="0" group_id="{group}"/>'
            )
            polygon = ann["segmentation"][0]
            points = ";".join(f"{polygon[j]!r},{polygon[j + 1]!r}" for j in range(0, len(polygon), 2))
            shapes += f'<polygon label="{label}" points="{points}" occluded="0" group_id="{group}"/>'
        shapes += '<polyline label="cat" points="1,1;2,2"/>'
        body += (
            f'<image id="{k}" name="{image["file_name"]}" width="{image["width"]}" height="{image["height"]}">{shapes}</image>'
        )
    path.write_text(
        f"<?xml version='1.0' encoding='utf-8'?><annotations><version>1.1</version><meta><task><labels>{labels}</labels></task></meta>{body}</annotations>"
    )


def test_cvat_boxes_and_polygons_are_imported(truth: Truth, tmp_path: Path) -> None:
    write_cvat(truth.coco, tmp_path / "annotations.xml")
    result = import_annotations("cvat", tmp_path / "annotations.xml", truth.images)
    assert result.coco is not None
    assert_same_objects(result.coco, truth.coco)
    assert result.skipped == {"polyline": 3}


def test_export_to_cvat_and_back_keeps_boxes_points_and_labels(points_file: Path, tmp_path: Path) -> None:
    payload = export_points("cvat", load_point_dataset(points_file)).payload
    assert payload is not None and b'<attribute name="point_label">background</attribute>' in payload
    (tmp_path / "out.xml").write_bytes(payload)
    back = import_annotations("cvat", tmp_path / "out.xml").coco
    assert back is not None
    assert_same_objects(back, read_coco_json(points_file), tolerance=0, points=True)
    assert [c["name"] for c in back["categories"]] == ["cat", "dog house"]


def cvat_file(tmp_path: Path, shapes: str) -> Path:
    path = tmp_path / "bad.xml"
    path.write_text(
        f'<annotations><version>1.1</version><image id="0" name="a.png" width="40" height="30">{shapes}</image></annotations>'
    )
    return path


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ('<box label="cat" xtl="5" ytl="5" xbr="5" ybr="9"/>', "image a.png, shape: degenerate box"),
        ('<points label="cat" points="3,4"><attribute name="point_label">object</attribute></points>', "image a.png: a points shape without a group_id"),
        ('<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9" group_id="1"/><points label="cat" points="3,4" group_id="1"/>', "image a.png, <points> #2: a points shape needs the attribute point_label"),
        ('<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9" rotation="30"/>', "image a.png, <box> #1: rotated boxes"),
        ('<box label="cat" xtl="1" ytl="1" xbr="9" ybr="9"', "malformed XML"),
    ],
)  # fmt: skip
def test_bad_cvat_files_are_named(tmp_path: Path, shapes: str, message: str) -> None:
    path = cvat_file(tmp_path, shapes)
    with pytest.raises(ConversionError) as error:
        import_annotations("cvat", path)
    assert error.value.one_line().startswith(f"{path}: {message}")


def test_entity_declarations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><annotations>&x;</annotations>')
    with pytest.raises(ConversionError, match="entity declarations are not accepted"):
        import_annotations("cvat", path)
