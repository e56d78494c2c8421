"""Image bytes for the browser, without the EXIF metadata that would rotate them.

COCO annotations refer to the stored pixel grid (the dataset loader ignores the EXIF
orientation tag too), but browsers apply that tag when they draw an image, so a photo with
``Orientation = 6`` would appear rotated under boxes and points meant for the stored grid.
The server therefore drops the EXIF block from JPEG (APP1 ``Exif`` segments) and PNG
(``eXIf`` chunks) files: a lossless edit of the headers, the pixel data is not touched. Files
that do not parse as expected are served unchanged.
"""

from __future__ import annotations

import os

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
