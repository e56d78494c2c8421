"""The common interface of the format converters: which formats exist and how to run them.

An importer reads a path (a file or a folder, as its format needs) and an optional image folder
into a :class:`~pointsup.formats.common.CocoBuilder`; an exporter turns a P_N dataset into the
bytes of a file and counts what it had to leave out. :func:`import_annotations` and
:func:`export_points` run them and check the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pointsup.formats.common import CocoBuilder, ConversionError
from pointsup.formats.constants import EXPORT_FORMATS, IMPORT_FORMATS
from pointsup.formats.cvat import read_cvat, write_cvat
from pointsup.formats.labelstudio import read_labelstudio, write_labelstudio
from pointsup.formats.voc import read_voc
from pointsup.formats.yolo import read_yolo
from pointsup.points.format import PointDataset, validate_coco

Importer = Callable[[Path, "Path | None"], CocoBuilder]
Exporter = Callable[[PointDataset], "tuple[bytes, dict[str, int]]"]


def _read_yolo(source: Path, images: Path | None, names: Path | None = None) -> CocoBuilder:
    if images is None:
        raise ConversionError(source, "YOLO labels need --images: the image sizes are read from the image files")
    return read_yolo(source, images, names)


IMPORTERS: dict[str, Importer] = {"yolo": _read_yolo, "voc": read_voc, "cvat": read_cvat, "labelstudio": read_labelstudio}
EXPORTERS: dict[str, Exporter] = {"cvat": write_cvat, "labelstudio": write_labelstudio}
assert tuple(IMPORTERS) == IMPORT_FORMATS and tuple(EXPORTERS) == EXPORT_FORMATS


@dataclass
class Converted:
    """A conversion's result: the COCO dict (imports) or file bytes (exports), and the counts
    of shapes skipped or left out by kind."""

    coco: dict[str, Any] | None = None
    payload: bytes | None = None
    skipped: dict[str, int] = field(default_factory=dict)


def import_annotations(fmt: str, source: Path, images: Path | None = None, *, names: Path | None = None) -> Converted:
    """Read ``source`` in format ``fmt`` into a validated COCO dict.

    Args:
        fmt: one of :data:`~pointsup.formats.constants.IMPORT_FORMATS`.
        source: the file or folder to read.
        images: the image folder: YOLO reads the image sizes there; the others check that each
            image is there (and read a size their file lacks).
        names: YOLO only: the class names file (else looked for beside the labels).

    Raises:
        ConversionError: naming the input file at fault.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown import format {fmt!r}; known: {', '.join(IMPORTERS)}")
    if not source.exists():
        raise ConversionError(source, "not found")
    builder = _read_yolo(source, images, names) if fmt == "yolo" else IMPORTERS[fmt](source, images)
    coco = builder.to_coco()
    validate_coco(coco, str(source), require_points=False)  # what the readers checked, checked again as pointsup reads it
    return Converted(coco=coco, skipped=builder.skipped)


def export_points(fmt: str, dataset: PointDataset) -> Converted:
    """Write a P_N dataset in format ``fmt`` (one of :data:`~pointsup.formats.constants.EXPORT_FORMATS`)."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(EXPORTERS)}")
    payload, left_out = EXPORTERS[fmt](dataset)
    return Converted(payload=payload, skipped=left_out)
