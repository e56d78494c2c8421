"""Loading torchvision's Mask R-CNN weights (layout only: no download here) and our checkpoints."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from pointsup.modeling.build import build_model
from pointsup.modeling.weights import load_model_weights
from tests.modeling.model_settings import model_config


@pytest.fixture(scope="module")
def torchvision_state(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_coco.pth"
    torch.save(state, path)
    return state, str(path)


def test_torchvision_coco_layout_loads_with_class_rows_selected(torchvision_state: tuple[dict, str]) -> None:
    state, path = torchvision_state
    category_ids = [1, 3, 90]
    model = build_model(model_config(), len(category_ids), "points")
    load_model_weights(model, path, category_ids)
    own = model.state_dict()
    assert torch.equal(own["backbone.body.layer3.0.conv1.weight"], state["backbone.body.layer3.0.conv1.weight"])
    assert torch.equal(own["roi_heads.point_mask_head.layers.mask_fcn3.weight"], state["roi_heads.mask_head.2.0.weight"])
    assert torch.equal(own["roi_heads.point_mask_head.layers.deconv.weight"], state["roi_heads.mask_predictor.conv5_mask.weight"])
    assert torch.equal(own["roi_heads.box_predictor.cls_score.weight"], state["roi_heads.box_predictor.cls_score.weight"][[0, 1, 3, 90]])
    assert torch.equal(own["roi_heads.box_predictor.bbox_pred.weight"][4:8], state["roi_heads.box_predictor.bbox_pred.weight"][4:8])
    assert torch.equal(own["roi_heads.point_mask_head.layers.predictor.weight"][2], state["roi_heads.mask_predictor.mask_fcn_logits.weight"][90])


def test_non_coco_categories_keep_fresh_class_layers(torchvision_state: tuple[dict, str]) -> None:
    state, path = torchvision_state
    model = build_model(model_config(), 2, "points")
    before = model.state_dict()["roi_heads.box_predictor.cls_score.weight"].clone()
    load_model_weights(model, path, [500, 501])
    after = model.state_dict()
    assert torch.equal(after["roi_heads.box_predictor.cls_score.weight"], before)
    assert torch.equal(after["rpn.head.cls_logits.weight"], state["rpn.head.cls_logits.weight"])


def test_mismatched_checkpoint_names_the_parameters(tmp_path) -> None:
    small = build_model(model_config({"backbone.name": "resnet18", "backbone.norm": "gn", "backbone.trainable_layers": 5}), 2, "points")
    path = tmp_path / "ckpt.pth"
    torch.save({"model": small.state_dict()}, path)
    with pytest.raises(ValueError, match="do not fit"):
        load_model_weights(build_model(model_config(), 2, "points"), str(path))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_model_weights(small, str(tmp_path / "missing.pth"))


def test_torchvision_coco_weights_initialise_a_pointrend_model_except_its_mask_head(torchvision_state: tuple[dict, str]) -> None:
    state, path = torchvision_state
    model = build_model(
        model_config({"mask_head.name": "pointrend", "mask_head.pointrend.fc_dim": 64, "mask_head.pointrend.point_fc_dim": 16}), 2, "points"
    )
    before = model.state_dict()["roi_heads.point_mask_head.coarse_head.fc1.weight"].clone()
    load_model_weights(model, path, [1, 3])
    after = model.state_dict()
    assert torch.equal(after["backbone.body.layer3.0.conv1.weight"], state["backbone.body.layer3.0.conv1.weight"])
    assert torch.equal(after["roi_heads.point_mask_head.coarse_head.fc1.weight"], before)
