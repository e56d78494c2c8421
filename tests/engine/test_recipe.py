"""``pointsup recipe``: dataset statistics, the proposed input size, anchors and schedule, the YAML
it writes, and the command line (pointsup.engine.recipe, recipe_stats, recipe_yaml)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.cli import main
from pointsup.engine.config import ConfigError, load_config
from pointsup.engine.recipe import (
    MIN_ITERATIONS,
    MIN_MEDIAN_OBJECT_PX,
    TARGET_EPOCHS,
    DatasetStatistics,
    dataset_statistics,
    long_side_for,
    pixel_cost_model,
    propose_recipe,
    train_sizes,
)
from pointsup.engine.recipe_stats import missing_image_files, resized_object_sizes
from pointsup.engine.recipe_yaml import BASE_RECIPES, base_recipe_path, load_recipe_text, recipe_yaml
from pointsup.points.format import PointFormatError
from tests.conftest import DATASETS, require

# --------------------------------------------------------------------------- helpers


def make_coco(num_images: int, shape: tuple[int, int], object_sides: Sequence[float], per_image: int = 3,
              num_categories: int = 1, points: bool = False, crowd_per_image: int = 0) -> dict[str, Any]:
    """``num_images`` images of ``shape`` (height, width), each with ``per_image`` square objects
    whose sides cycle through ``object_sides``, categories cycling through ``num_categories``."""
    height, width = shape
    images, annotations = [], []
    sides = iter(np.resize(np.asarray(object_sides, dtype=float), num_images * per_image).tolist())
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"img{image_id}.jpg", "height": height, "width": width})
        for k in range(per_image + crowd_per_image):
            side = next(sides) if k < per_image else 20.0
            x, y = (37 * (image_id + k)) % max(1, int(width - side)), (53 * (image_id + k)) % max(1, int(height - side))
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + len(annotations) % num_categories,
                                   "bbox": [x, y, side, side], "iscrowd": int(k >= per_image)}
            if points and k < per_image:
                ann.update(point_coords=[[x, y]], point_labels=[1])
            annotations.append(ann)
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, num_categories + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def stats_of(tmp_path: Path, coco: dict[str, Any], name: str = "data.json") -> DatasetStatistics:
    return dataset_statistics(write_json(tmp_path / name, coco))


def arrays_stats(image_shapes: Sequence[tuple[int, int]], object_sizes: Sequence[float], image_index: Sequence[int]) -> DatasetStatistics:
    """Statistics straight from arrays (for property tests)."""
    shapes = np.asarray(image_shapes, dtype=np.int64).reshape(-1, 2)
    index = np.asarray(image_index, dtype=np.int64)
    return DatasetStatistics(
        source="<arrays>", num_images=len(shapes), num_instances=len(index), num_crowd=0,
        num_categories=1, num_declared_categories=1, num_instances_with_points=len(index),
        file_names=[f"{k}.jpg" for k in range(len(shapes))], image_shapes=shapes,
        instance_counts=np.bincount(index, minlength=len(shapes)), object_sizes=np.asarray(object_sizes, dtype=float),
        object_image_index=index,
    )


def constant_cost(seconds: float) -> Callable[[float], float]:
    return lambda pixels: seconds


def base_for(tmp_path: Path, architecture: str = "mask_rcnn", mask_head: str = "maskrcnn") -> Path:
    """The shipped base recipe when it exists and loads, else a stand-in under ``tmp_path``."""
    shipped = base_recipe_path(architecture, mask_head, "efficientnet_lite0")
    try:
        load_config(shipped)
        return shipped
    except ConfigError:
        stand_in = tmp_path / "bases" / shipped.name
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        model = {"architecture": architecture} if architecture == "condinst" else {"mask_head": {"name": mask_head}}
        stand_in.write_text(yaml.safe_dump({"model": model, "solver": {"ims_per_batch": 4}}), encoding="utf-8")
        return stand_in


# --------------------------------------------------------------------------- statistics


def test_statistics_count_images_objects_categories_and_sizes(tmp_path: Path) -> None:
    coco = make_coco(4, (600, 800), [30.0, 40.0, 50.0], per_image=3, num_categories=2, points=True, crowd_per_image=1)
    coco["categories"].append({"id": 9, "name": "unused"})
    coco["images"].append({"id": 99, "file_name": "empty.jpg", "height": 300, "width": 200})
    stats = stats_of(tmp_path, coco)
    assert (stats.num_images, stats.num_train_images, stats.num_instances, stats.num_crowd) == (5, 4, 12, 4)
    assert (stats.num_categories, stats.num_declared_categories, stats.num_instances_with_points) == (2, 3, 12)
    assert stats.object_size.p50 == pytest.approx(40.0)
    assert stats.short_side.p50 == 600 and stats.long_side.p50 == 800
    assert stats.aspect_ratio.p50 == pytest.approx(800 / 600)
    assert stats.instances_per_image.p50 == 3 and stats.instance_counts.tolist() == [3, 3, 3, 3, 0]


def test_object_size_is_the_square_root_of_the_box_area(tmp_path: Path) -> None:
    coco = make_coco(1, (100, 100), [10.0], per_image=1)
    coco["annotations"][0]["bbox"] = [0, 0, 10, 40]
    assert stats_of(tmp_path, coco).object_sizes.tolist() == [20.0]


@pytest.mark.parametrize("content, fragment", [
    (None, "file not found"),
    ("{not json", "invalid JSON"),
    (json.dumps({"images": [], "annotations": [], "categories": []}), "no (non-crowd) annotations"),
    (json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 9, "width": 9}], "categories": []}), "annotations"),
])
def test_statistics_of_bad_files_name_the_file(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(PointFormatError) as info:
        dataset_statistics(path)
    assert info.value.source == str(path) and fragment in str(info.value)


def test_only_crowd_annotations_is_no_dataset(tmp_path: Path) -> None:
    coco = make_coco(2, (100, 100), [10.0], per_image=0, crowd_per_image=1)
    with pytest.raises(PointFormatError, match="no \\(non-crowd\\) annotations"):
        stats_of(tmp_path, coco)


def test_missing_image_files(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(3, (100, 100), [10.0]))
    (tmp_path / "img2.jpg").write_bytes(b"")
    assert missing_image_files(stats, tmp_path) == ["img1.jpg", "img3.jpg"]


# --------------------------------------------------------------------------- input size


def test_large_images_with_small_objects_get_a_larger_input_than_the_balloon_recipe(tmp_path: Path) -> None:
    """The issue's case: 1024-px images, ~60-px objects, 10 classes. Short side 320 would shrink
    the median object to 60 * 320 / 768 = 25 px."""
    stats = stats_of(tmp_path, make_coco(400, (768, 1024), [40.0, 50.0, 60.0, 70.0, 80.0], per_image=5, num_categories=10))
    assert resized_object_sizes(stats, 320, 427).p50 < MIN_MEDIAN_OBJECT_PX
    recipe = propose_recipe(stats, 30.0)
    assert recipe.min_size_test > 320
    assert resized_object_sizes(stats, recipe.min_size_test, recipe.max_size_test).p50 >= MIN_MEDIAN_OBJECT_PX
    assert recipe.min_size_test % 32 == 0 and recipe.min_size_test <= 768
    assert recipe.max_size_test == round(recipe.min_size_test * 1024 / 768)
    assert recipe.min_size_train == train_sizes(recipe.min_size_test) and recipe.min_size_train[-1] == recipe.min_size_test
    assert "median object 60" in recipe.reasons[0]


def test_large_objects_keep_the_smallest_input(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(20, (1000, 1500), [300.0, 400.0]))
    recipe = propose_recipe(stats)
    assert (recipe.min_size_test, recipe.max_size_test, recipe.min_size_train) == (320, 480, [256, 288, 320])


def test_small_images_are_not_upscaled_when_their_objects_are_large_enough(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(20, (200, 300), [60.0, 80.0]))
    recipe = propose_recipe(stats)
    assert recipe.min_size_test == 192 and recipe.max_size_test == 288


def test_tiny_objects_allow_upscaling_up_to_twice(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(20, (256, 256), [10.0, 12.0]))
    recipe = propose_recipe(stats, 1000.0)
    assert 256 < recipe.min_size_test <= 512
    assert "upscaling" in recipe.reasons[0]


def test_a_small_budget_caps_the_input_size(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(400, (768, 1024), [40.0, 60.0, 80.0], per_image=5))
    cost = pixel_cost_model(1.0)  # independent of the measured constant
    generous, tight = propose_recipe(stats, 60.0, seconds_per_iteration=cost), propose_recipe(stats, 3.0, seconds_per_iteration=cost)
    assert tight.min_size_test < generous.min_size_test
    assert "budget caps it" in tight.reasons[0]
    assert tight.max_iter * tight.seconds_per_iteration <= 3.0 * 60


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(64, 2048), st.integers(64, 2048)), min_size=1, max_size=6),
    fractions=st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12),
    sizes=st.lists(st.integers(32, 1024), min_size=2, max_size=2),
)
def test_resized_object_sizes_grow_with_the_short_side(shapes: list[tuple[int, int]], fractions: list[float], sizes: list[int]) -> None:
    index = [k % len(shapes) for k in range(len(fractions))]
    objects = [f * min(shapes[i]) for f, i in zip(fractions, index)]
    stats = arrays_stats(shapes, objects, index)
    aspect = stats.aspect_ratio.p50
    small, large = sorted(sizes)
    before = resized_object_sizes(stats, small, long_side_for(small, aspect))
    after = resized_object_sizes(stats, large, long_side_for(large, aspect))
    assert after.p10 >= before.p10 - 1e-9 and after.p50 >= before.p50 - 1e-9 and after.p90 >= before.p90 - 1e-9


@settings(max_examples=40, deadline=None)
@given(
    short=st.integers(100, 2000),
    aspect=st.floats(1.0, 2.5),
    fractions=st.lists(st.floats(0.005, 0.9), min_size=1, max_size=20),
    budget=st.floats(1.0, 10_000.0),
)
def test_never_upscales_past_the_images_short_side_unless_objects_are_tiny(short: int, aspect: float, fractions: list[float],
                                                                            budget: float) -> None:
    shape = (short, int(round(short * aspect)))
    objects = [f * short for f in fractions]
    stats = arrays_stats([shape], objects, [0] * len(objects))
    recipe = propose_recipe(stats, budget)
    if stats.object_size.p50 >= MIN_MEDIAN_OBJECT_PX:
        assert recipe.min_size_test <= short
    else:
        assert recipe.min_size_test <= max(32, 2 * short)
    assert recipe.min_size_test <= 800 and recipe.min_size_test % 32 == 0
    assert recipe.steps[0] < recipe.steps[1] < recipe.max_iter and recipe.max_iter >= MIN_ITERATIONS


# --------------------------------------------------------------------------- anchors


def test_anchors_cover_the_small_objects(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(50, (480, 640), [8.0, 10.0, 60.0, 80.0, 100.0], per_image=5))
    recipe = propose_recipe(stats)
    small = resized_object_sizes(stats, recipe.min_size_test, recipe.max_size_test).p10
    assert recipe.anchor_sizes is not None and recipe.condinst_sizes_of_interest is None
    assert recipe.anchor_sizes[0] <= small * math.sqrt(2) < 2 * recipe.anchor_sizes[0] or recipe.anchor_sizes[0] == 8
    assert recipe.anchor_sizes[0] < 32
    assert recipe.anchor_sizes == [recipe.anchor_sizes[0] * 2**k for k in range(5)]


def test_large_objects_keep_larger_anchors(tmp_path: Path) -> None:
    recipe = propose_recipe(stats_of(tmp_path, make_coco(20, (600, 800), [150.0, 200.0])))
    assert recipe.anchor_sizes == [64, 128, 256, 512, 1024]


def test_condinst_scales_its_sizes_of_interest_like_the_anchors(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(50, (480, 640), [8.0, 10.0, 60.0, 80.0, 100.0], per_image=5))
    anchors = propose_recipe(stats).anchor_sizes
    recipe = propose_recipe(stats, architecture="condinst", mask_head="pointrend")
    assert recipe.anchor_sizes is None and recipe.mask_head == "maskrcnn"
    factor = anchors[0] / 32
    assert recipe.condinst_sizes_of_interest == [s * factor for s in (64.0, 128.0, 256.0, 512.0, 1024.0)]
    assert "model.rpn.anchor_sizes" not in recipe.settings()
    assert "model.condinst.dynamic_head.sizes_of_interest" in recipe.settings()


# --------------------------------------------------------------------------- schedule and detections


def test_a_larger_budget_gives_more_iterations(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(2000, (480, 640), [100.0], per_image=1))
    small, large = propose_recipe(stats, 10.0), propose_recipe(stats, 100.0)
    assert large.max_iter > small.max_iter
    assert small.min_size_test == large.min_size_test


def test_iterations_are_capped_by_the_budget(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(2000, (480, 640), [100.0], per_image=1))
    recipe = propose_recipe(stats, 20.0, seconds_per_iteration=constant_cost(2.0))
    assert recipe.max_iter <= 20 * 60 / 2.0 and recipe.max_iter >= 20 * 60 / 2.0 - 10
    assert recipe.seconds_per_iteration == 2.0 and recipe.estimated_minutes <= 20
    assert recipe.epochs == pytest.approx(recipe.max_iter * 4 / 2000)
    assert "capped by the budget" in recipe.reasons[2]


def test_iterations_stop_at_the_target_epochs(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(100, (480, 640), [100.0], per_image=1))
    recipe = propose_recipe(stats, 1000.0)
    assert recipe.max_iter == 10 * (math.ceil(TARGET_EPOCHS * 100 / 4) // 10)
    assert abs(recipe.epochs - TARGET_EPOCHS) < 0.5


def test_iterations_have_a_floor_and_warn_past_the_budget(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(10, (480, 640), [100.0], per_image=1))
    assert propose_recipe(stats, 1000.0).max_iter == MIN_ITERATIONS  # 24 epochs are 60 iterations
    recipe = propose_recipe(stats, 1.0, seconds_per_iteration=constant_cost(1.0))
    assert recipe.max_iter == MIN_ITERATIONS
    assert any("more than the 1-min budget" in warning for warning in recipe.warnings)


def test_schedule_proportions(tmp_path: Path) -> None:
    stats = stats_of(tmp_path, make_coco(2000, (480, 640), [100.0], per_image=1))
    recipe = propose_recipe(stats, 30.0, seconds_per_iteration=constant_cost(1.0))
    assert recipe.max_iter == 1800
    assert recipe.steps == [1350, 1656] and recipe.warmup_iters == 100 and recipe.checkpoint_period == 450
    short = propose_recipe(stats, 4.0, seconds_per_iteration=constant_cost(1.0))
    assert short.max_iter == 240 and short.warmup_iters == 24 and short.steps == [180, 220]


@settings(max_examples=30, deadline=None)
@given(budget=st.floats(0.5, 500.0), factor=st.floats(1.01, 10.0), images=st.integers(1, 5000))
def test_iterations_never_decrease_with_the_budget(budget: float, factor: float, images: int) -> None:
    stats = arrays_stats([(480, 640)] * images, [100.0] * images, list(range(images)))
    cost = constant_cost(0.7)
    assert propose_recipe(stats, budget * factor, seconds_per_iteration=cost).max_iter >= \
        propose_recipe(stats, budget, seconds_per_iteration=cost).max_iter


def test_the_cost_model_is_linear_in_pixels() -> None:
    cost = pixel_cost_model(1.5)
    assert cost(320 * 480) == pytest.approx(1.5) and cost(640 * 960) == pytest.approx(6.0)
    with pytest.raises(ValueError):
        pixel_cost_model(0.0)


def test_detections_follow_the_densest_images(tmp_path: Path) -> None:
    sparse = propose_recipe(stats_of(tmp_path, make_coco(20, (480, 640), [50.0], per_image=2), "a.json"))
    dense = propose_recipe(stats_of(tmp_path, make_coco(20, (480, 640), [20.0], per_image=40), "b.json"))
    assert sparse.detections_per_image == 20 and dense.detections_per_image == 80


def test_no_points_warns(tmp_path: Path) -> None:
    without = propose_recipe(stats_of(tmp_path, make_coco(5, (480, 640), [50.0]), "a.json"))
    with_points = propose_recipe(stats_of(tmp_path, make_coco(5, (480, 640), [50.0], points=True), "b.json"))
    assert any("point_coords" in warning for warning in without.warnings) and not with_points.warnings


@pytest.mark.parametrize("architecture, categories, expected", [("mask_rcnn", 5, True), ("mask_rcnn", 1, None), ("condinst", 5, None)])
def test_several_categories_get_class_agnostic_masks(tmp_path: Path, architecture: str, categories: int, expected: bool | None) -> None:
    stats = stats_of(tmp_path, make_coco(20, (480, 640), [50.0], per_image=5, num_categories=categories))
    recipe = propose_recipe(stats, architecture=architecture)  # type: ignore[arg-type]
    assert recipe.class_agnostic_masks is expected
    assert any(reason.startswith("masks: class-agnostic") for reason in recipe.reasons) == bool(expected)
    assert all(reason for reason in recipe.reasons)  # a decision without settings adds no report line


def test_the_balloon_proposal_matches_the_hand_made_recipe() -> None:
    stats = dataset_statistics(require(DATASETS / "balloon" / "instances_train.json"))
    recipe = propose_recipe(stats)
    assert (recipe.min_size_test, recipe.min_size_train, recipe.anchor_sizes) == (320, [256, 288, 320], [32, 64, 128, 256, 512])
    assert 20 <= recipe.epochs <= 28  # the shipped recipe runs about 26


# --------------------------------------------------------------------------- YAML


def test_base_recipes_name_the_shipped_files() -> None:
    for architecture, head in BASE_RECIPES:
        path = base_recipe_path(architecture, head, "efficientnet_lite0")
        assert path.parent.name == "cpu" and "lite0" in path.name
    assert base_recipe_path("condinst", "pointrend", "efficientnet_lite0").name == "balloon_lite0_condinst_points.yaml"
    assert base_recipe_path("mask_rcnn", "implicit_pointrend", "efficientnet_lite0").name == "balloon_lite0_implicit_pointrend_points.yaml"


@pytest.mark.parametrize("architecture, mask_head", [("mask_rcnn", "maskrcnn"), ("mask_rcnn", "pointrend"), ("condinst", "maskrcnn")])
def test_the_yaml_loads_with_the_proposed_values(tmp_path: Path, architecture: str, mask_head: str) -> None:
    data = write_json(tmp_path / "train.json", make_coco(50, (768, 1024), [40.0, 60.0, 80.0], per_image=4, num_categories=3))
    stats = dataset_statistics(data)
    recipe = propose_recipe(stats, architecture=architecture, mask_head=mask_head)  # type: ignore[arg-type]
    assert ("model.mask_head.class_agnostic" in recipe.settings()) == (architecture == "mask_rcnn")
    base = base_for(tmp_path, architecture, mask_head)
    text = recipe_yaml(recipe, base, data, tmp_path, stats)
    out = tmp_path / "elsewhere" / "recipe.yaml"
    out.parent.mkdir()
    out.write_text(text, encoding="utf-8")
    config = load_config(out)
    for key, value in recipe.settings().items():
        setting = config
        for name in key.split("."):
            setting = getattr(setting, name)
        assert setting == value, key
    assert config.data.train_json == str(data.resolve()) and config.data.train_images == str(tmp_path.resolve())
    assert config.model.architecture == architecture and load_recipe_text(text) == config
    lines = text.splitlines()
    for k, line in enumerate(lines):  # every setting has its reason right above it
        if line.startswith("  ") and not line.lstrip().startswith("#") and "train_images" not in line:
            assert lines[k - 1].lstrip().startswith("#"), line
    assert yaml.safe_load(text)["_base_"] == str(base.resolve())
    # written, not only inherited (the shipped bases are class-agnostic already)
    assert (yaml.safe_load(text)["model"].get("mask_head", {}).get("class_agnostic") is True) == (architecture == "mask_rcnn")


# --------------------------------------------------------------------------- command line


def assert_one_line_error(capsys: pytest.CaptureFixture[str], status: int, *fragments: str) -> str:
    out, err = capsys.readouterr()
    assert status == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("pointsup recipe: error: "), err
    for fragment in fragments:
        assert fragment in err
    return err


@pytest.fixture()
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    coco = make_coco(30, (768, 1024), [40.0, 60.0, 80.0], per_image=4, points=True)
    for image in coco["images"]:
        (images / image["file_name"]).write_bytes(b"")
    return write_json(tmp_path / "train.json", coco), images


def test_cli_prints_reasons_then_the_yaml(tmp_path: Path, dataset: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, images = dataset
    assert main(["recipe", str(data), "--images", str(images), "--base", str(base_for(tmp_path))]) == 0
    out = capsys.readouterr().out
    report, _, text = out.partition("\n\n")
    for topic in ("dataset ", "input size: ", "anchors: ", "schedule: ", "detections per image: "):
        assert topic in report
    assert "warning" not in report
    assert yaml.safe_load(text)["data"]["train_json"] == str(data.resolve())


def test_cli_writes_and_refuses_to_overwrite_without_force(tmp_path: Path, dataset: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    data, images = dataset
    out = tmp_path / "recipe.yaml"
    common = ["recipe", str(data), "--images", str(images), "--base", str(base_for(tmp_path)), "-o", str(out)]
    assert main([*common, "--budget-minutes", "5"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    first = out.read_text()
    assert load_config(out).data.train_json == str(data.resolve())
    assert_one_line_error(capsys, main([*common, "--budget-minutes", "50"]), str(out), "--force")
    assert out.read_text() == first
    assert main([*common, "--budget-minutes", "50", "--seconds-per-iteration", "3", "--force"]) == 0
    assert out.read_text() != first and yaml.safe_load(out.read_text())["solver"] == yaml.safe_load(first)["solver"]


@pytest.mark.parametrize("problem", ["missing", "not json", "no annotations", "no images folder", "no images in it", "condinst head"])
def test_cli_bad_input_is_one_line_and_status_2(tmp_path: Path, dataset: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                                problem: str) -> None:
    data, images = dataset
    extra: list[str] = []
    if problem == "missing":
        data = tmp_path / "absent.json"
    elif problem == "not json":
        data.write_text("{oops", encoding="utf-8")
    elif problem == "no annotations":
        write_json(data, {"images": [], "annotations": [], "categories": []})
    elif problem == "no images folder":
        images = tmp_path / "nowhere"
    elif problem == "no images in it":
        images = tmp_path / "empty"
        images.mkdir()
    else:
        extra = ["--architecture", "condinst", "--mask-head", "pointrend"]
    base = [] if problem == "condinst head" else ["--base", str(base_for(tmp_path))]  # with --base, the base decides the model
    status = main(["recipe", str(data), "--images", str(images), *base, *extra])
    named = {"no images folder": str(images), "no images in it": str(images), "condinst head": "--mask-head"}.get(problem, str(data))
    assert_one_line_error(capsys, status, named)


def test_cli_missing_base_recipe(tmp_path: Path, dataset: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, images = dataset
    absent = tmp_path / "absent.yaml"
    assert_one_line_error(capsys, main(["recipe", str(data), "--images", str(images), "--base", str(absent)]), str(absent))


def test_the_base_recipe_decides_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pointsup.cli import main

    condinst = Path(__file__).resolve().parents[2] / "configs" / "cpu" / "balloon_lite0_condinst_points.yaml"
    coco = tmp_path / "train.json"
    data = make_coco(12, (480, 640), [60.0, 90.0], per_image=3)
    coco.write_text(json.dumps(data))
    (tmp_path / "images").mkdir()
    for image in data["images"]:
        (tmp_path / "images" / image["file_name"]).write_bytes(b"")
    assert main(["recipe", str(coco), "--images", str(tmp_path / "images"), "--base", str(condinst)]) == 0
    assert "dynamic_head: {sizes_of_interest: " in capsys.readouterr().out
    assert main(["recipe", str(coco), "--images", str(tmp_path / "images"), "--base", str(condinst),
                 "--architecture", "mask_rcnn"]) == 2
    assert "contradicts --base" in capsys.readouterr().err
