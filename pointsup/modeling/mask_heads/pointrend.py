"""PointRend (Kirillov et al. 2020), the paper's strong baseline, with masks or with points.

* Coarse head: p2 sampled on a 14 x 14 grid in the box → 2x2/2 conv → FC 1024 → FC 1024 →
  C x 7 x 7 coarse logits.
* Point head: at a box-relative point, the p2 feature concatenated with the C coarse logits
  there → three 1x1 conv1d layers of 256 (the coarse logits re-appended after each) → C logits.
* Inference: adaptive subdivision from a 28 x 28 grid (7 doubled twice) in 3 steps to 224 x 224.

Mask supervision (as the reference): ``loss_mask`` is the BCE of the 7 x 7 logits against the
cropped GT mask, ``loss_mask_point`` the point head's BCE at 196 points chosen by importance
sampling (the most uncertain 147 of 588 uniform candidates plus 49 uniform ones) with soft labels.

Point supervision (the reference has no such head; our design, documented in the README):
``loss_mask`` is the point loss of the 7 x 7 coarse logits read bilinearly at the annotated
points, and ``loss_mask_point`` the point head's loss at the same points. Points outside the
proposal box are ignored in both, as for Mask R-CNN; no importance sampling is possible, since
labels exist only at the annotated points.

Inference only predicts the predicted class's channel of the point head (``fast_inference``); the
hidden layers still read all C coarse logits, so the result is that of the full computation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES
from pointsup.modeling.losses import point_loss, roi_mask_loss, roi_point_loss, select_class_channel
from pointsup.modeling.mask_heads.base import Supervision
from pointsup.modeling.mask_heads.config import MaskHeadConfig, PointRendConfig
from pointsup.modeling.mask_heads.convfc import ConvFCHead, FineFeatureSampler
from pointsup.modeling.mask_heads.maskrcnn import msra_fill
from pointsup.modeling.mask_heads.subdivision import SubdivisionMaskHead, initial_resolution, subdivide
from pointsup.modeling.point_ops import importance_sample_points, point_sample
from pointsup.modeling.roi_targets import RoIMaskTargets

if TYPE_CHECKING:
    from typing import Self


class StandardPointHead(nn.Module):
    """Per-point MLP (1x1 conv1d) over fine features and coarse logits.

    Parameter names follow the reference (``fc1``.., ``predictor``).

    Args:
        feature_channels: channels of the fine feature at a point.
        num_classes: outputs, and coarse logits read (1 for class-agnostic masks).
        fc_dim: width of the hidden layers.
        num_fc: number of hidden layers.
        coarse_pred_each_layer: re-append the coarse logits after every hidden layer.
    """

    def __init__(self, feature_channels: int, num_classes: int, fc_dim: int, num_fc: int, coarse_pred_each_layer: bool = True):
        super().__init__()
        self.num_fc = num_fc
        self.coarse_pred_each_layer = coarse_pred_each_layer
        width = feature_channels + num_classes
        for k in range(1, num_fc + 1):
            fc = nn.Conv1d(width, fc_dim, 1)
            msra_fill(fc)
            self.add_module(f"fc{k}", fc)
            width = fc_dim + (num_classes if coarse_pred_each_layer else 0)
        self.predictor = nn.Conv1d(width, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        assert self.predictor.bias is not None
        nn.init.zeros_(self.predictor.bias)

    def hidden(self, fine_features: Tensor, coarse_logits: Tensor) -> Tensor:
        """(R, C_f, P) features and (R, C, P) coarse logits → (R, C_pred_in, P) predictor input."""
        x = torch.cat([fine_features, coarse_logits], dim=1)
        for k in range(1, self.num_fc + 1):
            x = torch.relu(getattr(self, f"fc{k}")(x))
            if self.coarse_pred_each_layer:
                x = torch.cat([x, coarse_logits], dim=1)
        return x

    def forward(self, fine_features: Tensor, coarse_logits: Tensor) -> Tensor:
        """(R, C_f, P), (R, C, P) → (R, C, P) point logits."""
        return self.predictor(self.hidden(fine_features, coarse_logits))

    def class_logits(self, fine_features: Tensor, coarse_logits: Tensor, classes: Tensor) -> Tensor:
        """(R, 1, P) logits of each row's class only: the same values as :meth:`forward`'s class
        channel up to float rounding, computed points-major as plain matrix products (each layer's
        weight split into its feature and coarse-logit columns, so nothing is concatenated) and
        with one predictor row per RoI.
        """
        num_rois, _, num_points = fine_features.shape
        num_coarse = coarse_logits.shape[1]
        coarse = coarse_logits.permute(0, 2, 1).reshape(num_rois * num_points, num_coarse)
        x = fine_features.permute(0, 2, 1).reshape(num_rois * num_points, -1)
        for k in range(1, self.num_fc + 1):
            layer = getattr(self, f"fc{k}")
            weight = layer.weight[:, :, 0]
            reads_coarse = k == 1 or self.coarse_pred_each_layer
            split = weight.shape[1] - (num_coarse if reads_coarse else 0)
            y = torch.addmm(layer.bias, x, weight[:, :split].t())
            if reads_coarse:
                y = y.addmm_(coarse, weight[:, split:].t())
            x = y.relu_()
        weight = self.predictor.weight[:, :, 0]
        rows = weight[classes] if weight.shape[0] > 1 else weight.expand(num_rois, -1)  # (R, C_in)
        reads_coarse = self.num_fc == 0 or self.coarse_pred_each_layer
        split = weight.shape[1] - (num_coarse if reads_coarse else 0)
        assert self.predictor.bias is not None
        bias = self.predictor.bias[classes] if weight.shape[0] > 1 else self.predictor.bias.expand(num_rois)
        logits = torch.einsum("rpc,rc->rp", x.view(num_rois, num_points, -1), rows[:, :split]) + bias[:, None]
        if reads_coarse:
            logits = logits + torch.einsum("rpc,rc->rp", coarse.view(num_rois, num_points, -1), rows[:, split:])
        return logits.unsqueeze(1)


class PointRendMaskHead(SubdivisionMaskHead):
    """PointRend behind the :class:`RoIMaskHead` boundary.

    Args:
        coarse_head: ConvFCHead from the (R, C_f, grid_side, grid_side) grid to (R, C, S_c, S_c).
        point_head: the point MLP.
        sampler: reads the fine FPN level (p2) at box-relative points.
        supervision: "points" or "masks".
        settings: importance sampling under mask supervision (``train_points``,
            ``oversample_ratio``, ``importance_ratio``) and subdivision at inference
            (``subdivision_steps``, ``subdivision_num_points``); None takes the defaults of
            :class:`~pointsup.modeling.mask_heads.config.PointRendConfig` (the reference's).
        grid_side: side of the grid the coarse head reads (14).
    """

    def __init__(
        self,
        coarse_head: ConvFCHead,
        point_head: StandardPointHead,
        sampler: FineFeatureSampler,
        supervision: Supervision,
        settings: PointRendConfig | None = None,
        grid_side: int = 14,
    ):
        super().__init__(supervision)
        settings = PointRendConfig() if settings is None else settings
        if len(coarse_head.output_shape) != 3 or coarse_head.output_shape[1] != coarse_head.output_shape[2]:
            raise ValueError(f"the coarse head must predict (C, S, S) maps, got {coarse_head.output_shape}")
        if settings.oversample_ratio < 1 or not 0 <= settings.importance_ratio <= 1:
            raise ValueError("importance sampling needs oversample_ratio >= 1 and importance_ratio in [0, 1]")
        self.coarse_head = coarse_head
        self.point_head = point_head
        self.sampler = sampler
        self.grid_side = grid_side
        self.train_num_points = settings.train_points
        self.oversample_ratio = settings.oversample_ratio
        self.importance_ratio = settings.importance_ratio
        self.subdivision_steps = settings.subdivision_steps
        self.subdivision_num_points = settings.subdivision_num_points
        self.fast_inference = True

    @classmethod
    def from_config(cls, config: MaskHeadConfig, num_classes: int, supervision: Supervision, in_channels: int) -> Self:
        """PointRend on p2: a 7x7 coarse conv-FC head (``conv_dim``, ``pointrend.fc_dim`` x
        ``pointrend.num_fc``) and a point head (``pointrend.point_fc_dim`` x ``point_num_fc``)."""
        section = config.pointrend
        outputs = 1 if config.class_agnostic else num_classes
        return cls(
            ConvFCHead(in_channels, 14, config.conv_dim, [section.fc_dim] * section.num_fc, (outputs, 7, 7)),
            StandardPointHead(in_channels, outputs, section.point_fc_dim, section.point_num_fc),
            FineFeatureSampler(FEATURE_NAMES[0], FEATURE_STRIDES[0]),
            supervision,
            section,
        )

    @property
    def coarse_side(self) -> int:
        return self.coarse_head.output_shape[-1]

    def coarse_logits(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor) -> Tensor:
        """(R, C, S_c, S_c) coarse logits."""
        return self.coarse_head(self.sampler.grid(features, boxes, image_index, self.grid_side))

    def training_points(self, coarse: Tensor, targets: RoIMaskTargets) -> tuple[Tensor, Tensor]:
        """(R, P, 2) box-relative points for the point head and (R, P) labels (-1 = ignored)."""
        if self.supervision == "points":
            return targets.relative_points()
        with torch.no_grad():
            points = importance_sample_points(
                coarse.detach(), targets.classes, self.train_num_points, self.oversample_ratio, self.importance_ratio
            )
        return points, targets.soft_mask_labels(points)

    def losses(self, features: dict[str, Tensor], targets: RoIMaskTargets) -> dict[str, Tensor]:
        coarse = self.coarse_logits(features, targets.boxes, targets.image_index)
        points, labels = self.training_points(coarse, targets)
        if self.supervision == "points":
            coarse_output = roi_point_loss(coarse, targets.classes, points, labels)
            outputs = {"loss_mask": coarse_output.loss, "coarse_point_accuracy": coarse_output.accuracy}
        else:
            coarse_output = roi_mask_loss(coarse, targets.classes, targets.mask_crops(self.coarse_side))
            outputs = {"loss_mask": coarse_output.loss, "mask_accuracy": coarse_output.accuracy}
        fine = self.sampler(features, targets.boxes, targets.image_index, points)
        logits = self.point_head(fine, point_sample(coarse, points))
        output = point_loss(select_class_channel(logits, targets.classes).squeeze(1), labels)
        outputs.update({"loss_mask_point": output.loss, "point_accuracy": output.accuracy})
        return outputs

    def predict_logits(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor, classes: Tensor) -> Tensor:
        """(R, 1, S, S) logits of each RoI's class by adaptive subdivision."""
        features = self.sampler.for_inference(features)
        coarse = self.coarse_logits(features, boxes, image_index)

        def point_logits(points: Tensor) -> Tensor:
            fine = self.sampler(features, boxes, image_index, points)
            coarse_at_points = point_sample(coarse, points)
            if self.fast_inference:
                return self.point_head.class_logits(fine, coarse_at_points, classes)
            return self.point_head(fine, coarse_at_points)

        side, steps = initial_resolution(self.coarse_side, self.subdivision_steps, self.subdivision_num_points)
        logits = subdivide(point_logits, boxes.shape[0], classes, side, steps, self.subdivision_num_points, boxes.device)
        return select_class_channel(logits, classes)

    def output_side(self) -> int:
        side, steps = initial_resolution(self.coarse_side, self.subdivision_steps, self.subdivision_num_points)
        return side << steps
