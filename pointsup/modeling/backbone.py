"""ResNet / ResNeXt + FPN backbones from torchvision, with the normalisation chosen per recipe.

Two pyramids:

* ``levels="p2-p6"`` (Mask R-CNN): torchvision's names "0".."3" = p2..p5 (strides 4..32) and
  "pool" = p6 (stride 64, max-pooled from p5, for the RPN only);
* ``levels="p3-p7"`` (FCOS / CondInst): "0".."2" = p3..p5 (strides 8..32), "p6" and "p7"
  (strides 64, 128: stride-2 convolutions on p5, then on relu(p6)).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import FrozenBatchNorm2d

BACKBONES: dict[str, tuple[Callable[..., resnet.ResNet], str | None]] = {
    "resnet18": (resnet.resnet18, "ResNet18_Weights"),
    "resnet34": (resnet.resnet34, "ResNet34_Weights"),
    "resnet50": (resnet.resnet50, "ResNet50_Weights"),
    "resnet101": (resnet.resnet101, "ResNet101_Weights"),
    "resnext101_32x8d": (resnet.resnext101_32x8d, "ResNeXt101_32X8D_Weights"),
}
NORMS = ("frozen_bn", "bn", "syncbn", "gn")
FEATURE_NAMES = ["0", "1", "2", "3"]
FEATURE_STRIDES = [4, 8, 16, 32]
RPN_FEATURE_NAMES = ["0", "1", "2", "3", "pool"]
#: the p3-p7 pyramid of one-stage detectors: names and strides
P3_P7_FEATURE_NAMES = ["0", "1", "2", "p6", "p7"]
P3_P7_STRIDES = [8, 16, 32, 64, 128]
PYRAMIDS = ("p2-p6", "p3-p7")


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups (fewer when the channel count is small)."""
    return nn.GroupNorm(min(groups, channels), channels)


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
    """torchvision's ImageNet weight enum for a backbone (downloads on first use)."""
    enum_name = BACKBONES[name][1]
    return getattr(resnet, enum_name).DEFAULT


def build_resnet_fpn(name: str = "resnet50", norm: str = "frozen_bn", trainable_layers: int = 3,
                     weights: str | None = None, fpn_channels: int = 256, fpn_norm: str | None = None,
                     levels: str = "p2-p6") -> BackboneWithFPN:
    """ResNet-FPN backbone.

    Args:
        name: one of ``BACKBONES``.
        norm: normalisation of the ResNet ("frozen_bn" for fine-tuning pretrained weights, "gn" to
            train from scratch).
        trainable_layers: how many stages are trained, counted from the top (0-5; 5 = all).
        weights: None (random init), "imagenet" (torchvision's enum; needs network access or a
            populated torch hub cache), or a path to a ResNet state dict saved by torchvision.
        fpn_channels: channels of the FPN outputs.
        fpn_norm: optional normalisation inside the FPN ("gn").
        levels: "p2-p6" (Mask R-CNN) or "p3-p7" (FCOS, CondInst); see the module docstring.

    Returns:
        a module mapping (B, 3, H, W) to an OrderedDict of (B, fpn_channels, H/s, W/s) maps.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
    if levels not in PYRAMIDS:
        raise ValueError(f"unknown pyramid {levels!r}; choose from {PYRAMIDS}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    builder, _ = BACKBONES[name]
    body = builder(weights=imagenet_weights(name) if weights == "imagenet" else None, norm_layer=norm_factory(norm))
    if weights not in (None, "imagenet"):
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, unexpected = body.load_state_dict(state, strict=False)
        unused = [k for k in unexpected if not k.startswith("fc.")]
        if missing or unused:
            raise ValueError(f"{weights}: not a {name} state dict (missing {missing[:5]}, unexpected {unused[:5]})")
    stages = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        stages.append("bn1")
    for parameter_name, parameter in body.named_parameters():
        if not any(parameter_name.startswith(stage) for stage in stages):
            parameter.requires_grad_(False)
    first = 1 if levels == "p2-p6" else 2
    stage_channels = [_out_channels(getattr(body, f"layer{k}")) for k in range(first, 5)]
    return BackboneWithFPN(
        body,
        return_layers={f"layer{k}": str(k - first) for k in range(first, 5)},
        in_channels_list=stage_channels,
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool() if levels == "p2-p6" else LastLevelP6P7(fpn_channels, fpn_channels),
        norm_layer=norm_factory(fpn_norm),
    )


def _out_channels(stage: nn.Sequential) -> int:
    block = stage[-1]
    last_conv = block.conv3 if hasattr(block, "conv3") else block.conv2
    return int(last_conv.out_channels)


__all__ = ["FEATURE_NAMES", "FEATURE_STRIDES", "P3_P7_FEATURE_NAMES", "P3_P7_STRIDES", "RPN_FEATURE_NAMES", "build_resnet_fpn",
           "group_norm", "norm_factory"]
