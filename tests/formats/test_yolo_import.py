"""YOLO labels written here from the ground truth, imported back into COCO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pointsup.formats.common import ConversionError
from pointsup.formats.registry import import_annotations
from tests.formats.conftest import Truth
from tests.formats.helpers import assert_same_objects


def write_yolo(coco: dict[str, Any], labels: Path, segmentation: bool) -> list[str]:
    """One label file per image: normalised centre and size, or normalised polygon vertices;
    class index = position of the category; returns the class names."""
    names = [c["name"] for c in coco["categories"]]
    index = {c["id"]: k for k, c in enumerate(coco["categories"])}
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        lines = []
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            if segmentation:
                polygon = ann["segmentation"][0]
                values = [v / (w if k % 2 == 0 else h) for k, v in enumerate(polygon)]
            else:
                x, y, bw, bh = ann["bbox"]
                values = [(x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]
            lines.append(" ".join([str(index[ann["category_id"]]), *(repr(v) for v in values)]))
        path = labels / Path(image["file_name"]).with_suffix(".txt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return names


def test_detection_labels_give_the_boxes(truth: Truth, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    names = write_yolo(truth.coco, labels, segmentation=False)
    (labels / "classes.txt").write_text("\n".join(names) + "\n")
    coco = import_annotations("yolo", labels, truth.images).coco
    assert coco is not None
    assert_same_objects(coco, truth.coco, polygons=False)
    assert [c["name"] for c in coco["categories"]] == names
    assert not any("segmentation" in a for a in coco["annotations"])


def test_segmentation_labels_give_polygons_and_their_bounds(truth: Truth, tmp_path: Path) -> None:
    labels = tmp_path / "dataset" / "labels" / "train"
    names = write_yolo(truth.coco, labels, segmentation=True)
    # Ultralytics layout: data.yaml two folders up, names as an index -> name mapping
    (tmp_path / "dataset" / "data.yaml").write_text("names:\n" + "".join(f"  {k}: {n}\n" for k, n in enumerate(names)))
    coco = import_annotations("yolo", labels, truth.images).coco
    assert coco is not None
    assert_same_objects(coco, truth.coco)


def test_an_image_without_a_label_file_has_no_objects(truth: Truth, tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    write_yolo(truth.coco, labels, segmentation=False)
    (labels / "sub" / "b.txt").unlink()
    coco = import_annotations("yolo", labels, truth.images, names=_names(tmp_path)).coco
    assert coco is not None
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 2


def _names(tmp_path: Path) -> Path:
    path = tmp_path / "names.txt"
    path.write_text("cat\ndog house\n")
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 0.5 0.5 0.1 0.1", "class index 2 out of range"),
        ("0 0.5 0.5 0.0 0.1", "degenerate box"),
        ("0 0.5 0.5 0.1", "expected 'class cx cy w h'"),
        ("zero 0.5 0.5 0.1 0.1", "not a class index"),
        ("0 1.5 0.5 0.2 0.2", "box [56.0, 12.0, 64.0, 18.0] lies outside the 40x30 image"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, truth: Truth, line: str, message: str) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(f"0 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(ConversionError) as error:
        import_annotations("yolo", labels, truth.images, names=_names(tmp_path))
    assert error.value.one_line().startswith(f"{labels / 'a.txt'}: line 2: {message}")


def test_a_label_file_without_its_image_is_named(tmp_path: Path, truth: Truth) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "zebra.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(ConversionError, match="zebra.txt: its image zebra.* is missing"):
        import_annotations("yolo", labels, truth.images, names=_names(tmp_path))


def test_class_names_are_required(tmp_path: Path, truth: Truth) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    with pytest.raises(ConversionError, match="no class names"):
        import_annotations("yolo", labels, truth.images)
    with pytest.raises(ConversionError, match="need --images"):
        import_annotations("yolo", labels, None)
