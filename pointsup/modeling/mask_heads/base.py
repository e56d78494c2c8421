"""The boundary between the RoI machinery and a mask head.

The RoI heads own proposal matching and sampling, the box branch and detection post-processing.
A mask head receives the FPN feature maps and either the foreground RoIs with their ground truth
(training) or the final detections (inference); it owns its pooling, its layers and its loss.
Mask R-CNN's conv head, PointRend and Implicit PointRend differ only behind this boundary.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from pointsup.modeling.roi_targets import RoIMaskTargets

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
