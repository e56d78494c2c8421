"""Image files to 8-bit RGB: the one place pointsup decodes the images of a dataset.

Training and evaluation data (:func:`pointsup.data.dataset.read_image`), ``pointsup predict``,
``pointsup pseudo-label`` and ``pointsup show`` all go through :func:`open_rgb_image`, so an
image gives the same pixels everywhere. Rules:

* **Pixel formats.** Grey (``"L"``, ``"1"``), palette (``"P"``, with or without transparency),
  ``"LA"``, ``"RGBA"``, ``"CMYK"`` and the other modes Pillow can convert become RGB through
  Pillow's conversion. Transparency is dropped and the colours kept: a transparent pixel has
  the colour stored for it (no compositing onto a background).
* **16-bit images** are scaled to 8 bits by keeping the high byte, ``v >> 8`` (so
  ``0..255 -> 0``, ``65280..65535 -> 255``: monotonic, and ``257 * k -> k`` exactly, the
  inverse of the usual 8 to 16-bit widening). Pillow decodes 16-bit grey PNG and TIFF files as
  mode ``"I;16"`` (older Pillow: ``"I"``) and leaves the scaling to the caller: its plain
  ``convert("RGB")`` clips every value above 255, turning a 16-bit photo all white. Pillow's
  own decoder already reduces 16-bit RGB, RGBA and grey-with-alpha PNGs to 8 bits by keeping
  the high byte, so ``>> 8`` (not the rounded ``v / 257``) is the rule that makes a 16-bit grey
  image and the same image stored as 16-bit RGB give the same pixels. A 32-bit integer image
  (``"I"``) is read as 16-bit data (clipped to ``0..65535``); a floating-point image (``"F"``)
  has no agreed range and is refused.
* **EXIF orientation.** COCO annotations refer to the stored pixel grid, so the orientation tag
  is not applied (the labelling tool also shows the stored grid). Exception: when the caller
  passes the size the annotation file gives (``expected_size``) and the stored grid does not
  have it but the grid turned as the tag says does, the image is turned: the annotations were
  drawn on the displayed photo (as tools that honour EXIF do), and boxes and pixels must agree.
  A square image, or one whose stored size is the recorded one, is never turned. Without
  ``expected_size`` (``pointsup predict``) the stored grid is used and predictions refer to it.

Images pointsup writes (``show``, prediction overlays) go through :func:`write_image`, which
encodes in the format the file name's suffix names.

Only Pillow and NumPy are used (no torch), so the light commands can import this module.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageOps

from pointsup.errors import PointsupError
from pointsup.utils.atomic import write_bytes_atomic

#: file suffix to the Pillow format pointsup writes it in
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
#: JPEG and WebP quality of written pictures
WRITE_QUALITY = 92

#: EXIF tag number of the orientation.
EXIF_ORIENTATION = 0x0112
#: Orientation values that turn the image by 90 degrees (width and height swap).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
#: Pillow modes of grey images wider than 8 bits, scaled by :func:`to_rgb8`.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageReadError(PointsupError, OSError):
    """An image file that is missing, unreadable or not a decodable image.

    An :class:`OSError`, so code that handles I/O failures handles it; the message names the
    file and, when known, the image id. It is built from one message string, so a DataLoader
    worker re-raises it in the main process with its type intact.
    """


class ImageSizeError(PointsupError, ValueError):
    """An image file whose size differs from the ``width``/``height`` of its JSON entry."""


def to_rgb8(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a decoded image (the module docstring gives the rules).

    Raises:
        ValueError: a floating-point (``"F"``) image, or a mode Pillow cannot convert to RGB.
    """
    if image.mode == "F":
        raise ValueError("floating-point images (Pillow mode F) have no defined 8-bit range; store the image as 8 or 16 bits")
    if image.mode in _WIDE_GREY_MODES:
        values = np.asarray(image)
        if image.mode == "I":
            values = np.clip(values, 0, 65535)
        image = Image.fromarray((values >> 8).astype(np.uint8))
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # the way Pillow asks for (a direct RGB conversion warns)
    return image.convert("RGB")


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of ``image`` once its EXIF orientation is applied."""
    width, height = image.size
    return (height, width) if image.getexif().get(EXIF_ORIENTATION) in _SWAPPING_ORIENTATIONS else (width, height)


def open_rgb_image(
    path: str | os.PathLike[str],
    *,
    image_id: int | None = None,
    expected_size: tuple[int, int] | None = None,
    source: str = "the annotation file",
    max_side: int | None = None,
) -> Image.Image:
    """Decode an image file to an 8-bit RGB Pillow image.

    Args:
        path: the image file.
        image_id: named in messages when given.
        expected_size: ``(width, height)`` the annotation file gives for the image; the file
            must have it, stored or turned by its EXIF orientation (module docstring). None
            takes the stored grid as it is.
        source: how messages name the annotation file.
        max_side: a JPEG whose longer side exceeds this may be decoded at a reduced size (by a
            power of two, still at least ``max_side``), for drawing; None decodes full size.

    Returns:
        An ``"RGB"`` image: ``expected_size`` when given (unless reduced by ``max_side``).

    Raises:
        ImageReadError: the file is missing, unreadable or not a decodable image.
        ImageSizeError: the file's size differs from ``expected_size``.
    """
    with _opened_image(path, image_id, expected_size, source, failure="cannot decode the image") as (image, turn):
        stored = image.size
        if max_side and max(stored) > max_side:
            scale = max_side / max(stored)
            image.draft("RGB", (int(stored[0] * scale) + 1, int(stored[1] * scale) + 1))
        return to_rgb8(ImageOps.exif_transpose(image) if turn else image)


def _image_name(path: str | os.PathLike[str], image_id: int | None) -> str:
    """How messages name an image file."""
    return f"image file {os.fspath(path)}" + ("" if image_id is None else f" (image id {image_id})")


@contextlib.contextmanager
def _opened_image(
    path: str | os.PathLike[str], image_id: int | None, expected_size: tuple[int, int] | None, source: str, failure: str
) -> Iterator[tuple[Image.Image, bool]]:
    """The image opened lazily (header read, pixels not decoded) and whether it must be turned
    by its EXIF orientation to have ``expected_size``; every failure inside the block becomes
    :class:`ImageReadError` (``failure`` says what went wrong) or :class:`ImageSizeError`."""
    what = _image_name(path, image_id)
    try:
        with Image.open(path) as image:
            stored = image.size
            turn = expected_size is not None and tuple(expected_size) != stored
            if expected_size is not None and turn and oriented_size(image) != tuple(expected_size):
                width, height = expected_size
                raise ImageSizeError(f"{what} is {stored[0]}x{stored[1]} (width x height) but {source} says {width}x{height}")
            yield image, turn
    except (ImageReadError, ImageSizeError):
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{what}: file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"{what}: {_bomb_message()}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ImageReadError(f"{what}: {failure}: {exc}") from None


def _bomb_message() -> str:
    limit = Image.MAX_IMAGE_PIXELS
    return (
        f"refused as a possible decompression bomb: over {2 * limit:,} pixels (Pillow's limit, "
        f"PIL.Image.MAX_IMAGE_PIXELS = {limit:,}, doubled)"
        if limit
        else "refused as a possible decompression bomb"
    )


def check_image_header(
    path: str | os.PathLike[str],
    *,
    image_id: int | None = None,
    expected_size: tuple[int, int] | None = None,
    source: str = "the annotation file",
) -> None:
    """Check what can be checked without decoding the pixels: the file exists, is an image
    Pillow can read, is not a decompression bomb and has ``expected_size`` (stored or turned by
    its EXIF orientation, as :func:`open_rgb_image` would read it). A millisecond per file.

    Raises:
        ImageReadError, ImageSizeError: as :func:`open_rgb_image` would, before any pixel is decoded.
    """
    with _opened_image(path, image_id, expected_size, source, failure="not a readable image") as (image, _):
        if image.mode == "F":
            raise ImageReadError(
                f"{_image_name(path, image_id)}: floating-point pixels (mode F) have no agreed range; "
                "convert the image to 8 or 16 bits"
            )


def image_format_for(path: str | os.PathLike[str]) -> str:
    """The Pillow format a picture written to ``path`` gets, from its suffix.

    Raises:
        ValueError: a suffix pointsup does not write (the message lists those it does).
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in WRITE_FORMATS:
        raise ValueError(
            f"{os.fspath(path)}: cannot tell the image format from {suffix or 'a name without suffix'!r}; "
            f"use one of {', '.join(WRITE_FORMATS)}"
        )
    return WRITE_FORMATS[suffix]


def write_image(path: str | os.PathLike[str], image: Image.Image) -> None:
    """Encode ``image`` in the format ``path``'s suffix names and write it atomically.

    Raises:
        ValueError: an unknown suffix (see :func:`image_format_for`).
        OutputWriteError: the file could not be written.
    """
    image_format = image_format_for(path)
    buffer = io.BytesIO()
    options = {"quality": WRITE_QUALITY} if image_format in ("JPEG", "WEBP") else {}
    (image.convert("RGB") if image_format == "JPEG" else image).save(buffer, format=image_format, **options)
    write_bytes_atomic(path, buffer.getvalue())
