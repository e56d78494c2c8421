"""The ``model.condinst`` config section, read by the CondInst modules' ``from_config`` (torch-free,
so that reading a config does not load PyTorch). Defaults are the published R50 settings
(AdelaiDet's CondInst_MS_R_50_1x and BoxInst_MS_R_50_1x)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class FCOSConfig:
    """The FCOS detector (:mod:`pointsup.modeling.condinst.fcos`): towers, assignment and
    post-processing."""

    #: Convolutions per tower (classification and box).
    num_convs: int = 4
    #: A location is positive when within this many strides of a box's centre (and inside it).
    center_sampling_radius: float = 1.5
    #: Post-processing: class probability threshold, candidates kept per level, class-wise NMS.
    score_thresh: float = 0.05
    topk_candidates: int = 1000
    nms_thresh: float = 0.6

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.num_convs < 0 or self.center_sampling_radius <= 0:
            problems.append(("center_sampling_radius", "must be positive (and num_convs not negative)"))
        if not (0 <= self.score_thresh < 1 and self.topk_candidates >= 1 and 0 < self.nms_thresh <= 1):
            problems.append(("score_thresh", "score threshold in [0, 1), topk_candidates >= 1, nms_thresh in (0, 1]"))
        return problems


@dataclass
class MaskBranchConfig:
    """The mask branch on p3-p5 (:mod:`pointsup.modeling.condinst.mask_branch`)."""

    #: Width of its convolutions.
    channels: int = 128
    #: Channels of the mask features the dynamic head reads.
    out_channels: int = 8
    num_convs: int = 4
    norm: Literal["bn", "gn"] | None = "bn"

    def problems(self) -> list[tuple[str, str]]:
        if min(self.channels, self.out_channels) < 1 or self.num_convs < 0:
            return [("channels", "widths must be positive (and num_convs not negative)")]
        return []


@dataclass
class DynamicMaskHeadConfig:
    """The per-instance mask network (:mod:`pointsup.modeling.condinst.dynamic_head`)."""

    #: Hidden width and number of layers.
    channels: int = 8
    num_layers: int = 3
    #: Slope below zero of its activations; 0 is the published ReLU. The CPU recipes use 0.1: with
    #: ReLU, point supervision from scratch kills every hidden unit in the first few dozen
    #: iterations (watch the ``mask_head_active`` metric).
    negative_slope: float = 0.0
    #: Per level p3..p7, the scale the relative coordinates are divided by.
    sizes_of_interest: list[float] = field(default_factory=lambda: [64.0, 128.0, 256.0, 512.0, 1024.0])

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.channels < 1 or self.num_layers < 1:
            problems.append(("num_layers", "widths and layer counts must be positive"))
        if not 0 <= self.negative_slope < 1:
            problems.append(("negative_slope", "must be in [0, 1)"))
        if len(self.sizes_of_interest) != 5 or min(self.sizes_of_interest) <= 0:
            problems.append(("sizes_of_interest", "needs 5 positive values (p3..p7)"))
        return problems


@dataclass
class BoxInstConfig:
    """BoxInst's pairwise loss (``supervision: boxes``; :class:`pointsup.modeling.condinst.model.CondInst`)."""

    #: Neighbourhood: kernel side (odd) and dilation, on the stride-4 grid.
    pairwise_size: int = 3
    pairwise_dilation: int = 2
    #: Neighbours whose colour similarity exceeds this are pulled to the same label.
    pairwise_color_thresh: float = 0.3
    #: Iterations over which the pairwise loss's weight rises linearly to 1.
    pairwise_warmup_iters: int = 10000

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if self.pairwise_size % 2 != 1 or self.pairwise_dilation < 1 or self.pairwise_warmup_iters < 0:
            problems.append(("pairwise_size", "must be odd (dilation >= 1, warmup >= 0)"))
        if not 0 <= self.pairwise_color_thresh <= 1:
            problems.append(("pairwise_color_thresh", "must be in [0, 1]"))
        return problems


@dataclass
class CondInstConfig:
    """CondInst / BoxInst (``model.architecture: condinst``; :class:`pointsup.modeling.condinst.model.CondInst`)."""

    fcos: FCOSConfig = field(default_factory=FCOSConfig)
    mask_branch: MaskBranchConfig = field(default_factory=MaskBranchConfig)
    dynamic_head: DynamicMaskHeadConfig = field(default_factory=DynamicMaskHeadConfig)
    boxinst: BoxInstConfig = field(default_factory=BoxInstConfig)
    #: Positive locations per batch that train the masks (a random subset beyond it).
    max_proposals: int = 500
    #: Side of the box-relative grid the image-level masks are cut to at inference.
    mask_resolution: int = 112
    #: With ``supervision: points``, the weight of a background term on every mask cell outside
    #: the instance's box (a P10 annotation is a box plus points: outside the box is known
    #: background; docs/design.md, CondInst). 0 supervises the annotated points alone, as the
    #: paper and the RoI heads do; the Lite0 CPU recipes use 1.0.
    outside_box_weight: float = 0.0

    def problems(self) -> list[tuple[str, str]]:
        problems = [
            (f"{name}.{key}", message)
            for name, section in (
                ("fcos", self.fcos),
                ("mask_branch", self.mask_branch),
                ("dynamic_head", self.dynamic_head),
                ("boxinst", self.boxinst),
            )
            for key, message in section.problems()
        ]
        if self.max_proposals < 1 or self.mask_resolution < 1:
            problems.append(("max_proposals", "must be positive (and mask_resolution too)"))
        if self.outside_box_weight < 0:
            problems.append(("outside_box_weight", "must not be negative"))
        return problems
