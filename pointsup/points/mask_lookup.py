"""Mask values at chosen pixels for a batch of COCO annotations, whatever their mask form.

Polygons are evaluated with the exact pycocotools scan-conversion rule at the pixels only
(:mod:`pointsup.points.polygon_raster`); uncompressed and compressed RLEs through their runs
(:mod:`pointsup.points.rle`). Nothing is decoded to a full ``H x W`` array, and the result is
identical to reading ``pycocotools.mask.decode(...)[y, x]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from pointsup.points.polygon_raster import PolygonBatch, polygon_values_at
from pointsup.points.rle import RunLengthMasks, SegmentationError, segmentation_to_rle


def _is_plain_polygon(segmentation: Any) -> bool:
    """A non-empty list of flat parts with >= 3 vertices each (anything else goes through pycocotools)."""
    return (
        isinstance(segmentation, list)
        and len(segmentation) > 0
        and all(isinstance(part, list) and len(part) >= 6 and len(part) % 2 == 0 for part in segmentation)
    )


def _is_uncompressed_rle(segmentation: Any) -> bool:
    return (
        isinstance(segmentation, dict)
        and isinstance(segmentation.get("counts"), list)
        and isinstance(segmentation.get("size"), list)
    )


def _flatten_pixels(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, N, 2)`` pixels to ``(A * N,)`` owner index, x and y."""
    count, n = pixels.shape[:2]
    flat = pixels.reshape(-1, 2)
    return np.repeat(np.arange(count), n), flat[:, 0], flat[:, 1]


def masks_as_runs(segmentations: Sequence[Any], sizes_hw: np.ndarray) -> tuple[list[int], RunLengthMasks | None, dict[int, str]]:
    """Convert any segmentations to one run-length batch through pycocotools.

    Args:
        segmentations: ``A`` COCO ``segmentation`` values (None when absent).
        sizes_hw: ``(A, 2)`` image ``[height, width]`` of each.

    Returns:
        converted: the indices that converted, in order (mask ``k`` of the batch is
            ``segmentations[converted[k]]``).
        masks: their batch (None when none converted).
        problems: index to a message for each segmentation that could not be used.
    """
    converted, rles, problems = [], [], {}
    for i, segmentation in enumerate(segmentations):
        try:
            if segmentation is None:
                raise SegmentationError("has no segmentation (simulation reads labels from masks)")
            rle = segmentation_to_rle(segmentation, int(sizes_hw[i][0]), int(sizes_hw[i][1]))
            if list(rle["size"]) != list(sizes_hw[i]):
                raise SegmentationError(f"mask size {list(rle['size'])} differs from its image's {list(map(int, sizes_hw[i]))}")
            RunLengthMasks.from_rles([rle])
        except SegmentationError as exc:
            problems[i] = str(exc).replace("RLE 0 of the batch", "its RLE")
            continue
        converted.append(i)
        rles.append(rle)
    return converted, (RunLengthMasks.from_rles(rles) if rles else None), problems


def mask_values_at_pixels(
    segmentations: Sequence[Any], sizes_hw: np.ndarray, pixels: np.ndarray
) -> tuple[np.ndarray, dict[int, str]]:
    """Read ``A`` masks at ``N`` pixels each.

    Args:
        segmentations: ``A`` COCO ``segmentation`` values (None when absent).
        sizes_hw: ``(A, 2)`` image ``[height, width]`` of each annotation.
        pixels: ``(A, N, 2)`` int ``[x, y]`` pixel indices inside the images.

    Returns:
        values: ``(A, N)`` uint8 mask values (0 where the mask is unusable).
        problems: batch index to a message, for each segmentation that could not be read.
    """
    count, n = pixels.shape[:2]
    values = np.zeros((count, n), dtype=np.uint8)
    problems: dict[int, str] = {}
    polygon_index, uncompressed_index, other_index = [], [], []
    for i, segmentation in enumerate(segmentations):
        if segmentation is None:
            problems[i] = "has no segmentation (simulation reads labels from masks)"
        elif _is_plain_polygon(segmentation):
            polygon_index.append(i)
        elif _is_uncompressed_rle(segmentation):
            uncompressed_index.append(i)
        else:
            other_index.append(i)

    if polygon_index:
        index = np.array(polygon_index)
        batch = PolygonBatch.from_segmentations([segmentations[i] for i in polygon_index])
        owner, x, y = _flatten_pixels(pixels[index])
        values[index] = polygon_values_at(batch, sizes_hw[index, 0], owner, x, y).reshape(-1, n)

    rle_index, runs, starts, heights, widths = [], [], [0], [], []
    for i in uncompressed_index:
        segmentation = segmentations[i]
        height, width = segmentation["size"]
        if [height, width] != sizes_hw[i].tolist():
            problems[i] = f"mask size {[height, width]} differs from its image's {sizes_hw[i].tolist()}"
            continue
        rle_index.append(i)
        runs.append(segmentation["counts"])
        starts.append(starts[-1] + len(segmentation["counts"]))
        heights.append(height)
        widths.append(width)
    masks = None
    if rle_index:
        flat_runs = np.fromiter(chain.from_iterable(runs), dtype=np.int64, count=starts[-1])
        try:
            masks = RunLengthMasks.from_runs(flat_runs, np.array(starts), np.array(heights), np.array(widths))
        except SegmentationError:
            # Find the culprits one by one; the valid ones are read below as a smaller batch.
            valid = []
            for k, i in enumerate(rle_index):
                try:
                    RunLengthMasks.from_runs(
                        np.array(runs[k]), np.array([0, len(runs[k])]), np.array([heights[k]]), np.array([widths[k]])
                    )
                    valid.append(k)
                except SegmentationError:
                    problems[i] = "malformed uncompressed RLE (negative counts, or counts not summing to height*width)"
            rle_index = [rle_index[k] for k in valid]
            kept_runs = [runs[k] for k in valid]
            lengths = np.array([len(r) for r in kept_runs], dtype=np.int64)
            masks = (
                RunLengthMasks.from_runs(
                    np.fromiter(chain.from_iterable(kept_runs), dtype=np.int64, count=int(lengths.sum())),
                    np.concatenate(([0], np.cumsum(lengths))),
                    np.array([heights[k] for k in valid], dtype=np.int64),
                    np.array([widths[k] for k in valid], dtype=np.int64),
                )
                if valid
                else None
            )
    if masks is not None:
        index = np.array(rle_index)
        values[index] = masks.values_at(*_flatten_pixels(pixels[index])).reshape(-1, n)

    # Compressed RLEs and unusual polygons: convert with pycocotools (as the reference does).
    converted_index, masks, bad = masks_as_runs([segmentations[i] for i in other_index], sizes_hw[other_index])
    problems.update({other_index[k]: message for k, message in bad.items()})
    if converted_index:
        assert masks is not None  # a batch whenever any converted
        index = np.array([other_index[k] for k in converted_index])
        values[index] = masks.values_at(*_flatten_pixels(pixels[index])).reshape(-1, n)
    return values, problems
