"""Import of Pascal VOC XML annotations (one ``.xml`` file per image).

Each ``object`` gives a ``name`` (its class) and a ``bndbox`` of 1-based, inclusive pixel
indices (:func:`~pointsup.formats.geometry.voc_to_xyxy`); ``difficult`` is kept as a field of
the annotation. The image size is the file's ``size``; when that is absent or zero it is read
from the image (``--images``). VOC keeps masks in separate PNG files: they are not read, so the
result has boxes only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from pointsup.formats.common import (
    CocoBuilder,
    ConversionError,
    ImportedObject,
    parse_number,
    parse_xml,
    read_image_size,
    require_image,
)
from pointsup.formats.geometry import voc_to_xyxy


def _text(element: ElementTree.Element, path: str) -> str | None:
    found = element.find(path)
    return found.text.strip() if found is not None and found.text is not None else None


def _size(root: ElementTree.Element, source: Path, images: Path | None, file_name: str) -> tuple[int, int]:
    width, height = _text(root, "size/width"), _text(root, "size/height")
    if width and height:
        w, h = parse_number(width, source, "size/width"), parse_number(height, source, "size/height")
        if w >= 1 and h >= 1 and w.is_integer() and h.is_integer():
            return int(w), int(h)
        if w != 0 or h != 0:
            raise ConversionError(source, f"size {width}x{height} is not a positive whole number of pixels")
    if images is None:
        raise ConversionError(source, "no image size in the file: give --images to read it from the image")
    return read_image_size(images / file_name, source)


def read_voc_file(source: Path, builder: CocoBuilder, images: Path | None) -> None:
    """Add the image and objects of one VOC XML file to ``builder``."""
    root = parse_xml(source)
    if root.tag != "annotation":
        raise ConversionError(source, f"not a Pascal VOC file: the root element is <{root.tag}>, not <annotation>")
    file_name = _text(root, "filename")
    if not file_name:
        raise ConversionError(source, "no <filename>")
    require_image(images, file_name, source)
    width, height = _size(root, source, images, file_name)
    image_id = builder.add_image(file_name, width, height)
    for number, element in enumerate(root.findall("object"), start=1):
        what = f"object #{number}"
        name = _text(element, "name")
        if not name:
            raise ConversionError(source, f"{what}: no <name>")
        if element.find("bndbox") is None:
            raise ConversionError(source, f"{what}: no <bndbox>")
        corners = [
            parse_number(_text(element, f"bndbox/{key}"), source, f"{what} {key}") for key in ("xmin", "ymin", "xmax", "ymax")
        ]
        extra = {}
        difficult = _text(element, "difficult")
        if difficult is not None:
            extra["difficult"] = int(parse_number(difficult, source, f"{what} difficult"))
        # a VOC box covers whole pixels: xmax = xmin is one pixel wide, xmax < xmin is degenerate
        builder.add_object(image_id, ImportedObject(name, box=voc_to_xyxy(*corners), extra=extra), source, what)


def read_voc(source: Path, images: Path | None) -> CocoBuilder:
    """Read a VOC XML file, or every ``.xml`` file of a folder (sorted), into a builder."""
    files = sorted(source.rglob("*.xml")) if source.is_dir() else [source]
    if not files:
        raise ConversionError(source, "no .xml files in the folder")
    builder = CocoBuilder()
    for path in files:
        read_voc_file(path, builder, images)
    return builder
