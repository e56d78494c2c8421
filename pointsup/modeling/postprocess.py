"""Paste box-relative mask probabilities into the image and encode them as COCO RLEs.

A detection's mask is an ``M x M`` probability map over its box. Pixel ``(i, j)`` of the image
(centre ``(j + 0.5, i + 0.5)``) reads the map at the box-relative coordinates
``u = (j + 0.5 - x0) / (x1 - x0)``, ``v = (i + 0.5 - y0) / (y1 - y0)`` by bilinear sampling with
``align_corners=False`` and zero padding (``grid_sample`` at ``2u - 1, 2v - 1``), and is on iff
the sampled probability is ``>= threshold``: detectron2's ``paste_masks_in_image``.

The sampled value is zero unless ``u`` and ``v`` lie within half a grid cell of ``[0, 1]``, so each
mask is computed only on the pixel window covering its box widened by half a cell and one pixel.
The result is bit-identical to sampling the whole image. Windows are processed in chunks (largest
first, padded to the chunk's largest window) to bound memory; CPU and CUDA run the same code.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor

#: Most grid points sampled in one ``grid_sample`` call (sets the memory of a chunk: about
#: 16 bytes per point for the grid and the result).
MAX_CHUNK_POINTS = 1 << 22
#: Most full-size masks held at once while encoding RLEs.
RLE_CHUNK_MASKS = 16


@dataclass(frozen=True)
class _PastedChunk:
    """Binary masks of some detections, each on its own pixel window.

    Attributes:
        indices: (n,) detection indices.
        tops, lefts: (n,) image row / column of each window's first pixel.
        heights, widths: (n,) window sizes, clipped to the image (may be 0).
        masks: (n, h, w) bool on the input's device; mask ``k``'s window is
            ``masks[k, :heights[k], :widths[k]]``.
    """

    indices: list[int]
    tops: list[int]
    lefts: list[int]
    heights: list[int]
    widths: list[int]
    masks: Tensor


def _check_inputs(mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float) -> None:
    if mask_probs.dim() != 3 or mask_probs.shape[1] != mask_probs.shape[2]:
        raise ValueError(f"mask_probs must be (K, M, M), got {tuple(mask_probs.shape)}")
    if boxes.shape != (mask_probs.shape[0], 4):
        raise ValueError(f"boxes must be ({mask_probs.shape[0]}, 4) to match mask_probs, got {tuple(boxes.shape)}")
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("boxes contain NaN or infinite coordinates")
    height, width = image_size
    if height < 0 or width < 0:
        raise ValueError(f"image_size must be (height, width) >= 0, got {image_size}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")


def _windows(boxes: np.ndarray, grid_size: int, image_size: tuple[int, int]) -> np.ndarray:
    """(K, 4) int64 ``[left, top, right, bottom)`` pixel windows clipped to the image.

    Pixel ``j`` can be nonzero only if its centre lies within half a cell of the box, i.e.
    ``x0 - half - 0.5 < j < x1 + half - 0.5``; the window keeps one more pixel each side.
    Boxes of zero or negative width or height get an empty window.
    """
    height, width = image_size
    x0, y0, x1, y1 = boxes.T
    half_x = 0.5 * (x1 - x0) / grid_size
    half_y = 0.5 * (y1 - y0) / grid_size
    left = np.clip(np.floor(x0 - half_x) - 1, 0, width)
    top = np.clip(np.floor(y0 - half_y) - 1, 0, height)
    right = np.clip(np.ceil(x1 + half_x) + 1, 0, width)
    bottom = np.clip(np.ceil(y1 + half_y) + 1, 0, height)
    windows = np.stack([left, top, right, bottom], axis=1).astype(np.int64)
    degenerate = (x1 <= x0) | (y1 <= y0)
    windows[degenerate, 2] = windows[degenerate, 0]
    return windows


def _chunks(sizes: np.ndarray, max_points: int) -> Iterator[np.ndarray]:
    """Groups of detection indices (largest window first) whose padded windows stay under
    ``max_points`` grid points (a single window may exceed it)."""
    order = np.argsort(-(sizes[:, 0] * sizes[:, 1]), kind="stable")
    start = 0
    while start < len(order):
        max_h = max_w = 0
        stop = start
        while stop < len(order):
            h, w = max(max_h, sizes[order[stop], 0]), max(max_w, sizes[order[stop], 1])
            if stop > start and (stop - start + 1) * h * w > max_points:
                break
            max_h, max_w, stop = h, w, stop + 1
        yield order[start:stop]
        start = stop


def _sample_windows(probs: Tensor, boxes: Tensor, lefts: Tensor, tops: Tensor, height: int, width: int) -> Tensor:
    """Bilinear samples of ``probs`` (n, M, M) at the pixel centres of windows of size
    ``(height, width)`` whose first pixels are at ``(tops, lefts)``; returns (n, height, width).

    The grid is computed exactly as for the whole image, so values are bit-identical."""
    xs = (lefts[:, None] + torch.arange(width, device=boxes.device)).to(boxes.dtype) + 0.5
    ys = (tops[:, None] + torch.arange(height, device=boxes.device)).to(boxes.dtype) + 0.5
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    grid_x = (xs - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1
    grid_y = (ys - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1
    n = probs.shape[0]
    grid = torch.stack([grid_x[:, None, :].expand(n, height, width), grid_y[:, :, None].expand(n, height, width)], dim=3)
    return F.grid_sample(probs[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def _pasted_chunks(
    mask_probs: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    threshold: float,
) -> Iterator[_PastedChunk]:
    """Thresholded masks of every detection with a non-empty window, in chunks of at most
    :data:`MAX_CHUNK_POINTS` grid points."""
    _check_inputs(mask_probs, boxes, image_size, threshold)
    if mask_probs.shape[0] == 0:
        return
    boxes_f = boxes.detach().to(device=mask_probs.device, dtype=torch.float32)
    # windows from the float32 boxes the sampling uses, so "degenerate" means the same in both
    windows = _windows(boxes_f.cpu().numpy().astype(np.float64), int(mask_probs.shape[1]), image_size)
    sizes = np.stack([windows[:, 3] - windows[:, 1], windows[:, 2] - windows[:, 0]], axis=1)
    nonempty = np.flatnonzero((sizes > 0).all(axis=1))
    probs = mask_probs.detach().float()
    for local in _chunks(sizes[nonempty], MAX_CHUNK_POINTS):
        index = nonempty[local]
        chunk_h, chunk_w = int(sizes[index, 0].max()), int(sizes[index, 1].max())
        index_t = torch.as_tensor(index, device=probs.device)
        lefts = torch.as_tensor(windows[index, 0], device=probs.device)
        tops = torch.as_tensor(windows[index, 1], device=probs.device)
        values = _sample_windows(probs[index_t], boxes_f[index_t], lefts, tops, chunk_h, chunk_w)
        yield _PastedChunk(
            indices=index.tolist(),
            tops=windows[index, 1].tolist(),
            lefts=windows[index, 0].tolist(),
            heights=sizes[index, 0].tolist(),
            widths=sizes[index, 1].tolist(),
            masks=values >= threshold,
        )


def paste_masks(mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5) -> Tensor:
    """Paste box-relative mask probabilities into full-size binary masks.

    Args:
        mask_probs: (K, M, M) probabilities on each box's grid.
        boxes: (K, 4) xyxy boxes in the coordinates of the target image.
        image_size: (H, W) of the target image.
        threshold: a pixel is on iff its sampled probability is ``>= threshold``, in (0, 1].

    Returns:
        (K, H, W) bool on the device of ``mask_probs``. Boxes with zero width or height, or
        entirely outside the image, give empty masks.
    """
    height, width = image_size
    pasted = torch.zeros((mask_probs.shape[0], height, width), dtype=torch.bool, device=mask_probs.device)
    for chunk in _pasted_chunks(mask_probs, boxes, image_size, threshold):
        for k, index in enumerate(chunk.indices):
            top, left, h, w = chunk.tops[k], chunk.lefts[k], chunk.heights[k], chunk.widths[k]
            pasted[index, top : top + h, left : left + w] = chunk.masks[k, :h, :w]
    return pasted


@dataclass(frozen=True)
class MaskWindow:
    """The pasted mask of one detection on the pixel window that can hold it.

    Attributes:
        index: the detection's index.
        top, left: image row and column of the window's first pixel.
        mask: (h, w) bool NumPy array covering image rows ``top:top + h``, columns ``left:left + w``.
    """

    index: int
    top: int
    left: int
    mask: np.ndarray


def mask_windows(mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5) -> Iterator[MaskWindow]:
    """The pasted masks (see :func:`paste_masks`) as small windows, largest first; detections
    whose window is empty (degenerate box, box outside the image) are left out."""
    for chunk in _pasted_chunks(mask_probs, boxes, image_size, threshold):
        masks = chunk.masks.cpu().numpy()
        for k, index in enumerate(chunk.indices):
            yield MaskWindow(index, chunk.tops[k], chunk.lefts[k], masks[k, : chunk.heights[k], : chunk.widths[k]])


def masks_to_rles(mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = 0.5) -> list[dict]:
    """Compressed COCO RLEs of the pasted masks (see :func:`paste_masks`), in detection order.

    At most :data:`RLE_CHUNK_MASKS` full-size masks exist at a time.

    Returns:
        K dicts ``{"size": [H, W], "counts": str}``.
    """
    height, width = image_size
    num = int(mask_probs.shape[0])
    buffer = np.zeros((height, width, min(num, RLE_CHUNK_MASKS)), dtype=np.uint8, order="F")
    rles: list[dict | None] = [None] * num
    windows = mask_windows(mask_probs, boxes, image_size, threshold)
    while batch := list(itertools.islice(windows, RLE_CHUNK_MASKS)):
        for slot, window in enumerate(batch):
            _window_view(buffer[:, :, slot], window)[...] = window.mask
        for window, rle in zip(batch, mask_utils.encode(buffer[:, :, : len(batch)])):
            rles[window.index] = _as_text(rle)
        for slot, window in enumerate(batch):
            _window_view(buffer[:, :, slot], window)[...] = 0
    empty = None
    for index, rle in enumerate(rles):
        if rle is None:  # no pixel of the image can be on
            empty = empty or _as_text(mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0])
            rles[index] = dict(empty)
    return rles  # type: ignore[return-value]


def _window_view(image: np.ndarray, window: MaskWindow) -> np.ndarray:
    """The part of ``image`` (H, W) under ``window``."""
    height, width = window.mask.shape
    return image[window.top : window.top + height, window.left : window.left + width]


def _as_text(rle: dict) -> dict:
    """An RLE with its ``counts`` as ``str`` (JSON-serialisable)."""
    counts = rle["counts"]
    return {"size": [int(s) for s in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
