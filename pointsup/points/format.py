"""The P_N annotation format: COCO instances JSON with labelled points on each annotation.

Each (non-crowd) annotation carries, besides its ``bbox`` and ``category_id``:

* ``point_coords``: ``N`` integer pixel indices ``[x, y]`` with ``0 <= x < width`` and
  ``0 <= y < height`` of the image;
* ``point_labels``: ``N`` integers, 1 where the point lies on the object, 0 on background.

This is the layout the authors' code reads and writes. A pixel index ``d`` stands for the
pixel's centre ``d + 0.5`` in continuous image coordinates (see
:meth:`PointInstance.continuous_point_coords`). ``segmentation`` may be dropped.

Crowd annotations (``iscrowd = 1``) carry no points. The reference simulation writes points on
them anyway; the reader accepts such files and ignores those points. ``iscrowd`` must be 0 or 1
(as for ``point_labels``, 0.0 and 1.0 too; JSON ``false``/``true`` mean the same; absent means
0): any other value (``"no"``, 2, null) is an error, not a crowd region. A ``segmentation``, when present (null counts as
absent), must be well typed: see :mod:`pointsup.points.segmentation_format`.

:func:`load_point_dataset` validates a file and returns a :class:`PointDataset`; every problem
found is reported in one :class:`PointFormatError` naming the file and the annotation id.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from pointsup.errors import PointsupError
from pointsup.points.segmentation_format import segmentation_problems
from pointsup.utils.atomic import write_json_atomic

#: How far (in pixels) a box may reach past the image border before it counts as outside it.
#: COCO boxes computed from polygons overshoot the border by float rounding now and then.
BOX_TOLERANCE = 1.0
#: At most this many problems are listed in one error message.
MAX_LISTED_PROBLEMS = 20


class PointFormatError(PointsupError, ValueError):
    """A file that is not a valid COCO (point) annotation file. The message lists every problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun}:\n{listed}{tail}")

    def one_line(self) -> str:
        """The file and its first problem on one line, with how many others there are (what
        the command line shows)."""
        others = len(self.problems) - 1
        more = f" (and {others} more problem{'s' if others > 1 else ''})" if others > 0 else ""
        return f"{self.source}: {self.problems[0] if self.problems else 'invalid'}{more}"


@dataclass(frozen=True)
class ImageRecord:
    """One image entry of a COCO file (``extra``: its other fields, kept on save)."""

    id: int
    file_name: str
    height: int
    width: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Category:
    """One category entry of a COCO file (``extra``: its other fields, e.g. supercategory)."""

    id: int
    name: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class PointInstance:
    """One object: its box, its category and its labelled points.

    Attributes:
        annotation_id: the COCO annotation ``id``.
        image_id: the COCO ``image_id``.
        category_id: the COCO ``category_id`` (not a contiguous label).
        bbox_xywh: ``(4,)`` float64 ``[x, y, w, h]`` in continuous image coordinates.
        point_coords: ``(N, 2)`` int64 pixel indices ``[x, y]``.
        point_labels: ``(N,)`` int64, 1 object / 0 background.
        is_crowd: a crowd region (carries no points; never trained on).
        segmentation: the COCO ``segmentation`` when the file has one, else None.
        extra: the annotation's other fields (``area``, ...), kept on save.
    """

    annotation_id: int
    image_id: int
    category_id: int
    bbox_xywh: np.ndarray
    point_coords: np.ndarray
    point_labels: np.ndarray
    is_crowd: bool = False
    segmentation: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.point_coords.shape[0])

    @property
    def box_xyxy(self) -> np.ndarray:
        """``(4,)`` float64 ``[x0, y0, x1, y1]``."""
        x, y, w, h = self.bbox_xywh
        return np.array([x, y, x + w, y + h], dtype=np.float64)

    def continuous_point_coords(self) -> np.ndarray:
        """``(N, 2)`` float64 point positions at pixel centres: ``d + 0.5``."""
        return self.point_coords.astype(np.float64) + 0.5


@dataclass
class PointDataset:
    """A validated point annotation file.

    Attributes:
        images: image id to record, in file order.
        categories: in file order.
        instances: every annotation (crowd ones included, with no points), in file order.
        source: where it was read from (for messages).
        extra: the file's other top-level fields (``info``, ``licenses``, ...), kept on save.
    """

    images: dict[int, ImageRecord]
    categories: list[Category]
    instances: list[PointInstance]
    source: str = "<memory>"
    extra: dict[str, Any] = field(default_factory=dict)

    def instances_by_image(self) -> dict[int, list[PointInstance]]:
        """Image id to its instances (every image present, possibly with an empty list)."""
        grouped: dict[int, list[PointInstance]] = {image_id: [] for image_id in self.images}
        for instance in self.instances:
            grouped[instance.image_id].append(instance)
        return grouped

    def category_names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.categories}

    def to_coco(self) -> dict[str, Any]:
        """The COCO JSON form (crowd annotations without points)."""
        annotations = []
        for inst in self.instances:
            x, y, w, h = (float(v) for v in inst.bbox_xywh)
            ann: dict[str, Any] = {
                "id": inst.annotation_id,
                "image_id": inst.image_id,
                "category_id": inst.category_id,
                "bbox": [x, y, w, h],
                "area": w * h,
                **inst.extra,
                "iscrowd": int(inst.is_crowd),
            }
            if inst.segmentation is not None:
                ann["segmentation"] = inst.segmentation
            if not inst.is_crowd:
                ann["point_coords"] = inst.point_coords.astype(int).tolist()
                ann["point_labels"] = inst.point_labels.astype(int).tolist()
            annotations.append(ann)
        return {
            **self.extra,
            "images": [
                {"id": i.id, "file_name": i.file_name, "height": i.height, "width": i.width, **i.extra}
                for i in self.images.values()
            ],
            "categories": [{"id": c.id, "name": c.name, **c.extra} for c in self.categories],
            "annotations": annotations,
        }


def read_coco_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a COCO JSON file, turning I/O and syntax errors into :class:`PointFormatError`."""
    source = str(path)
    try:
        with open(path, "rb") as handle:
            payload = handle.read()
    except FileNotFoundError:
        raise PointFormatError(source, ["file not found"]) from None
    except IsADirectoryError:
        raise PointFormatError(source, ["is a folder, not a JSON file"]) from None
    try:
        # msgspec parses straight into Python objects: as fast as the fastest parsers, with
        # none of their transient memory (an intermediate document tree).
        data = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise PointFormatError(source, [f"invalid JSON {_locate_decode_error(payload, str(exc))}"]) from None
    except RecursionError:
        raise PointFormatError(source, ["JSON nested too deeply (a COCO file needs a few levels)"]) from None
    if not isinstance(data, dict):
        raise PointFormatError(source, [f"the top level must be a JSON object, got {type(data).__name__}"])
    return data


#: annotation fields held in PointInstance attributes; all others go to ``PointInstance.extra``
_ANNOTATION_FIELDS = frozenset(
    {"id", "image_id", "category_id", "bbox", "iscrowd", "segmentation", "point_coords", "point_labels"}
)


def _locate_decode_error(payload: bytes, message: str) -> str:
    """'at line L, column C: reason' from msgspec's 'JSON is malformed: reason (byte N)'."""
    match = re.search(r"\(byte (\d+)\)", message)
    reason = re.sub(r"^JSON is malformed: |\s*\(byte \d+\)$", "", message)
    # Without a byte position (truncated input, a number out of range) point at the end.
    offset = min(int(match.group(1)), len(payload)) if match else len(payload)
    line = payload.count(b"\n", 0, offset) + 1
    column = offset - (payload.rfind(b"\n", 0, offset) + 1) + 1
    return f"at line {line}, column {column}: {reason}"


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: ids must fit a signed 64-bit integer (NumPy, PyTorch and pycocotools store them so)
ID_LIMIT = 2**63


def _is_id(value: Any) -> bool:
    return type(value) is int and -ID_LIMIT <= value < ID_LIMIT


def _id_problem(value: Any) -> str:
    """Why ``value`` is not an id."""
    return "beyond 64 bits" if type(value) is int else "not an integer"


def _is_integral_number(value: Any) -> bool:
    if _is_integer(value):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _is_finite_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _is_crowd_flag(value: Any) -> bool:
    """0 or 1 (as point_labels: 0.0 and 1.0 too), false or true; not "1", null or 2."""
    return type(value) is bool or (_is_integral_number(value) and value in (0, 1))


def _annotation_name(ann: Any, index: int) -> str:
    if isinstance(ann, dict) and "id" in ann:
        return f"annotation id {ann['id']!r}"
    return f"annotation #{index} (no id)"


def _validate_images(images: Any, problems: list[str]) -> dict[int, ImageRecord]:
    records: dict[int, ImageRecord] = {}
    if not isinstance(images, list):
        problems.append("'images' must be a list")
        return records
    for index, image in enumerate(images):
        name = f"image #{index}"
        if not isinstance(image, dict):
            problems.append(f"{name}: must be an object")
            continue
        missing = [k for k in ("id", "file_name", "height", "width") if k not in image]
        if missing:
            problems.append(f"{name} (id {image.get('id')!r}): missing {', '.join(missing)}")
            continue
        image_id, height, width = image["id"], image["height"], image["width"]
        if not _is_id(image_id):
            problems.append(f"{name}: id must be a 64-bit integer, got {image_id!r} ({_id_problem(image_id)})")
            continue
        if not (_is_integer(height) and _is_integer(width) and height > 0 and width > 0):
            problems.append(f"image id {image_id}: height and width must be positive integers, got {height!r} x {width!r}")
            continue
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            problems.append(f"image id {image_id}: file_name must be a non-empty string")
            continue
        if image_id in records:
            problems.append(f"image id {image_id}: duplicate image id")
            continue
        extra = {k: v for k, v in image.items() if k not in ("id", "file_name", "height", "width")}
        records[image_id] = ImageRecord(image_id, image["file_name"], height, width, extra)
    return records


def _validate_categories(categories: Any, problems: list[str]) -> list[Category]:
    result: list[Category] = []
    if not isinstance(categories, list):
        problems.append("'categories' must be a list")
        return result
    seen: set[int] = set()
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or not _is_id(category.get("id")):
            problems.append(f"category #{index}: must be an object with a 64-bit integer id")
            continue
        name = category.get("name", str(category["id"]))
        if category["id"] in seen:
            problems.append(f"category id {category['id']}: duplicate category id")
            continue
        seen.add(category["id"])
        result.append(Category(category["id"], str(name), {k: v for k, v in category.items() if k not in ("id", "name")}))
    return result


def _describe_box_problem(bbox: Any, image: ImageRecord) -> str:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox)):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return f"bbox {bbox} has zero or negative size"
    return f"bbox {bbox} lies outside image id {image.id} ({image.width}x{image.height})"


def _validate_boxes(bboxes: list[Any], image_sizes_wh: np.ndarray) -> np.ndarray:
    """Which boxes are valid: 4 finite numbers, positive size, inside the image (within
    :data:`BOX_TOLERANCE`). Vectorised; ``image_sizes_wh`` is ``(A, 2)``; returns ``(A,)`` bool."""
    if not bboxes:
        return np.zeros(0, dtype=bool)
    try:
        array = np.array(bboxes)
        well_formed = array.ndim == 2 and array.shape[1] == 4 and array.dtype.kind in "if"
    except (ValueError, TypeError, OverflowError):
        well_formed = False
    if well_formed and any(type(v) is bool for box in bboxes for v in box):
        well_formed = False  # JSON true/false became 1/0
    if not well_formed:
        shaped = [isinstance(b, list) and len(b) == 4 and all(_is_finite_number(v) for v in b) for b in bboxes]
        array = np.array([b if ok else [np.nan] * 4 for b, ok in zip(bboxes, shaped)], dtype=np.float64)
    array = array.astype(np.float64, copy=False)
    sizes = image_sizes_wh.astype(np.float64)
    t = BOX_TOLERANCE
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(array).all(axis=1)
            & (array[:, 2] > 0)
            & (array[:, 3] > 0)
            & (array[:, 0] >= -t)
            & (array[:, 1] >= -t)
            & (array[:, 0] + array[:, 2] <= sizes[:, 0] + t)
            & (array[:, 1] + array[:, 3] <= sizes[:, 1] + t)
        )


def _validate_points(ann: dict, image: ImageRecord, problems: list[str], name: str) -> tuple[np.ndarray, np.ndarray] | None:
    coords, labels = ann.get("point_coords"), ann.get("point_labels")
    if coords is None or labels is None:
        absent = "point_coords" if coords is None else "point_labels"
        problems.append(f"{name}: missing {absent}")
        return None
    if not isinstance(coords, list) or not all(isinstance(p, list) and len(p) == 2 for p in coords):
        problems.append(f"{name}: point_coords must be a list of [x, y] pairs")
        return None
    if not isinstance(labels, list):
        problems.append(f"{name}: point_labels must be a list")
        return None
    if len(coords) != len(labels):
        problems.append(f"{name}: {len(coords)} point_coords but {len(labels)} point_labels")
        return None
    if not all(_is_integral_number(v) for p in coords for v in p):
        problems.append(f"{name}: point_coords must be integer pixel indices [x, y]")
        return None
    if not all(_is_integral_number(v) and v in (0, 1) for v in labels):
        bad = next(v for v in labels if not (_is_integral_number(v) and v in (0, 1)))
        problems.append(f"{name}: point_labels must be 0 (background) or 1 (object), got {bad!r}")
        return None
    try:
        xy = np.array(coords, dtype=np.int64).reshape(-1, 2)
    except OverflowError:
        problems.append(f"{name}: point_coords hold a number too large for any image")
        return None
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= image.width) | (xy[:, 1] < 0) | (xy[:, 1] >= image.height)
    if outside.any():
        first = xy[int(np.argmax(outside))].tolist()
        problems.append(
            f"{name}: {int(outside.sum())} point(s) outside image id {image.id} ({image.width}x{image.height}), e.g. {first}"
        )
        return None
    return xy, np.array(labels, dtype=np.int64)


@dataclass
class _CheckedAnnotations:
    images: dict[int, ImageRecord]
    categories: list[Category]
    rows: list[int]
    points: dict[int, tuple[np.ndarray, np.ndarray]]


def _check_coco(data: dict[str, Any], source: str, require_points: bool) -> _CheckedAnnotations:
    problems: list[str] = []
    for key in ("images", "annotations", "categories"):
        if key not in data:
            problems.append(f"missing top-level field '{key}'")
    if problems:
        raise PointFormatError(source, problems)
    images = _validate_images(data["images"], problems)
    categories = _validate_categories(data["categories"], problems)
    category_ids = {c.id for c in categories}
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise PointFormatError(source, problems + ["'annotations' must be a list"])

    rows: list[int] = []
    row_positions: list[int] = []  # index of each row's image in ``image_list``
    image_list = list(images.values())
    position_of = {image_id: k for k, image_id in enumerate(images)}
    seen_ids: set[Any] = set()
    segmented: list[int] = []  # rows with a segmentation
    required = ("id", "image_id", "category_id", "bbox")
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            problems.append(f"{_annotation_name(ann, index)}: must be an object")
            continue
        if not ("id" in ann and "image_id" in ann and "category_id" in ann and "bbox" in ann):
            missing = [k for k in required if k not in ann]
            problems.append(f"{_annotation_name(ann, index)}: missing {', '.join(missing)}")
            continue
        if not (_is_id(ann["id"]) and _is_id(ann["image_id"]) and _is_id(ann["category_id"])):
            wrong = ", ".join(
                f"{key} {ann[key]!r} is {_id_problem(ann[key])}"
                for key in ("id", "image_id", "category_id")
                if not _is_id(ann[key])
            )
            problems.append(f"{_annotation_name(ann, index)}: id, image_id and category_id must be 64-bit integers ({wrong})")
            continue
        if ann["id"] in seen_ids:
            problems.append(f"{_annotation_name(ann, index)}: duplicate annotation id")
            continue
        seen_ids.add(ann["id"])
        position = position_of.get(ann["image_id"])
        if position is None:
            problems.append(f"{_annotation_name(ann, index)}: unknown image_id {ann['image_id']!r}")
            continue
        if ann["category_id"] not in category_ids:
            problems.append(f"{_annotation_name(ann, index)}: unknown category_id {ann['category_id']!r}")
            continue
        if not _is_crowd_flag(ann.get("iscrowd", 0)):
            problems.append(f"{_annotation_name(ann, index)}: iscrowd must be 0 or 1 (or false/true), got {ann['iscrowd']!r}")
            continue
        rows.append(index)
        row_positions.append(position)
        if ann.get("segmentation") is not None:
            segmented.append(index)
    for k, message in segmentation_problems([annotations[i]["segmentation"] for i in segmented]).items():
        problems.append(f"{_annotation_name(annotations[segmented[k]], segmented[k])}: {message}")

    sizes_wh = np.array([(image.width, image.height) for image in image_list], dtype=np.int64).reshape(-1, 2)
    row_sizes = sizes_wh[np.array(row_positions, dtype=np.int64)] if rows else np.zeros((0, 2), np.int64)
    box_ok = _validate_boxes([annotations[i]["bbox"] for i in rows], row_sizes)
    for bad_row in np.flatnonzero(~box_ok):
        ann = annotations[rows[bad_row]]
        problems.append(
            f"{_annotation_name(ann, rows[bad_row])}: {_describe_box_problem(ann['bbox'], image_list[row_positions[bad_row]])}"
        )
    points: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    kept: list[int] = []
    for k, index in enumerate(rows):
        if not box_ok[k]:
            continue
        ann = annotations[index]
        has_points = "point_coords" in ann or "point_labels" in ann
        if not ann.get("iscrowd", 0) and (require_points or has_points):
            checked = _validate_points(ann, image_list[row_positions[k]], problems, _annotation_name(ann, index))
            if checked is None:
                continue
            points[index] = checked
        kept.append(index)
    if problems:
        raise PointFormatError(source, problems)
    return _CheckedAnnotations(images, categories, kept, points)


def check_coco(data: dict[str, Any], source: str = "<memory>", *, require_points: bool = True) -> dict[int, ImageRecord]:
    """Check a COCO dict without building instances (fast); returns the images by id.

    Raises:
        PointFormatError: as :func:`validate_coco`.
    """
    return _check_coco(data, source, require_points).images


def validate_coco(data: dict[str, Any], source: str = "<memory>", *, require_points: bool = True) -> PointDataset:
    """Check a COCO dict and build a :class:`PointDataset` from it.

    Args:
        data: the parsed JSON.
        source: file name used in messages.
        require_points: non-crowd annotations must carry ``point_coords``/``point_labels``.
            Without it, annotations lacking points get empty point arrays.

    Raises:
        PointFormatError: listing every problem, each naming the annotation or image id.
    """
    checked = _check_coco(data, source, require_points)
    empty = (np.zeros((0, 2), np.int64), np.zeros(0, np.int64))
    instances = []
    for index in checked.rows:
        ann = data["annotations"][index]
        coords, labels = checked.points.get(index, empty)
        instances.append(
            PointInstance(
                annotation_id=ann["id"],
                image_id=ann["image_id"],
                category_id=ann["category_id"],
                bbox_xywh=np.array(ann["bbox"], dtype=np.float64),
                point_coords=coords,
                point_labels=labels,
                is_crowd=bool(ann.get("iscrowd", 0)),
                segmentation=ann.get("segmentation"),
                extra={k: v for k, v in ann.items() if k not in _ANNOTATION_FIELDS},
            )
        )
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    return PointDataset(checked.images, checked.categories, instances, source, extra)


def load_point_dataset(path: str | os.PathLike[str], *, require_points: bool = True) -> PointDataset:
    """Read and validate a point annotation file (see :func:`validate_coco`)."""
    return validate_coco(read_coco_json(path), str(path), require_points=require_points)


def save_point_dataset(dataset: PointDataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` as COCO JSON, atomically."""
    write_json_atomic(path, dataset.to_coco())
