"""Config files: schema defaults, _base_ inheritance, overrides, error messages, round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.engine.config import (
    Config,
    ConfigError,
    SolverConfig,
    config_from_dict,
    dump_config,
    load_config,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_base_rcnn_fpn_pointsup_recipe() -> None:
    config = load_config(None)
    expected = Config()  # the pixel statistics are filled in from the backbone (torchvision's for ResNet-50)
    expected.model.pixel_mean, expected.model.pixel_std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    assert config == expected
    assert (config.solver.ims_per_batch, config.solver.base_lr, config.solver.max_iter) == (16, 0.02, 90000)
    assert config.solver.steps == [60000, 80000]
    assert (config.solver.warmup_iters, config.solver.warmup_factor, config.solver.weight_decay) == (1000, 0.001, 1e-4)
    assert config.data.min_size_train == [640, 672, 704, 736, 768, 800]
    assert (config.data.max_size_train, config.data.min_size_test, config.data.max_size_test) == (1333, 800, 1333)
    assert config.model.rpn.anchor_sizes == [32, 64, 128, 256, 512]
    assert (config.model.roi_heads.batch_size_per_image, config.model.rpn.batch_size_per_image) == (512, 256)
    roi_heads = config.model.roi_heads
    assert (roi_heads.score_thresh, roi_heads.nms_thresh, config.model.detections_per_image) == (0.05, 0.5, 100)
    assert (config.seed, config.supervision, config.test.eval_period) == (-1, "points", 0)
    # Instances do not share their mutable defaults.
    other = Config()
    other.solver.steps.append(1)
    assert Config().solver.steps == [60000, 80000]


def test_base_inheritance_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    write(
        tmp_path / "bases" / "base.yaml",
        "solver: {base_lr: 0.01, steps: [10, 20, 30], max_iter: 40}\nmodel: {backbone: {name: resnet18}}\n",
    )
    child = write(
        tmp_path / "exp" / "child.yaml",
        "_base_: ../bases/base.yaml\nsolver:\n  steps: [5]\nmodel: {backbone: {norm: gn}}\n",
    )
    config = load_config(child)
    assert config.solver.base_lr == 0.01  # kept from the base
    assert config.solver.max_iter == 40
    assert config.solver.steps == [5]  # the list is replaced, not merged
    assert (config.model.backbone.name, config.model.backbone.norm) == ("resnet18", "gn")


def test_bases_resolve_relative_to_the_including_file_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.yaml", "solver: {base_lr: 0.1, gamma: 0.5}\n")
    write(tmp_path / "b.yaml", "solver: {base_lr: 0.2}\n")
    write(tmp_path / "mid" / "c.yaml", "_base_: [../a.yaml, ../b.yaml]\nlog_period: 7\n")
    top = write(tmp_path / "deep" / "er" / "top.yaml", f"_base_: {tmp_path / 'mid' / 'c.yaml'}\nseed: 3\n")
    monkeypatch.chdir(tmp_path / "deep")  # relative bases must not depend on the working directory
    config = load_config(Path("er") / "top.yaml")
    assert (config.solver.base_lr, config.solver.gamma) == (0.2, 0.5)  # the later base wins
    assert (config.log_period, config.seed) == (7, 3)
    assert load_config(top) == config


def test_an_inheritance_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: [c.yaml]\n")
    write(tmp_path / "c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle") as info:
        load_config(tmp_path / "a.yaml")
    assert all(name in str(info.value) for name in ("a.yaml", "b.yaml", "c.yaml"))
    write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "self.yaml")


def test_the_same_base_twice_without_a_cycle_is_fine(tmp_path: Path) -> None:
    write(tmp_path / "common.yaml", "solver: {max_iter: 77}\n")
    write(tmp_path / "x.yaml", "_base_: common.yaml\nseed: 1\n")
    write(tmp_path / "y.yaml", "_base_: common.yaml\nlog_period: 2\n")
    config = load_config(write(tmp_path / "both.yaml", "_base_: [x.yaml, y.yaml]\n"))
    assert (config.solver.max_iter, config.seed, config.log_period) == (77, 1, 2)


def test_unknown_keys_name_the_key_the_file_and_close_matches(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "solver:\n  base_lrr: 0.1\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_config(child)
    message = str(info.value)
    assert "solver.base_lrr" in message and str(tmp_path / "base.yaml") in message and "solver.base_lr" in message
    with pytest.raises(ConfigError, match=r"unknown key 'max_iter'.*'solver\.max_iter'"):
        load_config(write(tmp_path / "moved.yaml", "max_iter: 5\n"))
    with pytest.raises(ConfigError, match=r"override 'model\.rpn\.anchor_size=\[8\]'.*'model\.rpn\.anchor_sizes'"):
        load_config(None, ["model.rpn.anchor_size=[8]"])
    with pytest.raises(ConfigError, match="unknown key 'nothing_like_it'$"):
        load_config(None, ["nothing_like_it=1"])


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("solver: {max_iter: lots}", "solver.max_iter", "an integer"),
        ("solver: {max_iter: 10.5}", "solver.max_iter", "an integer"),
        ("solver: {max_iter: true}", "solver.max_iter", "an integer"),
        ("solver: {amp: 1}", "solver.amp", "true or false"),
        ("solver: {steps: 100}", "solver.steps", "a list of integers"),
        ("solver: {steps: [100, x]}", "solver.steps[1]", "an integer"),
        ("model: {pixel_std: {a: 1}}", "model.pixel_std", "a list of numbers"),
        ("model: {weights: 3}", "model.weights", "a string or null"),
        ("output_dir: null", "output_dir", "a string"),
        ("model: resnet50", "model", "a mapping"),
    ],
)
def test_wrong_types_name_the_key_and_the_file(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path / "bad.yaml", text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"'{key}'" in str(info.value) and expected in str(info.value) and str(path) in str(info.value)


def test_choice_fields_list_the_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'model.backbone.name' must be one of 'resnet18', 'resnet34', 'resnet50'"):
        load_config(None, ["model.backbone.name=resnet51"])
    with pytest.raises(ConfigError, match="'solver.warmup_method' must be one of 'linear', 'constant'"):
        load_config(write(tmp_path / "c.yaml", "solver: {warmup_method: cosine}\n"))
    with pytest.raises(ConfigError, match="'supervision' must be one of 'points', 'masks', 'boxes'"):
        load_config(None, ["supervision=polygons"])
    with pytest.raises(ConfigError, match="boxes .BoxInst. needs model.architecture: condinst"):
        load_config(None, ["supervision=boxes"])
    assert load_config(None, ["model.fpn.norm=gn"]).model.fpn.norm == "gn"


def test_ints_are_accepted_for_floats_and_scientific_notation_is_a_float(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", "solver: {base_lr: 1, weight_decay: 5e-5}\nmodel: {pixel_std: [1, 2, 3]}\n"))
    assert config.solver.base_lr == 1.0 and isinstance(config.solver.base_lr, float)
    assert config.solver.weight_decay == 5e-5
    assert all(isinstance(v, float) for v in config.model.pixel_std)
    assert load_config(None, ["solver.weight_decay=1e-4"]).solver.weight_decay == 1e-4


def test_overrides_apply_after_the_files_in_order(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "solver: {base_lr: 0.5}\nmodel: {weights: /some/model.pth}\n")
    config = load_config(
        path,
        [
            "solver.base_lr=0.01",
            "data.min_size_train=[320, 352]",
            "model.weights=null",
            "output_dir=2024",  # a folder named by a number stays a string
            "solver.max_iter=10",
            "solver.max_iter=20",
            "test={max_eval_images: 4}",
            "data.train_json=a=b.json",  # only the first '=' separates the key
        ],
    )
    assert config.solver.base_lr == 0.01
    assert config.data.min_size_train == [320, 352]
    assert config.model.weights is None
    assert config.output_dir == "2024"
    assert config.solver.max_iter == 20
    assert (config.test.max_eval_images, config.test.eval_period) == (4, 0)
    assert config.data.train_json == "a=b.json"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["solver.base_lr"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, ["data.min_size_train=[1, 2"])


def test_inconsistent_settings_name_the_key_and_where_it_was_set(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "solver: {steps: [300, 200]}\n")
    with pytest.raises(ConfigError, match=r"solver\.steps \(from .*c\.yaml\): must be positive and strictly increasing"):
        load_config(path)
    with pytest.raises(ConfigError, match="min_size_train.*range"):
        load_config(None, ["data.min_size_train_sampling=range"])
    assert load_config(None, ["data.min_size_train_sampling=range", "data.min_size_train=[640,800]"]).data.min_size_train == [640, 800]
    with pytest.raises(ConfigError, match="device"):
        load_config(None, ["device=gpu"])
    with pytest.raises(ConfigError) as info:
        load_config(None, ["solver.ims_per_batch=0", "data.flip_prob=2"])
    assert "solver.ims_per_batch" in str(info.value) and "data.flip_prob" in str(info.value)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found.*missing.yaml"):
        load_config(tmp_path / "missing.yaml")
    write(tmp_path / "child.yaml", "_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml \(the _base_ of .*child\.yaml\)"):
        load_config(tmp_path / "child.yaml")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(write(tmp_path / "broken.yaml", "solver: {base_lr: [\n"))
    with pytest.raises(ConfigError, match="list.yaml: a config file must be a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="_base_ must be a file name"):
        load_config(write(tmp_path / "b.yaml", "_base_: {a: 1}\n"))
    assert load_config(write(tmp_path / "empty.yaml", "")) == load_config(None)


def test_dump_then_load_gives_the_same_config(tmp_path: Path) -> None:
    config = load_config(None, ["model.backbone.name=resnext101_32x8d", "solver.steps=[3,4]", "data.val_json=v.json", "seed=42"])
    path = tmp_path / "out" / "config.yaml"
    dump_config(config, path)
    assert load_config(path) == config
    assert yaml.safe_load(path.read_text())["solver"]["steps"] == [3, 4]  # plain YAML, fully resolved
    assert not [p for p in path.parent.iterdir() if p.name != "config.yaml"]  # no temporary file left
    assert config_from_dict(config.to_dict()) == config


def test_config_from_dict_checks_like_a_file() -> None:
    assert config_from_dict({"solver": {"max_iter": 5}}).solver == dataclasses.replace(SolverConfig(), max_iter=5)
    with pytest.raises(ConfigError, match="unknown key 'solver.max_iters'.*'solver.max_iter'"):
        config_from_dict({"solver": {"max_iters": 5}})
    with pytest.raises(ConfigError, match="'seed' must be an integer"):
        config_from_dict({"seed": "7"})


finite_positive = st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    base_lr=finite_positive,
    momentum=st.floats(allow_nan=False, allow_infinity=False),
    steps=st.lists(st.integers(1, 10**6), max_size=4, unique=True).map(sorted),
    output_dir=st.text(min_size=1, max_size=20),
    weights=st.none() | st.text(max_size=12).filter(lambda text: text != "coco"),  # coco fixes the statistics
    pixel_mean=st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3),
)
def test_any_valid_config_survives_a_yaml_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    base_lr: float,
    momentum: float,
    steps: list[int],
    output_dir: str,
    weights: str | None,
    pixel_mean: list[float],
) -> None:
    config = load_config(None)  # as read: the pixel statistics filled in
    config.solver = dataclasses.replace(config.solver, base_lr=base_lr, momentum=momentum, steps=steps)
    config.output_dir = output_dir
    config.model = dataclasses.replace(config.model, weights=weights, pixel_mean=pixel_mean)
    path = tmp_path_factory.mktemp("roundtrip") / "config.yaml"
    dump_config(config, path)
    assert load_config(path) == config
