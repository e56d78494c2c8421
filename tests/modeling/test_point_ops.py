"""Properties of the box-relative coordinates and of grid sampling at points."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.modeling.point_ops import (
    box_points_to_image,
    channels_last,
    ignore_points_outside_box,
    image_points_to_box,
    point_sample,
    regular_grid_points,
    sample_image_features,
)

coordinate = st.floats(-500, 500, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(x0=coordinate, y0=coordinate, w=st.floats(0.5, 300), h=st.floats(0.5, 300),
       points=st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=8))
def test_box_coordinates_round_trip_and_inside_rule(x0, y0, w, h, points):
    box = torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float64)
    image = torch.tensor([points], dtype=torch.float64)
    relative = image_points_to_box(image, box)
    torch.testing.assert_close(box_points_to_image(relative, box), image, rtol=0, atol=1e-9)
    labels = ignore_points_outside_box(relative, torch.ones((1, len(points))))
    inside = (image[0, :, 0] >= x0) & (image[0, :, 0] <= x0 + w) & (image[0, :, 1] >= y0) & (image[0, :, 1] <= y0 + h)
    # the rule is decided on box-relative values; away from rounding at the border it equals the box test
    relative_inside = ((relative[0] >= 0) & (relative[0] <= 1)).all(dim=1)
    assert torch.equal(labels[0] == 1, relative_inside)
    far = ((image[0, :, 0] - x0).abs() > 1e-6) & ((image[0, :, 0] - x0 - w).abs() > 1e-6) & \
          ((image[0, :, 1] - y0).abs() > 1e-6) & ((image[0, :, 1] - y0 - h).abs() > 1e-6)
    assert torch.equal(relative_inside[far], inside[far])


@settings(max_examples=50, deadline=None)
@given(side=st.integers(1, 12), seed=st.integers(0, 1000))
def test_sampling_at_cell_centres_reads_the_grid(side, seed):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.randn((2, 3, side, side), generator=generator)
    values = point_sample(maps, regular_grid_points(side, 2))
    torch.testing.assert_close(values, maps.flatten(2), rtol=1e-5, atol=1e-5)


def test_points_outside_the_unit_square_sample_zero_padding():
    maps = torch.ones((1, 1, 4, 4))
    values = point_sample(maps, torch.tensor([[[-0.5, 0.5], [1.5, 0.5], [0.5, 0.5], [0.0, 0.5]]]))
    # fully outside -> 0; at u = 0 the bilinear weight is split with the zero padding -> 0.5
    torch.testing.assert_close(values[0, 0], torch.tensor([0.0, 0.0, 1.0, 0.5]))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3), st.integers(0, 6))
def test_feature_sampling_paths_agree(seed, num_images, num_rois):
    """Inference (expanded, optionally channels-last) and training (differentiable) sampling give
    the same values, each RoI reading its own image."""
    generator = torch.Generator().manual_seed(seed)
    feature_map = torch.randn((num_images, 5, 6, 7), generator=generator)
    image_index = torch.randint(0, num_images, (num_rois,), generator=generator)
    points = torch.rand((num_rois, 9, 2), generator=generator) * torch.tensor([7 * 4 + 8.0, 6 * 4 + 8.0]) - 4.0
    with torch.no_grad():
        expanded = sample_image_features(feature_map, 4, image_index, points)
        fast = sample_image_features(channels_last(feature_map), 4, image_index, points)
    differentiable = sample_image_features(feature_map.clone().requires_grad_(), 4, image_index, points)
    assert expanded.shape == (num_rois, 5, 9)
    assert torch.equal(expanded, fast)
    torch.testing.assert_close(differentiable.detach(), expanded, rtol=0, atol=1e-6)
    for r in range(num_rois):  # each row is its own image's map sampled at its points
        b = int(image_index[r])
        single = point_sample(feature_map[b:b + 1], (points[r:r + 1] / torch.tensor([28.0, 24.0])))
        torch.testing.assert_close(expanded[r], single[0], rtol=0, atol=1e-6)
