"""Parity of the PointRend point utilities with the reference (golden/point_features.pt)."""

from __future__ import annotations

import pytest
import torch

from pointsup.modeling.point_ops import (
    box_points_to_image,
    image_points_to_box,
    importance_sample_points,
    most_uncertain_grid_points,
    point_sample,
    regular_grid_points,
    sample_image_features,
)
from pointsup.modeling.roi_targets import RoIMaskTargets
from tests.conftest import golden_file


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_file("point_features.pt"), weights_only=False)


def test_regular_grid_is_bit_identical(golden):
    assert torch.equal(regular_grid_points(3, 2), golden["grid_R2_side3"])


def test_point_sample_including_points_outside(golden):
    assert torch.equal(point_sample(golden["ps_input"], golden["ps_points"]), golden["ps_output"])


def test_most_uncertain_cells_and_their_centres(golden):
    indices, coords = most_uncertain_grid_points(golden["uncertainty_map"], golden["on_grid_num_points"])
    assert torch.equal(indices, golden["on_grid_indices"])
    assert torch.equal(coords, golden["on_grid_coords"])


def test_importance_sampling_reproduces_the_reference_draws(golden):
    state = torch.get_rng_state()
    try:
        torch.set_rng_state(golden["torch_rng_state_before_importance"])
        points = importance_sample_points(golden["coarse_logits"], golden["coarse_classes"], num_points=14,
                                          oversample_ratio=3, importance_ratio=0.75)
    finally:
        torch.set_rng_state(state)
    assert torch.equal(points, golden["importance_coords"])


def test_box_and_image_coordinates(golden):
    assert torch.equal(box_points_to_image(golden["rel_coords"], golden["boxes"]), golden["img_coords"])
    torch.testing.assert_close(image_points_to_box(golden["img_coords"], golden["boxes"]), golden["back_to_box_coords"],
                               rtol=0, atol=1e-6)


def test_fine_grained_features_at_image_points(golden):
    assert golden["fine_feature_scale"] == 0.25
    features = sample_image_features(golden["fine_feature_map"], 4, torch.zeros(2, dtype=torch.int64), golden["img_coords"])
    assert torch.equal(features, golden["fine_features"])


def test_soft_labels_from_bitmasks(golden):
    boxes = golden["boxes"]
    targets = RoIMaskTargets(boxes=boxes, classes=torch.zeros(2, dtype=torch.int64), image_index=torch.zeros(2, dtype=torch.int64),
                             matched_index=torch.arange(2), point_coords=torch.zeros((2, 0, 2)), point_labels=torch.zeros((2, 0)),
                             gt_masks=[golden["bitmasks"]])
    labels = targets.soft_mask_labels(golden["rel_coords"])
    torch.testing.assert_close(labels, golden["soft_labels"], rtol=0, atol=1e-6)
    assert ((labels > 0) & (labels < 1)).any()  # the labels really are soft
