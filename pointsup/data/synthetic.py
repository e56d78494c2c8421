"""A deterministic synthetic COCO instance-segmentation dataset of non-convex shapes.

Each image has a textured, cluttered background (low-frequency colour noise, stripes or a
gradient, unannotated distractor blobs, lines and rectangles) and 2 to 8 objects from
:data:`CATEGORY_NAMES` (rings, crescents, stars, arcs, crosses; see
:mod:`pointsup.data.synthetic_shapes`). Objects have random size, position, rotation, aspect
and colour, so the class must be recognised by shape. They are painted in order and overlap;
an object's annotation is its *visible* part. An object is only placed if afterwards every
object (itself included) keeps at least :data:`MIN_VISIBLE_AREA` visible pixels and at least
:data:`MIN_VISIBLE_FRACTION` of its full area, so every annotation is meaningful and no
unannotated shape is left in the image. Boxes are poor masks for these shapes, which is
where point supervision helps.

Image ``i`` (0-based) is drawn from ``np.random.default_rng([seed, i])``, so it does not
depend on the number of images; the same arguments give byte-identical JSON and PNG pixels.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pointsup.data.synthetic_shapes import (
    SHAPE_NAMES,
    ShapeRaster,
    draw_clutter,
    object_texture,
    render_background,
    sample_shape,
)
from pointsup.utils.atomic import write_bytes_atomic, write_json_atomic
from pointsup.utils.progress import progress

CATEGORY_NAMES: tuple[str, ...] = SHAPE_NAMES
"""Category names; category id ``k`` (1-based) is ``CATEGORY_NAMES[k - 1]``."""

MIN_OBJECTS = 2
MAX_OBJECTS = 8
MIN_VISIBLE_AREA = 40
"""Fewest visible pixels an annotated object may have."""
MIN_VISIBLE_FRACTION = 0.25
"""Smallest visible fraction of an object's full area."""
MIN_IMAGE_SIZE = 64
_MAX_ATTEMPTS = 60
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class SyntheticObject:
    """One annotated object of a rendered image.

    Attributes:
        category_id: 1-based COCO category id (index into :data:`CATEGORY_NAMES` plus 1).
        mask: ``(H, W)`` bool, the visible pixels of the object.
        full_area: pixel count of the object before occlusion by later objects.
    """

    category_id: int
    mask: np.ndarray
    full_area: int

    @property
    def area(self) -> int:
        """Number of visible pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def bbox(self) -> list[float]:
        """Tight box ``[x, y, w, h]`` of the visible mask in continuous pixel coordinates."""
        return _mask_bbox(self.mask)


@dataclass(frozen=True)
class SyntheticDataset:
    """Where :func:`generate_synthetic_dataset` wrote its output, and how much."""

    root: Path
    image_dir: Path
    train_json: Path
    val_json: Path
    num_images: int
    num_instances: int


def _check_image_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"image_size must be an integer, got {image_size!r}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE} pixels, got {image_size}")


def _mask_bbox(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` of a non-empty ``(H, W)`` bool mask, as floats."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _place_objects(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, list[ShapeRaster]]:
    """Choose 2 to 8 shapes and their paint order so that every one stays well visible.

    Returns:
        ``(owner, shapes)``: ``owner`` is ``(S, S)`` int16, 0 for background and ``k`` where
        ``shapes[k - 1]`` is the topmost shape; ``shapes`` in paint order.
    """
    owner = np.zeros((image_size, image_size), dtype=np.int16)
    shapes: list[ShapeRaster] = []
    full_areas: list[int] = []
    visible = np.zeros(0, dtype=np.int64)
    target = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
    attempts = 0
    while len(shapes) < target and (attempts < _MAX_ATTEMPTS or (len(shapes) < MIN_OBJECTS and attempts < 10 * _MAX_ATTEMPTS)):
        attempts += 1
        shape = sample_shape(rng, image_size)
        if shape is None:
            continue
        area = shape.area
        if area < MIN_VISIBLE_AREA:
            continue
        region = owner[shape.window]
        covered = np.bincount(region[shape.mask], minlength=len(shapes) + 1)[1:]
        remaining = visible - covered
        if np.any(remaining < MIN_VISIBLE_AREA) or np.any(remaining < MIN_VISIBLE_FRACTION * np.asarray(full_areas)):
            continue
        region[shape.mask] = len(shapes) + 1
        shapes.append(shape)
        full_areas.append(area)
        visible = np.append(remaining, area)
    return owner, shapes


def _pick_colour(rng: np.random.Generator, canvas: np.ndarray, shape: ShapeRaster) -> np.ndarray:
    """Of three random colours, the one farthest from the mean canvas colour under the shape."""
    candidates = rng.uniform(0.0, 255.0, size=(3, 3)).astype(np.float32)
    under = canvas[shape.window][shape.mask].mean(axis=0)
    return candidates[int(np.argmax(np.sum((candidates - under) ** 2, axis=1)))]


def render_synthetic_image(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, list[SyntheticObject]]:
    """Render one image and its annotated objects.

    Args:
        rng: the only source of randomness.
        image_size: side ``S`` of the square image in pixels (>= 64).

    Returns:
        ``(image, objects)``: ``image`` is ``(S, S, 3)`` uint8 RGB; ``objects`` in paint
        order, each with its visible ``(S, S)`` bool mask (masks are disjoint).
    """
    _check_image_size(image_size)
    canvas = render_background(rng, image_size)
    draw_clutter(rng, canvas)
    owner, shapes = _place_objects(rng, image_size)
    objects: list[SyntheticObject] = []
    for index, shape in enumerate(shapes, start=1):
        colour = _pick_colour(rng, canvas, shape)
        h, w = shape.mask.shape
        texture = object_texture(rng, colour, h, w)
        region = canvas[shape.window]
        region[shape.mask] = texture[shape.mask]
        rows, cols = shape.window
        visible = np.zeros((image_size, image_size), dtype=bool)
        visible[rows, cols] = owner[rows, cols] == index
        objects.append(SyntheticObject(shape.category_index + 1, visible, shape.area))
    # Mild pixel noise: uniform with standard deviation sigma (cheaper than Gaussian draws).
    sigma = rng.uniform(2.0, 6.0)
    noise = rng.random(canvas.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(sigma * math.sqrt(12.0))
    canvas += noise
    np.clip(canvas, 0.0, 255.0, out=canvas)
    image = (canvas + np.float32(0.5)).astype(np.uint8)
    return image, objects


def _encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of an ``(H, W)`` bool mask with ``counts`` as a str."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_png(image: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 RGB image as a lossless 8-bit PNG.

    A minimal encoder: every row uses the PNG "sub" filter (computed with NumPy) and the
    filtered bytes are deflated at level 1 with Huffman-only coding. For these noisy images
    it is about four times faster than Pillow's encoder (which tries five filters per row)
    and gives slightly smaller files; any PNG reader decodes it.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    height, width, _ = image.shape
    rows = image.reshape(height, width * 3)
    filtered = np.empty((height, width * 3 + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type "sub": byte minus the same channel of the previous pixel
    filtered[:, 1:4] = rows[:, :3]
    np.subtract(rows[:, 3:], rows[:, :-3], out=filtered[:, 4:])  # uint8 arithmetic wraps mod 256
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 8, zlib.Z_HUFFMAN_ONLY)
    idat = compressor.compress(filtered.tobytes()) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def num_val_images(num_images: int, val_fraction: float) -> int:
    """``round(num_images * val_fraction)``, at least 1 when ``num_images >= 2`` and
    ``val_fraction > 0``, and never all images (the training split is never empty)."""
    n_val = int(round(num_images * val_fraction))
    if num_images >= 2 and val_fraction > 0:
        n_val = max(1, n_val)
    return min(n_val, num_images - 1)


def _coco_document(images: list[dict], annotations: list[dict], categories: list[dict], split: str) -> dict[str, Any]:
    return {
        "info": {"description": f"pointsup synthetic shapes ({split})", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def generate_synthetic_dataset(
    output_dir: str | Path,
    num_images: int = 64,
    seed: int = 0,
    image_size: int = 512,
    val_fraction: float = 0.25,
    show_progress: bool = True,
) -> SyntheticDataset:
    """Write a synthetic COCO instance-segmentation dataset.

    Layout: ``output_dir/images/000001.png ...``, ``output_dir/instances_train.json`` (the
    first images) and ``output_dir/instances_val.json`` (the last
    ``round(num_images * val_fraction)`` images, at least one when ``num_images >= 2`` and
    ``val_fraction > 0``, never all). Image and annotation ids are 1-based and unique across
    both splits; segmentations are compressed RLEs, ``area`` is the mask pixel count and
    ``bbox`` the tight box of the mask.

    Args:
        output_dir: destination folder (created if missing).
        num_images: number of images (>= 1).
        seed: non-negative random seed; image ``i`` uses ``np.random.default_rng([seed, i])``.
        image_size: side of the square images in pixels (>= 64).
        val_fraction: fraction of images in the validation split, ``0 <= f < 1``.
        show_progress: show a progress bar on stderr.

    Raises:
        ValueError: for an invalid argument.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    _check_image_size(image_size)
    if not isinstance(val_fraction, (int, float, np.integer, np.floating)) or not (0.0 <= float(val_fraction) < 1.0):
        raise ValueError(f"val_fraction must satisfy 0 <= val_fraction < 1, got {val_fraction!r}")
    num_images, seed, image_size = int(num_images), int(seed), int(image_size)

    root = Path(output_dir)
    image_dir = root / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    n_train = num_images - num_val_images(num_images, float(val_fraction))
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORY_NAMES)]
    splits: dict[str, tuple[list[dict], list[dict]]] = {"train": ([], []), "val": ([], [])}
    annotation_id = 0
    for index in progress(range(num_images), total=num_images, desc="synthetic", unit="img", enabled=show_progress):
        image, objects = render_synthetic_image(np.random.default_rng([seed, index]), image_size)
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        write_bytes_atomic(image_dir / file_name, encode_png(image), fsync=False)
        images, annotations = splits["train" if index < n_train else "val"]
        images.append({"id": image_id, "file_name": file_name, "height": image_size, "width": image_size})
        for obj in objects:
            annotation_id += 1
            annotations.append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": obj.category_id,
                    "segmentation": _encode_rle(obj.mask),
                    "area": float(obj.area),
                    "bbox": obj.bbox,
                    "iscrowd": 0,
                }
            )
    train_json, val_json = root / "instances_train.json", root / "instances_val.json"
    write_json_atomic(train_json, _coco_document(*splits["train"], categories, "train"))
    write_json_atomic(val_json, _coco_document(*splits["val"], categories, "val"))
    return SyntheticDataset(root, image_dir, train_json, val_json, num_images, annotation_id)
