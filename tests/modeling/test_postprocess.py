"""Pasting box-relative mask probabilities into the image, and their RLEs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pointsup.modeling import postprocess
from pointsup.modeling.postprocess import masks_to_rles, paste_masks


def full_image_reference(mask_probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """(K, H, W) probabilities sampled at every pixel centre of the image (detectron2's paste)."""
    height, width = image_size
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    x0, y0, x1, y1 = boxes.float().unbind(dim=1)
    grid_x = (xs[None] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1
    grid_y = (ys[None] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1
    k = boxes.shape[0]
    grid = torch.stack([grid_x[:, None, :].expand(k, height, width), grid_y[:, :, None].expand(k, height, width)], dim=3)
    return F.grid_sample(mask_probs.float()[:, None], grid, align_corners=False)[:, 0]


def constant_one_value(box: tuple[float, float, float, float], grid_size: int, image_size: tuple[int, int]) -> np.ndarray:
    """The value a constant-1 map samples to at each pixel, in float64: the product of the
    bilinear weight that falls inside the grid along x and along y."""
    height, width = image_size
    x0, y0, x1, y1 = box

    def inside_weight(centres: np.ndarray, lo: float, hi: float) -> np.ndarray:
        position = (centres - lo) / (hi - lo) * grid_size - 0.5  # grid pixel coordinate
        return np.clip(np.minimum(position + 1.0, grid_size - position), 0.0, 1.0)

    wx = inside_weight(np.arange(width) + 0.5, x0, x1)
    wy = inside_weight(np.arange(height) + 0.5, y0, y1)
    return wy[:, None] * wx[None, :]


def test_integer_box_of_ones_fills_exactly_the_pixels_whose_centres_are_inside():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 37.0]])
    pasted = paste_masks(torch.ones(1, 28, 28), boxes, (64, 80))[0].numpy()
    expected = np.zeros((64, 80), dtype=bool)
    expected[20:37, 10:50] = True
    np.testing.assert_array_equal(pasted, expected)


@pytest.mark.parametrize("grid_size", [28, 224])
@pytest.mark.parametrize(
    "box",
    [(10.5, 20.5, 50.5, 60.5), (3.25, 7.75, 41.0, 19.5), (0.3, 0.6, 70.9, 63.2), (-12.0, 30.0, 20.0, 90.0), (33.3, 12.1, 33.9, 12.8)],
)
def test_constant_one_map_matches_the_direct_formula(box, grid_size):
    image_size = (64, 72)
    pasted = paste_masks(torch.ones(1, grid_size, grid_size), torch.tensor([box]), image_size)[0].numpy()
    value = constant_one_value(box, grid_size, image_size)
    # float32 rounding may go either way where the value is 0.5 (box edges through pixel
    # centres; test_half_integer_box_edges_are_on_and_corners_off pins those down)
    decided = np.abs(value - 0.5) > 1e-5
    np.testing.assert_array_equal(pasted[decided], (value >= 0.5)[decided])
    assert decided.mean() > 0.95
    # on pixels have centres inside the closed box (the half-cell margin never reaches 0.5)
    rows, cols = np.nonzero(pasted)
    x0, y0, x1, y1 = box
    assert np.all((cols + 0.5 >= x0) & (cols + 0.5 <= x1) & (rows + 0.5 >= y0) & (rows + 0.5 <= y1))


def test_half_integer_box_edges_are_on_and_corners_off():
    """A pixel centre exactly on the box edge samples 0.5 (kept); at a corner 0.25 (dropped)."""
    pasted = paste_masks(torch.ones(1, 28, 28), torch.tensor([[10.5, 20.5, 50.5, 60.5]]), (80, 80))[0]
    assert pasted[20, 30] and pasted[40, 10] and pasted[60, 30] and pasted[40, 50]
    assert not pasted[20, 10] and not pasted[60, 50]
    assert not pasted[19, 30] and not pasted[40, 9]


@pytest.mark.parametrize("threshold", [0.5, 0.2, 0.9])
def test_random_maps_match_the_full_image_reference(threshold):
    g = torch.Generator().manual_seed(3)
    image_size = (97, 131)
    corners = torch.rand(12, 2, generator=g) * torch.tensor([160.0, 120.0]) - 15
    sizes = torch.rand(12, 2, generator=g) * torch.tensor([90.0, 70.0]) + 0.2
    boxes = torch.cat([corners, corners + sizes], dim=1)
    probs = torch.rand(12, 28, 28, generator=g)
    expected = full_image_reference(probs, boxes, image_size) >= threshold
    torch.testing.assert_close(paste_masks(probs, boxes, image_size, threshold), expected, rtol=0, atol=0)


def test_small_chunks_give_the_same_masks(monkeypatch):
    g = torch.Generator().manual_seed(5)
    corners = torch.rand(20, 2, generator=g) * 100
    boxes = torch.cat([corners, corners + torch.rand(20, 2, generator=g) * 60 + 1], dim=1)
    probs = torch.rand(20, 28, 28, generator=g)
    whole = paste_masks(probs, boxes, (120, 140))
    monkeypatch.setattr(postprocess, "MAX_CHUNK_POINTS", 500)
    assert len(list(postprocess._pasted_chunks(probs, boxes, (120, 140), 0.5))) > 5
    torch.testing.assert_close(paste_masks(probs, boxes, (120, 140)), whole, rtol=0, atol=0)


def test_no_detections():
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (30, 40)).shape == (0, 30, 40)
    assert masks_to_rles(torch.zeros(0, 28, 28), torch.zeros(0, 4), (30, 40)) == []


def test_boxes_outside_the_image_and_degenerate_boxes_give_empty_masks():
    boxes = torch.tensor([[200.0, 10.0, 260.0, 30.0], [-50.0, -40.0, -2.0, -1.0], [10.0, 10.0, 10.0, 30.0], [12.0, 30.0, 20.0, 5.0]])
    pasted = paste_masks(torch.ones(4, 28, 28), boxes, (50, 60))
    assert not pasted.any()
    rles = masks_to_rles(torch.ones(4, 28, 28), boxes, (50, 60))
    assert [int(mask_utils.area(r)) for r in rles] == [0, 0, 0, 0]


def test_box_partly_outside_the_image_is_clipped():
    pasted = paste_masks(torch.ones(1, 28, 28), torch.tensor([[-20.0, 30.0, 15.0, 70.0]]), (50, 40))[0]
    expected = torch.zeros(50, 40, dtype=torch.bool)
    expected[30:50, 0:15] = True
    torch.testing.assert_close(pasted, expected, rtol=0, atol=0)


def test_tiny_box_between_pixel_centres_is_empty_and_one_covering_a_centre_is_not():
    probs = torch.ones(2, 28, 28)
    pasted = paste_masks(probs, torch.tensor([[5.6, 5.6, 5.9, 5.9], [5.2, 5.3, 5.8, 5.7]]), (10, 10))
    assert not pasted[0].any()
    assert pasted[1].nonzero().tolist() == [[5, 5]]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        paste_masks(torch.ones(1, 28, 28), torch.tensor([[0.0, float("nan"), 4.0, 4.0]]), (8, 8))
    with pytest.raises(ValueError, match=r"\(K, M, M\)"):
        paste_masks(torch.ones(1, 28, 14), torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (8, 8))
    with pytest.raises(ValueError, match="threshold"):
        paste_masks(torch.ones(1, 28, 28), torch.tensor([[0.0, 0.0, 4.0, 4.0]]), (8, 8), threshold=0.0)


box_strategy = st.tuples(
    st.floats(-30, 90, allow_nan=False), st.floats(-30, 70, allow_nan=False),
    st.floats(0.05, 80, allow_nan=False), st.floats(0.05, 60, allow_nan=False),
).map(lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))


@settings(max_examples=40, deadline=None)
@given(boxes=st.lists(box_strategy, min_size=1, max_size=6), grid_size=st.sampled_from([7, 28]), seed=st.integers(0, 2**16))
def test_random_boxes_match_reference_and_rles_decode_to_the_pasted_masks(boxes, grid_size, seed):
    image_size = (53, 67)
    boxes_t = torch.tensor(boxes, dtype=torch.float32)
    probs = torch.rand(len(boxes), grid_size, grid_size, generator=torch.Generator().manual_seed(seed))
    pasted = paste_masks(probs, boxes_t, image_size)
    expected = full_image_reference(probs, boxes_t, image_size) >= 0.5
    torch.testing.assert_close(pasted, expected, rtol=0, atol=0)
    rles = masks_to_rles(probs, boxes_t, image_size)
    assert all(isinstance(r["counts"], str) and r["size"] == [53, 67] for r in rles)
    decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in rles])
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), pasted.numpy())


def test_rles_of_many_detections_use_several_buffer_rounds():
    g = torch.Generator().manual_seed(9)
    count = postprocess.RLE_CHUNK_MASKS * 2 + 3
    corners = torch.rand(count, 2, generator=g) * 40
    boxes = torch.cat([corners, corners + torch.rand(count, 2, generator=g) * 30 + 2], dim=1)
    probs = torch.rand(count, 28, 28, generator=g)
    pasted = paste_masks(probs, boxes, (60, 70)).numpy()
    decoded = mask_utils.decode(masks_to_rles(probs, boxes, (60, 70)))
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), pasted)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(11)
    corners = torch.rand(30, 2, generator=g) * 200
    boxes = torch.cat([corners, corners + torch.rand(30, 2, generator=g) * 150 + 1], dim=1)
    probs = torch.rand(30, 28, 28, generator=g)
    on_cpu = paste_masks(probs, boxes, (240, 320))
    on_gpu = paste_masks(probs.cuda(), boxes.cuda(), (240, 320))
    assert on_gpu.is_cuda
    mismatch = (on_gpu.cpu() != on_cpu).float().mean().item()
    assert mismatch < 1e-4  # CUDA's grid_sample may round differently exactly at the threshold
    decoded = mask_utils.decode(masks_to_rles(probs.cuda(), boxes.cuda(), (240, 320)))
    np.testing.assert_array_equal(decoded.transpose(2, 0, 1), on_gpu.cpu().numpy())
