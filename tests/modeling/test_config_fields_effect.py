"""Every setting of the model config that a build reads changes the model it builds: the
behavioural companion of :mod:`tests.modeling.test_config_fields_read` (which checks the source),
so that a builder which reads a field and then ignores it fails too.

For each architecture (Mask R-CNN with each registered mask head, CondInst) and each leaf field of
the sections it reads, the model is built on the meta device (no memory, no initialisation cost)
with that field set to another valid value, and its fingerprint is compared with the base model's:
the state dict's keys, shapes and dtypes, which parameters train, and the plain values (numbers, strings, tuples, lists,
dicts, tensor shapes, and those of small helper objects such as torchvision's samplers) in every
module's ``vars()``. A field that leaves the fingerprint unchanged must be in :data:`NO_FINGERPRINT`
with the reason; an entry there that does change the model fails too, so the list stays exact.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

import pytest
import torch

from pointsup.engine.config import ConfigError
from pointsup.modeling.build import build_model
from pointsup.modeling.config import ModelConfig
from pointsup.modeling.mask_heads import MASK_HEADS
from pointsup.modeling.mask_heads.config import MaskHeadConfig
from tests.modeling.model_settings import model_config
from tests.modeling.test_mask_rcnn import TINY

CONDINST_TINY = {"architecture": "condinst", "backbone.name": "resnet18", "backbone.norm": "gn", "fpn.channels": 64}
#: Narrow conv-FC heads: a CPU build of the published 1024-wide ones takes seconds.
POINT_HEADS_TINY = {f"mask_head.{head}.fc_dim": 32 for head in ("pointrend", "implicit_pointrend")}
#: (architecture, mask head) pairs: each registered head in Mask R-CNN, and CondInst.
BUILDS = [("mask_rcnn", head) for head in MASK_HEADS] + [("condinst", None)]

#: Fields not built here, with the reason (dotted key below ``model`` -> why).
NOT_BUILT: dict[str, str] = {
    # Not read by build_model at all: the engine passes the class count as its argument and loads
    # the checkpoint into the built model (pointsup.engine.builders).
    "num_classes": "resolved by the engine, passed to build_model as num_classes",
    "weights": "a checkpoint the engine loads into the built model",
    # Pretrained backbone weights change values only, and the build needs the file ("imagenet":
    # the network); tests/modeling/test_backbone*.py load them.
    "backbone.weights": "pretrained values only (no shapes); needs a file or the network",
}
#: Fields that a build reads but a fingerprint cannot see, with the reason: (build, dotted key below
#: ``model``) -> why; the build is "architecture/head" ("condinst/None"), or "*" for every build
#: that reads the field. An entry here that does change the fingerprint fails the test, so the
#: lists stay exact.
#: Values only (buffers, initial weights): invisible on the meta device, so
#: test_value_only_fields_change_the_values checks them on a small CPU model instead.
VALUES_ONLY: dict[tuple[str, str], str] = {
    ("*", "pixel_mean"): "a non-persistent buffer's values",
    ("*", "pixel_std"): "a non-persistent buffer's values",
    ("condinst/None", "condinst.dynamic_head.sizes_of_interest"): "a non-persistent buffer's values",
    ("mask_rcnn/implicit_pointrend", "mask_head.implicit_pointrend.base_init"): "the parameter head's initial bias",
}
#: Shared ``mask_head`` settings that only some heads read.
NOT_READ_BY_THIS_HEAD: dict[tuple[str, str], str] = {
    **{
        (f"mask_rcnn/{head}", "mask_head.num_conv"): "the maskrcnn head's 3x3 convolutions"
        for head in ("pointrend", "implicit_pointrend")
    },
    # mask_head.norm also normalises the "4conv1fc" box head; these builds use "2fc".
    **{
        (f"mask_rcnn/{head}", "mask_head.norm"): "the maskrcnn head's (and the 4conv1fc box head's) norm"
        for head in ("pointrend", "implicit_pointrend")
    },
}


#: Other values for fields whose valid values the generic rule below does not find.
OTHER_VALUES: dict[str, Any] = {
    "mask_head.implicit_pointrend.subdivision_num_points": 900,  # must be a square
    "pixel_mean": [1.0, 2.0, 3.0],
    "pixel_std": [4.0, 5.0, 6.0],
}


def leaves(schema: type, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field[Any]]]:
    """Dotted key -> (type hint, field) of every leaf field below ``schema``."""
    found: dict[str, tuple[Any, dataclasses.Field[Any]]] = {}
    hints = typing.get_type_hints(schema, include_extras=False)
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            found |= leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            found[f"{prefix}{f.name}"] = (hints[f.name], f)
    return found


def read_by(architecture: str, head: str | None) -> list[str]:
    """The leaf keys of the sections the build of ``architecture`` (with mask head ``head``) reads."""
    skipped = ("rpn.", "roi_heads.", "mask_head.") if architecture == "condinst" else ("condinst.",)
    own_sections = [
        f.name
        for f in dataclasses.fields(MaskHeadConfig)
        if dataclasses.is_dataclass(f.type) or dataclasses.is_dataclass(typing.get_type_hints(MaskHeadConfig)[f.name])
    ]
    skipped += tuple(f"mask_head.{name}." for name in own_sections if name != head)
    return [key for key in leaves(ModelConfig) if not key.startswith(skipped)]


def setting(config: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        config = getattr(config, name)
    return config


def candidates(key: str, hint: Any, current: Any) -> list[Any]:
    """Other values for the field ``key``, best first (the first valid one is used)."""
    if key in OTHER_VALUES:
        return [OTHER_VALUES[key]]
    if key == "mask_head.name":
        return [name for name in MASK_HEADS if name != current]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if current is not None:
            return [None] if type(None) in args else []
        return [value for arg in args if arg is not type(None) for value in candidates(key, arg, None)]
    if origin is Literal:
        return [value for value in args if value != current]
    if hint is bool:
        return [not current]
    if hint is int:
        return [value for value in (2 * current, current - 1, current + 2, current + 1) if value != current]
    if hint is float:
        return [current + 0.1, current / 2]
    if origin is list:
        return [[2 * value for value in current]]
    return []


def build(settings: dict[str, Any]) -> torch.nn.Module:
    config = model_config(settings)
    with torch.device("meta"):
        return build_model(config, 3, "points")


def plain(value: Any, depth: int = 2) -> Any:
    """A comparable summary of an attribute value; None where it has none."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), str(value.dtype))
    if isinstance(value, (tuple, list)):
        return tuple(plain(item, depth) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), plain(v, depth)) for k, v in value.items()))
    if isinstance(value, (torch.nn.Module, type, types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return None
    if depth == 0 or not isinstance(getattr(value, "__dict__", None), dict):
        return None
    return (type(value).__name__, plain(vars(value), depth - 1))  # a helper object: its own values


def fingerprint(model: torch.nn.Module) -> Any:
    state = sorted((key, tuple(t.shape), str(t.dtype)) for key, t in model.state_dict().items())
    state += sorted(("trained", name) for name, parameter in model.named_parameters() if parameter.requires_grad)
    attributes = [
        (name, key, plain(value))
        for name, module in model.named_modules()
        for key, value in sorted(vars(module).items())
        if key not in ("_parameters", "_modules")  # the state dict and named_modules cover them
    ]
    return state, attributes


@pytest.mark.parametrize(("architecture", "head"), BUILDS)
def test_every_field_a_build_reads_changes_the_model(architecture: str, head: str | None) -> None:
    base = base_settings(architecture, head)
    reference = fingerprint(build(base))
    defaults = model_config(base)
    fields = leaves(ModelConfig)
    unchanged, invalid = set(), []
    for key in read_by(architecture, head):
        if key == "architecture" or key in NOT_BUILT:
            continue  # another architecture is another build (all of them are checked)
        hint, _ = fields[key]
        for value in candidates(key, hint, setting(defaults, key)):
            try:
                model_config({**base, key: value})
            except ConfigError:
                continue
            if fingerprint(build({**base, key: value})) == reference:
                unchanged.add(key)
            break
        else:
            invalid.append(key)
    assert invalid == [], "no other valid value found: add one to OTHER_VALUES"
    listed = {key for (where, key) in [*VALUES_ONLY, *NOT_READ_BY_THIS_HEAD] if where in ("*", f"{architecture}/{head}")}
    assert sorted(unchanged) == sorted(listed & set(read_by(architecture, head))), "set but without effect"


def base_settings(architecture: str, head: str | None) -> dict[str, Any]:
    if architecture == "condinst":
        return dict(CONDINST_TINY)
    return {**TINY, "mask_head.name": head, **POINT_HEADS_TINY}


def values(settings: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict and the non-persistent buffers of a small model built on the CPU (seed 0)."""
    torch.manual_seed(0)
    model = build_model(model_config(settings), 3, "points")
    return {**dict(model.named_buffers()), **model.state_dict()}


@pytest.mark.parametrize(("where", "key"), list(VALUES_ONLY))
def test_value_only_fields_change_the_values(where: str, key: str) -> None:
    architecture, head = ("mask_rcnn", "maskrcnn") if where == "*" else where.split("/")
    base = base_settings(architecture, None if head == "None" else head)
    hint, _ = leaves(ModelConfig)[key]
    value = candidates(key, hint, setting(model_config(base), key))[0]
    before, after = values(base), values({**base, key: value})
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)
