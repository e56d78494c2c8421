"""CondInst's dynamic mask head: a tiny per-instance network of 1x1 convolutions whose weights the
controller predicts, applied to the mask branch's features plus coordinates relative to the
instance's location."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointsup.modeling.condinst.config import DynamicMaskHeadConfig

if TYPE_CHECKING:
    from typing import Self


class DynamicMaskHead(nn.Module):
    """Instance-specific mask logits over the whole image.

    With ``in_channels`` mask features (+2 relative coordinates), ``channels`` hidden width and
    ``num_layers`` layers the parameter vector of one instance is laid out as all weights, layer
    after layer (each (out, in) row-major), then all biases: 169 numbers for CondInst's 8 -> 8 -> 8
    -> 1.

    Args:
        in_channels: channels of the mask branch output.
        channels: hidden width.
        num_layers: 1x1 layers (ReLU, or leaky ReLU, between them).
        negative_slope: slope of the activation between layers below zero; 0 is CondInst's ReLU.
            A small positive slope (leaky ReLU) keeps the head from collapsing under point
            supervision: see :meth:`logits_and_activity`.
        sizes_of_interest: per pyramid level, the scale the relative coordinates are divided by.
        output_stride: stride of the returned logits (the mask features' stride / 2: one 2x
            bilinear upsampling).
    """

    sizes_of_interest: Tensor  # a buffer (registered in __init__)

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_layers: int,
        sizes_of_interest: Sequence[float],
        output_stride: int,
        negative_slope: float,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the dynamic mask head needs at least one layer, got {num_layers}")
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"negative_slope must be in [0, 1), got {negative_slope}")
        self.negative_slope = negative_slope
        widths = [in_channels + 2] + [channels] * (num_layers - 1) + [1]
        self.shapes = list(zip(widths[1:], widths[:-1]))  # (out, in) per layer
        self.weight_counts = [o * i for o, i in self.shapes]
        self.bias_counts = [o for o, _ in self.shapes]
        self.num_params = sum(self.weight_counts) + sum(self.bias_counts)
        self.register_buffer("sizes_of_interest", torch.tensor(tuple(sizes_of_interest), dtype=torch.float32), persistent=False)
        self.output_stride = output_stride

    @classmethod
    def from_config(cls, config: DynamicMaskHeadConfig, in_channels: int, output_stride: int) -> Self:
        """The head of the ``model.condinst.dynamic_head`` section on ``in_channels`` mask features."""
        return cls(
            in_channels, config.channels, config.num_layers, config.sizes_of_interest, output_stride, config.negative_slope
        )

    def split_params(self, params: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """(N, num_params) -> per layer, weights (N, out, in) and biases (N, out, 1)."""
        if params.shape[1] != self.num_params:
            raise ValueError(f"expected {self.num_params} parameters per instance, got {params.shape[1]}")
        pieces = params.split(self.weight_counts + self.bias_counts, dim=1)
        layers = len(self.shapes)
        weights = [p.reshape(-1, o, i) for p, (o, i) in zip(pieces[:layers], self.shapes)]
        biases = [p.reshape(-1, o, 1) for p, (o, _) in zip(pieces[layers:], self.shapes)]
        return weights, biases

    def forward(
        self, mask_features: Tensor, feature_stride: int, image_index: Tensor, centres: Tensor, levels: Tensor, params: Tensor
    ) -> Tensor:
        """Mask logits of N instances; the arguments and result are those of :meth:`logits_and_activity`."""
        return self.logits_and_activity(mask_features, feature_stride, image_index, centres, levels, params)[0]

    def logits_and_activity(
        self, mask_features: Tensor, feature_stride: int, image_index: Tensor, centres: Tensor, levels: Tensor, params: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mask logits of N instances, and how active the head's last hidden layer is.

        Args:
            mask_features: (B, F, h, w) mask branch output at ``feature_stride``.
            image_index: (N,) the image each instance belongs to.
            centres: (N, 2) continuous ``(x, y)`` of the location that predicted each instance.
            levels: (N,) the pyramid level of that location.
            params: (N, num_params) the controller's output there.

        Returns:
            logits: (N, 2h, 2w) at ``feature_stride / 2``: cell ``(i, j)`` is centred at
                ``((j + 0.5) s, (i + 0.5) s)`` with ``s = feature_stride / 2``.
            activity: detached scalar, the share of (instance, unit, pixel) entries of the last
                hidden layer that are above zero (1 without hidden layers, 0 without instances).
                Near 0 means the head has collapsed to a constant mask (its final bias): with
                ReLU a dead unit gets no gradient and does not come back. Point supervision can
                do this early in a from-scratch schedule, since lowering every hidden bias is the
                quickest way to shrink output variance the features cannot explain yet.
        """
        _, channels, height, width = mask_features.shape
        num = params.shape[0]
        if num == 0:  # keep the mask branch and the controller in the graph (DDP expects every gradient)
            empty = mask_features.new_zeros((0, 2 * height, 2 * width)) + (mask_features.sum() + params.sum()) * 0
            return empty, mask_features.new_zeros(())
        ys = (torch.arange(height, device=params.device, dtype=mask_features.dtype) + 0.5) * feature_stride
        xs = (torch.arange(width, device=params.device, dtype=mask_features.dtype) + 0.5) * feature_stride
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=0).reshape(2, -1)  # (2, h w): x row, y row
        scale = self.sizes_of_interest.to(mask_features.dtype)[levels]  # (N,)
        relative = (centres.to(mask_features.dtype)[:, :, None] - grid[None]) / scale[:, None, None]  # (N, 2, h w)
        features = mask_features.flatten(2)[image_index]  # (N, F, h w)
        x = torch.cat([relative, features], dim=1)
        weights, biases = self.split_params(params)
        activity = mask_features.new_ones(())
        for layer, (weight, bias) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(bias, weight, x)
            if layer < len(weights) - 1:
                if layer == len(weights) - 2:  # the last hidden layer
                    activity = (x.detach() > 0).to(x.dtype).mean()
                x = F.leaky_relu(x, self.negative_slope)  # slope 0: exactly ReLU
        logits = x.reshape(num, 1, height, width)
        upsampled = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        return upsampled[:, 0], activity


class CollapseWatch:
    """Notices when a ReLU dynamic head has collapsed for good during training.

    A batch counts as collapsed when it has instances and under ``threshold`` of the last hidden
    layer is active (:meth:`DynamicMaskHead.logits_and_activity`); :meth:`update` returns True
    once, on the ``patience``-th collapsed batch in a row.
    """

    def __init__(self, threshold: float = 0.01, patience: int = 20):
        self.threshold = threshold
        self.patience = patience
        self.collapsed_batches = 0
        self.reported = False

    def update(self, activity: float, num_instances: int) -> bool:
        if num_instances == 0:
            return False
        self.collapsed_batches = self.collapsed_batches + 1 if activity < self.threshold else 0
        if self.collapsed_batches >= self.patience and not self.reported:
            self.reported = True
            return True
        return False
