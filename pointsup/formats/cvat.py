"""CVAT for images 1.1 XML: import of boxes, polygons and labelled points; export of P_N files.

CVAT uses continuous pixel coordinates, as pointsup does: a box is ``xtl, ytl, xbr, ybr`` and a
polygon ``points="x1,y1;x2,y2;..."``. Shapes of one object share a ``group_id``; a shape with no
group (or group 0) is an object of its own. A point is a ``points`` shape in its object's group
with the attribute :data:`~pointsup.formats.constants.CVAT_POINT_ATTRIBUTE` (``object`` or
``background``); the pixel holding the point is the stored index, and the export writes each
point at its pixel's centre, one shape per point so that their order survives. A crowd box has
the attribute :data:`~pointsup.formats.constants.CVAT_CROWD_ATTRIBUTE` set to ``1`` (or ``true``).
Other shapes (masks, polylines, ellipses, cuboids, skeletons, tags) and tracks are skipped and
counted. Rotated boxes are refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from pointsup.formats.common import (
    CocoBuilder,
    ConversionError,
    ImportedObject,
    parse_number,
    parse_xml,
    point_index,
    require_image,
)
from pointsup.formats.constants import (
    CVAT_CROWD_ATTRIBUTE,
    CVAT_POINT_ATTRIBUTE,
    CVAT_VERSION,
    POINT_LABEL_NAMES,
    POINT_LABEL_VALUES,
)
from pointsup.formats.geometry import pixel_centre, xywh_to_xyxy
from pointsup.points.format import PointDataset

#: shapes read; every other child of an <image> is skipped
_SHAPES = ("box", "polygon", "points")
_TRUE = ("1", "true", "yes")


def _attributes(shape: ElementTree.Element) -> dict[str, str]:
    return {a.get("name", ""): (a.text or "").strip() for a in shape.findall("attribute")}


def _parse_points(text: str | None, source: Path, what: str) -> list[float]:
    flat: list[float] = []
    for pair in (text or "").split(";"):
        parts = pair.split(",")
        if len(parts) != 2:
            raise ConversionError(source, f"{what}: points must read 'x1,y1;x2,y2;...', got {pair.strip()[:40]!r}")
        flat.extend(parse_number(p, source, what) for p in parts)
    return flat


def _read_shape(shape: ElementTree.Element, obj: ImportedObject, source: Path, what: str, size: tuple[int, int]) -> None:
    attributes = _attributes(shape)
    if shape.tag == "box":
        if obj.box is not None:
            raise ConversionError(source, f"{what}: a second box in the same group")
        if parse_number(shape.get("rotation", "0"), source, f"{what} rotation") % 360 != 0:
            raise ConversionError(source, f"{what}: rotated boxes are not supported")
        x0, y0, x1, y1 = (parse_number(shape.get(k), source, f"{what} {k}") for k in ("xtl", "ytl", "xbr", "ybr"))
        obj.box = (x0, y0, x1, y1)
        obj.is_crowd = attributes.get(CVAT_CROWD_ATTRIBUTE, "0").lower() in _TRUE
    elif shape.tag == "polygon":
        obj.polygons.append(_parse_points(shape.get("points"), source, what))
    else:
        name = attributes.get(CVAT_POINT_ATTRIBUTE, "").lower()
        if name not in POINT_LABEL_VALUES:
            raise ConversionError(
                source, f"{what}: a points shape needs the attribute {CVAT_POINT_ATTRIBUTE} = object or background"
            )
        flat = _parse_points(shape.get("points"), source, what)
        for k in range(0, len(flat), 2):
            obj.points.append(point_index(flat[k], flat[k + 1], *size, source, what))
            obj.labels.append(POINT_LABEL_VALUES[name])


def _read_image(element: ElementTree.Element, builder: CocoBuilder, source: Path, images: Path | None) -> None:
    name = element.get("name")
    if not name:
        raise ConversionError(source, "an <image> without a name")
    what = f"image {name}"
    width, height = (parse_number(element.get(k), source, f"{what} {k}") for k in ("width", "height"))
    if not (width >= 1 and height >= 1 and width.is_integer() and height.is_integer()):
        raise ConversionError(source, f"{what}: size {width:g}x{height:g} is not a positive whole number of pixels")
    require_image(images, name, source)
    image_id = builder.add_image(name, int(width), int(height))
    objects: dict[tuple[str, int], ImportedObject] = {}
    for index, shape in enumerate(element):
        if shape.tag not in _SHAPES:
            if shape.tag != "attribute":
                builder.skip(shape.tag)
            continue
        label = shape.get("label")
        if not label:
            raise ConversionError(source, f"{what}: a <{shape.tag}> without a label")
        group = int(parse_number(shape.get("group_id") or "0", source, f"{what} group_id"))
        if shape.tag == "points" and not group:
            raise ConversionError(source, f"{what}: a points shape without a group_id: which object does it belong to?")
        key = ("group", group) if group else ("shape", index)
        obj = objects.setdefault(key, ImportedObject(label))
        if shape.tag != "points" and obj.box is None and not obj.polygons:
            obj.category = label  # the object's class is that of its box or polygon
        _read_shape(shape, obj, source, f"{what}, <{shape.tag}> #{index + 1}", (int(width), int(height)))
    for (kind, number), obj in objects.items():
        builder.add_object(image_id, obj, source, f"{what}, {'group ' + str(number) if kind == 'group' else 'shape'}")


def read_cvat(source: Path, images: Path | None) -> CocoBuilder:
    """Read a CVAT for images 1.1 XML file into a builder (categories in the order of the labels
    in its ``meta``, then of first use)."""
    if source.is_dir():
        raise ConversionError(source, "a CVAT input is one XML file (annotations.xml), not a folder")
    root = parse_xml(source)
    if root.tag != "annotations":
        raise ConversionError(source, f"not a CVAT XML file: the root element is <{root.tag}>, not <annotations>")
    version = root.findtext("version")
    if version is not None and version.strip() != CVAT_VERSION:
        raise ConversionError(source, f"CVAT XML version {version.strip()}, expected {CVAT_VERSION}")
    builder = CocoBuilder()
    for label in root.iterfind("meta//labels/label"):
        name = label.findtext("name")
        if name:
            builder.category_id(name.strip())
    for _ in root.findall("track"):
        builder.skip("track")
    for element in root.findall("image"):
        _read_image(element, builder, source, images)
    return builder


def _number(value: float) -> str:
    """The shortest text that reads back as exactly ``value``."""
    return repr(float(value))


def _sub(parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str) -> ElementTree.Element:
    element = ElementTree.SubElement(parent, tag, attributes)
    element.text = text
    return element


def _meta(root: ElementTree.Element, dataset: PointDataset) -> None:
    task = _sub(_sub(root, "meta"), "task")
    _sub(task, "name", "pointsup export")
    _sub(task, "size", str(len(dataset.images)))
    _sub(task, "mode", "annotation")
    labels = _sub(task, "labels")
    for category in dataset.categories:
        label = _sub(labels, "label")
        _sub(label, "name", category.name)
        attributes = _sub(label, "attributes")
        for name, kind, default, values in (
            (CVAT_POINT_ATTRIBUTE, "select", POINT_LABEL_NAMES[1], f"{POINT_LABEL_NAMES[1]}\n{POINT_LABEL_NAMES[0]}"),
            (CVAT_CROWD_ATTRIBUTE, "checkbox", "false", "false"),
        ):
            attribute = _sub(attributes, "attribute")
            for key, text in (
                ("name", name),
                ("mutable", "False"),
                ("input_type", kind),
                ("default_value", default),
                ("values", values),
            ):
                _sub(attribute, key, text)


def write_cvat(dataset: PointDataset) -> tuple[bytes, dict[str, int]]:
    """A P_N dataset as CVAT for images 1.1 XML; also the counts of what could not be written
    (RLE masks)."""
    root = ElementTree.Element("annotations")
    _sub(root, "version", CVAT_VERSION)
    _meta(root, dataset)
    names = dataset.category_names()
    left_out: dict[str, int] = {}
    by_image = dataset.instances_by_image()
    for position, (image_id, image) in enumerate(dataset.images.items()):
        element = _sub(root, "image", id=str(position), name=image.file_name, width=str(image.width), height=str(image.height))
        for group, inst in enumerate(by_image[image_id], start=1):
            common: dict[str, Any] = {"label": names[inst.category_id], "occluded": "0", "source": "manual", "z_order": "0"}
            common["group_id"] = str(group)
            x0, y0, x1, y1 = xywh_to_xyxy(*(float(v) for v in inst.bbox_xywh))
            box = _sub(element, "box", **common, xtl=_number(x0), ytl=_number(y0), xbr=_number(x1), ybr=_number(y1))
            if inst.is_crowd:
                _sub(box, "attribute", "true", name=CVAT_CROWD_ATTRIBUTE)
            if isinstance(inst.segmentation, list):
                for polygon in inst.segmentation:
                    text = ";".join(f"{_number(polygon[k])},{_number(polygon[k + 1])}" for k in range(0, len(polygon) - 1, 2))
                    _sub(element, "polygon", **common, points=text)
            elif inst.segmentation is not None:
                left_out["RLE mask"] = left_out.get("RLE mask", 0) + 1
            for (x, y), label in zip(inst.point_coords.tolist(), inst.point_labels.tolist()):
                shape = _sub(element, "points", **common, points=f"{_number(pixel_centre(x))},{_number(pixel_centre(y))}")
                _sub(shape, "attribute", POINT_LABEL_NAMES[label], name=CVAT_POINT_ATTRIBUTE)
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n", left_out
