"""Training configuration: typed dataclasses read from YAML, with ``_base_`` inheritance and
dotted command-line overrides.

A config file is a YAML mapping with the sections of :class:`Config`::

    _base_: ../Base-RCNN-FPN.yaml          # or a list; relative to this file
    supervision: points
    solver: {base_lr: 0.01, steps: [210000, 250000], max_iter: 270000}

Bases are merged first, in order, then the file itself (mappings merge key by key, lists and
scalars replace), then the overrides (``solver.base_lr=0.01``, ``data.min_size_train=[320,352]``,
``model.backbone.weights=null``; values are YAML). Every key and value is checked against the
schema as it is read, so an error names the key, the file (or override) it came from, and close
matches. Defaults are detectron2's Base-RCNN-FPN values with the PointSup settings, except the
pixel statistics, which by default are those the backbone's weights were trained with.

The ``model`` section is nested, one sub-section per part of the detector, each defined beside the
code that reads it (:mod:`pointsup.modeling.config`). The flat ``model`` keys of earlier versions
(``model.fpn_channels``...) are still read, from files and overrides with a one-line warning naming
the new key, and silently from the configs stored in older checkpoints (:data:`LEGACY_MODEL_KEYS`).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pointsup.engine.shipped_configs import close_config_names, resolve_config_path
from pointsup.errors import PointsupError
from pointsup.modeling.config import ModelConfig
from pointsup.modeling.mask_heads.config import CHOICES
from pointsup.modeling.normalization import TORCHVISION_NORMALIZATION, input_normalization
from pointsup.utils.atomic import atomic_write

log = logging.getLogger(__name__)

#: The key that names the file(s) a config file inherits from.
BASE_KEY = "_base_"
#: The values ``Config.device`` accepts.
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


class ConfigError(PointsupError, ValueError):
    """A config file or override that does not fit the schema."""


#: The flat ``model`` keys of earlier versions -> their places in the nested ``model`` section
#: (both relative to ``model``). A key with two places sets both (the settings PointRend and
#: Implicit PointRend shared). An old ``null`` that meant "the head's own value"
#: (``subdivision_steps``) gives each new field its default. ``backbone`` and ``mask_head`` are
#: old keys when their value is a name, and the new sections when it is a mapping.
LEGACY_MODEL_KEYS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone.name",),
    "backbone_weights": ("backbone.weights",),
    "norm": ("backbone.norm",),
    "trainable_backbone_layers": ("backbone.trainable_layers",),
    "fpn_channels": ("fpn.channels",),
    "fpn_norm": ("fpn.norm",),
    "anchor_sizes": ("rpn.anchor_sizes",),
    "aspect_ratios": ("rpn.aspect_ratios",),
    "rpn_pre_nms_top_n_train": ("rpn.pre_nms_top_n_train",),
    "rpn_pre_nms_top_n_test": ("rpn.pre_nms_top_n_test",),
    "rpn_post_nms_top_n_train": ("rpn.post_nms_top_n_train",),
    "rpn_post_nms_top_n_test": ("rpn.post_nms_top_n_test",),
    "rpn_nms_thresh": ("rpn.nms_thresh",),
    "rpn_batch_size_per_image": ("rpn.batch_size_per_image",),
    "roi_batch_size_per_image": ("roi_heads.batch_size_per_image",),
    "roi_positive_fraction": ("roi_heads.positive_fraction",),
    "box_head": ("roi_heads.box_head",),
    "box_score_thresh": ("roi_heads.score_thresh",),
    "box_nms_thresh": ("roi_heads.nms_thresh",),
    "train_mask_on_pred_boxes": ("roi_heads.train_mask_on_pred_boxes",),
    "mask_head": ("mask_head.name",),
    "mask_head_conv_dim": ("mask_head.conv_dim",),
    "mask_head_num_conv": ("mask_head.num_conv",),
    "mask_head_norm": ("mask_head.norm",),
    "class_agnostic_mask": ("mask_head.class_agnostic",),
    "mask_head_fc_dim": ("mask_head.pointrend.fc_dim", "mask_head.implicit_pointrend.fc_dim"),
    "mask_head_num_fc": ("mask_head.pointrend.num_fc", "mask_head.implicit_pointrend.num_fc"),
    "point_head_fc_dim": ("mask_head.pointrend.point_fc_dim", "mask_head.implicit_pointrend.point_fc_dim"),
    "point_head_num_fc": ("mask_head.pointrend.point_num_fc", "mask_head.implicit_pointrend.point_num_fc"),
    "point_head_train_points": ("mask_head.pointrend.train_points", "mask_head.implicit_pointrend.train_points"),
    "point_head_oversample_ratio": ("mask_head.pointrend.oversample_ratio",),
    "point_head_importance_ratio": ("mask_head.pointrend.importance_ratio",),
    "subdivision_steps": ("mask_head.pointrend.subdivision_steps", "mask_head.implicit_pointrend.subdivision_steps"),
    "subdivision_num_points": (
        "mask_head.pointrend.subdivision_num_points",
        "mask_head.implicit_pointrend.subdivision_num_points",
    ),
    "implicit_params_l2_weight": ("mask_head.implicit_pointrend.params_l2_weight",),
    "implicit_image_features": ("mask_head.implicit_pointrend.image_features",),
    "implicit_positional_encoding": ("mask_head.implicit_pointrend.positional_encoding",),
    "implicit_base_init": ("mask_head.implicit_pointrend.base_init",),
    "fcos_num_convs": ("condinst.fcos.num_convs",),
    "fcos_center_sampling_radius": ("condinst.fcos.center_sampling_radius",),
    "fcos_score_thresh": ("condinst.fcos.score_thresh",),
    "fcos_topk_candidates": ("condinst.fcos.topk_candidates",),
    "fcos_nms_thresh": ("condinst.fcos.nms_thresh",),
    "condinst_mask_branch_channels": ("condinst.mask_branch.channels",),
    "condinst_mask_branch_out_channels": ("condinst.mask_branch.out_channels",),
    "condinst_mask_branch_num_convs": ("condinst.mask_branch.num_convs",),
    "condinst_mask_branch_norm": ("condinst.mask_branch.norm",),
    "condinst_mask_head_channels": ("condinst.dynamic_head.channels",),
    "condinst_mask_head_num_layers": ("condinst.dynamic_head.num_layers",),
    "condinst_mask_head_negative_slope": ("condinst.dynamic_head.negative_slope",),
    "condinst_sizes_of_interest": ("condinst.dynamic_head.sizes_of_interest",),
    "condinst_max_proposals": ("condinst.max_proposals",),
    "condinst_mask_resolution": ("condinst.mask_resolution",),
    "boxinst_pairwise_size": ("condinst.boxinst.pairwise_size",),
    "boxinst_pairwise_dilation": ("condinst.boxinst.pairwise_dilation",),
    "boxinst_pairwise_color_thresh": ("condinst.boxinst.pairwise_color_thresh",),
    "boxinst_pairwise_warmup_iters": ("condinst.boxinst.pairwise_warmup_iters",),
}


@dataclass
class DataConfig:
    """Datasets (COCO / P_N JSON files and image folders) and augmentation."""

    train_json: str | None = None
    train_images: str | None = None
    val_json: str | None = None
    val_images: str | None = None
    min_size_train: list[int] = field(default_factory=lambda: [640, 672, 704, 736, 768, 800])
    max_size_train: int = 1333
    #: "choice": one of ``min_size_train``; "range": uniform in [min_size_train[0], min_size_train[1]].
    min_size_train_sampling: Literal["choice", "range"] = "choice"
    min_size_test: int = 800
    max_size_test: int = 1333
    flip_prob: float = 0.5
    crop_enabled: bool = False
    crop_type: Literal["relative_range", "relative", "absolute", "absolute_range"] = "relative_range"
    crop_size: list[float] = field(default_factory=lambda: [0.9, 0.9])
    lsj_enabled: bool = False
    lsj_output_size: int = 1024
    lsj_min_scale: float = 0.1
    lsj_max_scale: float = 2.0
    #: Points drawn per object and iteration (point augmentation); 0 uses all of them.
    sample_points: int = 0
    num_workers: int = 4
    filter_empty: bool = True


@dataclass
class SolverConfig:
    """SGD with momentum and a warmup + multi-step learning-rate schedule (iterations)."""

    #: Images per iteration over all processes together.
    ims_per_batch: int = 16
    base_lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0
    warmup_iters: int = 1000
    warmup_factor: float = 0.001
    warmup_method: Literal["linear", "constant"] = "linear"
    steps: list[int] = field(default_factory=lambda: [60000, 80000])
    gamma: float = 0.1
    max_iter: int = 90000
    checkpoint_period: int = 5000
    keep_checkpoints: int = 3
    clip_gradients: bool = False
    clip_max_norm: float = 1.0
    #: Mixed precision on CUDA: float16 autocast with a gradient scaler.
    amp: bool = True
    #: Mixed precision on the CPU as well: bfloat16 autocast (no scaler needed). Off by default:
    #: docs/results_speed.md has its speed and accuracy against float32.
    amp_cpu: bool = False


@dataclass
class TestConfig:
    """Evaluation during and after training."""

    __test__ = False  # not a pytest test class

    #: Evaluate every this many iterations; 0 evaluates only at the end.
    eval_period: int = 0
    #: Evaluate on at most this many validation images (None: all).
    max_eval_images: int | None = None


@dataclass
class Config:
    """A whole training / evaluation configuration."""

    #: -1 draws a random seed at the start of training (the trainer records the one it used).
    seed: int = -1
    #: What trains the masks: "points" (the paper), "masks", or "boxes" (BoxInst; condinst only).
    supervision: Literal["points", "masks", "boxes"] = "points"
    output_dir: str = "output"
    #: "auto" (CUDA when available), "cpu", "cuda", "cuda:N" or "mps".
    device: str = "auto"
    log_period: int = 20
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def to_dict(self) -> dict[str, Any]:
        """The config as nested plain dicts and lists (what :func:`dump_config` writes)."""
        return dataclasses.asdict(self)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 does."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a config file (None: the defaults) and apply ``KEY=VALUE`` overrides in order.
    ``path`` may also be the name of a shipped config (:mod:`pointsup.engine.shipped_configs`).

    Raises:
        ConfigError: a missing or unreadable file, an inheritance cycle, an unknown key, a value of
            the wrong type or outside the allowed choices, or inconsistent settings.
    """
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        tree, sources = _load_tree(resolve_config_path(path), ())
    for override in overrides:
        _merge(tree, sources, _parse_override(override), f"override {override!r}")
    return _build_config(tree, sources)


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Build a config from nested mappings (missing keys take their defaults), checked like a file,
    except the published-weights rules: a stored config (a checkpoint's) is taken as it trained.
    The flat ``model`` keys of earlier versions' checkpoints are moved to their new places
    (:data:`LEGACY_MODEL_KEYS`) without a warning."""
    return _build_config(_validated(data, Config, "", "the config dict", warn=False), {}, published_weights_check=False)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper writing every mapping (section) in block style, one setting a line,
    and lists of scalars in flow style (``[1, 2]``)."""


_Dumper.add_representer(dict, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=False))


def config_yaml(config: Config) -> str:
    """The fully resolved config as YAML text, which :func:`load_config` reads back."""
    return yaml.dump(config.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=None)


def dump_config(config: Config, path: str | Path) -> None:
    """Write :func:`config_yaml` of ``config`` into ``path`` (atomically)."""
    with atomic_write(path) as handle:
        handle.write(config_yaml(config))


def _load_tree(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """The validated, merged tree of ``path`` and its bases, and the file each leaf came from."""
    path = path.expanduser().resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path) :], path))
        raise ConfigError(f"config files inherit from each other in a cycle: {cycle}")
    where = f" (the {BASE_KEY} of {chain[-1]})" if chain else ""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except FileNotFoundError:
        close = "" if chain else ", ".join(close_config_names(path.name))
        hint = f" (shipped configs with a similar name: {close}; `pointsup configs` lists them)" if close else ""
        raise ConfigError(f"config file not found: {path}{where}{hint}") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML{at}: {error.problem or error.context}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read config file {path}{where}: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}{where}: invalid YAML: nested too deeply") from None
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of settings, not {_type_name(raw)}")
    bases = raw.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY} must be a file name or a list of file names")
    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for base in bases:
        base_path = Path(base).expanduser()
        base_tree, base_sources = _load_tree(base_path if base_path.is_absolute() else path.parent / base_path, (*chain, path))
        _merge(tree, sources, base_tree, "")
        sources.update(base_sources)
    _merge(tree, sources, _validated(raw, Config, "", str(path)), str(path))
    return tree, sources


def _merge(tree: dict[str, Any], sources: dict[str, str], update: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Deep-merge ``update`` into ``tree`` (mappings merge, everything else replaces); when
    ``source`` is given, record it as the origin of every leaf of ``update``."""
    for name, value in update.items():
        if isinstance(value, Mapping):
            if not isinstance(tree.get(name), dict):
                tree[name] = {}
            _merge(tree[name], sources, value, source, f"{prefix}{name}.")
        else:
            tree[name] = value
            if source:
                sources[prefix + name] = source


def _parse_override(text: str) -> dict[str, Any]:
    """``"solver.base_lr=0.01"`` as the validated nested tree ``{"solver": {"base_lr": 0.01}}``."""
    source = f"override {text!r}"
    key, separator, raw_value = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ConfigError(f"{source}: an override must have the form KEY=VALUE (e.g. solver.base_lr=0.01)")
    try:
        value = yaml.load(raw_value, Loader=_Loader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: the value is not valid YAML: {error}") from None
    names = key.split(".")
    targets = [names]
    moved = _legacy_places(names[1], value) if len(names) == 2 and names[0] == "model" else None
    if moved is not None:
        _warn_legacy_key(source, "model.", names[1], moved)
        targets = [["model", *place.split(".")] for place in moved]
    tree: dict[str, Any] = {}
    for target in targets:
        schema: Any = Config
        for depth, name in enumerate(target):
            field_types = _field_types(schema) if _is_section(schema) else {}
            if name not in field_types:
                raise ConfigError(_unknown_key_message(".".join(target[: depth + 1]), source))
            schema = field_types[name]
        leaf = _legacy_value(ModelConfig, target[1:], value) if moved is not None else value
        if isinstance(leaf, (bool, int, float)) and _accepts_str(schema) and not _accepts_number(schema):
            leaf = raw_value.strip()  # output_dir=2024 means the folder "2024"
        for name in reversed(target):
            leaf = {name: leaf}
        _merge(tree, {}, leaf, "")
    return _validated(tree, Config, "", source)


def _legacy_places(name: str, value: Any) -> tuple[str, ...] | None:
    """The new places (relative to ``model``) of the old flat ``model`` key ``name`` set to
    ``value``; None when ``name`` is a key of today's schema."""
    places = LEGACY_MODEL_KEYS.get(name)
    current = _field_types(ModelConfig).get(name)
    if places is None or (current is not None and (not _is_section(current) or isinstance(value, Mapping))):
        return None
    return places


#: The old keys whose ``null`` meant "the head's own value": it becomes each new field's default.
#: Any other old ``null`` is passed on, so that a new field that takes no null rejects it (as the
#: old loader did).
LEGACY_NULL_IS_DEFAULT = frozenset({"subdivision_steps"})


def _legacy_value(schema: type, path: Sequence[str], value: Any) -> Any:
    """``value`` for the field at ``path`` of ``schema``: an old ``null`` of a key of
    :data:`LEGACY_NULL_IS_DEFAULT` becomes the field's default when the new field takes no null."""
    for name in path[:-1]:
        schema = _field_types(schema)[name]
    if (
        value is not None
        or path[-1] not in LEGACY_NULL_IS_DEFAULT
        or type(None) in typing.get_args(_field_types(schema)[path[-1]])
    ):
        return value
    (found,) = [f for f in dataclasses.fields(schema) if f.name == path[-1]]
    return found.default_factory() if found.default_factory is not dataclasses.MISSING else found.default


def _warn_legacy_key(source: str, prefix: str, name: str, places: Sequence[str]) -> None:
    new = " and ".join(f"'{prefix}{place}'" for place in places)
    log.warning("%s: '%s%s' is an old config key, read as %s: rename it", source, prefix, name, new)


def _upgrade_legacy_keys(data: Mapping[str, Any], prefix: str, source: str, warn: bool) -> Mapping[str, Any]:
    """``data`` (a ``model`` section) with every old flat key moved to its new places; a setting
    given under both its old and its new name is an error."""
    if not any(_legacy_places(name, value) is not None for name, value in data.items()):
        return data
    upgraded: dict[str, Any] = {}
    moved: list[tuple[str, str, Any]] = []  # (old name, new place, value)
    for name, value in data.items():
        places = _legacy_places(name, value)
        if places is None:
            upgraded[name] = value
            continue
        if warn:
            _warn_legacy_key(source, prefix, name, places)
        moved += [(name, place, _legacy_value(ModelConfig, place.split("."), value)) for place in places]
    for old, place, value in moved:
        *sections, leaf = place.split(".")
        node = upgraded
        for section in sections:
            if not isinstance(node.get(section, {}), Mapping):
                break  # the section itself has a wrong value: reported when it is validated
            node[section] = node = dict(node.get(section, {}))
        else:
            if leaf in node:
                raise ConfigError(f"{source}: '{prefix}{place}' is set twice, also by its old name '{prefix}{old}'")
            node[leaf] = value
    return upgraded


def _validated(data: Any, schema: type, prefix: str, source: str, warn: bool = True) -> dict[str, Any]:
    """Check the keys and values of ``data`` (a part of a config) against a schema dataclass;
    returns them as a plain tree with ints converted to floats where a float is expected. Old flat
    ``model`` keys are moved to their new places first (with a warning when ``warn``)."""
    if not isinstance(data, Mapping):
        what = f"'{prefix[:-1]}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {what} must be a mapping of settings, not {_type_name(data)}")
    if schema is ModelConfig:
        data = _upgrade_legacy_keys(data, prefix, source, warn)
    field_types = _field_types(schema)
    choices = _field_choices(schema)
    tree: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in field_types:
            raise ConfigError(_unknown_key_message(key, source))
        expected = field_types[name]
        if _is_section(expected):
            tree[name] = _validated(value, expected, key + ".", source, warn)
        else:
            tree[name] = _coerce(value, expected, key, source)
        if name in choices and tree[name] not in (allowed := choices[name]()):
            listed = ", ".join(repr(a) for a in allowed)
            raise ConfigError(f"{source}: '{key}' must be one of {listed}, not {_show(value)}{_close_values(value, allowed)}")
    return tree


def _close_values(value: Any, allowed: Sequence[Any]) -> str:
    """The "did you mean" hint naming the allowed strings that look like ``value`` ("" when none)."""
    close = (
        difflib.get_close_matches(value, [a for a in allowed if isinstance(a, str)], n=3, cutoff=0.6)
        if isinstance(value, str)
        else []
    )
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _coerce(value: Any, expected: Any, key: str, source: str) -> Any:
    """``value`` as the type ``expected`` (int, float, bool, str, list[...], Literal, X | None)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        try:
            return _coerce(value, inner, key, source)
        except ConfigError:
            raise ConfigError(f"{source}: '{key}' must be {_describe(expected)}, not {_show(value)}") from None
    if origin is Literal:
        if value in args and isinstance(value, str):
            return value
        raise ConfigError(f"{source}: '{key}' must be {_describe(expected)}, not {_show(value)}{_close_values(value, args)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be {_describe(expected)}, not {_show(value)}")
        return [_coerce(item, args[0], f"{key}[{i}]", source) for i, item in enumerate(value)]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is float and is_number:
        return float(value)
    if (expected is int and is_number and isinstance(value, int)) or (expected in (bool, str) and isinstance(value, expected)):
        return value
    raise ConfigError(f"{source}: '{key}' must be {_describe(expected)}, not {_show(value)}")


def _build_config(tree: Mapping[str, Any], sources: Mapping[str, str], published_weights_check: bool = True) -> Config:
    """Instantiate the dataclasses from a validated tree, check settings that depend on each other
    (and, with ``published_weights_check``, that published weights get their own pixel statistics
    and normalisation layers), and fill in the backbone's pixel statistics where none are given."""
    config = _instantiate(Config, tree)
    problems = _consistency_problems(config) + (_published_weights_problems(config.model) if published_weights_check else [])
    if problems:
        listed = "; ".join(f"{key}{_origin(key, sources)}: {message}" for key, message in problems)
        raise ConfigError(listed if len(problems) == 1 else f"{len(problems)} inconsistent config settings: {listed}")
    own = input_normalization(config.model.backbone.name)
    config.model.pixel_mean = config.model.pixel_mean or list(own.pixel_mean)
    config.model.pixel_std = config.model.pixel_std or list(own.pixel_std)
    return config


def _published_weights_problems(model: ModelConfig) -> list[tuple[str, str]]:
    """Published weights (``backbone.weights: imagenet``, ``weights: coco``) were trained with
    BatchNorm and with fixed pixel statistics: refuse GroupNorm and any other statistics."""
    problems: list[tuple[str, str]] = []
    backbone = model.backbone
    source = "torchvision's COCO Mask R-CNN" if model.weights == "coco" else f"the ImageNet {backbone.name}"
    expected = TORCHVISION_NORMALIZATION if model.weights == "coco" else input_normalization(backbone.name)
    if model.weights != "coco" and backbone.weights != "imagenet":
        return problems
    for key, given, own in (
        ("pixel_mean", model.pixel_mean, expected.pixel_mean),
        ("pixel_std", model.pixel_std, expected.pixel_std),
    ):
        if given is not None and [float(v) for v in given] != list(own):
            problems.append((f"model.{key}", f"{source} weights expect {list(own)}; leave it out to use them"))
    if backbone.norm == "gn" and backbone.weights == "imagenet":
        problems.append(
            (
                "model.backbone.norm",
                f"the ImageNet {backbone.name} weights hold BatchNorm layers: use frozen_bn or bn "
                "(gn trains from scratch, with backbone.weights: null)",
            )
        )
    return problems


def _instantiate(schema: type, tree: Mapping[str, Any]) -> Any:
    field_types = _field_types(schema)
    kwargs = {
        name: _instantiate(field_types[name], value) if _is_section(field_types[name]) else value for name, value in tree.items()
    }
    return schema(**kwargs)


def _consistency_problems(config: Config) -> list[tuple[str, str]]:
    """(key, message) for every setting that is out of range or contradicts another."""
    problems: list[tuple[str, str]] = []

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            problems.append((key, message))

    model, data, solver, test = config.model, config.data, config.solver, config.test
    check(config.seed >= -1, "seed", "must be -1 (random) or a non-negative integer")
    check(config.log_period >= 1, "log_period", "must be at least 1")
    check(re.fullmatch(DEVICE_PATTERN, config.device) is not None, "device", "must be auto, cpu, cuda, cuda:N or mps")
    problems += [(f"model.{key}", message) for key, message in model.problems()]
    check(
        config.supervision != "boxes" or model.architecture == "condinst",
        "supervision",
        "boxes (BoxInst) needs model.architecture: condinst",
    )
    check(
        model.architecture != "condinst" or model.weights != "coco",
        "model.weights",
        "coco means torchvision's COCO Mask R-CNN, which does not fit CondInst; "
        "use model.backbone.weights: imagenet, or a pointsup CondInst checkpoint",
    )
    check(
        len(data.min_size_train) > 0 and min(data.min_size_train, default=1) > 0,
        "data.min_size_train",
        "must be positive and non-empty",
    )
    if data.min_size_train_sampling == "range":
        check(len(data.min_size_train) == 2, "data.min_size_train", "must be [low, high] when min_size_train_sampling is range")
    check(0 <= data.flip_prob <= 1, "data.flip_prob", "must be in [0, 1]")
    check(len(data.crop_size) == 2 and min(data.crop_size, default=1) > 0, "data.crop_size", "must have 2 positive values")
    check(0 < data.lsj_min_scale <= data.lsj_max_scale, "data.lsj_min_scale", "must be positive and at most data.lsj_max_scale")
    check(data.sample_points >= 0, "data.sample_points", "must be 0 (all points) or positive")
    check(data.num_workers >= 0, "data.num_workers", "must not be negative")
    check(solver.ims_per_batch >= 1, "solver.ims_per_batch", "must be at least 1")
    check(solver.max_iter >= 1, "solver.max_iter", "must be at least 1")
    check(solver.base_lr > 0, "solver.base_lr", "must be positive")
    check(solver.warmup_iters >= 0, "solver.warmup_iters", "must not be negative")
    check(
        all(a < b for a, b in zip([0, *solver.steps], solver.steps)), "solver.steps", "must be positive and strictly increasing"
    )
    check(solver.checkpoint_period >= 1, "solver.checkpoint_period", "must be at least 1")
    check(solver.keep_checkpoints >= 1, "solver.keep_checkpoints", "must be at least 1")
    check(solver.clip_max_norm > 0, "solver.clip_max_norm", "must be positive")
    check(test.eval_period >= 0, "test.eval_period", "must be 0 (only at the end) or positive")
    check(test.max_eval_images is None or test.max_eval_images >= 1, "test.max_eval_images", "must be at least 1 (or null)")
    return problems


def _origin(key: str, sources: Mapping[str, str]) -> str:
    return f" (from {sources[key]})" if key in sources else ""


def _unknown_key_message(key: str, source: str) -> str:
    """An error text for an unknown dotted key, with the schema keys that look like it (and the
    new places of old ``model`` keys that look like it)."""
    known = _dotted_keys(Config)
    section, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == section}
    suggestions = [siblings[name] for name in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
    if section == "model":
        for old in difflib.get_close_matches(leaf, LEGACY_MODEL_KEYS, n=2, cutoff=0.8):
            suggestions += [f"model.{place}" for place in LEGACY_MODEL_KEYS[old]]
    suggestions += [k for k in known if k.rpartition(".")[2] == leaf]  # right name, wrong section
    suggestions += difflib.get_close_matches(key, known, n=3, cutoff=0.8)  # a typo in the section
    suggestions = list(dict.fromkeys(suggestions))
    hint = f"; did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else ""
    return f"{source}: unknown key '{key}'{hint}"


def _dotted_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for name, expected in _field_types(schema).items():
        keys.append(prefix + name)
        if _is_section(expected):
            keys.extend(_dotted_keys(expected, f"{prefix}{name}."))
    return keys


def _field_types(schema: type) -> dict[str, Any]:
    """Field name -> resolved type annotation of a schema dataclass."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _field_choices(schema: type) -> dict[str, Callable[[], Sequence[Any]]]:
    """Field name -> the function giving its allowed values, for the fields whose choices are
    only known when the config is read (``metadata={CHOICES: ...}``, e.g. registered mask heads)."""
    return {f.name: f.metadata[CHOICES] for f in dataclasses.fields(schema) if CHOICES in f.metadata}


def _is_section(expected: Any) -> bool:
    return isinstance(expected, type) and dataclasses.is_dataclass(expected)


def _accepts_str(expected: Any) -> bool:
    return expected is str or str in typing.get_args(expected)


def _accepts_number(expected: Any) -> bool:
    return expected in (int, float) or any(a in (int, float) for a in typing.get_args(expected))


def _describe(expected: Any) -> str:
    """A type annotation in words: ``list[int]`` -> "a list of integers"."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(_describe(a) for a in args if a is not type(None)) + " or null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[expected]


def _type_name(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value as an error message shows it: its YAML spelling and kind."""
    if value is None:
        return "null"
    return f"{value!r} ({_type_name(value)})"
