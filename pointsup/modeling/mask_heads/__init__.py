"""RoI mask heads. Each implements :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead`."""

from pointsup.modeling.mask_heads.base import RoIMaskHead
from pointsup.modeling.mask_heads.implicit_pointrend import ImplicitPointHead, ImplicitPointRendMaskHead
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNConvUpsample, MaskRCNNMaskHead
from pointsup.modeling.mask_heads.pointrend import PointRendMaskHead, StandardPointHead

__all__ = [
    "ImplicitPointHead",
    "ImplicitPointRendMaskHead",
    "MaskRCNNConvUpsample",
    "MaskRCNNMaskHead",
    "PointRendMaskHead",
    "RoIMaskHead",
    "StandardPointHead",
]
