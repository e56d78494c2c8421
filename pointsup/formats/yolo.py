"""Import of YOLO detection and segmentation labels (Darknet / Ultralytics layout).

One ``.txt`` file per image under the label folder, one object a line: ``class cx cy w h`` (a
box: normalised centre and size) or ``class x1 y1 x2 y2 ... xn yn`` (a polygon of at least 3
normalised vertices; its box is its bounds). The label file ``LABELS/a/b.txt`` belongs to the
image ``IMAGES/a/b.<suffix>``, whose header gives the size the fractions refer to. Images with no
label file are images without objects. Class names come from ``--names`` or the first of
:data:`~pointsup.formats.constants.YOLO_NAME_FILES` in the label folder or the two above it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pointsup.formats.common import CocoBuilder, ConversionError, ImportedObject, index_images, read_image_size, read_text
from pointsup.formats.constants import QUOTE_LIMIT, YOLO_NAME_FILES, YOLO_NON_LABEL_FILES
from pointsup.formats.geometry import normalised_to_pixels, yolo_to_xyxy


def find_names_file(labels: Path) -> Path | None:
    """The first class-name file in ``labels`` or the two folders above it."""
    for folder in (labels, labels.parent, labels.parent.parent):
        for name in YOLO_NAME_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def read_names(path: Path) -> list[str]:
    """Class names, index 0 first: one a line (``classes.txt``, ``obj.names``) or the ``names``
    of a YAML file (a list, or a mapping from index to name)."""
    text = read_text(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConversionError(path, f"malformed YAML: {str(exc).splitlines()[0]}") from None
        raw: Any = data.get("names") if isinstance(data, dict) else None
        if isinstance(raw, dict) and all(isinstance(k, int) for k in raw):
            if sorted(raw) != list(range(len(raw))):
                raise ConversionError(path, "'names' must number the classes 0, 1, 2, ... without gaps")
            raw = [raw[k] for k in range(len(raw))]
        if not isinstance(raw, list):
            raise ConversionError(path, "no 'names' list (or index: name mapping) in the YAML file")
        names = [str(name) for name in raw]
    if not names:
        raise ConversionError(path, "no class names")
    if len(set(names)) != len(names):
        raise ConversionError(path, "a class name appears twice")
    return names


def _label_files(labels: Path) -> list[Path]:
    return sorted(path for path in labels.rglob("*.txt") if path.is_file() and path.name.lower() not in YOLO_NON_LABEL_FILES)


def _parse_line(line: str, source: Path, number: int, num_names: int) -> tuple[int, list[float]]:
    what = f"line {number}"
    fields = line.split()
    try:
        class_index = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise ConversionError(source, f"{what}: not a class index and numbers: {line[:QUOTE_LIMIT]!r}") from None
    if not 0 <= class_index < num_names:
        raise ConversionError(source, f"{what}: class index {class_index} out of range ({num_names} class names)")
    if len(values) != 4 and (len(values) < 6 or len(values) % 2):
        raise ConversionError(
            source, f"{what}: expected 'class cx cy w h' or 'class x1 y1 ... xn yn' (n >= 3), got {len(fields)} fields"
        )
    return class_index, values


def read_yolo(labels: Path, images: Path, names_file: Path | None = None) -> CocoBuilder:
    """Read a YOLO label folder into a :class:`CocoBuilder`.

    Args:
        labels: the folder of label files.
        images: the image folder (label paths relative to ``labels`` match image paths
            relative to it, suffix aside).
        names_file: the class names; None looks for one (module docstring).

    Raises:
        ConversionError: naming the label file and line (or the names file, or the image).
    """
    if not labels.is_dir():
        raise ConversionError(labels, "a YOLO input is the folder of label .txt files")
    found = names_file or find_names_file(labels)
    if found is None:
        raise ConversionError(labels, f"no class names: give --names FILE or put one of {', '.join(YOLO_NAME_FILES)} there")
    names = read_names(found)
    builder = CocoBuilder()
    for name in names:
        builder.category_id(name)
    image_index = index_images(images)
    labelled: dict[str, Path] = {}
    for path in _label_files(labels):
        key = path.relative_to(labels).with_suffix("").as_posix()
        if key not in image_index:
            raise ConversionError(path, f"its image {key}.* is missing from {images}")
        labelled[key] = path
    for key, file_name in sorted(image_index.items(), key=lambda item: item[1]):
        label_file = labelled.get(key)
        width, height = read_image_size(images / file_name, label_file or images / file_name)
        image_id = builder.add_image(file_name, width, height)
        if label_file is None:
            continue
        for number, raw in enumerate(read_text(label_file).splitlines(), start=1):
            if not raw.strip():
                continue
            class_index, values = _parse_line(raw, label_file, number, len(names))
            if len(values) == 4:
                obj = ImportedObject(
                    names[class_index], box=yolo_to_xyxy(values[0], values[1], values[2], values[3], width, height)
                )
            else:
                obj = ImportedObject(names[class_index], polygons=[normalised_to_pixels(values, width, height)])
            builder.add_object(image_id, obj, label_file, f"line {number}")
    return builder
