"""Model config sections for tests, from dotted keys below ``model`` (as the overrides name them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pointsup.engine.config import config_from_dict
from pointsup.modeling.config import ModelConfig


def model_config(settings: Mapping[str, Any] | None = None, /, **more: Any) -> ModelConfig:
    """The ``model`` section with ``settings`` (``{"backbone.name": "resnet18", "fpn.channels": 32}``)
    and ``more`` (top-level keys) set, the defaults elsewhere; checked as a stored config is."""
    nested: dict[str, Any] = {}
    for key, value in {**(settings or {}), **more}.items():
        *sections, leaf = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return config_from_dict({"model": nested}).model
