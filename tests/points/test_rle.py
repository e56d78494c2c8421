"""Run-length look-ups must equal pycocotools' decoded masks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from pointsup.points.rle import RunLengthMasks, SegmentationError, decode_counts_strings, segmentation_to_rle


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat.size and flat[0] == 1 else counts


mask_strategy = st.integers(1, 30).flatmap(
    lambda h: st.integers(1, 30).flatmap(lambda w: arrays(np.uint8, (h, w), elements=st.integers(0, 1)))
)


@settings(max_examples=100, deadline=None)
@given(masks=st.lists(mask_strategy, min_size=1, max_size=4))
def test_compressed_strings_decode_to_the_same_masks(masks):
    rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
    batch = RunLengthMasks.from_rles(rles)
    for i, mask in enumerate(masks):
        h, w = mask.shape
        np.testing.assert_array_equal(batch.crop(i, 0, 0, w, h), mask)


@settings(max_examples=60, deadline=None)
@given(mask=mask_strategy)
def test_uncompressed_and_compressed_agree(mask):
    h, w = mask.shape
    counts = uncompressed_counts(mask)
    runs, starts = decode_counts_strings([mask_utils.encode(np.asfortranarray(mask))["counts"]])
    assert runs.tolist() == counts
    batch = RunLengthMasks.from_runs(np.array(counts), np.array([0, len(counts)]), np.array([h]), np.array([w]))
    ys, xs = np.mgrid[0:h, 0:w]
    values = batch.values_at(np.zeros(xs.size, int), xs.ravel(), ys.ravel())
    np.testing.assert_array_equal(values.reshape(h, w), mask)


def test_large_runs_use_multi_character_codes():
    mask = np.zeros((1000, 900), np.uint8)
    mask[500:, 450:] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    batch = RunLengthMasks.from_rles([rle])
    np.testing.assert_array_equal(batch.crop(0, 440, 490, 460, 510), mask[490:510, 440:460])


def test_runs_that_do_not_cover_the_mask_are_rejected():
    with pytest.raises(SegmentationError, match="covers 10 pixels"):
        RunLengthMasks.from_runs(np.array([4, 6]), np.array([0, 2]), np.array([4]), np.array([4]))
    with pytest.raises(SegmentationError, match="negative run"):
        RunLengthMasks.from_runs(np.array([20, -4]), np.array([0, 2]), np.array([4]), np.array([4]))


def test_truncated_compressed_string_is_rejected():
    rle = mask_utils.encode(np.asfortranarray(np.eye(40, dtype=np.uint8)))
    # A character with the continuation bit set cannot end a string.
    with pytest.raises(SegmentationError, match="middle of a number"):
        decode_counts_strings([rle["counts"] + b"\x60"])


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ([], "empty polygon list"),
        ([["a", 1, 2]], "flat list of numbers"),
        ({"size": [4, 4], "counts": [3, 2]}, "sum to 5"),
        ({"size": [4], "counts": "abc"}, "size must be"),
        (42, "unsupported segmentation"),
    ],
)
def test_bad_segmentations_give_clear_errors(segmentation, message):
    with pytest.raises(SegmentationError, match=message):
        segmentation_to_rle(segmentation, 4, 4)
