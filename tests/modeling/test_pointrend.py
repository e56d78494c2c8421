"""PointRend: parity with the reference's golden vectors, the point-supervised variant (our
design), the fast inference path and edge cases."""

from __future__ import annotations

import pytest
import torch

from pointsup.modeling.losses import point_loss, roi_point_loss, select_class_channel
from pointsup.modeling.mask_heads.config import MaskHeadConfig, PointRendConfig
from pointsup.modeling.mask_heads.convfc import ConvFCHead, FineFeatureSampler
from pointsup.modeling.mask_heads.pointrend import PointRendMaskHead, StandardPointHead
from pointsup.modeling.mask_heads.subdivision import initial_resolution
from pointsup.modeling.point_ops import point_sample
from tests.conftest import golden_file
from tests.modeling.head_golden import assert_fast_equals_straightforward, assert_golden_masks, golden_targets


@pytest.fixture(scope="module")
def golden() -> dict:
    return torch.load(golden_file("pointrend_head_masksup.pt"), weights_only=False)


def small_head(supervision: str) -> PointRendMaskHead:
    """The golden configuration: p2 with 16 channels, conv 16, FC 32, 3 classes, point head 8 wide."""
    return PointRendMaskHead(ConvFCHead(16, 14, 16, [32, 32], (3, 7, 7)), StandardPointHead(16, 3, 8, 3),
                             FineFeatureSampler("0", 4), supervision)


def test_mask_supervised_losses_match_the_reference(golden):
    head = small_head("masks")
    head.load_state_dict(golden["state_dict"])
    targets = golden_targets(golden)
    torch.testing.assert_close(targets.soft_mask_labels(golden["train_point_coords"]), golden["train_point_labels"],
                               rtol=0, atol=1e-6)
    head.training_points = lambda _coarse, _targets: (golden["train_point_coords"], golden["train_point_labels"])
    losses = head.losses({"0": golden["features_p2"]}, targets)
    torch.testing.assert_close(losses["loss_mask"], golden["loss_mask"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(losses["loss_mask_point"], golden["loss_mask_point"], rtol=1e-6, atol=1e-7)
    assert losses["mask_accuracy"].item() == pytest.approx(golden["storage"]["mask_rcnn/accuracy"], abs=1e-6)
    assert losses["point_accuracy"].item() == pytest.approx(golden["storage"]["point/accuracy"], abs=1e-6)


def test_importance_sampled_training_points_favour_uncertain_regions(golden):
    head = small_head("masks")
    head.load_state_dict(golden["state_dict"])
    targets = golden_targets(golden)
    coarse = torch.zeros((5, 3, 7, 7)) + 10.0
    coarse[:, :, :, :2] = 0.0  # uncertain: the left two columns, whose logits blend into 10 up to u = 2.5 / 7
    torch.manual_seed(0)
    points, labels = head.training_points(coarse, targets)
    assert points.shape == (5, 196, 2) and labels.shape == (5, 196)
    certainty = point_sample(coarse, points)[:, 0].abs()  # |logit| of class 0 (all classes are equal here)
    important, uniform = certainty[:, :147], certainty[:, 147:]  # 147 chosen by uncertainty, then 49 uniform
    assert important.mean() < 0.25 * uniform.mean()
    assert (points[:, 147:, 0] > 2.5 / 7).any()
    assert 0 <= labels.min() and labels.max() <= 1


@pytest.mark.parametrize("fast", [False, True])
def test_subdivision_masks_match_the_reference(golden, fast):
    head = small_head("masks")
    head.load_state_dict(golden["state_dict"])
    assert initial_resolution(7, 5, 784) == (28, 3)
    assert_golden_masks(head, golden, fast)


def test_point_supervision_supervises_coarse_and_point_logits_at_the_annotated_points(golden):
    head = small_head("points")
    head.load_state_dict(golden["state_dict"])
    targets = golden_targets(golden)
    generator = torch.Generator().manual_seed(0)
    relative = torch.rand((5, 6, 2), generator=generator) * 1.4 - 0.2  # some outside the proposal box
    targets.point_coords = relative * (targets.boxes[:, None, 2:] - targets.boxes[:, None, :2]) + targets.boxes[:, None, :2]
    targets.point_labels = torch.randint(0, 2, (5, 6), generator=generator).float()
    features = {"0": golden["features_p2"]}
    losses = head.losses(features, targets)
    points, labels = targets.relative_points()
    assert (labels == -1).any() and (labels != -1).any()
    coarse = head.coarse_logits(features, targets.boxes, targets.image_index)
    expected_coarse = roi_point_loss(coarse, targets.classes, points, labels).loss
    fine = head.sampler(features, targets.boxes, targets.image_index, points)
    point_logits = head.point_head(fine, point_sample(coarse, points))
    expected_point = point_loss(select_class_channel(point_logits, targets.classes).squeeze(1), labels).loss
    torch.testing.assert_close(losses["loss_mask"], expected_coarse)
    torch.testing.assert_close(losses["loss_mask_point"], expected_point)
    (losses["loss_mask"] + losses["loss_mask_point"]).backward()
    assert head.coarse_head.prediction.weight.grad.abs().sum() > 0
    assert head.point_head.predictor.weight.grad.abs().sum() > 0


def test_fast_inference_equals_the_straightforward_computation_with_many_classes():
    torch.manual_seed(2)
    config = MaskHeadConfig(conv_dim=16, pointrend=PointRendConfig(fc_dim=32, point_fc_dim=16))
    head = PointRendMaskHead.from_config(config, 12, "masks", in_channels=16)
    torch.nn.init.normal_(head.coarse_head.prediction.weight, std=0.05)
    torch.nn.init.normal_(head.point_head.predictor.weight, std=0.05)
    assert_fast_equals_straightforward(head)


@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_zero_rois_train_and_predict(golden, supervision):
    head = small_head(supervision)
    targets = golden_targets(golden)
    empty = type(targets)(targets.boxes[:0], targets.classes[:0], targets.image_index[:0], targets.matched_index[:0],
                          torch.zeros((0, 4, 2)), torch.zeros((0, 4)), targets.gt_masks)
    losses = head.losses({"0": golden["features_p2"]}, empty)
    assert all(torch.isfinite(v) and v.item() == 0 for v in losses.values())
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in head.parameters())
    masks = head.eval().predict({"0": golden["features_p2"]}, [torch.zeros((0, 4))] * 2, [torch.zeros(0, dtype=torch.int64)] * 2)
    assert [m.shape for m in masks] == [(0, 224, 224), (0, 224, 224)]
