"""Mask look-ups straight from COCO run-length encodings, without decoding whole masks.

COCO stores a mask of height ``H`` and width ``W`` as run lengths over the pixels in
column-major order (pixel ``(x, y)`` has linear index ``x * H + y``), starting with a run of
zeros. pycocotools compresses the run lengths into an ASCII string (a LEB128-like code in
which runs from the third on are stored as differences to the run two places earlier).

The reference point simulation decodes every mask to a full ``H x W`` array only to read ten
pixels of it. Here the compressed strings of many masks are decoded together with vectorised
NumPy into run lengths, and a pixel's value is found by a binary search over the cumulative
run ends: it is 1 exactly when an odd number of runs ends at or before its linear index.
The work per mask is proportional to its number of runs, not to ``H x W``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from pointsup.errors import PointsupError


class SegmentationError(PointsupError, ValueError):
    """A segmentation that cannot be turned into a mask (the message says why)."""


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Convert any COCO segmentation to one compressed RLE, the way the reference does.

    Polygons (a list of ``[x0, y0, x1, y1, ...]`` parts) are rasterised part by part by
    pycocotools and merged (union) into one mask; an uncompressed RLE (``counts`` is a list)
    is compressed; a compressed RLE is returned with its ``counts`` as bytes.

    Args:
        segmentation: the ``segmentation`` field of a COCO annotation.
        height, width: the image size, used for polygons and uncompressed RLEs.

    Returns:
        ``{"size": [H, W], "counts": bytes}``.

    Raises:
        SegmentationError: for an empty or malformed segmentation.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            raise SegmentationError("segmentation is an empty polygon list")
        for part in segmentation:
            if not isinstance(part, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part):
                raise SegmentationError("each polygon must be a flat list of numbers [x0, y0, x1, y1, ...]")
        try:
            parts = mask_utils.frPyObjects(segmentation, height, width)
        except Exception as exc:  # pycocotools raises bare Exceptions
            raise SegmentationError(f"pycocotools could not read the polygons: {exc}") from exc
        return mask_utils.merge(parts)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        counts = segmentation["counts"]
        size = segmentation["size"]
        if not (isinstance(size, list) and len(size) == 2):
            raise SegmentationError(f"RLE size must be [height, width], got {size!r}")
        if isinstance(counts, list):
            if sum(counts) != size[0] * size[1]:
                raise SegmentationError(
                    f"uncompressed RLE counts sum to {sum(counts)}, expected height*width = {size[0] * size[1]}"
                )
            return mask_utils.frPyObjects(segmentation, height, width)
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        if not isinstance(counts, bytes):
            raise SegmentationError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
        return {"size": [int(size[0]), int(size[1])], "counts": counts}
    raise SegmentationError(f"unsupported segmentation of type {type(segmentation).__name__}")


def decode_counts_strings(counts: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Decode many compressed RLE ``counts`` strings into run lengths at once.

    Args:
        counts: ``M`` compressed strings (bytes), as pycocotools produces them.

    Returns:
        runs: ``(T,)`` int64, all run lengths of all masks concatenated.
        starts: ``(M + 1,)`` int64, mask ``i`` owns ``runs[starts[i]:starts[i + 1]]``.

    Raises:
        SegmentationError: for an empty string or one whose last code is cut off.
    """
    num_masks = len(counts)
    if num_masks == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    lengths = np.fromiter((len(c) for c in counts), dtype=np.int64, count=num_masks)
    if (lengths == 0).any():
        raise SegmentationError(f"RLE {int(np.argmax(lengths == 0))} of the batch has empty counts")
    chars = np.frombuffer(b"".join(counts), dtype=np.uint8).astype(np.int64) - 48
    string_ends = np.cumsum(lengths)
    if (chars < 0).any() or (chars > 63).any():
        raise SegmentationError("RLE counts string holds characters outside the compressed alphabet")
    continues = (chars & 0x20) != 0
    if continues[string_ends - 1].any():
        bad = int(np.flatnonzero(continues[string_ends - 1])[0])
        raise SegmentationError(f"RLE {bad} of the batch ends in the middle of a number")

    # Split the character stream into tokens (one run length each).
    token_last_char = np.flatnonzero(~continues)
    token_first_char = np.concatenate(([0], token_last_char[:-1] + 1))
    num_chars = token_last_char - token_first_char + 1
    token_of_char = np.repeat(np.arange(len(token_first_char)), num_chars)
    shift = 5 * (np.arange(len(chars)) - token_first_char[token_of_char])
    values = np.add.reduceat((chars & 0x1F) << shift, token_first_char)
    negative = (chars[token_last_char] & 0x10) != 0
    values = values - (negative.astype(np.int64) << (5 * num_chars))

    # Each string ends on a token's last character, so the tokens of mask i end before its end.
    starts = np.concatenate(([0], np.searchsorted(token_last_char, string_ends - 1, side="right")))
    tokens_per_mask = np.diff(starts)
    mask_of_token = np.repeat(np.arange(num_masks), tokens_per_mask)
    position = np.arange(len(values)) - starts[mask_of_token]

    # Runs from the fourth on (m >= 3) are stored as a difference to run m - 2: undo it with a
    # cumulative sum over each mask's odd positions (m >= 1) and even positions (m >= 2).
    runs = values.copy()
    for parity in (1, 0):
        selected = np.flatnonzero((position >= 1) & (position % 2 == parity))
        if len(selected) == 0:
            continue
        selected_values = values[selected]
        totals = np.cumsum(selected_values)
        group = mask_of_token[selected]
        group_start = np.flatnonzero(np.concatenate(([True], group[1:] != group[:-1])))
        offset = np.repeat(
            totals[group_start] - selected_values[group_start], np.diff(np.concatenate((group_start, [len(selected)])))
        )
        runs[selected] = totals - offset
    return runs, starts


@dataclass(frozen=True)
class RunLengthMasks:
    """A batch of masks held as run lengths, answering pixel look-ups without decoding.

    Attributes:
        heights, widths: ``(M,)`` int64 mask sizes.
        run_ends: ``(T,)`` int64, cumulative run ends over the whole batch (mask ``i``'s ends
            are offset by the pixel counts of masks ``0..i-1``).
        starts: ``(M + 1,)`` int64, mask ``i`` owns ``run_ends[starts[i]:starts[i + 1]]``.
        pixel_offsets: ``(M,)`` int64, the number of pixels in the masks before mask ``i``.
    """

    heights: np.ndarray
    widths: np.ndarray
    run_ends: np.ndarray
    starts: np.ndarray
    pixel_offsets: np.ndarray

    @classmethod
    def from_runs(cls, runs: np.ndarray, starts: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> RunLengthMasks:
        """Build from run lengths: mask ``i`` owns ``runs[starts[i]:starts[i + 1]]`` (zeros first).

        Raises:
            SegmentationError: when a mask's runs are negative or do not add up to ``H * W``
                (the message gives the index of the mask in the batch).
        """
        runs = np.asarray(runs, dtype=np.int64)
        starts = np.asarray(starts, dtype=np.int64)
        heights = np.asarray(heights, dtype=np.int64)
        widths = np.asarray(widths, dtype=np.int64)
        if (runs < 0).any():
            token = int(np.flatnonzero(runs < 0)[0])
            raise SegmentationError(
                f"RLE {int(np.searchsorted(starts, token, side='right') - 1)} of the batch has a negative run"
            )
        pixels = heights * widths
        run_ends = np.cumsum(runs)
        ends_before = np.concatenate(([0], run_ends))
        mask_totals = ends_before[starts[1:]] - ends_before[starts[:-1]]
        bad = np.flatnonzero(mask_totals != pixels)
        if len(bad):
            i = int(bad[0])
            raise SegmentationError(
                f"RLE {i} of the batch covers {int(mask_totals[i])} pixels but its size is "
                f"{int(heights[i])}x{int(widths[i])} = {int(pixels[i])}"
            )
        pixel_offsets = np.concatenate(([0], np.cumsum(pixels)[:-1]))
        return cls(heights, widths, run_ends, starts, pixel_offsets)

    @classmethod
    def from_rles(cls, rles: Sequence[dict]) -> RunLengthMasks:
        """Build from compressed RLE dicts (``{"size": [H, W], "counts": bytes}``); see :meth:`from_runs`."""
        sizes = np.array([r["size"] for r in rles], dtype=np.int64).reshape(-1, 2)
        runs, starts = decode_counts_strings([r["counts"] for r in rles])
        return cls.from_runs(runs, starts, sizes[:, 0], sizes[:, 1])

    def __len__(self) -> int:
        return len(self.heights)

    def values_at(self, mask_index: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mask values at integer pixels.

        Args:
            mask_index: ``(P,)`` int, which mask of the batch each pixel is read from.
            x, y: ``(P,)`` int pixel indices, ``0 <= x < W`` and ``0 <= y < H`` of that mask.

        Returns:
            ``(P,)`` uint8 in {0, 1}.
        """
        mask_index = np.asarray(mask_index, dtype=np.int64)
        linear = self.pixel_offsets[mask_index] + np.asarray(x, np.int64) * self.heights[mask_index] + np.asarray(y, np.int64)
        runs_ended = np.searchsorted(self.run_ends, linear, side="right") - self.starts[mask_index]
        return (runs_ended & 1).astype(np.uint8)

    def crop(self, mask_index: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Rasterise the window ``[x0, x1) x [y0, y1)`` of one mask.

        Returns:
            ``(y1 - y0, x1 - x0)`` uint8 array.
        """
        ys, xs = np.mgrid[y0:y1, x0:x1]
        index = np.full(xs.size, mask_index, dtype=np.int64)
        return self.values_at(index, xs.ravel(), ys.ravel()).reshape(ys.shape)
