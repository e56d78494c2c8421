"""Label Studio JSON export: import of rectangles, polygons and labelled keypoints; export of P_N files.

A Label Studio export is a list of tasks, each with ``data`` (the image reference) and
``annotations``, whose first one not cancelled is read. Its ``result`` regions give positions in
percent of the image width and height (``original_width``/``original_height`` give the size in
pixels): a ``rectanglelabels`` region is an object; a ``polygonlabels`` region is the mask of
the rectangle its ``parentID`` names, or an object of its own; a ``keypointlabels`` region with
the label ``object`` or ``background`` is a point of the rectangle its ``parentID`` names (the
stored index is the pixel holding it; the export puts each point at its pixel's centre). A
rectangle whose region ``meta`` text is ``iscrowd`` is a crowd region. Other regions (brushes,
ellipses, choices...) are skipped and counted; rotated rectangles are refused.
"""

from __future__ import annotations

import math
import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from pointsup.formats.common import (
    CocoBuilder,
    ConversionError,
    ImportedObject,
    parse_json,
    point_index,
    read_image_size,
    require_image,
)
from pointsup.formats.constants import (
    LABEL_STUDIO_BOX_CONTROL,
    LABEL_STUDIO_CROWD_TEXT,
    LABEL_STUDIO_IMAGE,
    LABEL_STUDIO_POINT_CONTROL,
    LABEL_STUDIO_POINT_WIDTH,
    LABEL_STUDIO_POLYGON_CONTROL,
    LABEL_STUDIO_SIZE_KEYS,
    POINT_LABEL_NAMES,
    POINT_LABEL_VALUES,
)
from pointsup.formats.geometry import percent_to_pixels, pixel_centre, pixels_to_percent, xywh_to_xyxy
from pointsup.points.format import PointDataset, PointInstance
from pointsup.utils.atomic import encode_json

#: the 8 hexadecimal digits and dash Label Studio puts before the name of an uploaded file
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def image_file_name(reference: str) -> str:
    """The image file name a task's image reference stands for: the ``d`` parameter of a local
    storage URL (``/data/local-files/?d=a/b.jpg``), the base name of an upload (its
    ``xxxxxxxx-`` prefix dropped) or of another URL, else the reference itself (a relative path)."""
    parsed = urlparse(reference)
    query = parse_qs(parsed.query)
    if "d" in query:
        return query["d"][0]
    path = unquote(parsed.path)
    if path.startswith("/data/upload/"):
        return _UPLOAD_PREFIX.sub("", posixpath.basename(path))
    if parsed.scheme or path.startswith("/data/"):
        return posixpath.basename(path)
    return reference


def _number(value: Any, source: Path, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConversionError(source, f"{what}: expected a number, got {value!r}")
    return float(value)


def _first_annotation(task: dict[str, Any], source: Path, what: str) -> list[Any]:
    annotations = task.get("annotations", task.get("completions", []))
    if not isinstance(annotations, list):
        raise ConversionError(source, f"{what}: 'annotations' must be a list")
    for annotation in annotations:
        if isinstance(annotation, dict) and not annotation.get("was_cancelled", False):
            result = annotation.get("result", [])
            if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
                raise ConversionError(source, f"{what}: an annotation's 'result' must be a list of regions")
            return result
    return []


def _image_size(
    task: dict[str, Any], results: list[dict[str, Any]], source: Path, images: Path | None, file_name: str
) -> tuple[int, int]:
    data = task["data"]
    for holder in [
        *results,
        {"original_width": data.get(LABEL_STUDIO_SIZE_KEYS[0]), "original_height": data.get(LABEL_STUDIO_SIZE_KEYS[1])},
    ]:
        width, height = holder.get("original_width"), holder.get("original_height")
        if width is not None and height is not None:
            w, h = _number(width, source, f"image {file_name} width"), _number(height, source, f"image {file_name} height")
            if not (w >= 1 and h >= 1 and w.is_integer() and h.is_integer()):
                raise ConversionError(source, f"image {file_name}: size {w:g}x{h:g} is not a positive whole number of pixels")
            return int(w), int(h)
    if images is None:
        raise ConversionError(source, f"image {file_name}: no size in the file: give --images to read it from the image")
    return read_image_size(images / file_name, source)


def _label(value: dict[str, Any], kind: str, source: Path, what: str) -> str:
    labels = value.get(kind)
    if not isinstance(labels, list) or not labels or not isinstance(labels[0], str):
        raise ConversionError(source, f"{what}: no label in {kind}")
    return labels[0]


def _read_task(task: Any, number: int, builder: CocoBuilder, source: Path, images: Path | None) -> None:
    what = f"task #{number}"
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise ConversionError(source, f"{what}: a task must be an object with a 'data' object")
    data = task["data"]
    reference = data.get(LABEL_STUDIO_IMAGE, next((v for v in data.values() if isinstance(v, str)), None))
    if not isinstance(reference, str):
        raise ConversionError(source, f"{what}: no image reference in 'data'")
    file_name = image_file_name(reference)
    results = _first_annotation(task, source, what)
    require_image(images, file_name, source)
    width, height = _image_size(task, results, source, images, file_name)
    image_id = builder.add_image(file_name, width, height)
    objects: dict[str, ImportedObject] = {}
    order: list[ImportedObject] = []
    pending: list[tuple[dict[str, Any], str]] = []  # regions that refer to a parent, read once all rectangles are known
    for k, region in enumerate(results):
        kind, value = region.get("type"), region.get("value")
        where = f"{what}, region #{k + 1}"
        if kind not in ("rectanglelabels", "polygonlabels", "keypointlabels"):
            builder.skip(str(kind))
            continue
        if not isinstance(value, dict):
            raise ConversionError(source, f"{where}: no 'value' object")
        if kind == "rectanglelabels":
            if _number(value.get("rotation", 0), source, f"{where} rotation") % 360 != 0:
                raise ConversionError(source, f"{where}: rotated rectangles are not supported")
            x, y, w, h = (_number(value.get(key), source, f"{where} {key}") for key in ("x", "y", "width", "height"))
            box = xywh_to_xyxy(
                percent_to_pixels(x, width),
                percent_to_pixels(y, height),
                percent_to_pixels(w, width),
                percent_to_pixels(h, height),
            )
            meta = region.get("meta")
            crowd = isinstance(meta, dict) and LABEL_STUDIO_CROWD_TEXT in (meta.get("text") or [])
            obj = ImportedObject(_label(value, kind, source, where), box=box, is_crowd=crowd)
            objects[str(region.get("id", f"#{k}"))] = obj
            order.append(obj)
        elif kind == "keypointlabels" or region.get("parentID") is not None:
            pending.append((region, where))
        else:
            order.append(
                ImportedObject(_label(value, kind, source, where), polygons=[_polygon(value, width, height, source, where)])
            )
    for region, where in pending:
        parent = objects.get(str(region.get("parentID")))
        if parent is None:
            raise ConversionError(source, f"{where}: its parentID {region.get('parentID')!r} names no rectangle of the task")
        value = region["value"]
        if region["type"] == "polygonlabels":
            parent.polygons.append(_polygon(value, width, height, source, where))
            continue
        name = _label(value, "keypointlabels", source, where)
        if name.lower() not in POINT_LABEL_VALUES:
            raise ConversionError(source, f"{where}: a keypoint's label must be object or background, not {name!r}")
        px, py = (
            percent_to_pixels(_number(value.get(key), source, f"{where} {key}"), size)
            for key, size in (("x", width), ("y", height))
        )
        parent.points.append(point_index(px, py, width, height, source, where))
        parent.labels.append(POINT_LABEL_VALUES[name.lower()])
    for k, obj in enumerate(order, start=1):
        builder.add_object(image_id, obj, source, f"{what}, object #{k}")


def _polygon(value: dict[str, Any], width: int, height: int, source: Path, what: str) -> list[float]:
    points = value.get("points")
    if not isinstance(points, list) or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise ConversionError(source, f"{what}: a polygon's 'points' must be a list of [x, y] pairs")
    flat: list[float] = []
    for x, y in points:
        flat += [percent_to_pixels(_number(x, source, what), width), percent_to_pixels(_number(y, source, what), height)]
    return flat


def read_labelstudio(source: Path, images: Path | None) -> CocoBuilder:
    """Read a Label Studio JSON export (a list of tasks, or one task) into a builder."""
    tasks = parse_json(source)
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise ConversionError(source, "a Label Studio export must be a list of tasks")
    builder = CocoBuilder()
    for number, task in enumerate(tasks, start=1):
        _read_task(task, number, builder, source, images)
    return builder


def _regions(inst: PointInstance, name: str, width: int, height: int, left_out: dict[str, int]) -> list[dict[str, Any]]:
    """The regions of one object: its rectangle, its polygons and its keypoints."""
    size = {"original_width": width, "original_height": height, "image_rotation": 0, "to_name": LABEL_STUDIO_IMAGE}
    box_id = f"box{inst.annotation_id}"
    x, y, w, h = (float(v) for v in inst.bbox_xywh)
    value: dict[str, Any] = {
        "x": pixels_to_percent(x, width),
        "y": pixels_to_percent(y, height),
        "width": pixels_to_percent(w, width),
    }
    value |= {"height": pixels_to_percent(h, height), "rotation": 0, "rectanglelabels": [name]}
    box: dict[str, Any] = {"id": box_id, "type": "rectanglelabels", "from_name": LABEL_STUDIO_BOX_CONTROL, **size, "value": value}
    if inst.is_crowd:
        box["meta"] = {"text": [LABEL_STUDIO_CROWD_TEXT]}
    regions = [box]
    if isinstance(inst.segmentation, list):
        for k, polygon in enumerate(inst.segmentation):
            points = [
                [pixels_to_percent(polygon[j], width), pixels_to_percent(polygon[j + 1], height)]
                for j in range(0, len(polygon) - 1, 2)
            ]
            regions.append(
                {"id": f"poly{inst.annotation_id}_{k}", "type": "polygonlabels", "from_name": LABEL_STUDIO_POLYGON_CONTROL, **size,
                 "parentID": box_id, "value": {"points": points, "closed": True, "polygonlabels": [name]}}
            )  # fmt: skip
    elif inst.segmentation is not None:
        left_out["RLE mask"] = left_out.get("RLE mask", 0) + 1
    for k, ((px, py), label) in enumerate(zip(inst.point_coords.tolist(), inst.point_labels.tolist())):
        point: dict[str, Any] = {
            "x": pixels_to_percent(pixel_centre(px), width),
            "y": pixels_to_percent(pixel_centre(py), height),
        }
        point |= {"width": LABEL_STUDIO_POINT_WIDTH, "keypointlabels": [POINT_LABEL_NAMES[label]]}
        regions.append(
            {"id": f"pt{inst.annotation_id}_{k}", "type": "keypointlabels", "from_name": LABEL_STUDIO_POINT_CONTROL, **size,
             "parentID": box_id, "value": point}
        )  # fmt: skip
    return regions


def write_labelstudio(dataset: PointDataset) -> tuple[bytes, dict[str, int]]:
    """A P_N dataset as a Label Studio JSON export: one task per image, its objects as one
    finished annotation; also the counts of what could not be written (RLE masks)."""
    names = dataset.category_names()
    left_out: dict[str, int] = {}
    tasks = []
    for image_id, instances in dataset.instances_by_image().items():
        image = dataset.images[image_id]
        result = [r for inst in instances for r in _regions(inst, names[inst.category_id], image.width, image.height, left_out)]
        data = {
            LABEL_STUDIO_IMAGE: image.file_name,
            LABEL_STUDIO_SIZE_KEYS[0]: image.width,
            LABEL_STUDIO_SIZE_KEYS[1]: image.height,
        }
        tasks.append({"data": data, "annotations": [{"result": result}]})
    return encode_json(tasks, indent=2) + b"\n", left_out
