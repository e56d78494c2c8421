"""CIE L*a*b* conversion, neighbour unfolding and colour similarity for BoxInst's pairwise loss."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.modeling.condinst.color import (
    color_similarity,
    downsample_for_pairwise,
    rgb_to_lab,
    unfold_without_centre,
)

# Published sRGB (D65) -> CIE L*a*b* values (e.g. Bruce Lindbloom's calculator, skimage.color.rgb2lab).
REFERENCE_LAB = [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.24, 80.09, 67.20)),
    ((0, 255, 0), (87.73, -86.18, 83.18)),
    ((0, 0, 255), (32.30, 79.19, -107.86)),
    ((128, 128, 128), (53.59, 0.0, 0.0)),
]


def _offsets(kernel_size: int, dilation: int) -> list[tuple[int, int]]:
    half = kernel_size // 2
    return [(dy * dilation, dx * dilation) for dy in range(-half, half + 1) for dx in range(-half, half + 1)
            if (dy, dx) != (0, 0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("rgb", "lab"), REFERENCE_LAB)
def test_rgb_to_lab_matches_reference_values(rgb, lab, dtype) -> None:
    image = torch.tensor(rgb, dtype=dtype).view(1, 3, 1, 1).expand(2, 3, 2, 3)
    result = rgb_to_lab(image)
    assert result.shape == (2, 3, 2, 3) and result.dtype == dtype
    expected = torch.tensor(lab, dtype=dtype).view(1, 3, 1, 1).expand_as(result)
    torch.testing.assert_close(result, expected, rtol=0, atol=0.05)


@settings(max_examples=60, deadline=None)
@given(grey=st.integers(0, 255), other=st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
def test_lab_of_greys_is_neutral_and_lightness_is_monotone(grey, other) -> None:
    greys = torch.tensor([grey, min(grey + 1, 255)], dtype=torch.float64).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    lab = rgb_to_lab(greys)
    torch.testing.assert_close(lab[0, 1:], torch.zeros_like(lab[0, 1:]), rtol=0, atol=0.02)
    assert lab[0, 0, 0, 0] <= lab[0, 0, 0, 1]
    colour = rgb_to_lab(torch.tensor(other, dtype=torch.float64).view(1, 3, 1, 1))
    assert 0.0 <= float(colour[0, 0]) <= 100.0 + 1e-9


def test_rgb_to_lab_has_finite_gradients_at_black_and_in_the_linear_branches() -> None:
    image = torch.tensor([0.0, 1.0, 10.0, 255.0], dtype=torch.float64).view(1, 1, 1, 4).repeat(1, 3, 1, 1)
    image.requires_grad_(True)
    rgb_to_lab(image).sum().backward()
    assert torch.isfinite(image.grad).all()


@settings(max_examples=40, deadline=None)
@given(kernel_size=st.sampled_from([1, 3, 5]), dilation=st.integers(1, 3), height=st.integers(1, 7),
       width=st.integers(1, 7), seed=st.integers(0, 10_000))
def test_unfold_without_centre_matches_explicit_slicing(kernel_size, dilation, height, width, seed) -> None:
    x = torch.randn((2, 3, height, width), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    unfolded = unfold_without_centre(x, kernel_size, dilation)
    offsets = _offsets(kernel_size, dilation)
    assert unfolded.shape == (2, 3, len(offsets), height, width)
    for k, (dy, dx) in enumerate(offsets):
        expected = torch.zeros_like(x)
        if abs(dy) >= height or abs(dx) >= width:  # every such neighbour is off the map
            assert torch.equal(unfolded[:, :, k], expected), (dy, dx)
            continue
        # expected[..., i, j] = x[..., i + dy, j + dx] where that index is on the map
        rows_out = slice(max(0, -dy), min(height, height - dy))
        cols_out = slice(max(0, -dx), min(width, width - dx))
        rows_in = slice(max(0, dy), min(height, height + dy))
        cols_in = slice(max(0, dx), min(width, width + dx))
        expected[:, :, rows_out, cols_out] = x[:, :, rows_in, cols_in]
        assert torch.equal(unfolded[:, :, k], expected), (dy, dx)


@pytest.mark.parametrize("kernel_size", [0, 2, 4])
def test_unfold_without_centre_rejects_even_kernels(kernel_size) -> None:
    with pytest.raises(ValueError, match="odd"):
        unfold_without_centre(torch.zeros((1, 1, 4, 4)), kernel_size, 1)


def test_color_similarity_matches_a_loop_and_masks_invalid_neighbours() -> None:
    generator = torch.Generator().manual_seed(0)
    lab = torch.randn((2, 3, 5, 6), generator=generator, dtype=torch.float64) * 3
    valid = torch.ones((2, 5, 6), dtype=torch.float64)
    valid[1, :, 4:] = 0  # padding on the right of the second image
    kernel_size, dilation, theta = 3, 2, 2.0
    similarity = color_similarity(lab, valid, kernel_size, dilation, theta)
    assert similarity.shape == (2, 8, 5, 6)
    for b in range(2):
        for k, (dy, dx) in enumerate(_offsets(kernel_size, dilation)):
            for i in range(5):
                for j in range(6):
                    ni, nj = i + dy, j + dx
                    if 0 <= ni < 5 and 0 <= nj < 6 and valid[b, ni, nj] > 0:
                        distance = math.sqrt(sum((float(lab[b, c, i, j]) - float(lab[b, c, ni, nj])) ** 2
                                                 for c in range(3)))
                        expected = math.exp(-distance / theta)
                    else:
                        expected = 0.0
                    assert abs(float(similarity[b, k, i, j]) - expected) < 1e-12, (b, k, i, j)


def test_color_similarity_of_a_flat_image_is_one_for_every_valid_neighbour() -> None:
    lab = torch.full((1, 3, 6, 6), 40.0)
    valid = torch.ones((1, 6, 6))
    similarity = color_similarity(lab, valid)
    assert similarity[0, :, 2:4, 2:4].eq(1.0).all()  # all 8 neighbours on the map
    assert similarity[0, 0, 0, 0] == 0.0  # the (-2, -2) neighbour of the corner is off the map


def test_downsample_for_pairwise_pools_rgb_and_samples_validity() -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand((2, 3, 8, 12), generator=generator, dtype=torch.float64) * 255
    valid = torch.zeros((2, 8, 12), dtype=torch.float64)
    valid[0, :7, :10] = 1
    valid[1, :5, :12] = 1
    lab, grid_valid = downsample_for_pairwise(images, valid, stride=4)
    assert lab.shape == (2, 3, 2, 3) and grid_valid.shape == (2, 2, 3)
    block_means = images.reshape(2, 3, 2, 4, 3, 4).mean(dim=(3, 5))
    torch.testing.assert_close(lab, rgb_to_lab(block_means), rtol=0, atol=1e-10)
    # cell (r, c) reads pixel (4 r + 2, 4 c + 2)
    expected_valid = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]],
                                  dtype=torch.float64)
    assert torch.equal(grid_valid, expected_valid)


def test_downsample_for_pairwise_rejects_sizes_off_the_stride() -> None:
    with pytest.raises(ValueError, match="multiple of the stride"):
        downsample_for_pairwise(torch.zeros((1, 3, 8, 10)), torch.ones((1, 8, 10)), stride=4)
