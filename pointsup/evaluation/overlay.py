"""Draw a model's detections over their image: translucent masks, box outlines, "name 0.93" labels.

Detections at or above ``score_threshold`` are drawn in descending score order, the best on top;
instance ``k`` of that order gets colour ``PALETTE[k % len(PALETTE)]`` (the palette of
:mod:`pointsup.visualize`), so the same detections always look the same. Masks are pasted as for
evaluation (probability >= 0.5, :func:`pointsup.modeling.postprocess.mask_windows`), on each
box's pixel window only. Only Pillow and NumPy draw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from pointsup.data.image_io import write_image
from pointsup.modeling.postprocess import mask_windows
from pointsup.structures import Detections
from pointsup.visualize import PALETTE

MASK_ALPHA = 0.5
BOX_WIDTH = 2
FONT_SIZE = 11


def _as_pil(image: Tensor | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be a (3, H, W) uint8 tensor or a PIL image, got {tuple(image.shape)} {image.dtype}")
    return Image.fromarray(image.detach().cpu().permute(1, 2, 0).contiguous().numpy())


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def _label_text_color(background: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw_detections(
    image: Tensor | Image.Image,
    detections: Detections,
    category_names: Sequence[str] | Mapping[int, str],
    score_threshold: float = 0.5,
) -> Image.Image:
    """Draw ``detections`` over ``image``.

    Args:
        image: (3, H, W) uint8 RGB tensor or a PIL image, of ``detections.image_size``.
        detections: the image's detections (``mask_probs`` may be None: boxes only).
        category_names: name of each contiguous class label.
        score_threshold: detections scoring below it are not drawn.

    Returns:
        A new RGB PIL image of the same size.
    """
    canvas = _as_pil(image)
    height, width = detections.image_size
    if canvas.size != (width, height):
        raise ValueError(f"image is {canvas.size[0]}x{canvas.size[1]} but the detections are for {width}x{height}")
    scores = detections.scores.detach().float().cpu()
    keep = torch.nonzero(scores >= score_threshold).flatten()
    keep = keep[torch.argsort(scores[keep], descending=True, stable=True)]
    colors = [PALETTE[k % len(PALETTE)] for k in range(len(keep))]
    if detections.mask_probs is not None and len(keep):
        canvas = _blend_masks(
            canvas, detections.mask_probs[keep.to(detections.mask_probs.device)], detections.boxes[keep], colors
        )
    draw = ImageDraw.Draw(canvas)
    font = _font()
    boxes = detections.boxes.detach().float().cpu()[keep].tolist()
    classes = detections.classes.detach().cpu()[keep].tolist()
    for k in reversed(range(len(keep))):  # the best detection drawn last, on top
        x0, y0, x1, y1 = boxes[k]
        color = colors[k]
        draw.rectangle((x0, y0, x1, y1), outline=color, width=BOX_WIDTH)
        text = f"{category_names[classes[k]]} {float(scores[keep[k]]):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        label_h = bottom - top + 4
        label_y = y0 - label_h if y0 - label_h >= 0 else y0
        draw.rectangle((x0, label_y, x0 + right - left + 5, label_y + label_h), fill=color)
        draw.text((x0 + 3 - left, label_y + 2 - top), text, fill=_label_text_color(color), font=font)
    return canvas


def _blend_masks(canvas: Image.Image, mask_probs: Tensor, boxes: Tensor, colors: list[tuple[int, int, int]]) -> Image.Image:
    """Blend each pasted mask in its colour, the first mask last (on top)."""
    pixels = np.asarray(canvas, dtype=np.float32).copy()
    windows = mask_windows(mask_probs, boxes.to(mask_probs.device), (canvas.height, canvas.width))
    for window in sorted(windows, key=lambda w: -w.index):
        height, width = window.mask.shape
        region = pixels[window.top : window.top + height, window.left : window.left + width]
        color = np.asarray(colors[window.index], dtype=np.float32)
        region[window.mask] = (1.0 - MASK_ALPHA) * region[window.mask] + MASK_ALPHA * color
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def save_overlay(
    path: str | os.PathLike[str],
    image: Tensor | Image.Image,
    detections: Detections,
    category_names: Sequence[str] | Mapping[int, str],
    score_threshold: float = 0.5,
) -> Path:
    """Write :func:`draw_detections` at ``path`` (atomically, in the format its suffix names:
    PNG, JPEG...) and return the path."""
    write_image(path, draw_detections(image, detections, category_names, score_threshold))
    return Path(path)
