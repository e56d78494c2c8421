"""RoI mask heads. Each implements :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead` and
builds itself from the ``model.mask_head`` config section with a ``from_config`` classmethod.

:data:`MASK_HEADS` is the one list of them: ``model.mask_head.name`` accepts its names. Adding a
head is its module plus one line there. This package's ``__init__`` and ``config`` modules do not
import PyTorch (reading a config must not load it): the shipped heads are given as
``"module:Class"`` and imported when a model is built; a class may be registered directly too,
with :func:`register_mask_head`.
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


def register_mask_head(name: str, entry: str | type[RoIMaskHead], *, replace: bool = False) -> None:
    """Register the mask head ``entry`` (its class, or ``"module:Class"`` imported on first use) as
    ``name``, a value of ``model.mask_head.name``.

    Raises:
        ValueError: ``name`` is registered already (unless ``replace``), or ``entry`` is a string
            not of the form ``"module:Class"``.
    """
    if name in MASK_HEADS and not replace:
        raise ValueError(f"a mask head named {name!r} is registered already ({MASK_HEADS[name]!r}); pass replace=True")
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        if not module or not attribute:
            raise ValueError(f"mask head {name!r}: entry {entry!r} is not of the form 'module:Class'")
    MASK_HEADS[name] = entry


def mask_head_class(name: str) -> type[RoIMaskHead]:
    """The registered class of the mask head ``name``.

    Raises:
        ValueError: no head of that name is registered, or its entry does not import or is not
            a subclass of :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead`.
    """
    if name not in MASK_HEADS:
        raise ValueError(f"unknown mask head {name!r}; choose from {list(MASK_HEADS)}")
    entry = MASK_HEADS[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError, ValueError) as error:
            raise ValueError(f"mask head {name!r}: cannot import its entry {MASK_HEADS[name]!r}: {error}") from error
    from pointsup.modeling.mask_heads.base import RoIMaskHead  # imports PyTorch: only when a model is built

    if not (isinstance(entry, type) and issubclass(entry, RoIMaskHead)):
        raise ValueError(f"mask head {name!r}: its entry {MASK_HEADS[name]!r} is not a subclass of RoIMaskHead")
    return entry


__all__ = ["MASK_HEADS", "mask_head_class", "register_mask_head"]
