"""The boundary between the RoI machinery and a mask head.

The RoI heads own proposal matching and sampling, the box branch and detection post-processing.
A mask head receives the FPN feature maps and either the foreground RoIs with their ground truth
(training) or the final detections (inference); it owns its pooling, its layers and its loss.
Mask R-CNN's conv head, PointRend and Implicit PointRend differ only behind this boundary.

Each head builds itself from the ``model.mask_head`` config section (:meth:`RoIMaskHead.from_config`)
and is registered by name in :data:`pointsup.modeling.mask_heads.MASK_HEADS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from torch import Tensor, nn

from pointsup.modeling.mask_heads.config import MaskHeadConfig
from pointsup.modeling.roi_targets import RoIMaskTargets

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; only read by type checkers here

Supervision = Literal["points", "masks"]
SUPERVISIONS = ("points", "masks")


class RoIMaskHead(nn.Module):
    """Base class of the mask heads.

    Args:
        supervision: "points" (the paper's point loss) or "masks" (full masks).
    """

    def __init__(self, supervision: Supervision):
        super().__init__()
        if supervision not in SUPERVISIONS:
            raise ValueError(f"supervision must be one of {SUPERVISIONS}, got {supervision!r}")
        self.supervision = supervision

    @classmethod
    def from_config(cls, config: MaskHeadConfig, num_classes: int, supervision: Supervision, in_channels: int) -> Self:
        """The head of the ``model.mask_head`` section (its shared fields and, for a head with
        settings of its own, its sub-section).

        Args:
            num_classes: object classes (the background excluded).
            in_channels: channels of the FPN maps it reads.
        """
        raise NotImplementedError

    def losses(self, features: dict[str, Tensor], targets: RoIMaskTargets) -> dict[str, Tensor]:
        """Training losses (keys starting with ``loss_``) and detached metrics (other keys).

        Args:
            features: FPN maps, each (B, C, H_l, W_l).
            targets: the foreground RoIs of the batch with their matched ground truth.
        """
        raise NotImplementedError

    def predict(self, features: dict[str, Tensor], boxes: list[Tensor], classes: list[Tensor]) -> list[Tensor]:
        """Mask probabilities of the detections.

        Args:
            features: FPN maps, each (B, C, H_l, W_l).
            boxes: per image, (K_i, 4) detected boxes in input-image coordinates.
            classes: per image, (K_i,) predicted contiguous classes.

        Returns:
            per image, (K_i, M, M) probabilities on the box-relative grid.
        """
        raise NotImplementedError
