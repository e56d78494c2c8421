"""PyTorch's antialiased bilinear resize of uint8 images, reproduced in NumPy (no torch).

``pointsup.data.transforms.resize_image`` calls ``F.interpolate(mode="bilinear",
antialias=True, align_corners=False)`` on a uint8 image. On x86 CPUs with AVX2, PyTorch resizes
uint8 images of at most 4 channels with Pillow-SIMD's fixed-point algorithm, which this module
repeats step for step, so that an exported model's runner feeds the graph the very pixels
PyTorch's data pipeline would:

1. per axis, for output pixel ``i``: ``scale = in / out``, centre ``scale (i + 0.5)``, support
   ``max(scale, 1)`` input pixels each side; the input pixels ``j`` within reach get the triangle
   weight ``1 - |(j - centre + 0.5) / max(scale, 1)|``, normalised to sum 1 (in double);
2. the weights become int16 at the largest precision ``p`` (bits) at which the axis's largest
   weight still fits: ``round(w * 2**p)``, rounded half away from zero;
3. a horizontal pass (when the width changes) then a vertical one (when the height changes), each
   ``clip((2**(p-1) + sum(pixel * w_int)) >> p, 0, 255)`` in integers, the horizontal result stored
   as uint8 before the vertical pass.
"""

from __future__ import annotations

import numpy as np


def axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The fixed-point weights of one axis.

    Returns:
        (out_size, taps) int64 input indices (clipped into range; weight 0 where padded),
        (out_size, taps) int64 integer weights and the precision ``p`` in bits.
    """
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inverse = 1.0 / scale if scale >= 1.0 else 1.0
    starts, rows = [], []
    for i in range(out_size):
        centre = scale * (i + 0.5)
        low = max(int(centre - support + 0.5), 0)
        count = min(int(centre + support + 0.5), in_size) - low
        x = np.abs((np.arange(count) + low - centre + 0.5) * inverse)
        weights = np.where(x < 1.0, 1.0 - x, 0.0)
        total = weights.sum()
        starts.append(low)
        rows.append(weights / total if total != 0.0 else weights)
    taps = max(len(r) for r in rows)
    weights = np.zeros((out_size, taps), dtype=np.float64)
    for i, row in enumerate(rows):
        weights[i, : len(row)] = row
    largest = float(weights.max())
    precision = 0
    while precision < 22 and int(0.5 + largest * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    scaled = weights * (1 << precision)
    integer = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int64)
    index = np.minimum(np.asarray(starts)[:, None] + np.arange(taps)[None], in_size - 1)
    return index, integer, precision


def _resample_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass along ``axis`` (0: rows, 1: columns) of an (H, W, C) uint8 image."""
    index, weights, precision = axis_weights(image.shape[axis], out_size)
    gathered = np.take(image, index, axis=axis).astype(np.int64)  # axis replaced by (out, taps)
    shape = [1] * gathered.ndim
    shape[axis], shape[axis + 1] = weights.shape
    total = (gathered * weights.reshape(shape)).sum(axis=axis + 1) + (1 << (precision - 1))
    return np.clip(total >> precision, 0, 255).astype(np.uint8)


def resize_like_torch(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W, C) uint8 → (height, width, C) uint8, as PyTorch's antialiased bilinear uint8 resize."""
    if image.shape[1] != width:
        image = _resample_axis(image, width, 1)
    if image.shape[0] != height:
        image = _resample_axis(image, height, 0)
    return np.ascontiguousarray(image)
