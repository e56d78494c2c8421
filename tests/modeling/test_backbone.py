"""Backbone + FPN for both families: pyramid shapes on odd image sizes, the input normalisation
that travels with the backbone, frozen stages, and a training step of every architecture on an
EfficientNet-Lite."""

from __future__ import annotations

import pytest
import torch

from pointsup.engine.config import ConfigError, load_config
from pointsup.modeling.backbone import (
    LITE_NORMALIZATION,
    TORCHVISION_NORMALIZATION,
    build_backbone_fpn,
    input_normalization,
)
from pointsup.modeling.build import build_model
from pointsup.modeling.detector import total_loss
from tests.modeling.model_settings import model_config
from tests.modeling.test_mask_rcnn import sample


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2", "resnet18"])
@pytest.mark.parametrize("levels, names, strides", [("p2-p6", ["0", "1", "2", "3", "pool"], [4, 8, 16, 32, 64]),
                                                     ("p3-p7", ["0", "1", "2", "p6", "p7"], [8, 16, 32, 64, 128])])
def test_pyramid_levels_on_an_odd_image_size(name, levels, names, strides):
    backbone = build_backbone_fpn(name, "gn", 5, None, fpn_channels=32, levels=levels).eval()
    height, width = 250, 333
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, height, width))
    assert list(features) == names
    for (key, feature), stride in zip(features.items(), strides[:4]):
        assert feature.shape == (1, 32, -(-height // stride), -(-width // stride)), key


def test_normalisation_comes_with_the_backbone():
    assert input_normalization("efficientnet_lite1") == LITE_NORMALIZATION
    assert LITE_NORMALIZATION.pixel_mean == (127.5,) * 3 and LITE_NORMALIZATION.pixel_std == (127.5,) * 3
    assert input_normalization("resnet50") == TORCHVISION_NORMALIZATION
    lite = build_model(model_config({"backbone.name": "efficientnet_lite0", "backbone.norm": "gn", "fpn.channels": 32}), 2, "points")
    resnet = build_model(model_config({"backbone.name": "resnet18", "backbone.norm": "gn", "fpn.channels": 32}), 2, "points")
    explicit = build_model(model_config({"architecture": "condinst", "backbone.name": "efficientnet_lite0", "backbone.norm": "gn",
                                         "fpn.channels": 64, "pixel_mean": [0, 0, 0]}), 2, "points")
    assert lite.pixel_mean.flatten().tolist() == [127.5] * 3 and lite.pixel_std.flatten().tolist() == [127.5] * 3
    assert resnet.pixel_mean.flatten().tolist() == pytest.approx(TORCHVISION_NORMALIZATION.pixel_mean)
    assert explicit.pixel_mean.flatten().tolist() == [0, 0, 0] and explicit.pixel_std.flatten().tolist() == [127.5] * 3


def test_pretrained_weights_refuse_other_pixel_statistics(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {backbone: {name: efficientnet_lite0, weights: imagenet}, pixel_mean: [123.675, 116.28, 103.53]}\n")
    with pytest.raises(ConfigError, match=r"model.pixel_mean .*expect \[127.5, 127.5, 127.5\]"):
        load_config(recipe)
    same = load_config(recipe, ["model.pixel_mean=[127.5, 127.5, 127.5]"])
    assert same.model.pixel_mean == [127.5] * 3
    assert load_config(recipe, ["model.pixel_mean=null"]).model.pixel_mean == [127.5] * 3  # filled in from the backbone
    scratch = load_config(recipe, ["model.backbone.weights=null"])  # from scratch, any statistics go
    assert scratch.model.pixel_mean == [123.675, 116.28, 103.53]


def test_frozen_batchnorm_keeps_the_pretrained_statistics_in_training_mode():
    backbone = build_backbone_fpn("efficientnet_lite0", "frozen_bn", 3, None, fpn_channels=32).train()
    stem_norm = backbone.body.stem[1]
    before = stem_norm.running_mean.clone()
    backbone(torch.randn(2, 3, 64, 64) * 5 + 3)
    assert torch.equal(stem_norm.running_mean, before)
    assert not any(p.requires_grad for p in backbone.body.stage2.parameters())
    assert all(p.requires_grad for p in backbone.body.stage3.parameters())


@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_mask_rcnn_on_lite0_trains_the_unfrozen_stages_only(supervision):
    torch.manual_seed(0)
    config = model_config({"backbone.name": "efficientnet_lite0", "backbone.norm": "frozen_bn", "backbone.trainable_layers": 3,
                           "fpn.channels": 32, "fpn.norm": "gn", "mask_head.conv_dim": 16, "mask_head.norm": "gn",
                           "rpn.anchor_sizes": [8, 16, 32, 64, 128], "roi_heads.batch_size_per_image": 16})
    model = build_model(config, 3, supervision).train()
    loss = total_loss(model([sample(96, 130, [[10, 10, 60, 50], [40, 30, 120, 90]]), sample(80, 96, [])]))
    assert torch.isfinite(loss)
    loss.backward()
    body = model.backbone.body
    assert body.stage3[0].depthwise[0].weight.grad.abs().sum() > 0
    assert body.stage2[0].depthwise[0].weight.grad is None


@pytest.mark.parametrize("supervision", ["points", "masks", "boxes"])
def test_condinst_on_lite0_trains(supervision):
    torch.manual_seed(0)
    config = model_config({"architecture": "condinst", "backbone.name": "efficientnet_lite0", "backbone.norm": "gn",
                           "backbone.trainable_layers": 5, "fpn.channels": 64, "condinst.fcos.num_convs": 1,
                           "condinst.mask_branch.channels": 16, "condinst.mask_branch.norm": "gn"})
    model = build_model(config, 3, supervision).train()
    loss = total_loss(model([sample(96, 130, [[10, 10, 60, 50], [40, 30, 120, 90]])]))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.backbone.body.stem[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("variant, blocks, channels", [("efficientnet_lite0", 4, 192), ("efficientnet_lite1", 5, 192),
                                                       ("efficientnet_lite2", 5, 208)])
def test_every_lite_variant_builds_from_a_config(variant, blocks, channels):
    config = load_config(None, [f"model.backbone.name={variant}", "model.backbone.weights=null"])
    with torch.device("meta"):
        model = build_model(config.model, 3, "points")
    stage6 = model.backbone.body.stage6
    assert len(stage6) == blocks and stage6[-1].project[0].out_channels == channels


def test_published_weights_refuse_group_norm_and_coco_statistics(tmp_path):
    with pytest.raises(ConfigError, match="model.backbone.norm.*BatchNorm"):
        load_config(None, ["model.backbone.name=efficientnet_lite0", "model.backbone.weights=imagenet", "model.backbone.norm=gn"])
    with pytest.raises(ConfigError, match=r"model.pixel_std.*COCO Mask R-CNN"):
        load_config(None, ["model.weights=coco", "model.pixel_std=[1, 1, 1]"])
    own_file = load_config(None, ["model.backbone.name=efficientnet_lite0", f"model.backbone.weights={tmp_path / 'mine.pth'}",
                                  "model.pixel_mean=[0, 0, 0]", "model.backbone.norm=gn"])  # a file of one's own: any statistics
    assert own_file.model.pixel_mean == [0, 0, 0] and own_file.model.pixel_std == [127.5] * 3


def test_a_stored_config_is_taken_as_it_trained():
    from pointsup.engine.config import config_from_dict

    stored = {"model": {"backbone": {"name": "resnet50", "weights": "imagenet"}, "pixel_mean": [103.53, 116.28, 123.675]}}
    assert config_from_dict(stored).model.pixel_mean == [103.53, 116.28, 123.675]


def test_config_backbone_choices_are_the_buildable_backbones():
    import typing

    from pointsup.modeling.backbone import BACKBONES
    from pointsup.modeling.config import BackboneConfig

    assert set(typing.get_args(typing.get_type_hints(BackboneConfig)["name"])) == set(BACKBONES)
