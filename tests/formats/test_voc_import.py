"""Pascal VOC XML written here from the ground truth, imported back into COCO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pointsup.formats.common import ConversionError
from pointsup.formats.registry import import_annotations
from tests.formats.conftest import Truth
from tests.formats.helpers import assert_same_objects


def write_voc(coco: dict[str, Any], folder: Path, with_size: bool = True) -> None:
    """One XML file per image; a box (x, y, w, h) covers the 1-based pixels x+1 .. x+w."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    folder.mkdir(parents=True, exist_ok=True)
    for image in coco["images"]:
        objects = ""
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            objects += (
                f"<object><name>{names[ann['category_id']]}</name><difficult>0</difficult><bndbox>"
                f"<xmin>{x + 1!r}</xmin><ymin>{y + 1!r}</ymin><xmax>{x + w!r}</xmax><ymax>{y + h!r}</ymax></bndbox></object>"
            )
        size = (
            f"<size><width>{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>" if with_size else ""
        )
        text = f"<annotation><folder>VOC</folder><filename>{image['file_name']}</filename>{size}{objects}</annotation>"
        (folder / f"{image['id']}.xml").write_text(text)


def test_voc_boxes_are_read_one_based_and_inclusive(truth: Truth, tmp_path: Path) -> None:
    write_voc(truth.coco, tmp_path / "Annotations")
    coco = import_annotations("voc", tmp_path / "Annotations").coco
    assert coco is not None
    assert_same_objects(coco, truth.coco, polygons=False)
    assert all(a["difficult"] == 0 for a in coco["annotations"])


def test_sizes_missing_from_the_files_are_read_from_the_images(truth: Truth, tmp_path: Path) -> None:
    write_voc(truth.coco, tmp_path / "Annotations", with_size=False)
    coco = import_annotations("voc", tmp_path / "Annotations", truth.images).coco
    assert coco is not None
    assert_same_objects(coco, truth.coco, polygons=False)
    with pytest.raises(ConversionError, match="no image size in the file: give --images"):
        import_annotations("voc", tmp_path / "Annotations")


def voc_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "bad.xml"
    path.write_text(f"<annotation><filename>a.png</filename><size><width>40</width><height>30</height></size>{body}</annotation>")
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>4</xmax><ymax>9</ymax></bndbox></object>", "object #1: degenerate box"),
        ("<object><name>cat</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>x</xmax><ymax>9</ymax></bndbox></object>", "object #1 xmax: not a number"),
        ("<object><name>cat</name></object>", "object #1: no <bndbox>"),
        ("<object><name>cat</name><bndbox><xmin>5</xmin>", "malformed XML at line 1"),
    ],
)  # fmt: skip
def test_bad_voc_files_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = voc_file(tmp_path, body)
    with pytest.raises(ConversionError) as error:
        import_annotations("voc", path)
    assert error.value.one_line().startswith(f"{path}: {message}")


def test_a_single_pixel_voc_box_is_one_pixel_wide(tmp_path: Path) -> None:
    path = voc_file(
        tmp_path, "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1</xmax><ymax>1</ymax></bndbox></object>"
    )
    coco = import_annotations("voc", path).coco
    assert coco is not None and coco["annotations"][0]["bbox"] == [0, 0, 1, 1]


def test_a_missing_image_is_named(truth: Truth, tmp_path: Path) -> None:
    path = voc_file(tmp_path, "")
    path.write_text(path.read_text().replace("a.png", "zebra.png"))
    with pytest.raises(ConversionError, match=r"bad.xml: its image zebra.png is not in"):
        import_annotations("voc", path, truth.images)
