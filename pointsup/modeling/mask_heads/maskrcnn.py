"""Mask R-CNN's mask head: 4 convs, a 2x deconvolution, and per-class 28x28 logits.

With ``supervision="points"`` it is the paper's point-supervised Mask R-CNN: the same
architecture, with the logits of the ground-truth class sampled at the annotated points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES, norm_factory
from pointsup.modeling.losses import roi_mask_loss, roi_point_loss, select_class_channel
from pointsup.modeling.mask_heads.base import RoIMaskHead, Supervision
from pointsup.modeling.mask_heads.config import MaskHeadConfig
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign
from pointsup.modeling.roi_targets import RoIMaskTargets

if TYPE_CHECKING:
    from typing import Self

NormFactory = Callable[[int], nn.Module]


def msra_fill(module: nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear) -> None:
    """Kaiming-normal weights (fan_out, ReLU) and zero bias: detectron2's c2_msra_fill."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class MaskRCNNConvUpsample(nn.Module):
    """RoI features → mask logits.

    Parameter names follow the reference (``mask_fcn1..N``, ``deconv``, ``predictor``).

    Args:
        in_channels: channels of the pooled RoI features.
        num_classes: output channels (1 for a class-agnostic mask).
        conv_dim: channels of the hidden convs.
        num_conv: number of 3x3 convs.
        norm: optional normalisation after each conv (e.g. GroupNorm for training from scratch).
    """

    def __init__(self, in_channels: int, num_classes: int, conv_dim: int, num_conv: int, norm: NormFactory | None = None):
        super().__init__()
        self.num_conv = num_conv
        channels = in_channels
        for k in range(1, num_conv + 1):
            conv = nn.Conv2d(channels, conv_dim, 3, padding=1, bias=norm is None)
            msra_fill(conv)
            self.add_module(f"mask_fcn{k}", conv)
            if norm is not None:
                self.add_module(f"mask_fcn{k}_norm", norm(conv_dim))
            channels = conv_dim
        self.deconv = nn.ConvTranspose2d(channels, conv_dim, 2, stride=2)
        msra_fill(self.deconv)
        self.predictor = nn.Conv2d(conv_dim, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        assert self.predictor.bias is not None
        nn.init.zeros_(self.predictor.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(R, in_channels, S, S) → (R, num_classes, 2S, 2S) logits."""
        for k in range(1, self.num_conv + 1):
            x = getattr(self, f"mask_fcn{k}")(x)
            norm = getattr(self, f"mask_fcn{k}_norm", None)
            if norm is not None:
                x = norm(x)
            x = torch.relu(x)
        x = torch.relu(self.deconv(x))
        return self.predictor(x)


class MaskRCNNMaskHead(RoIMaskHead):
    """Pools 14x14 aligned RoI features from the FPN and predicts 28x28 masks.

    Args:
        pooler: the aligned multi-level RoIAlign (output size 14).
        layers: the conv head.
        supervision: "points" or "masks".
    """

    def __init__(self, pooler: AlignedMultiScaleRoIAlign, layers: MaskRCNNConvUpsample, supervision: Supervision):
        super().__init__(supervision)
        self.pooler = pooler
        self.layers = layers

    @classmethod
    def from_config(cls, config: MaskHeadConfig, num_classes: int, supervision: Supervision, in_channels: int) -> Self:
        """The 4-conv head on aligned 14x14 RoI features from p2-p5 (``conv_dim``, ``num_conv``,
        ``norm``, ``class_agnostic``)."""
        pooler = AlignedMultiScaleRoIAlign(FEATURE_NAMES, FEATURE_STRIDES, output_size=14)
        outputs = 1 if config.class_agnostic else num_classes
        return cls(
            pooler,
            MaskRCNNConvUpsample(in_channels, outputs, config.conv_dim, config.num_conv, norm_factory(config.norm)),
            supervision,
        )

    def logits(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """(sum K_i, C, 28, 28) logits for per-image boxes."""
        return self.layers(self.pooler(features, boxes))

    def loss_from_logits(self, mask_logits: Tensor, targets: RoIMaskTargets) -> dict[str, Tensor]:
        """The loss of already computed (R, C, M, M) logits of the foreground RoIs."""
        if self.supervision == "points":
            relative, labels = targets.relative_points()
            output = roi_point_loss(mask_logits, targets.classes, relative, labels)
            return {"loss_mask": output.loss, "point_accuracy": output.accuracy}
        crops = targets.mask_crops(mask_logits.shape[-1])
        output = roi_mask_loss(mask_logits, targets.classes, crops)
        return {"loss_mask": output.loss, "mask_accuracy": output.accuracy}

    def losses(self, features: dict[str, Tensor], targets: RoIMaskTargets) -> dict[str, Tensor]:
        return self.loss_from_logits(self.logits(features, targets.boxes_per_image()), targets)

    def predict(self, features: dict[str, Tensor], boxes: list[Tensor], classes: list[Tensor]) -> list[Tensor]:
        counts = [len(b) for b in boxes]
        if sum(counts) == 0:
            side = 2 * self.pooler.output_size
            return [b.new_zeros((0, side, side)) for b in boxes]
        logits = self.logits(features, boxes)
        probs = select_class_channel(logits, torch.cat(classes)).squeeze(1).sigmoid()
        return list(probs.split(counts))
