"""What every format converter shares: the error it raises, the COCO file it builds, and the
readers of XML, JSON and image headers that turn every failure into that error.

An importer reads a format into a :class:`CocoBuilder` and returns :meth:`CocoBuilder.to_coco`;
an exporter turns a :class:`~pointsup.points.format.PointDataset` into the bytes of a file.
Each problem raises :class:`ConversionError`: one line naming the file (and, where it helps, the
line, image or shape) at fault.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from PIL import Image

from pointsup.data.image_io import oriented_size
from pointsup.errors import PointsupError
from pointsup.formats.constants import BORDER_TOLERANCE, IMAGE_SUFFIXES
from pointsup.formats.geometry import Box, pixel_index, polygon_area, polygon_bounds, xyxy_to_xywh
from pointsup.utils.atomic import describe_os_error


class ConversionError(PointsupError, ValueError):
    """An input that cannot be converted; the message names the file and the problem."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def read_bytes(path: Path) -> bytes:
    """The content of ``path``; a missing file or a folder is a :class:`ConversionError`."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConversionError(path, "is a folder, not a file" if path.is_dir() else describe_os_error(exc)) from None


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (a byte order mark is dropped)."""
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConversionError(path, f"not UTF-8 text (byte {exc.start})") from None


def parse_xml(path: Path) -> ElementTree.Element:
    """The root element of the XML file ``path``. Documents declaring entities are refused (no
    annotation format needs them, and they are how XML bombs work)."""
    payload = read_bytes(path)
    if b"<!ENTITY" in payload:
        raise ConversionError(path, "XML entity declarations are not accepted")
    try:
        return ElementTree.fromstring(payload)
    except ElementTree.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise ConversionError(path, f"malformed XML at line {line}, column {column + 1}: {reason}") from None


def parse_json(path: Path) -> Any:
    """The parsed JSON file ``path``."""
    payload = read_bytes(path)
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise ConversionError(path, f"malformed JSON: {str(exc).removeprefix('JSON is malformed: ')}") from None
    except RecursionError:
        raise ConversionError(path, "JSON nested too deeply") from None


def read_image_size(path: Path, source: Path) -> tuple[int, int]:
    """``(width, height)`` of the image file ``path`` as it is displayed (EXIF orientation
    applied, as YOLO tools and pointsup's image reader do), from its header only.

    Raises:
        ConversionError: naming ``source`` (the annotation file) when the image is missing,
            else the image when it cannot be read.
    """
    try:
        with Image.open(path) as image:
            return oriented_size(image)
    except FileNotFoundError:
        raise ConversionError(source, f"its image {path} is missing") from None
    except Image.DecompressionBombError:
        raise ConversionError(path, "refused as a possible decompression bomb") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ConversionError(path, f"not a readable image: {exc}") from None


def require_image(images: Path | None, file_name: str, source: Path) -> None:
    """With an image folder given, the image ``file_name`` must be in it."""
    if images is not None and not (images / file_name).is_file():
        raise ConversionError(source, f"its image {file_name} is not in {images}")


def index_images(folder: Path) -> dict[str, str]:
    """The image files under ``folder`` by their relative path without suffix (``a/b`` for
    ``a/b.jpg``), as relative POSIX paths; the first in sorted order wins a tie."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            relative = path.relative_to(folder)
            found.setdefault(relative.with_suffix("").as_posix(), relative.as_posix())
    return found


def parse_number(text: str | None, source: Path, what: str) -> float:
    """A finite number written as text."""
    try:
        value = float(text if text is not None else "")
    except ValueError:
        raise ConversionError(source, f"{what}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ConversionError(source, f"{what}: not a finite number: {text!r}")
    return value


def check_box(box: Box, width: int, height: int, source: Path, what: str) -> None:
    """A box must have a positive width and height and lie in the image (give or take
    :data:`BORDER_TOLERANCE` pixels)."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        raise ConversionError(source, f"{what}: box {list(box)} has a value that is not a finite number")
    if x1 <= x0 or y1 <= y0:
        raise ConversionError(source, f"{what}: degenerate box (width {x1 - x0:g}, height {y1 - y0:g})")
    t = BORDER_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        raise ConversionError(source, f"{what}: box {[round(v, 3) for v in box]} lies outside the {width}x{height} image")


def check_polygon(flat: Sequence[float], width: int, height: int, source: Path, what: str) -> None:
    """A polygon needs at least 3 vertices, finite, inside the image (within the tolerance)."""
    if len(flat) < 6 or len(flat) % 2:
        raise ConversionError(source, f"{what}: a polygon needs at least 3 x, y vertices, got {len(flat)} numbers")
    check_box(polygon_bounds(flat), width, height, source, what)


def point_index(x: float, y: float, width: int, height: int, source: Path, what: str) -> list[int]:
    """The pixel index ``[x, y]`` of a continuous point, which must lie in the image."""
    t = BORDER_TOLERANCE
    if not (math.isfinite(x) and math.isfinite(y) and -t <= x <= width + t and -t <= y <= height + t):
        raise ConversionError(source, f"{what}: point ({x:g}, {y:g}) lies outside the {width}x{height} image")
    return [pixel_index(x, width), pixel_index(y, height)]


@dataclass
class ImportedObject:
    """One object as an importer found it, in pointsup's continuous coordinates."""

    category: str
    box: Box | None = None
    polygons: list[list[float]] = field(default_factory=list)
    points: list[list[int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    is_crowd: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CocoBuilder:
    """Collects images, categories and objects and writes them as a COCO dict.

    Ids are assigned from 1 in the order things are added; categories may be declared up front
    (:meth:`category_id` keeps the first id a name got).
    """

    images: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def category_id(self, name: str) -> int:
        """The id of category ``name``, added when new."""
        return self.categories.setdefault(name, len(self.categories) + 1)

    def add_image(self, file_name: str, width: int, height: int) -> int:
        """Add an image; returns its id."""
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def skip(self, kind: str) -> None:
        """Count a shape of a kind the converter does not read (reported, not an error)."""
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def add_object(self, image_id: int, obj: ImportedObject, source: Path, what: str) -> None:
        """Add an object; its box is the bounds of its polygons when it has none.

        Raises:
            ConversionError: the object has neither a box nor a polygon, or its box is degenerate.
        """
        image = self.images[image_id - 1]
        width, height = image["width"], image["height"]
        for polygon in obj.polygons:
            check_polygon(polygon, width, height, source, what)
        box = obj.box
        if box is None:
            if not obj.polygons:
                raise ConversionError(source, f"{what}: an object needs a box or a polygon")
            bounds = [polygon_bounds(p) for p in obj.polygons]
            box = (min(b[0] for b in bounds), min(b[1] for b in bounds), max(b[2] for b in bounds), max(b[3] for b in bounds))
        check_box(box, width, height, source, what)
        x, y, w, h = xyxy_to_xywh(*box)
        annotation: dict[str, Any] = {
            "id": len(self.annotations) + 1,
            "image_id": image_id,
            "category_id": self.category_id(obj.category),
            "bbox": [x, y, w, h],
            "area": sum(polygon_area(p) for p in obj.polygons) if obj.polygons else w * h,
            "iscrowd": int(obj.is_crowd),
            **obj.extra,
        }
        if obj.polygons:
            annotation["segmentation"] = [list(p) for p in obj.polygons]
        if obj.points and not obj.is_crowd:
            annotation["point_coords"] = obj.points
            annotation["point_labels"] = obj.labels
        self.annotations.append(annotation)

    def to_coco(self) -> dict[str, Any]:
        """The COCO instances dict."""
        return {
            "images": self.images,
            "categories": [{"id": i, "name": name} for name, i in self.categories.items()],
            "annotations": self.annotations,
        }
