"""PointRend and Implicit PointRend inside the detector: the cases earlier implementations crashed
on (zero detections, images without instances, a batch without a foreground RoI), both
supervisions, and training the mask head on refined boxes."""

from __future__ import annotations

import pytest
import torch

from pointsup.modeling.detector import total_loss
from tests.modeling.test_mask_rcnn import sample, tiny_model

HEADS = ["pointrend", "implicit_pointrend"]


def point_head_model(head: str, supervision: str, settings: dict | None = None) -> torch.nn.Module:
    small = {"mask_head.name": head, f"mask_head.{head}.fc_dim": 32, f"mask_head.{head}.point_fc_dim": 16}
    return tiny_model(supervision, {**small, **(settings or {})})


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_training_step_with_an_empty_image_and_ignored_points(head, supervision):
    model = point_head_model(head, supervision).train()
    batch = [sample(96, 128, [[10, 10, 60, 50], [40, 30, 120, 90]], [[1, 0, -1, 1], [-1, -1, -1, -1]]), sample(80, 96, [])]
    outputs = model(batch)
    assert "loss_mask_point" in outputs and outputs["loss_mask_point"] > 0
    loss = total_loss(outputs)
    assert torch.isfinite(loss)
    loss.backward()
    mask_head = model.roi_heads.point_mask_head
    assert all(p.grad is not None for p in mask_head.parameters())
    assert sum(p.grad.abs().sum() for p in mask_head.parameters()) > 0


@pytest.mark.parametrize("head", HEADS)
def test_a_batch_without_foreground_rois_trains(head):
    model = point_head_model(head, "points").train()
    outputs = model([sample(64, 64, []), sample(64, 80, [])])
    assert outputs["loss_mask_point"].item() == 0.0
    total_loss(outputs).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("head", HEADS)
def test_inference_with_zero_detections_returns_empty_results(head):
    model = point_head_model(head, "points", {"roi_heads.score_thresh": 1.0}).eval()
    with torch.no_grad():
        detections = model([sample(64, 64, []), sample(48, 80, [])])
    assert [len(d) for d in detections] == [0, 0]
    assert detections[1].mask_probs.shape == (0, 224, 224)


@pytest.mark.parametrize("head", HEADS)
def test_inference_gives_224_masks_in_unit_range(head):
    model = point_head_model(head, "points", {"roi_heads.score_thresh": 0.0, "detections_per_image": 7}).eval()
    with torch.no_grad():
        detections = model([sample(64, 96, []), sample(72, 64, [])])
    assert [len(d) for d in detections] == [7, 7]
    for d in detections:
        assert d.mask_probs.shape == (7, 224, 224)
        assert 0 <= d.mask_probs.min() and d.mask_probs.max() <= 1


def test_refined_boxes_decode_the_matched_class_and_fall_back_on_degenerate_boxes():
    model = point_head_model("pointrend", "points", {"roi_heads.train_mask_on_pred_boxes": True})
    heads = model.roi_heads
    proposals = [torch.tensor([[10.0, 10.0, 50.0, 40.0], [0.0, 0.0, 20.0, 20.0]])]
    regression = torch.zeros((2, 4 * 4))
    regression[0, 4 * 2:4 * 3] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # class label 2: shift right by 0.1 widths
    regression[1, 4 * 1 + 2] = -100.0  # label 1: log-width -10 (weights 10, 10, 5, 5): a degenerate box
    refined = heads.refined_boxes(regression, proposals, [torch.tensor([2, 1])], [(64, 80)])[0]
    torch.testing.assert_close(refined[0], torch.tensor([14.0, 10.0, 54.0, 40.0]))
    torch.testing.assert_close(refined[1], proposals[0][1])
    outputs = model.train()([sample(96, 128, [[10, 10, 60, 50]])])
    assert torch.isfinite(total_loss(outputs))
