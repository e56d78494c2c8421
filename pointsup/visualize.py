"""Draw point annotations over their images: boxes, masks and labelled points, tiled into one picture.

:func:`show_annotations` backs ``pointsup show``. Each chosen image is scaled so its longer side
is at most :data:`MAX_TILE_SIDE` pixels; then every annotation's mask (when it has a
``segmentation``) is blended in its category colour, its box is outlined with the category name,
and its points are drawn at a fixed on-screen size: object points (label 1) as green discs,
background points (label 0) as magenta crosses, both outlined in black. A point ``[x, y]`` is a
pixel index and is drawn at the pixel centre ``(x + 0.5, y + 0.5)``. Tiles are laid out in a grid
of :data:`GRID_COLUMNS` columns under a legend. Only Pillow is used (no matplotlib).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

from pointsup.data.image_io import ImageReadError, image_format_for, open_rgb_image, write_image
from pointsup.points.format import ImageRecord, PointInstance, load_point_dataset
from pointsup.points.rle import segmentation_to_rle
from pointsup.utils.paths import refuse_output_over_input

#: A tile's longer side is scaled down to at most this many pixels (never scaled up).
MAX_TILE_SIDE = 640
#: Tiles per grid row.
GRID_COLUMNS = 2
#: Space between and around tiles, in pixels.
PADDING = 8
#: Height of the title bar above each tile and of the legend bar above the grid.
TITLE_HEIGHT = 22
LEGEND_HEIGHT = 26
#: Point marker radius (on screen, after scaling) and its dark outline width.
MARKER_RADIUS = 5
OUTLINE_WIDTH = 2
#: Marker colours; no category colour, mask blend or outline uses them exactly.
OBJECT_POINT_COLOR = (0, 255, 0)
BACKGROUND_POINT_COLOR = (255, 0, 255)
OUTLINE_COLOR = (0, 0, 0)
MASK_ALPHA = 0.45
CANVAS_COLOR = (40, 40, 40)
TITLE_COLOR = (245, 245, 245)
#: Category colours (a tab10-like palette without pure green or magenta), by category order.
PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (214, 39, 40),
    (23, 190, 207),
    (148, 103, 189),
    (255, 221, 0),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (127, 127, 127),
]


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` px (the bitmap default font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def category_colors(category_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """One palette colour per category id, in the given order (cycling when there are many)."""
    return {cid: PALETTE[i % len(PALETTE)] for i, cid in enumerate(category_ids)}


def _text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def _instance_mask(instance: PointInstance, height: int, width: int) -> np.ndarray:
    """The ``(height, width)`` uint8 mask of an annotation's segmentation."""
    try:
        rle = segmentation_to_rle(instance.segmentation, height, width)
        mask = mask_utils.decode(rle)
    except Exception as exc:  # SegmentationError or a pycocotools failure
        raise ValueError(f"annotation id {instance.annotation_id}: cannot decode its segmentation: {exc}") from exc
    if mask.ndim == 3:  # a list of RLEs decodes to (H, W, K)
        mask = mask.max(axis=2)
    if mask.shape != (height, width):
        raise ValueError(
            f"annotation id {instance.annotation_id}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
        )
    return mask


def _blend_mask(pixels: np.ndarray, mask: np.ndarray, color: tuple[int, int, int]) -> None:
    """Blend ``color`` into ``pixels`` (float ``(h, w, 3)``, in place) under a full-size mask,
    resized to the tile, and outline the mask in the same colour."""
    height, width = pixels.shape[:2]
    resized = Image.fromarray(mask * np.uint8(255)).resize((width, height), Image.Resampling.BILINEAR)
    alpha = np.asarray(resized, dtype=np.float32)[..., None] * (MASK_ALPHA / 255.0)
    pixels *= 1.0 - alpha
    pixels += alpha * np.asarray(color, dtype=np.float32)
    inside = alpha[..., 0] >= MASK_ALPHA / 2
    interior = inside.copy()
    interior[1:, :] &= inside[:-1, :]
    interior[:-1, :] &= inside[1:, :]
    interior[:, 1:] &= inside[:, :-1]
    interior[:, :-1] &= inside[:, 1:]
    pixels[inside & ~interior] = color


def _draw_point(draw: ImageDraw.ImageDraw, x: float, y: float, label: int) -> None:
    r = MARKER_RADIUS
    if label == 1:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=OBJECT_POINT_COLOR, outline=OUTLINE_COLOR, width=OUTLINE_WIDTH)
        return
    arms = [((x - r, y - r), (x + r, y + r)), ((x - r, y + r), (x + r, y - r))]
    for start, end in arms:
        draw.line((start, end), fill=OUTLINE_COLOR, width=3 + 2 * OUTLINE_WIDTH)
    for start, end in arms:
        draw.line((start, end), fill=BACKGROUND_POINT_COLOR, width=3)


def render_image_annotations(
    image: Image.Image,
    instances: Sequence[PointInstance],
    category_names: dict[int, str],
    *,
    colors: dict[int, tuple[int, int, int]] | None = None,
    max_side: int | None = MAX_TILE_SIDE,
    image_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Draw ``instances`` over ``image`` (its full-resolution coordinates), scaled to ``max_side``.

    Args:
        image: the image the annotations refer to (any mode; drawn as RGB).
        instances: its annotations (masks are drawn for those with a ``segmentation``).
        category_names: category id to name, for the box labels.
        colors: category id to RGB; by default :func:`category_colors` over ``category_names``.
        max_side: the longer side of the result at most; None keeps the image size.
        image_size: ``(width, height)`` the annotations refer to when ``image`` is a reduced
            copy of the image; default ``image.size``.

    Returns:
        A new RGB image of the scaled size.
    """
    colors = colors or category_colors(list(category_names))
    width, height = image_size or image.size
    scale = min(1.0, max_side / max(width, height)) if max_side else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    tile = image.convert("RGB")
    if tile.size != size:
        tile = tile.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    sx, sy = size[0] / width, size[1] / height
    color_of = lambda inst: colors.get(inst.category_id, PALETTE[-1])  # noqa: E731

    with_masks = [inst for inst in instances if inst.segmentation]  # None or [] means no mask
    if with_masks:
        pixels = np.asarray(tile, dtype=np.float32).copy()
        for inst in with_masks:
            _blend_mask(pixels, _instance_mask(inst, height, width), color_of(inst))
        tile = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(tile)
    font = _font(11)
    for inst in instances:
        color = color_of(inst)
        x0, y0, x1, y1 = inst.box_xyxy * np.array([sx, sy, sx, sy])
        draw.rectangle((x0, y0, x1, y1), outline=color, width=2)
        name = category_names.get(inst.category_id, str(inst.category_id)) + (" (crowd)" if inst.is_crowd else "")
        left, top, right, bottom = draw.textbbox((0, 0), name, font=font)
        label_h = bottom - top + 4
        ly = y0 - label_h if y0 - label_h >= 0 else y0
        draw.rectangle((x0, ly, x0 + right - left + 5, ly + label_h), fill=color)
        draw.text((x0 + 3 - left, ly + 2 - top), name, fill=_text_color(color), font=font)
    for inst in instances:
        centres = inst.continuous_point_coords() * np.array([sx, sy])
        order = np.argsort(inst.point_labels, kind="stable")  # background first, object on top
        for (x, y), label in zip(centres[order], inst.point_labels[order]):
            _draw_point(draw, float(x), float(y), int(label))
    return tile


def tile_title(file_name: str, instances: Sequence[PointInstance]) -> str:
    """``"name: 3 instances, 12 points, 58% positive"``."""
    labels = np.concatenate([inst.point_labels for inst in instances]) if instances else np.zeros(0)
    positive = f"{100.0 * float(np.mean(labels == 1)):.0f}% positive" if labels.size else "no positives"
    noun = "instance" if len(instances) == 1 else "instances"
    return f"{file_name}: {len(instances)} {noun}, {labels.size} points, {positive}"


def load_image(path: Path, record: ImageRecord, max_side: int | None = MAX_TILE_SIDE) -> Image.Image:
    """Open an image as 8-bit RGB and check its size against the annotation file.

    Decoding follows :func:`pointsup.data.image_io.open_rgb_image` (as training does): a file
    whose EXIF orientation turns it to the recorded size is turned. A large JPEG may come back
    reduced (by a power of two, still at least ``max_side``): draw it with
    ``image_size=(record.width, record.height)``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not a readable image, or its size differs from the record's.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path} (image id {record.id})")
    try:
        return open_rgb_image(path, image_id=record.id, expected_size=(record.width, record.height), max_side=max_side)
    except ImageReadError as exc:
        raise ValueError(str(exc)) from None


def choose_image_ids(
    images: dict[int, ImageRecord],
    by_image: dict[int, list[PointInstance]],
    image_ids: Sequence[int] | None,
    max_images: int,
) -> list[int]:
    """The requested ids (checked, duplicates dropped), else the first ``max_images`` annotated
    images in file order (the first images if none is annotated)."""
    if image_ids is not None:
        unknown = [i for i in image_ids if i not in images]
        if unknown:
            raise ValueError(f"image id {unknown[0]} is not in the annotation file")
        return list(dict.fromkeys(image_ids))
    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    annotated = [i for i in images if by_image[i]]
    return (annotated or list(images))[:max_images]


def _with_title(tile: Image.Image, title: str) -> Image.Image:
    framed = Image.new("RGB", (tile.width, tile.height + TITLE_HEIGHT), CANVAS_COLOR)
    framed.paste(tile, (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(framed)
    font = _font(13)
    while len(title) > 4 and draw.textlength(title, font=font) > tile.width - 6:
        title = title[:-4] + "..."
    draw.text((3, 4), title, fill=TITLE_COLOR, font=font)
    return framed


def _draw_legend(canvas: Image.Image, categories: dict[int, str], colors: dict[int, tuple[int, int, int]]) -> None:
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    x: float
    x, y = PADDING + MARKER_RADIUS + 2, PADDING + LEGEND_HEIGHT // 2
    entries = [(1, "object point (1)"), (0, "background point (0)")]
    for label, text in entries:
        _draw_point(draw, x, y, label)
        draw.text((x + MARKER_RADIUS + 5, y), text, fill=TITLE_COLOR, font=font, anchor="lm")
        x += MARKER_RADIUS + 5 + draw.textlength(text, font=font) + 18
    for cid, name in categories.items():
        draw.rectangle((x - 5, y - 5, x + 5, y + 5), fill=colors[cid], outline=OUTLINE_COLOR)
        draw.text((x + 10, y), name, fill=TITLE_COLOR, font=font, anchor="lm")
        x += 10 + draw.textlength(name, font=font) + 16


def compose_grid(tiles: Sequence[Image.Image], columns: int = GRID_COLUMNS) -> Image.Image:
    """Tiles (already titled) in rows of ``columns`` below a :data:`LEGEND_HEIGHT` band."""
    columns = max(1, min(columns, len(tiles)))
    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    cell_w = max(t.width for t in tiles)
    row_heights = [max(t.height for t in row) for row in rows]
    width = columns * cell_w + (columns + 1) * PADDING
    height = PADDING + LEGEND_HEIGHT + sum(row_heights) + (len(rows) + 1) * PADDING
    canvas = Image.new("RGB", (width, height), CANVAS_COLOR)
    y = PADDING + LEGEND_HEIGHT + PADDING
    for row, row_h in zip(rows, row_heights):
        for k, tile in enumerate(row):
            canvas.paste(tile, (PADDING + k * (cell_w + PADDING), y))
        y += row_h + PADDING
    return canvas


def show_annotations(
    annotations_path: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    image_ids: Sequence[int] | None = None,
    max_images: int = 4,
    output_option: str = "output_path",
) -> Path:
    """Render the chosen images with their annotations into one picture grid (written
    atomically, in the format ``output_path``'s suffix names: PNG, JPEG, WebP...).

    Args:
        annotations_path: a COCO file (points optional, see ``load_point_dataset``).
        images_dir: the folder ``file_name`` entries are relative to.
        output_path: the picture to write (``.png``, ``.jpg``...).
        image_ids: images to draw, in this order; None picks the first ``max_images`` images
            that have annotations.
        max_images: how many images to pick when ``image_ids`` is None.
        output_option: how the caller named ``output_path``, for the error below.

    Returns:
        ``output_path`` as a Path.

    Raises:
        PointFormatError: an invalid annotation file.
        FileNotFoundError: a missing image file.
        ValueError: an unknown image id, an unreadable image, an image whose size differs
            from the annotation file, or an output suffix that names no image format.
        OutputOverInputError: ``output_path`` is the annotation file or one of the chosen images.
    """
    refuse_output_over_input(output_path, [annotations_path], output_option)
    image_format_for(output_path)  # an unknown suffix fails before the work
    dataset = load_point_dataset(annotations_path, require_points=False)
    by_image = dataset.instances_by_image()
    names = dataset.category_names()
    colors = category_colors(list(names))
    chosen = choose_image_ids(dataset.images, by_image, image_ids, max_images)
    refuse_output_over_input(output_path, [Path(images_dir) / dataset.images[i].file_name for i in chosen], output_option)
    tiles = []
    for image_id in chosen:
        record = dataset.images[image_id]
        image = load_image(Path(images_dir) / record.file_name, record)
        instances = by_image[image_id]
        tile = render_image_annotations(image, instances, names, colors=colors, image_size=(record.width, record.height))
        tiles.append(_with_title(tile, tile_title(record.file_name, instances)))
    if not tiles:
        raise ValueError(f"{annotations_path}: has no images to show")
    canvas = compose_grid(tiles)
    shown = {inst.category_id for image_id in chosen for inst in by_image[image_id]}
    _draw_legend(canvas, {cid: n for cid, n in names.items() if cid in shown}, colors)
    write_image(output_path, canvas)
    return Path(output_path)
