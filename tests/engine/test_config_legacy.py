"""The flat ``model`` keys of earlier versions: the configs stored in older checkpoints load into
the nested sections and rebuild the same model; old keys in files and overrides are read with a
warning naming the new key; the mask head names come from the registry."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from pointsup.engine.builders import model_for_checkpoint
from pointsup.engine.checkpoint import Checkpointer
from pointsup.engine.config import LEGACY_MODEL_KEYS, ConfigError, config_from_dict, load_config
from pointsup.engine.predictor import load_trained_model
from pointsup.modeling.config import BackboneConfig, FPNConfig, ModelConfig

#: The ``model`` section of a checkpoint written before the nested sections (pointsup at commit
#: c5e84c5: ``config.to_dict()["model"]``), every key away from its default.
OLD_MODEL: dict[str, Any] = {
    "architecture": "mask_rcnn",
    "backbone": "resnet18",
    "norm": "gn",
    "backbone_weights": None,
    "weights": "/runs/old/model_final.pth",
    "trainable_backbone_layers": 5,
    "fpn_channels": 64,
    "fpn_norm": "gn",
    "anchor_sizes": [16, 32, 64, 128, 256],
    "aspect_ratios": [0.5, 1.0, 2.0, 3.0],
    "rpn_pre_nms_top_n_train": 1500,
    "rpn_pre_nms_top_n_test": 700,
    "rpn_post_nms_top_n_train": 600,
    "rpn_post_nms_top_n_test": 300,
    "rpn_nms_thresh": 0.65,
    "rpn_batch_size_per_image": 128,
    "roi_batch_size_per_image": 64,
    "roi_positive_fraction": 0.3,
    "box_head": "4conv1fc",
    "box_score_thresh": 0.1,
    "box_nms_thresh": 0.45,
    "detections_per_image": 50,
    "mask_head": "implicit_pointrend",
    "mask_head_conv_dim": 32,
    "mask_head_num_conv": 2,
    "mask_head_norm": "gn",
    "class_agnostic_mask": True,
    "mask_head_fc_dim": 64,
    "mask_head_num_fc": 1,
    "point_head_fc_dim": 16,
    "point_head_num_fc": 2,
    "point_head_train_points": 100,
    "point_head_oversample_ratio": 2.0,
    "point_head_importance_ratio": 0.5,
    "subdivision_steps": 4,
    "subdivision_num_points": 400,
    "implicit_params_l2_weight": 2e-05,
    "implicit_image_features": False,
    "implicit_positional_encoding": True,
    "implicit_base_init": True,
    "train_mask_on_pred_boxes": True,
    "fcos_num_convs": 2,
    "fcos_center_sampling_radius": 2.0,
    "fcos_score_thresh": 0.1,
    "fcos_topk_candidates": 500,
    "fcos_nms_thresh": 0.5,
    "condinst_mask_branch_channels": 64,
    "condinst_mask_branch_out_channels": 16,
    "condinst_mask_branch_num_convs": 2,
    "condinst_mask_branch_norm": "gn",
    "condinst_mask_head_channels": 16,
    "condinst_mask_head_num_layers": 2,
    "condinst_mask_head_negative_slope": 0.1,
    "condinst_sizes_of_interest": [32.0, 64.0, 128.0, 256.0, 512.0],
    "condinst_max_proposals": 200,
    "condinst_mask_resolution": 56,
    "boxinst_pairwise_size": 5,
    "boxinst_pairwise_dilation": 1,
    "boxinst_pairwise_color_thresh": 0.2,
    "boxinst_pairwise_warmup_iters": 100,
    "num_classes": 3,
    "pixel_mean": [120.0, 115.0, 100.0],
    "pixel_std": [60.0, 57.0, 57.0],
}
#: The keys of the old section that kept their name and place.
UNCHANGED = {"architecture", "num_classes", "weights", "pixel_mean", "pixel_std", "detections_per_image"}
#: What the code at c5e84c5 built from OLD_MODEL (3 classes, no pretrained file): state dict
#: tensors, numbers, and the start of the sha256 of its sorted (name, shape) pairs.
OLD_LAYOUTS = {"mask_rcnn": (117, 26603161, "5c51fcf96c5215a9"), "condinst": (124, 11943130, "04e1f05b4085407c")}


def setting(config: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def layout(model: torch.nn.Module) -> tuple[int, int, str]:
    state = model.state_dict()
    pairs = sorted((name, tuple(tensor.shape)) for name, tensor in state.items())
    return len(pairs), sum(t.numel() for t in state.values()), hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]


def test_the_table_covers_every_key_of_an_old_checkpoint() -> None:
    assert set(OLD_MODEL) == set(LEGACY_MODEL_KEYS) | UNCHANGED
    new_places = [place for places in LEGACY_MODEL_KEYS.values() for place in places]
    assert len(new_places) == len(set(new_places))  # no two old keys share a place
    for place in new_places:
        setting(ModelConfig(), place)  # every place exists in the schema


def test_an_old_checkpoints_model_section_lands_in_the_new_sections(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.config"):
        model = config_from_dict({"model": OLD_MODEL, "supervision": "points"}).model
    assert not caplog.records  # a stored config is upgraded silently
    assert model.backbone == BackboneConfig(name="resnet18", weights=None, norm="gn", trainable_layers=5)
    assert model.fpn == FPNConfig(channels=64, norm="gn")
    assert (model.rpn.aspect_ratios, model.rpn.post_nms_top_n_test, model.rpn.nms_thresh) == ([0.5, 1.0, 2.0, 3.0], 300, 0.65)
    assert (model.roi_heads.box_head, model.roi_heads.score_thresh, model.roi_heads.train_mask_on_pred_boxes) == (
        "4conv1fc",
        0.1,
        True,
    )
    assert (model.mask_head.name, model.mask_head.norm, model.mask_head.class_agnostic) == ("implicit_pointrend", "gn", True)
    implicit = model.mask_head.implicit_pointrend
    assert (implicit.fc_dim, implicit.point_fc_dim, implicit.subdivision_steps, implicit.base_init) == (64, 16, 4, True)
    assert (model.mask_head.pointrend.oversample_ratio, model.mask_head.pointrend.train_points) == (2.0, 100)
    assert (model.condinst.fcos.topk_candidates, model.condinst.mask_branch.out_channels) == (500, 16)
    assert (model.condinst.dynamic_head.negative_slope, model.condinst.boxinst.pairwise_size) == (0.1, 5)
    assert (model.detections_per_image, model.num_classes, model.weights) == (50, 3, "/runs/old/model_final.pth")
    for old, places in LEGACY_MODEL_KEYS.items():
        for place in places:
            assert setting(model, place) == OLD_MODEL[old], (old, place)


def test_an_old_null_subdivision_steps_is_each_heads_own_value() -> None:
    model = config_from_dict({"model": {**OLD_MODEL, "subdivision_steps": None}}).model
    assert (model.mask_head.pointrend.subdivision_steps, model.mask_head.implicit_pointrend.subdivision_steps) == (5, 3)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("rpn_nms_thresh", "rpn.nms_thresh"),
        ("fpn_channels", "fpn.channels"),
        ("point_head_train_points", "mask_head.pointrend.train_points"),
    ],
)
def test_any_other_old_null_is_refused_by_the_new_field(old: str, new: str) -> None:
    with pytest.raises(ConfigError, match=rf"model\.{new}"):
        config_from_dict({"model": {**OLD_MODEL, old: None}})
    with pytest.raises(ConfigError, match=rf"model\.{new}"):
        load_config(None, [f"model.{old}=null"])


@pytest.mark.parametrize("architecture", ["mask_rcnn", "condinst"])
def test_an_old_checkpoints_config_rebuilds_the_model_it_trained(architecture: str) -> None:
    config = config_from_dict({"model": {**OLD_MODEL, "architecture": architecture}})
    with torch.device("meta"):
        model = model_for_checkpoint(config, 3)
    assert layout(model) == OLD_LAYOUTS[architecture]
    if architecture == "mask_rcnn":  # the settings that shape no parameter reach the modules too
        head = model.roi_heads.point_mask_head
        assert (head.train_num_points, head.subdivision_steps, head.subdivision_num_points, head.params_l2_weight) == (
            100,
            4,
            400,
            2e-5,
        )
        assert (model.roi_heads.score_thresh, model.roi_heads.nms_thresh, model.roi_heads.detections_per_img) == (0.1, 0.45, 50)
        assert (model.rpn.nms_thresh, model.rpn._pre_nms_top_n, model.rpn._post_nms_top_n) == (
            0.65,
            {"training": 1500, "testing": 700},
            {"training": 600, "testing": 300},
        )
    else:
        assert (model.boxinst.pairwise_size, model.boxinst.pairwise_dilation, model.boxinst.pairwise_color_thresh) == (5, 1, 0.2)
        assert model.boxinst.pairwise_warmup_iters == 100
        assert (model.inference.score_thresh, model.inference.topk_candidates, model.inference.mask_resolution) == (0.1, 500, 56)
        assert (model.center_sampling_radius, model.max_proposals, model.dynamic_head.negative_slope) == (2.0, 200, 0.1)


def test_an_old_checkpoint_loads_for_prediction(tmp_path: Path) -> None:
    stored = {"model": {**OLD_MODEL, "mask_head": "pointrend"}, "supervision": "points", "device": "cpu"}
    model = model_for_checkpoint(config_from_dict(stored), 3)
    extra = {
        "iteration": 1,
        "seed": 0,
        "config": stored,
        "num_classes": 3,
        "category_names": ["a", "b", "c"],
        "label_to_category_id": [1, 2, 3],
    }
    weights = Checkpointer(tmp_path).save("model_final", model, extra=extra)
    trained = load_trained_model(weights, "cpu")  # the weights load strictly into the rebuilt model
    assert trained.config.model.mask_head.name == "pointrend" and trained.config.model.backbone.name == "resnet18"
    assert trained.model.pixel_mean.flatten().tolist() == [120.0, 115.0, 100.0]


def test_old_keys_in_files_and_overrides_are_read_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(
        "model:\n  backbone: resnet18\n  fpn_channels: 64\n  mask_head: pointrend\n  mask_head_fc_dim: 256\n"
        "  subdivision_steps: null\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.config"):
        config = load_config(old, ["model.norm=gn", "model.subdivision_num_points=196"])
    new = tmp_path / "new.yaml"
    new.write_text(
        "model:\n  backbone: {name: resnet18, norm: gn}\n  fpn: {channels: 64}\n  mask_head:\n    name: pointrend\n"
        "    pointrend: {fc_dim: 256, subdivision_num_points: 196}\n"
        "    implicit_pointrend: {fc_dim: 256, subdivision_num_points: 196}\n",
        encoding="utf-8",
    )
    assert config == load_config(new)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 7 and all("\n" not in m and "old config key" in m for m in messages)
    assert f"{old}: 'model.fpn_channels' is an old config key, read as 'model.fpn.channels'" in messages[1]
    assert "'model.mask_head.pointrend.fc_dim' and 'model.mask_head.implicit_pointrend.fc_dim'" in messages[3]
    assert messages[5].startswith("override 'model.norm=gn': 'model.norm'") and "'model.backbone.norm'" in messages[5]


def test_an_old_key_with_its_new_name_is_an_error_and_typos_suggest_the_new_key(tmp_path: Path) -> None:
    both = tmp_path / "both.yaml"
    both.write_text("model: {fpn_channels: 64, fpn: {channels: 32}}\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"both.yaml: 'model.fpn.channels' is set twice, also by its old name 'model.fpn_channels'"
    ):
        load_config(both)
    with pytest.raises(ConfigError, match=r"unknown key 'model.fpn_channel'; did you mean .*'model.fpn.channels'"):
        load_config(None, ["model.fpn_channel=64"])
    with pytest.raises(ConfigError, match=r"'model.backbone.name' must be one of .*not 'resnet51'.*did you mean 'resnet50'"):
        load_config(None, ["model.backbone=resnet51"])  # an old key's value is checked at its new place


def test_mask_head_names_come_from_the_registry_with_close_matches(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"'model.mask_head.name' must be one of 'maskrcnn', 'pointrend', 'implicit_pointrend', "
        r"not 'pointrnd' \(a string\); did you mean 'pointrend'",
    ):
        load_config(None, ["model.mask_head.name=pointrnd"])
    old = tmp_path / "old.yaml"
    old.write_text("model: {mask_head: implicit_point_rend}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"old.yaml: 'model.mask_head.name' must be one of .*did you mean 'implicit_pointrend'"):
        load_config(old)
