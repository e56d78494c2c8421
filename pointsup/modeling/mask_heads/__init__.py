"""RoI mask heads. Each implements :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead` and
builds itself from the ``model.mask_head`` config section with a ``from_config`` classmethod.

:data:`MASK_HEADS` is the one list of them: ``model.mask_head.name`` accepts its names. Adding a
head is its module plus one line there. This package's ``__init__`` and ``config`` modules do not
import PyTorch (reading a config must not load it): the shipped heads are given as
``"module:Class"`` and imported when a model is built; a class may be registered directly too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pointsup.modeling.mask_heads.base import RoIMaskHead

#: Mask head name -> its class (or "module:Class", imported on first use).
MASK_HEADS: dict[str, str | type[RoIMaskHead]] = {
    "maskrcnn": "pointsup.modeling.mask_heads.maskrcnn:MaskRCNNMaskHead",
    "pointrend": "pointsup.modeling.mask_heads.pointrend:PointRendMaskHead",
    "implicit_pointrend": "pointsup.modeling.mask_heads.implicit_pointrend:ImplicitPointRendMaskHead",
}


def mask_head_class(name: str) -> type[RoIMaskHead]:
    """The registered class of the mask head ``name``.

    Raises:
        ValueError: no head of that name is registered.
    """
    if name not in MASK_HEADS:
        raise ValueError(f"unknown mask head {name!r}; choose from {list(MASK_HEADS)}")
    entry = MASK_HEADS[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
    return entry


__all__ = ["MASK_HEADS", "mask_head_class"]
