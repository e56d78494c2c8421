"""The composed Mask R-CNN on edge cases: empty images, ignored points, zero detections, both
supervisions; the aligned multi-level pooler."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from pointsup.modeling.build import build_model
from pointsup.modeling.detector import total_loss
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign, assign_fpn_levels
from pointsup.structures import InstanceTargets, Sample
from tests.modeling.model_settings import model_config

TINY = {"backbone.name": "resnet18", "backbone.norm": "gn", "backbone.trainable_layers": 5, "fpn.channels": 32,
        "fpn.norm": "gn", "mask_head.conv_dim": 16, "mask_head.norm": "gn", "rpn.anchor_sizes": [8, 16, 32, 64, 128],
        "rpn.pre_nms_top_n_train": 100, "rpn.post_nms_top_n_train": 50, "rpn.pre_nms_top_n_test": 50,
        "rpn.post_nms_top_n_test": 20, "roi_heads.batch_size_per_image": 16}


def tiny_model(supervision: str, settings: dict | None = None) -> torch.nn.Module:
    """A small Mask R-CNN; ``settings`` (dotted keys below ``model``) change it."""
    torch.manual_seed(0)
    return build_model(model_config({**TINY, **(settings or {})}), 3, supervision)


def sample(height: int, width: int, boxes: list[list[float]], labels: list[list[float]] | None = None) -> Sample:
    n = len(boxes)
    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(n, 4)
    centres = (box_tensor[:, None, :2] + box_tensor[:, None, 2:]) / 2
    masks = torch.zeros((n, height, width), dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[k, int(y0):int(y1), int(x0):int(x1)] = 1
    targets = InstanceTargets(
        boxes=box_tensor, classes=torch.arange(n) % 3,
        point_coords=centres.expand(n, 4, 2).clone(),
        point_labels=torch.tensor(labels, dtype=torch.float32).reshape(n, 4) if labels else torch.ones((n, 4)),
        masks=masks,
    )
    return Sample(torch.randint(0, 255, (3, height, width), dtype=torch.uint8), 1, "x.png", (height, width), targets)


@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_training_step_with_an_empty_image_and_ignored_points(supervision):
    model = tiny_model(supervision).train()
    batch = [sample(96, 128, [[10, 10, 60, 50], [40, 30, 120, 90]], [[1, 0, -1, 1], [-1, -1, -1, -1]]), sample(80, 96, [])]
    outputs = model(batch)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"} <= set(outputs)
    loss = total_loss(outputs)
    assert torch.isfinite(loss)
    loss.backward()
    mask_weight = model.roi_heads.point_mask_head.layers.predictor.weight
    assert mask_weight.grad is not None and mask_weight.grad.abs().sum() > 0


def test_a_batch_of_empty_images_trains_without_mask_rois():
    model = tiny_model("points").train()
    outputs = model([sample(64, 64, []), sample(64, 80, [])])
    assert outputs["loss_mask"].item() == 0.0
    total_loss(outputs).backward()  # every parameter stays in the graph (DDP needs that)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_inference_with_zero_detections_returns_empty_results():
    model = tiny_model("points", {"roi_heads.score_thresh": 1.0}).eval()
    with torch.no_grad():
        detections = model([sample(64, 64, []), sample(48, 80, [])])
    assert [len(d) for d in detections] == [0, 0]
    assert detections[1].mask_probs.shape == (0, 28, 28) and detections[1].image_size == (48, 80)


def test_detections_are_scaled_to_the_original_image():
    model = tiny_model("points", {"roi_heads.score_thresh": 0.0}).eval()
    small = sample(64, 96, [])
    small.original_size = (128, 192)
    with torch.no_grad():
        detections = model([small])[0]
    assert detections.image_size == (128, 192) and len(detections) > 0
    assert detections.boxes[:, 2].max() <= 192 + 1e-3 and detections.boxes[:, 3].max() <= 128 + 1e-3
    assert detections.mask_probs.min() >= 0 and detections.mask_probs.max() <= 1


def test_fpn_levels_follow_the_canonical_rule():
    boxes = torch.tensor([[0, 0, 224, 224], [0, 0, 111, 111], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 10, 10], [0, 0, 2000, 2000]],
                         dtype=torch.float32)
    assert assign_fpn_levels(boxes, 2, 5).tolist() == [2, 0, 1, 3, 0, 3]


def test_pooler_uses_aligned_roi_align_on_the_assigned_level():
    torch.manual_seed(1)
    features = {"a": torch.randn(2, 3, 32, 32), "b": torch.randn(2, 3, 16, 16)}
    pooler = AlignedMultiScaleRoIAlign(["a", "b"], [4, 8], output_size=5)
    boxes = [torch.tensor([[4.0, 8.0, 60.0, 50.0]]), torch.tensor([[0.0, 0.0, 120.0, 124.0], [10.0, 10.0, 30.0, 40.0]])]
    pooled = pooler(features, boxes)
    expected_fine = roi_align(features["a"], [boxes[0], boxes[1][1:]], 5, 0.25, 0, aligned=True)
    expected_coarse = roi_align(features["b"][1:], [boxes[1][:1]], 5, 0.125, 0, aligned=True)
    torch.testing.assert_close(pooled[[0, 2]], expected_fine)
    torch.testing.assert_close(pooled[1:2], expected_coarse)
