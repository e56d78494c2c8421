"""Building the model of a config's ``model`` section: a Mask R-CNN (with the mask head that
``model.mask_head.name`` registers in :data:`pointsup.modeling.mask_heads.MASK_HEADS`) or a CondInst.
Every part builds itself from its own section (``from_config``)."""

from __future__ import annotations

from typing import cast

from pointsup.modeling.condinst.model import CondInst, CondInstSupervision
from pointsup.modeling.config import ModelConfig
from pointsup.modeling.detector import Detector
from pointsup.modeling.mask_heads.base import Supervision
from pointsup.modeling.mask_rcnn import MaskRCNN


def build_model(config: ModelConfig, num_classes: int, supervision: str) -> Detector:
    """The model of a :class:`~pointsup.modeling.config.ModelConfig` (``config.model``): a Mask
    R-CNN or, with ``architecture: condinst``, a CondInst (BoxInst with ``supervision: boxes``);
    ``num_classes`` excludes the background."""
    if config.architecture == "condinst":
        return CondInst.from_config(config, num_classes, cast(CondInstSupervision, supervision))
    if supervision not in ("points", "masks"):
        raise ValueError(f"Mask R-CNN trains with points or masks, not {supervision!r} (boxes need architecture: condinst)")
    return MaskRCNN.from_config(config, num_classes, cast(Supervision, supervision))
