"""Image bytes for the browser, without the EXIF metadata that would rotate them.

COCO annotations refer to the stored pixel grid (the dataset loader ignores the EXIF
orientation tag too), but browsers apply that tag when they draw an image, so a photo with
``Orientation = 6`` would appear rotated under boxes and points meant for the stored grid.
The server therefore drops the EXIF block from JPEG (APP1 ``Exif`` segments) and PNG
(``eXIf`` chunks) files: a lossless edit of the headers, the pixel data is not touched. Files
that do not parse as expected are served unchanged.

Before a session starts, :func:`check_image_folder` makes sure every image file is where
``--images`` says (a wrong folder would serve a page where no image loads), and
:func:`fill_image_sizes` reads the ``width``/``height`` an image entry lacks from its file
(:func:`read_image_size`, which the check of a folder of photos uses too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pointsup.errors import PointsupError

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOS, _JPEG_APP1 = 0xDA, 0xE1
#: JPEG markers that carry no length field: TEM and RST0..RST7
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}


def strip_jpeg_exif(data: bytes) -> bytes:
    """``data`` without its APP1 ``Exif`` segments (unchanged when it has none or when the
    headers do not parse)."""
    if not data.startswith(_JPEG_SOI):
        return data
    kept, i, dropped = [_JPEG_SOI], 2, False
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return data
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == _JPEG_SOS:  # the image data follows: keep the rest as it is
            kept.append(data[i:])
            return b"".join(kept) if dropped else data
        if marker in _STANDALONE_MARKERS:
            kept.append(data[i : i + 2])
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        if end > len(data):
            return data
        if marker == _JPEG_APP1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            dropped = True
        else:
            kept.append(data[i:end])
        i = end
    return data


def strip_png_exif(data: bytes) -> bytes:
    """``data`` without its ``eXIf`` chunks (unchanged when it has none or does not parse)."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    kept, i, dropped = [_PNG_SIGNATURE], len(_PNG_SIGNATURE), False
    while i + 8 <= len(data):
        end = i + 12 + int.from_bytes(data[i : i + 4], "big")
        if end > len(data):
            return data
        if data[i + 4 : i + 8] == b"eXIf":
            dropped = True
        else:
            kept.append(data[i:end])
        i = end
    return b"".join(kept) if dropped and i == len(data) else data


def browser_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, EXIF removed from JPEG and PNG files (see the module docstring)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith(_JPEG_SOI):
        return strip_jpeg_exif(data)
    if data.startswith(_PNG_SIGNATURE):
        return strip_png_exif(data)
    return data


class ImageFolderError(PointsupError):
    """The images folder lacks a file the dataset names, or a file's size cannot be read."""


class UnreadableImage(PointsupError):
    """A file that does not open as an image (the message says why)."""


def read_image_size(path: str | os.PathLike[str], *, decode: bool = False) -> tuple[int, int, str | None]:
    """``(width, height, format)`` of an image file, read from its header: the stored pixel grid,
    which the browser shows (``format`` as Pillow names it: JPEG, PNG...). With ``decode`` the
    pixels are decoded too (a JPEG at an eighth of its size, fast), so that a cut-off file is caught.

    Raises:
        UnreadableImage: the file is missing, or cannot be opened or decoded as an image.
    """
    from PIL import Image  # here: the command line parses its arguments without Pillow

    try:
        with Image.open(path) as opened:
            width, height = opened.size
            kind = opened.format
            if decode:
                opened.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                opened.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(str(exc)) from None
    return int(width), int(height), kind


def check_image_folder(images_dir: Path, file_names: list[str]) -> None:
    """ImageFolderError naming the folder and the first missing file when a file is not there."""
    missing = [name for name in file_names if not (images_dir / name).is_file()]
    if missing:
        raise ImageFolderError(
            f"--images {images_dir}: {len(missing)} of {len(file_names)} image files are not there "
            f"(e.g. {images_dir / missing[0]}); is it the dataset's image folder?"
        )


def _has_size(image: dict[str, Any]) -> bool:
    return image.get("width") is not None and image.get("height") is not None


def fill_image_sizes(coco: dict[str, Any], images_dir: Path) -> int:
    """Set the ``width`` and ``height`` that image entries lack (absent or null) from their
    files' headers (the stored pixel grid, which the browser shows); returns how many were filled.

    Raises:
        ImageFolderError: such a file is missing (named with the folder) or not a readable image.
    """
    entries: list[Any] = coco["images"] if isinstance(coco.get("images"), list) else []
    named = [image for image in entries if isinstance(image, dict) and isinstance(image.get("file_name"), str)]
    sizeless = [image for image in named if not _has_size(image)]
    if sizeless:
        check_image_folder(images_dir, [image["file_name"] for image in named])
    filled = 0
    for image in sizeless:
        path = images_dir / image["file_name"]
        try:
            image["width"], image["height"], _ = read_image_size(path)
        except UnreadableImage as exc:
            raise ImageFolderError(
                f"image id {image.get('id')!r} has no width/height and its file {path} cannot be read to find them ({exc})"
            ) from None
        filled += 1
    return filled
