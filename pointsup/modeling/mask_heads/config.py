"""The ``model.mask_head`` config section, read by the mask heads' ``from_config`` (torch-free,
so that reading a config does not load PyTorch).

One section for all RoI mask heads: ``name`` picks the head from
:data:`pointsup.modeling.mask_heads.MASK_HEADS`, the fields of this class are shared by every head,
and each head with settings of its own reads them from its sub-section (``pointrend``,
``implicit_pointrend``). A head's sub-section is only checked when that head is chosen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from pointsup.modeling.mask_heads import MASK_HEADS

#: Config field metadata key holding a function that returns the allowed values of a string
#: field (checked by :mod:`pointsup.engine.config` when the config is read).
CHOICES = "choices"


def mask_head_names() -> tuple[str, ...]:
    """The names ``model.mask_head.name`` accepts: the registered heads, now."""
    return tuple(MASK_HEADS)


@dataclass
class PointHeadConfig:
    """What PointRend and Implicit PointRend share: a conv-FC head on a 14x14 p2 grid in the box
    (the coarse mask, or the point MLP's parameters), a point MLP, training points under mask
    supervision and adaptive subdivision at inference. The defaults are the published COCO heads."""

    #: FC layers of the conv-FC head (after the 2x2 convolution; its width is ``mask_head.conv_dim``).
    fc_dim: int = 1024
    num_fc: int = 2
    #: Hidden width and number of hidden layers of the point head.
    point_fc_dim: int = 256
    point_num_fc: int = 3
    #: Training points per RoI under mask supervision (points supervision trains on the annotated
    #: points instead).
    train_points: int = 196
    #: Points re-evaluated per subdivision step at inference.
    subdivision_num_points: int = 784

    def problems(self) -> list[tuple[str, str]]:
        """(key relative to this section, message) for every setting out of range."""
        problems = []
        if self.fc_dim < 1 or self.num_fc < 1:
            problems.append(("num_fc", "needs at least one FC layer of positive width (fc_dim, num_fc)"))
        if self.point_fc_dim < 1 or self.point_num_fc < 0:
            problems.append(("point_fc_dim", "must be positive (and point_num_fc not negative)"))
        if self.train_points < 1:
            problems.append(("train_points", "must be at least 1"))
        if self.subdivision_num_points < 1:
            problems.append(("subdivision_num_points", "must be positive"))
        return problems


@dataclass
class PointRendConfig(PointHeadConfig):
    """PointRend (:class:`~pointsup.modeling.mask_heads.pointrend.PointRendMaskHead`)."""

    #: Importance sampling of the training points under mask supervision: candidates per point,
    #: and the share of points taken from the most uncertain candidates.
    oversample_ratio: float = 3.0
    importance_ratio: float = 0.75
    #: Subdivision steps at inference: from the 7x7 coarse mask the first two doublings are
    #: skipped (784 points cover 28x28), so 5 steps end at 224x224.
    subdivision_steps: int = 5

    def problems(self) -> list[tuple[str, str]]:
        problems = super().problems()
        if self.oversample_ratio < 1:
            problems.append(("oversample_ratio", "must be at least 1"))
        if not 0 <= self.importance_ratio <= 1:
            problems.append(("importance_ratio", "must be in [0, 1]"))
        if self.subdivision_steps < 0:
            problems.append(("subdivision_steps", "must not be negative"))
        return problems


@dataclass
class ImplicitPointRendConfig(PointHeadConfig):
    """Implicit PointRend
    (:class:`~pointsup.modeling.mask_heads.implicit_pointrend.ImplicitPointRendMaskHead`)."""

    #: Subdivision steps at inference, from a sqrt(subdivision_num_points)-sided grid (28 -> 224).
    subdivision_steps: int = 3
    #: Weight of the L2 penalty on the predicted point-head parameters.
    params_l2_weight: float = 1e-5
    #: Inputs of the point head: the p2 feature at the point and/or its positional encoding.
    image_features: bool = True
    positional_encoding: bool = True
    #: Start every RoI's point MLP at a Kaiming-initialised network instead of all-zero parameters
    #: (the reference): needed to learn within short schedules from scratch.
    base_init: bool = False

    def problems(self) -> list[tuple[str, str]]:
        problems = super().problems()
        if self.subdivision_num_points >= 1 and math.isqrt(self.subdivision_num_points) ** 2 != self.subdivision_num_points:
            problems.append(("subdivision_num_points", "must be a square for implicit_pointrend (the first grid is its root)"))
        if self.subdivision_steps < 0:
            problems.append(("subdivision_steps", "must not be negative"))
        if not (self.image_features or self.positional_encoding):
            problems.append(("image_features", "the implicit point head needs image features, a positional encoding, or both"))
        return problems


@dataclass
class MaskHeadConfig:
    """Mask R-CNN's RoI mask head (``model.mask_head``)."""

    #: The head: a name of the registry :data:`pointsup.modeling.mask_heads.MASK_HEADS`
    #: ("maskrcnn": 28x28, "pointrend" and "implicit_pointrend": 224x224 by subdivision).
    name: str = field(default="maskrcnn", metadata={CHOICES: mask_head_names})
    #: Channels of the head's convolutions (maskrcnn: its 3x3 convs; the point heads: the 2x2
    #: convolution of their conv-FC head).
    conv_dim: int = 256
    #: maskrcnn: number of 3x3 convolutions.
    num_conv: int = 4
    #: maskrcnn: normalisation after each convolution; also the box head's ("4conv1fc") when the
    #: backbone trains with GroupNorm.
    norm: Literal["gn"] | None = None
    #: One mask for all classes instead of one per class.
    class_agnostic: bool = False
    pointrend: PointRendConfig = field(default_factory=PointRendConfig)
    implicit_pointrend: ImplicitPointRendConfig = field(default_factory=ImplicitPointRendConfig)

    def problems(self) -> list[tuple[str, str]]:
        """(key relative to this section, message) for the shared settings and the chosen head's."""
        problems = []
        if self.conv_dim < 1 or self.num_conv < 0:
            problems.append(("conv_dim", "must be positive (and num_conv not negative)"))
        section = getattr(self, self.name, None)
        if isinstance(section, PointHeadConfig):
            problems += [(f"{self.name}.{key}", message) for key, message in section.problems()]
        return problems
