"""The mask heads of Mask R-CNN as traceable modules: one image's kept boxes in, box-relative mask
probabilities out, with the number of boxes a dimension of the graph.

Each class here re-composes a head's inference from the head's own layers (nothing in
:mod:`pointsup.modeling` changes):

* :class:`MaskRCNNMasks`: multi-level RoIAlign and the conv head (M = 28);
* :class:`PointRendMasks`: the coarse head on a 14 x 14 point grid, then PointRend's adaptive
  subdivision exactly as it runs in PyTorch, top-k of the most uncertain cells included
  (:func:`traced_subdivide`; M = 224 with the reference settings);
* :class:`ImplicitPointRendMasks`: the parameter head, each box's MLP with its class's last row,
  and the same subdivision.

Where the heads use a Python value that depends on the boxes (``torch.unique(...).tolist()`` over
images or classes, ``boxes.shape[0] == 0`` early returns, a per-image ``torch.tensor`` of the
padded size), a trace would freeze it; the code here computes the same values from tensors. The
caller always passes at least one box (a spare one, dropped afterwards), because onnxruntime
cannot reshape an empty batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointsup.deploy.pooling import pool_one_image
from pointsup.modeling.mask_heads.implicit_pointrend import ImplicitPointRendMaskHead
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNMaskHead
from pointsup.modeling.mask_heads.pointrend import PointRendMaskHead
from pointsup.modeling.mask_heads.subdivision import PointLogitsFn, initial_resolution
from pointsup.modeling.point_ops import point_sample, regular_grid_points


def sample_fine_features(feature_map: Tensor, stride: int, boxes: Tensor, points: Tensor) -> Tensor:
    """``FineFeatureSampler`` for one image, traceable: the map read bilinearly at box-relative points.

    All points go through one ``grid_sample`` of the (1, C, H_f, W_f) map (an expanded map would
    be copied once per box by onnxruntime); each output value is the same bilinear read.

    Args:
        feature_map: (1, C, H_f, W_f) the level (stride ``stride``) of the padded image.
        boxes: (R, 4) xyxy in input-image coordinates.
        points: (R, P, 2) box-relative ``(u, v)``.

    Returns:
        (R, C, P) features.
    """
    num_rois, num_points = points.shape[0], points.shape[1]
    image_points = points * (boxes[:, None, 2:] - boxes[:, None, :2]) + boxes[:, None, :2]
    shape = torch._shape_as_tensor(feature_map)  # traced: the padded size follows the input
    padded_size = torch.stack([shape[3], shape[2]]).to(torch.float32) * stride
    grid = (2.0 * (image_points / padded_size) - 1.0).to(feature_map.dtype)
    sampled = F.grid_sample(feature_map, grid.reshape(1, -1, 1, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    channels = feature_map.shape[1]
    return sampled.reshape(channels, num_rois, num_points).permute(1, 0, 2)


def traced_subdivide(
    point_logits: PointLogitsFn, num_rois_like: Tensor, initial_side: int, steps: int, num_points: int
) -> Tensor:
    """:func:`pointsup.modeling.mask_heads.subdivision.subdivide` for one-channel point logits,
    traceable: the regular start grid, then ``steps`` times 2x bilinear upsampling, ``TopK`` of
    the ``num_points`` cells whose logit is closest to 0, the head at their centres and a scatter.

    Args:
        point_logits: (R, P, 2) box-relative points → (R, 1, P) logits.
        num_rois_like: any (R, ...) tensor (gives R as a graph dimension).
        initial_side: S0; steps: refinements; num_points: N.

    Returns:
        (R, 1, S0 * 2**steps, S0 * 2**steps) logits.
    """
    start = regular_grid_points(initial_side, 1, num_rois_like.device)  # a constant of the graph
    start = start.expand(num_rois_like.shape[0], -1, -1)
    logits = point_logits(start).reshape(-1, 1, initial_side, initial_side)
    side = initial_side
    for _ in range(steps):
        logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=False)
        side *= 2
        count = min(num_points, side * side)
        flat = logits.reshape(-1, side * side)
        indices = torch.topk(-flat.abs(), k=count, dim=1)[1]
        step = 1.0 / float(side)
        points = torch.stack(
            [step / 2.0 + (indices % side).to(torch.float32) * step, step / 2.0 + (indices // side).to(torch.float32) * step],
            dim=2,
        )
        refined = point_logits(points)[:, 0]
        logits = flat.scatter(1, indices, refined.to(flat.dtype)).reshape(-1, 1, side, side)
    return logits


class MaskRCNNMasks(nn.Module):
    """Mask R-CNN's conv head: (R, 4) boxes, (R,) classes, FPN maps → (R, 28, 28) probabilities."""

    def __init__(self, head: MaskRCNNMaskHead):
        super().__init__()
        self.head = head

    def forward(self, features: dict[str, Tensor], boxes: Tensor, classes: Tensor) -> Tensor:
        logits = self.head.layers(pool_one_image(self.head.pooler, features, boxes))  # (R, C, M, M)
        if logits.shape[1] == 1:
            return logits[:, 0].sigmoid()
        return logits[torch.arange(logits.shape[0]), classes].sigmoid()


class PointRendMasks(nn.Module):
    """PointRend: (R, 4) boxes, (R,) classes, FPN maps → (R, S, S) probabilities by adaptive subdivision."""

    def __init__(self, head: PointRendMaskHead):
        super().__init__()
        self.head = head

    def forward(self, features: dict[str, Tensor], boxes: Tensor, classes: Tensor) -> Tensor:
        head = self.head
        fine_map, stride = features[head.sampler.feature_name], head.sampler.stride
        grid_points = regular_grid_points(head.grid_side, 1, boxes.device).expand(boxes.shape[0], -1, -1)
        grid = sample_fine_features(fine_map, stride, boxes, grid_points)
        grid = grid.reshape(-1, grid.shape[1], head.grid_side, head.grid_side)
        coarse = head.coarse_head(grid)  # (R, C, 7, 7)

        def point_logits(points: Tensor) -> Tensor:
            fine = sample_fine_features(fine_map, stride, boxes, points)
            return head.point_head.class_logits(fine, point_sample(coarse, points), classes)

        side, steps = initial_resolution(head.coarse_side, head.subdivision_steps, head.subdivision_num_points)
        return traced_subdivide(point_logits, boxes, side, steps, head.subdivision_num_points)[:, 0].sigmoid()


class ImplicitPointRendMasks(nn.Module):
    """Implicit PointRend: (R, 4) boxes, (R,) classes, FPN maps → (R, S, S) probabilities."""

    def __init__(self, head: ImplicitPointRendMaskHead):
        super().__init__()
        self.head = head

    def class_parameters(self, hidden: Tensor, classes: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """:meth:`ImplicitPointRendMaskHead.class_parameters` without its loop over the classes
        present: each box's last-layer rows are gathered from the prediction layer by class.

        Args:
            hidden: (R, H) input of the parameter head's prediction layer; classes: (R,).

        Returns:
            per layer, weights (R, out, in) and biases (R, out, 1), the last layer with one output.
        """
        head, prediction = self.head.point_head, self.head.parameter_head.prediction
        if head.num_classes == 1:
            return head.parse_parameters(prediction(hidden))
        num_weights, num_biases = head.num_weight_params, head.num_bias_params
        last_weights_at, biases_at = sum(num_weights[:-1]), sum(num_weights)
        last_bias_at = biases_at + sum(num_biases[:-1])
        width, classes_count = head.last_layer_inputs, head.num_classes
        shared_weights = F.linear(hidden, prediction.weight[:last_weights_at], prediction.bias[:last_weights_at])
        shared_biases = F.linear(hidden, prediction.weight[biases_at:last_bias_at], prediction.bias[biases_at:last_bias_at])
        rows_w = prediction.weight[last_weights_at:biases_at].reshape(classes_count, width, -1)[classes]  # (R, width, H)
        rows_wb = prediction.bias[last_weights_at:biases_at].reshape(classes_count, width)[classes]  # (R, width)
        last_weight = torch.bmm(rows_w, hidden[:, :, None])[:, :, 0] + rows_wb
        bias_w = prediction.weight[last_bias_at : last_bias_at + classes_count][classes]  # (R, H)
        bias_b = prediction.bias[last_bias_at : last_bias_at + classes_count][classes]  # (R,)
        last_bias = (bias_w * hidden).sum(dim=1, keepdim=True) + bias_b[:, None]
        shapes = head.layer_shapes[:-1]
        weights = [w.reshape(-1, o, i) for w, (o, i) in zip(torch.split(shared_weights, num_weights[:-1], dim=1), shapes)]
        biases = [b.reshape(-1, o, 1) for b, (o, _) in zip(torch.split(shared_biases, num_biases[:-1], dim=1), shapes)]
        return weights + [last_weight.unsqueeze(1)], biases + [last_bias.unsqueeze(2)]

    def forward(self, features: dict[str, Tensor], boxes: Tensor, classes: Tensor) -> Tensor:
        outer = self.head
        head = outer.point_head
        fine_map, stride = features[outer.sampler.feature_name], outer.sampler.stride
        grid_points = regular_grid_points(outer.grid_side, 1, boxes.device).expand(boxes.shape[0], -1, -1)
        grid = sample_fine_features(fine_map, stride, boxes, grid_points)
        grid = grid.reshape(-1, grid.shape[1], outer.grid_side, outer.grid_side)
        weights, biases = self.class_parameters(outer.parameter_head.hidden(grid), classes)
        weights = head.split_first_layer(weights)

        def point_logits(points: Tensor) -> Tensor:
            fine = sample_fine_features(fine_map, stride, boxes, points)
            return head.run_layers_fused(head.input_parts(fine, points), weights, biases)

        side = int(round(outer.subdivision_num_points**0.5))
        logits = traced_subdivide(point_logits, boxes, side, outer.subdivision_steps, outer.subdivision_num_points)
        return logits[:, 0].sigmoid()


def mask_graph(head: nn.Module) -> nn.Module:
    """The traceable module of a Mask R-CNN mask head (``TypeError`` for any other module)."""
    if isinstance(head, MaskRCNNMaskHead):
        return MaskRCNNMasks(head)
    if isinstance(head, PointRendMaskHead):
        return PointRendMasks(head)
    if isinstance(head, ImplicitPointRendMaskHead):
        return ImplicitPointRendMasks(head)
    raise TypeError(f"no exportable form of the mask head {type(head).__name__}")
