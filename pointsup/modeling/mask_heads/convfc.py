"""Pieces shared by PointRend and Implicit PointRend: point-sampled RoI grids and the conv-FC head.

Both heads read RoI features by sampling one fine FPN level (p2) at a regular 14 x 14 grid of
cell centres in each box, rather than by multi-level RoIAlign, and reduce them with a 2x2/2 conv
and two FC layers to a vector: the coarse 7 x 7 mask logits (PointRend) or the parameters of a
per-RoI point head (Implicit PointRend).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pointsup.modeling.mask_heads.maskrcnn import msra_fill
from pointsup.modeling.point_ops import box_points_to_image, channels_last, regular_grid_points, sample_image_features


def xavier_fill(module: nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear) -> None:
    """detectron2's c2_xavier_fill: Kaiming-uniform with ``a = 1`` and zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class FineFeatureSampler(nn.Module):
    """Reads one FPN level at box-relative points of RoIs.

    Args:
        feature_name: key of the level in the feature dict ("0" = p2).
        stride: its stride (4 for p2).
    """

    def __init__(self, feature_name: str = "0", stride: int = 4):
        super().__init__()
        self.feature_name = feature_name
        self.stride = stride

    def forward(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor, points: Tensor) -> Tensor:
        """
        Args:
            features: FPN maps, each (B, C, H_l, W_l).
            boxes: (R, 4) xyxy boxes in input-image coordinates.
            image_index: (R,) image of each box.
            points: (R, P, 2) box-relative ``(u, v)``.

        Returns:
            (R, C, P) features at the points.
        """
        feature_map = features[self.feature_name]
        if boxes.shape[0] == 0:
            return feature_map.new_zeros((0, feature_map.shape[1], points.shape[1])) + feature_map.sum() * 0
        with torch.no_grad():
            image_points = box_points_to_image(points.to(torch.float32), boxes.to(torch.float32))
        return sample_image_features(feature_map, self.stride, image_index, image_points)

    def for_inference(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """``features`` with the sampled level in channels-last layout: several times faster to
        sample when no gradient is needed, same values."""
        return {**features, self.feature_name: channels_last(features[self.feature_name])}

    def grid(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor, side: int) -> Tensor:
        """(R, C, side, side) features at the centres of a regular grid over each box (equal to
        aligned RoIAlign with one sample per bin, away from the image border)."""
        points = regular_grid_points(side, boxes.shape[0], boxes.device)
        sampled = self(features, boxes, image_index, points)
        return sampled.view(sampled.shape[0], sampled.shape[1], side, side)


class ConvFCHead(nn.Module):
    """(R, C_in, S, S) RoI grid → (R, *output_shape): [1x1 conv to ``conv_dim`` when C_in is
    larger], a 2x2 stride-2 conv, FC layers with ReLU, and a linear prediction.

    Parameter names follow the reference (``reduce_channel_dim_conv``, ``reduce_spatial_dim_conv``,
    ``fc1``.., ``prediction``).

    Args:
        in_channels: C_in.
        input_side: S (even).
        conv_dim: channels after the convs.
        fc_dims: widths of the FC layers.
        output_shape: shape of each RoI's prediction, e.g. (C, 7, 7) or (num_params,).
    """

    def __init__(self, in_channels: int, input_side: int, conv_dim: int, fc_dims: Sequence[int], output_shape: Sequence[int]):
        super().__init__()
        if input_side % 2:
            raise ValueError(f"ConvFCHead needs an even input side, got {input_side}")
        if not fc_dims:
            raise ValueError("ConvFCHead needs at least one FC layer")
        self.output_shape = tuple(int(d) for d in output_shape)
        self.layer_names: list[str] = []  # in order; each applied with a ReLU
        if in_channels > conv_dim:
            self.reduce_channel_dim_conv = nn.Conv2d(in_channels, conv_dim, 1)
            self.layer_names.append("reduce_channel_dim_conv")
        self.reduce_spatial_dim_conv = nn.Conv2d(min(in_channels, conv_dim), conv_dim, 2, stride=2)
        self.layer_names.append("reduce_spatial_dim_conv")
        for name in self.layer_names:
            msra_fill(getattr(self, name))
        self.num_convs = len(self.layer_names)
        width = conv_dim * (input_side // 2) ** 2
        for k, fc_dim in enumerate(fc_dims, start=1):
            fc = nn.Linear(width, fc_dim)
            xavier_fill(fc)
            self.add_module(f"fc{k}", fc)
            self.layer_names.append(f"fc{k}")
            width = fc_dim
        self.prediction = nn.Linear(width, math.prod(self.output_shape))
        nn.init.normal_(self.prediction.weight, std=0.001)
        nn.init.zeros_(self.prediction.bias)

    def hidden(self, x: Tensor) -> Tensor:
        """(R, C_in, S, S) → (R, fc_dims[-1]) the input of the prediction layer."""
        for k, name in enumerate(self.layer_names):
            if k == self.num_convs:
                x = torch.flatten(x, start_dim=1)
            x = torch.relu(getattr(self, name)(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        """(R, C_in, S, S) → (R, *output_shape)."""
        return self.prediction(self.hidden(x)).view(x.shape[0], *self.output_shape)
