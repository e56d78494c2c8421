"""Implicit PointRend (paper section 4): a mask head that predicts, for every RoI, the weights of
a small MLP which maps a point's features and position to its mask logit.

* Parameter head: p2 sampled on a 14 x 14 grid in the box → 2x2/2 conv → FC 1024 → FC 1024 →
  a linear layer to the MLP's parameters (283,472 of them at default sizes).
* Point head: for a box-relative point ``(u, v)``, the input is the concatenation of a random
  Fourier encoding of ``2 (u, v) - 1`` (256 channels, a fixed Gaussian matrix saved with the
  model) and the p2 feature at the point (256); four layers 512 → 256 → 256 → 256 → C with ReLU
  between them, whose weights are the RoI's predicted parameters.
* Training: one point-level loss at 196 uniform points with soft labels (mask supervision) or
  at the annotated points (point supervision), plus ``1e-5 * mean(parameters**2)``.
* Inference: adaptive subdivision 28 → 56 → 112 → 224, re-evaluating 784 points per step.

Inference is fast without changing its result: only the predicted class's row of the last layer
is predicted and evaluated, without concatenations, with fused bias and in-place ReLU into
buffers reused across subdivision steps (:class:`Workspace`), the encoding in contiguous sine and
cosine halves, on the CPU 10 RoIs at a time, and p2 is sampled in channels-last layout (the
reference evaluates all C classes at every step and upsamples all C channels, about 1.6 GB for
100 detections and 80 classes); ``fast_inference = False`` runs the straightforward computation.
docs/design.md gives the measurements behind each of these.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES
from pointsup.modeling.losses import point_loss, select_class_channel
from pointsup.modeling.mask_heads.base import Supervision
from pointsup.modeling.mask_heads.config import ImplicitPointRendConfig, MaskHeadConfig
from pointsup.modeling.mask_heads.convfc import ConvFCHead, FineFeatureSampler
from pointsup.modeling.mask_heads.subdivision import SubdivisionMaskHead, subdivide
from pointsup.modeling.roi_targets import RoIMaskTargets

if TYPE_CHECKING:
    from typing import Self

#: Random Fourier features per coordinate pair (each gives a sine and a cosine channel).
NUM_FOURIER_FEATURES = 128
#: RoIs subdivided at a time by fast inference on the CPU: small activations whose memory glibc
#: re-uses from step to step instead of mapping fresh pages (the size was tuned; the measurements
#: are in docs/results_speed.md, Implicit PointRend inference).
CPU_SUBDIVISION_CHUNK = 10


class Workspace:
    """Scratch tensors reused across the point head's evaluations of one inference call.

    Subdivision evaluates the point MLP once per step on (R, 256, P) activations; allocating them
    afresh every time costs page faults on the CPU (docs/design.md, inference speed). A buffer is
    kept per name and re-allocated only when a larger one, or another dtype or device, is asked
    for.
    """

    def __init__(self) -> None:
        self._storage: dict[str, Tensor] = {}

    def buffer(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised contiguous tensor of ``shape`` with ``like``'s dtype and device."""
        numel = math.prod(shape)
        storage = self._storage.get(name)
        if storage is None or storage.numel() < numel or storage.dtype != like.dtype or storage.device != like.device:
            storage = like.new_empty(numel)
            self._storage[name] = storage
        return storage[:numel].view(shape)


class ImplicitPointHead(nn.Module):
    """The dynamic per-RoI MLP and its positional encoding (it has no trained weights).

    Args:
        feature_channels: channels of the fine image feature at each point (0 to use none).
        num_classes: outputs (1 for a class-agnostic mask).
        hidden_dim: width of the hidden layers.
        num_hidden: number of hidden layers (the MLP has ``num_hidden + 1`` layers).
        positional_encoding: whether the point's encoded position is an input.
    """

    positional_encoding_gaussian_matrix: Tensor  # a buffer (registered in __init__)

    def __init__(self, feature_channels: int, num_classes: int, hidden_dim: int, num_hidden: int, positional_encoding: bool):
        super().__init__()
        self.feature_channels = feature_channels
        self.num_classes = num_classes
        self.positional_encoding = positional_encoding
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, NUM_FOURIER_FEATURES))
        in_channels = sum(self.input_part_widths())
        if in_channels == 0:
            raise ValueError("the point head needs image features, a positional encoding, or both")
        widths = [in_channels] + [hidden_dim] * num_hidden + [num_classes]
        #: (out, in) of each layer.
        self.layer_shapes = [(widths[k + 1], widths[k]) for k in range(len(widths) - 1)]
        self.num_weight_params = [o * i for o, i in self.layer_shapes]
        self.num_bias_params = [o for o, _ in self.layer_shapes]
        self.num_params = sum(self.num_weight_params) + sum(self.num_bias_params)

    def base_parameters(self, generator: torch.Generator | None = None) -> Tensor:
        """(num_params,) a freshly initialised static MLP in the parameter layout: Kaiming-normal
        hidden layers (fan-in, ReLU), a last layer of std 0.001, zero biases.

        Used as the parameter head's prediction bias (``base_init``), every RoI's MLP starts as
        this network instead of all-zero weights, through which almost no gradient flows; short
        schedules from scratch need that (see the CPU recipes).
        """
        weights = []
        for k, (out_dim, in_dim) in enumerate(self.layer_shapes):
            std = 0.001 if k == len(self.layer_shapes) - 1 else math.sqrt(2.0 / in_dim)
            weights.append(torch.randn(out_dim * in_dim, generator=generator) * std)
        return torch.cat(weights + [torch.zeros(sum(self.num_bias_params))])

    def input_part_widths(self) -> list[int]:
        """Channels of each part of :meth:`input_parts`, in order: the encoding's sine and cosine
        halves, then the features (each only when used). Their sum is the MLP's input width."""
        widths = [NUM_FOURIER_FEATURES, NUM_FOURIER_FEATURES] if self.positional_encoding else []
        return widths + ([self.feature_channels] if self.feature_channels else [])

    @property
    def last_layer_inputs(self) -> int:
        return self.layer_shapes[-1][1]

    def encode_positions(self, points: Tensor) -> Tensor:
        """(R, P, 2) box-relative ``(u, v)`` → (R, 256, P) ``[sin(2 pi l G), cos(2 pi l G)]`` with
        ``l = 2 (u, v) - 1`` (the reference's arithmetic: training and :meth:`inputs`)."""
        gaussian = self.positional_encoding_gaussian_matrix.to(points.dtype)
        projected = 2 * math.pi * ((2 * points - 1) @ gaussian)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=2).permute(0, 2, 1)

    def encoding_halves(self, points: Tensor, workspace: Workspace | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`encode_positions`' values, up to rounding, as its sine and cosine halves.

        Each half is the (R, 128, P) transposed view of a contiguous (R, P, 128) tensor: the
        layout in which ``sin`` and ``cos`` run fastest (rather than into strided halves of
        (R, P, 256) rows) and which batched products read without a copy. The projection ``l G``
        is two broadcast products rather than a matrix product with an inner dimension of 2,
        which is slow (docs/design.md, inference speed).

        ``workspace``: where to write both halves (no allocation across subdivision steps); the
        same bits as without one.
        """
        gaussian = self.positional_encoding_gaussian_matrix.to(points.dtype)
        centred = 2 * points - 1
        u, v = centred[..., 0:1], centred[..., 1:2]
        if workspace is None:
            projected = torch.addcmul(u * gaussian[0], v, gaussian[1]) * (2 * math.pi)
            sines, cosines = torch.sin(projected), torch.cos(projected)
        else:
            shape = (*points.shape[:2], NUM_FOURIER_FEATURES)
            sines, cosines = workspace.buffer("sines", shape, points), workspace.buffer("cosines", shape, points)
            torch.mul(u, gaussian[0], out=cosines)  # the projection, parked where the cosines go
            cosines.addcmul_(v, gaussian[1]).mul_(2 * math.pi)
            torch.sin(cosines, out=sines)
            cosines.cos_()
        return sines.transpose(1, 2), cosines.transpose(1, 2)

    def input_parts(self, fine_features: Tensor, points: Tensor, workspace: Workspace | None = None) -> list[Tensor]:
        """The MLP input's parts in order, for :meth:`run_layers_fused`: the encoding's (R, 128, P)
        sine and cosine halves (:meth:`encoding_halves`) and/or the (R, C_f, P) features (the
        encoding written into ``workspace`` when one is given and the dtypes agree)."""
        parts: list[Tensor] = []
        if self.positional_encoding:
            if workspace is not None and points.dtype == fine_features.dtype:
                parts += self.encoding_halves(points, workspace)
            else:
                parts += [half.to(fine_features.dtype) for half in self.encoding_halves(points)]
        if self.feature_channels:
            parts.append(fine_features)
        return parts

    def inputs(self, fine_features: Tensor, points: Tensor) -> Tensor:
        """(R, C_f, P) features and (R, P, 2) points → (R, C_in, P) MLP input (encoding first)."""
        parts = [self.encode_positions(points).to(fine_features.dtype)] if self.positional_encoding else []
        return torch.cat(parts + ([fine_features] if self.feature_channels else []), dim=1)

    def parse_parameters(self, parameters: Tensor, last_outputs: int | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Split per-RoI parameter vectors laid out ``[W_0 .. W_L, b_0 .. b_L]``.

        Args:
            parameters: (R, n) vectors.
            last_outputs: rows of the last layer present in ``parameters`` (default: all).

        Returns:
            weights (R, out_l, in_l) and biases (R, out_l, 1) of each layer.
        """
        shapes = list(self.layer_shapes)
        if last_outputs is not None:
            shapes[-1] = (last_outputs, shapes[-1][1])
        sizes = [o * i for o, i in shapes] + [o for o, _ in shapes]
        if parameters.shape[1] != sum(sizes):
            raise ValueError(f"expected {sum(sizes)} parameters per RoI, got {parameters.shape[1]}")
        chunks = torch.split(parameters, sizes, dim=1)
        count = len(shapes)
        weights = [w.reshape(-1, o, i) for w, (o, i) in zip(chunks[:count], shapes)]
        biases = [b.reshape(-1, o, 1) for b, (o, _) in zip(chunks[count:], shapes)]
        return weights, biases

    @staticmethod
    def run_layers(x: Tensor, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
        """(R, C_in, P) → (R, out_L, P): ``x <- W x + b`` per RoI, ReLU between layers (the
        reference's arithmetic, to the bit)."""
        for k, (weight, bias) in enumerate(zip(weights, biases)):
            x = torch.einsum("nck,ndc->ndk", x, weight) + bias
            if k < len(weights) - 1:
                x = torch.relu(x)
        return x

    @staticmethod
    def run_layers_fused(
        parts: list[Tensor], weights: list[Tensor], biases: list[Tensor], workspace: Workspace | None = None
    ) -> Tensor:
        """:meth:`run_layers` on the input given in parts, with the first layer's weight given as
        the matching column blocks (nothing is concatenated), the bias fused into each batched
        product and in-place ReLU: the same values up to float rounding, faster on CPU.

        Args:
            parts: the input's parts, each (R, C_k, P).
            weights: the first layer's blocks (R, out_0, C_k), one per part, then the other
                layers' (R, out_l, in_l).
            biases: (R, out_l, 1) per layer.
            workspace: where the hidden layers' (R, out_l, P) activations are written, in two
                buffers used in turn; None allocates them (as an ONNX trace, autograd and
                autocast need: ``out=`` and in-place products support none of them). On CPU,
                fresh buffers cost page faults (docs/design.md, inference speed).
        """
        first, rest = weights[: len(parts)], weights[len(parts) :]
        num_rois, num_points = parts[0].shape[0], parts[0].shape[2]
        last_layer = len(rest)

        def output_buffer(layer: int, channels: int) -> Tensor | None:
            """Where layer ``layer`` writes: a workspace buffer, or None (a fresh tensor) for the
            last layer, whose result outlives the call, and without a workspace."""
            if workspace is None or layer == last_layer:
                return None
            return workspace.buffer(f"hidden{layer % 2}", (num_rois, channels, num_points), parts[0])

        x = torch.baddbmm(biases[0], first[0], parts[0], out=output_buffer(0, first[0].shape[1]))
        for part, block in zip(parts[1:], first[1:]):
            x = x.baddbmm_(block, part) if workspace is not None else torch.baddbmm(x, block, part)
        for layer, (weight, bias) in enumerate(zip(rest, biases[1:]), start=1):
            x = torch.baddbmm(bias, weight, x.relu_(), out=output_buffer(layer, weight.shape[1]))
        return x

    def split_first_layer(self, weights: list[Tensor]) -> list[Tensor]:
        """``weights`` with the first layer replaced by its column blocks matching
        :meth:`input_parts` (for :meth:`run_layers_fused`); views, which batched products read
        as fast as copies."""
        return list(torch.split(weights[0], self.input_part_widths(), dim=2)) + weights[1:]

    def forward(self, fine_features: Tensor, points: Tensor, parameters: Tensor) -> Tensor:
        """(R, C_f, P) features, (R, P, 2) points and (R, num_params) parameters → (R, C, P) logits."""
        if parameters.shape[0] == 0:
            return parameters.new_zeros((0, self.num_classes, points.shape[1])) + parameters.sum() * 0
        weights, biases = self.parse_parameters(parameters)
        return self.run_layers(self.inputs(fine_features, points), weights, biases)


class ImplicitPointRendMaskHead(SubdivisionMaskHead):
    """Implicit PointRend behind the :class:`RoIMaskHead` boundary.

    Args:
        parameter_head: ConvFCHead from the (R, C, grid_side, grid_side) grid to (R, num_params).
        point_head: the dynamic MLP.
        sampler: reads the fine FPN level (p2) at box-relative points.
        supervision: "points" (annotated points) or "masks" (uniform points, soft labels).
        settings: ``train_points`` (uniform points per RoI under mask supervision),
            ``subdivision_steps`` and ``subdivision_num_points`` (inference; a square: the first
            grid is its root), ``params_l2_weight`` (the L2 penalty on the predicted parameters)
            and ``base_init`` (start every RoI's MLP at :meth:`ImplicitPointHead.base_parameters`,
            the prediction layer's bias, instead of the reference's all-zero parameters); None
            takes the defaults of :class:`~pointsup.modeling.mask_heads.config.ImplicitPointRendConfig`
            (the reference's).
        grid_side: side of the grid the parameter head reads (14).
    """

    def __init__(
        self,
        parameter_head: ConvFCHead,
        point_head: ImplicitPointHead,
        sampler: FineFeatureSampler,
        supervision: Supervision,
        settings: ImplicitPointRendConfig | None = None,
        grid_side: int = 14,
    ):
        super().__init__(supervision)
        settings = ImplicitPointRendConfig() if settings is None else settings
        subdivision_num_points = settings.subdivision_num_points
        if math.isqrt(subdivision_num_points) ** 2 != subdivision_num_points:
            raise ValueError(f"subdivision_num_points must be a square, got {subdivision_num_points}")
        if parameter_head.output_shape != (point_head.num_params,):
            raise ValueError(
                f"parameter head predicts {parameter_head.output_shape}, point head needs ({point_head.num_params},)"
            )
        self.parameter_head = parameter_head
        self.point_head = point_head
        self.sampler = sampler
        self.grid_side = grid_side
        self.train_num_points = settings.train_points
        self.subdivision_steps = settings.subdivision_steps
        self.subdivision_num_points = subdivision_num_points
        self.params_l2_weight = settings.params_l2_weight
        self.fast_inference = True
        if settings.base_init:
            with torch.no_grad():
                parameter_head.prediction.bias.copy_(point_head.base_parameters())

    @classmethod
    def from_config(cls, config: MaskHeadConfig, num_classes: int, supervision: Supervision, in_channels: int) -> Self:
        """Implicit PointRend on p2: a parameter head (``conv_dim``, ``implicit_pointrend.fc_dim``
        x ``num_fc``) and a dynamic point head (``point_fc_dim`` x ``point_num_fc``, on the
        ``image_features`` and/or ``positional_encoding``)."""
        section = config.implicit_pointrend
        point_head = ImplicitPointHead(
            in_channels if section.image_features else 0,
            1 if config.class_agnostic else num_classes,
            section.point_fc_dim,
            section.point_num_fc,
            section.positional_encoding,
        )
        return cls(
            ConvFCHead(in_channels, 14, config.conv_dim, [section.fc_dim] * section.num_fc, (point_head.num_params,)),
            point_head,
            FineFeatureSampler(FEATURE_NAMES[0], FEATURE_STRIDES[0]),
            supervision,
            section,
        )

    def training_points(self, targets: RoIMaskTargets) -> tuple[Tensor, Tensor]:
        """(R, P, 2) box-relative training points and (R, P) their labels (-1 = ignored)."""
        if self.supervision == "points":
            return targets.relative_points()
        points = torch.rand(len(targets), self.train_num_points, 2, device=targets.boxes.device)
        return points, targets.soft_mask_labels(points)

    def losses(self, features: dict[str, Tensor], targets: RoIMaskTargets) -> dict[str, Tensor]:
        grid = self.sampler.grid(features, targets.boxes, targets.image_index, self.grid_side)
        parameters = self.parameter_head(grid)
        points, labels = self.training_points(targets)
        fine = self.sampler(features, targets.boxes, targets.image_index, points)
        logits = self.point_head(fine, points, parameters)
        output = point_loss(select_class_channel(logits, targets.classes).squeeze(1), labels)
        if len(targets) == 0:
            l2 = parameters.sum() * 0.0
        else:
            l2 = self.params_l2_weight * parameters.pow(2).mean()
        return {"loss_mask_point": output.loss, "loss_params_l2": l2, "point_accuracy": output.accuracy}

    def class_parameters(self, hidden: Tensor, classes: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """MLP weights with only each RoI's class row in the last layer.

        Only those rows of the prediction layer are computed: the shared layers' parameters for
        all RoIs at once, the last layer's per class present.

        Args:
            hidden: (R, H) input of the parameter head's prediction layer.
            classes: (R,) predicted classes.

        Returns:
            weights and biases as :meth:`ImplicitPointHead.parse_parameters` with one output.
        """
        head, prediction = self.point_head, self.parameter_head.prediction
        if head.num_classes == 1:
            return head.parse_parameters(prediction(hidden))
        num_weights, num_biases = head.num_weight_params, head.num_bias_params
        last_weights_at = sum(num_weights[:-1])
        biases_at = sum(num_weights)
        last_bias_at = biases_at + sum(num_biases[:-1])
        width = head.last_layer_inputs
        shared_weights = F.linear(hidden, prediction.weight[:last_weights_at], prediction.bias[:last_weights_at])
        shared_biases = F.linear(hidden, prediction.weight[biases_at:last_bias_at], prediction.bias[biases_at:last_bias_at])
        last_weight = hidden.new_empty((hidden.shape[0], width))
        last_bias = hidden.new_empty((hidden.shape[0], 1))
        for c in torch.unique(classes).tolist():
            rows = torch.nonzero(classes == c).squeeze(1)
            w_rows = slice(last_weights_at + c * width, last_weights_at + (c + 1) * width)
            b_rows = slice(last_bias_at + c, last_bias_at + c + 1)
            last_weight[rows] = F.linear(hidden[rows], prediction.weight[w_rows], prediction.bias[w_rows])
            last_bias[rows] = F.linear(hidden[rows], prediction.weight[b_rows], prediction.bias[b_rows])
        shapes = head.layer_shapes[:-1]
        weights = [w.reshape(-1, o, i) for w, (o, i) in zip(torch.split(shared_weights, num_weights[:-1], dim=1), shapes)]
        biases = [b.reshape(-1, o, 1) for b, (o, _) in zip(torch.split(shared_biases, num_biases[:-1], dim=1), shapes)]
        return weights + [last_weight.unsqueeze(1)], biases + [last_bias.unsqueeze(2)]

    def predict_logits(self, features: dict[str, Tensor], boxes: Tensor, image_index: Tensor, classes: Tensor) -> Tensor:
        """(R, 1, S, S) logits of each RoI's class by adaptive subdivision, ``S = sqrt(N) * 2**steps``.

        The parameters of all RoIs are predicted at once; the fast path then subdivides on the
        CPU :data:`CPU_SUBDIVISION_CHUNK` RoIs at a time (the same values: RoIs are independent).
        """
        features = self.sampler.for_inference(features)
        grid = self.sampler.grid(features, boxes, image_index, self.grid_side)
        hidden = self.parameter_head.hidden(grid)
        head = self.point_head
        if self.fast_inference:
            weights, biases = self.class_parameters(hidden, classes)
            weights = head.split_first_layer(weights)
        else:
            weights, biases = head.parse_parameters(self.parameter_head.prediction(hidden))

        # out= products neither record gradients nor autocast: buffers only for plain inference
        plain = not torch.is_grad_enabled() and not torch.is_autocast_enabled(boxes.device.type)
        workspace = Workspace() if plain else None
        num_rois = boxes.shape[0]
        chunk = CPU_SUBDIVISION_CHUNK if self.fast_inference and boxes.device.type == "cpu" else max(num_rois, 1)
        logits = [
            self.subdivide_rois(
                features,
                boxes[rows],
                image_index[rows],
                classes[rows],
                [w[rows] for w in weights],
                [b[rows] for b in biases],
                workspace,
            )
            for rows in (slice(start, start + chunk) for start in range(0, max(num_rois, 1), chunk))
        ]
        return logits[0] if len(logits) == 1 else torch.cat(logits)

    def subdivide_rois(
        self,
        features: dict[str, Tensor],
        boxes: Tensor,
        image_index: Tensor,
        classes: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        workspace: Workspace | None,
    ) -> Tensor:
        """(R, 1, S, S) logits of RoIs whose point-head parameters are given.

        Args:
            features: the FPN maps, p2 in channels-last layout (see :meth:`predict_logits`).
            boxes: (R, 4) xyxy boxes; image_index and classes: (R,).
            weights: (R, out_l, in_l) per layer, the first layer split into its (R, out_0, C_k)
                column blocks on the fast path (:meth:`ImplicitPointHead.split_first_layer`).
            biases: (R, out_l, 1) per layer.
            workspace: buffers for the fast path's activations, or None.
        """
        head = self.point_head

        def point_logits(points: Tensor) -> Tensor:
            fine = self.sampler(features, boxes, image_index, points)
            if self.fast_inference:
                return head.run_layers_fused(head.input_parts(fine, points, workspace), weights, biases, workspace)
            return head.run_layers(head.inputs(fine, points), weights, biases)

        logits = subdivide(
            point_logits,
            boxes.shape[0],
            classes,
            math.isqrt(self.subdivision_num_points),
            self.subdivision_steps,
            self.subdivision_num_points,
            boxes.device,
        )
        return select_class_channel(logits, classes)

    def output_side(self) -> int:
        return math.isqrt(self.subdivision_num_points) << self.subdivision_steps
