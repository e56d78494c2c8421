"""RoI mask heads. Each implements :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead`."""

from pointsup.modeling.mask_heads.base import RoIMaskHead
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNConvUpsample, MaskRCNNMaskHead

__all__ = ["MaskRCNNConvUpsample", "MaskRCNNMaskHead", "RoIMaskHead"]
