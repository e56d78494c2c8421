"""Propose a CPU training recipe fitted to a COCO dataset: input size, anchors, schedule.

A recipe copied from another dataset can be badly off: the balloon recipe (short side 320,
400 iterations) shrinks the median object of a 1024-px, 10-class dataset to 18 px and runs it
for 4 epochs. :func:`dataset_statistics` measures what the decisions depend on (image and
object sizes, instances, categories); :func:`propose_recipe` turns the statistics and a time
budget into a :class:`Recipe`, with one reason per decision giving the numbers that drove it:

* **input size**: the smallest test short side (a multiple of 32, 320..800) at which the median
  object is at least 32 px (and, where possible, the 10th-percentile object 12 px); never above
  the images' median short side unless the objects are tiny at full resolution (then up to
  2x), and never so large that the budget fits fewer than :data:`MIN_ITERATIONS` iterations.
  The long side cap follows the median aspect ratio; training sizes are 0.8, 0.9, 1.0 x the
  short side.
* **anchors**: five levels doubling from the smallest power of two (8..64) within half an octave
  of the 10th-percentile resized object; CondInst's relative-coordinate scales follow the same
  factor.
* **schedule**: as many iterations as the budget fits at the estimated seconds per iteration
  (linear in pixels, :func:`pixel_cost_model`), at most :data:`TARGET_EPOCHS` epochs, at least
  :data:`MIN_ITERATIONS`; LR steps at 75 % and 92 %, warmup ``min(100, 10 %)``.
* **detections per image**: twice the 99th percentile of objects per image, at least 20.
* **mask channels** (RoI mask heads): class-agnostic masks when there is more than one category
  (see :func:`_mask_channels_decision`).

The statistics live in :mod:`pointsup.engine.recipe_stats` (re-exported here); the report and
the config file (inheriting from a shipped CPU recipe, the reason above each setting) in
:mod:`pointsup.engine.recipe_yaml`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pointsup.data.transforms import shortest_edge_size
from pointsup.engine.recipe_stats import DatasetStatistics, Percentiles, dataset_statistics, resized_object_sizes
from pointsup.engine.solver import MAX_WARMUP_ITERS, STEP_FRACTIONS, WARMUP_FRACTION, rescaled_schedule
from pointsup.modeling.condinst.config import DynamicMaskHeadConfig
from pointsup.modeling.config import RPNConfig

__all__ = ["DatasetStatistics", "IterationCost", "Recipe", "dataset_statistics", "pixel_cost_model", "propose_recipe"]

Architecture = Literal["mask_rcnn", "condinst"]
#: A mask head name of :data:`pointsup.modeling.mask_heads.MASK_HEADS`.
MaskHead = str
Backbone = Literal["efficientnet_lite0"]
#: Seconds per training iteration as a function of the mean input pixels per image.
IterationCost = Callable[[float], float]

#: Seconds one training iteration of the EfficientNet-Lite0 Mask R-CNN CPU recipe takes at
#: batch 4 with 320 x 480 inputs on a 2-core CPU. Measured: configs/cpu/balloon_lite0_points.yaml
#: (short sides 256-320, long side at most 480) runs at 2.0 s/iteration on 2 cores; scaled up to
#: the reference pixel count and rounded.
SECONDS_PER_ITERATION_LITE0_MASK_RCNN = 2.5
#: The input pixels per image that constant was measured at.
REFERENCE_PIXELS = 320 * 480
DEFAULT_BUDGET_MINUTES = 30.0
CPU_IMS_PER_BATCH = 4

SIZE_STEP = 32
MIN_SHORT_SIDE = 320
MAX_SHORT_SIDE = 800
#: The most the input may be upscaled, and only when the median object is below
#: :data:`MIN_MEDIAN_OBJECT_PX` at full resolution.
MAX_UPSCALE = 2.0
MIN_MEDIAN_OBJECT_PX = 32.0
MIN_SMALL_OBJECT_PX = 12.0
TRAIN_SCALE_FACTORS = (0.8, 0.9, 1.0)

ANCHOR_LEVELS = 5
SMALLEST_ANCHOR_CHOICES = (8, 16, 32, 64)
#: The defaults at COCO scale (one place: the config schema).
DEFAULT_ANCHOR_SIZES: tuple[int, ...] = tuple(RPNConfig().anchor_sizes)
DEFAULT_SIZES_OF_INTEREST: tuple[float, ...] = tuple(DynamicMaskHeadConfig().sizes_of_interest)
#: The config keys of the scale decision: Mask R-CNN's anchors, CondInst's relative-coordinate scales.
ANCHOR_SIZES_KEY = "model.rpn.anchor_sizes"
CLASS_AGNOSTIC_KEY = "model.mask_head.class_agnostic"
SIZES_OF_INTEREST_KEY = "model.condinst.dynamic_head.sizes_of_interest"

#: About the balloon Lite0 recipe's 26 epochs (400 iterations x 4 images / 61).
TARGET_EPOCHS = 24.0
MIN_ITERATIONS = 200
ITERATION_ROUNDING = 10
CHECKPOINTS_PER_RUN = 4
MIN_DETECTIONS = 20
DETECTIONS_PER_DENSE_IMAGE = 2.0


def long_side_for(short_side: int, aspect_ratio: float) -> int:
    """The long-side cap that fits an image of ``aspect_ratio`` at ``short_side``."""
    return int(round(short_side * aspect_ratio))


def train_sizes(short_side: int) -> list[int]:
    """Multi-scale training short sides: :data:`TRAIN_SCALE_FACTORS` x ``short_side``, rounded
    to multiples of :data:`SIZE_STEP` (at least one step), ascending, without repeats."""
    sizes = {max(SIZE_STEP, SIZE_STEP * round(f * short_side / SIZE_STEP)) for f in TRAIN_SCALE_FACTORS}
    return sorted(sizes)


def pixel_cost_model(
    seconds_at_reference: float = SECONDS_PER_ITERATION_LITE0_MASK_RCNN, reference_pixels: float = REFERENCE_PIXELS
) -> IterationCost:
    """Seconds per iteration growing linearly with the input pixels per image."""
    if not seconds_at_reference > 0:
        raise ValueError(f"seconds per iteration must be positive, got {seconds_at_reference}")
    return lambda pixels: seconds_at_reference * pixels / reference_pixels


def training_pixels(stats: DatasetStatistics, short_side: int, max_size: int) -> float:
    """Mean input pixels of the median image over the training sizes of ``short_side``."""
    height = int(round(stats.short_side.p50))
    width = long_side_for(height, stats.aspect_ratio.p50)
    areas = [math.prod(shortest_edge_size(height, width, size, max_size)) for size in train_sizes(short_side)]
    return float(np.mean(areas))


@dataclass
class Recipe:
    """A proposed CPU recipe: the settings and why each was chosen.

    Attributes:
        anchor_sizes: Mask R-CNN's RPN anchors (None for CondInst).
        class_agnostic_masks: one mask channel for every category (None: the base recipe's
            setting, for CondInst, whose masks have no class channels, and for a single category;
            the shipped Lite0 bases are class-agnostic already, fruits_nuts' apart).
        condinst_sizes_of_interest: CondInst's relative-coordinate scales (None for Mask R-CNN).
        seconds_per_iteration: the estimate the schedule was fitted with.
        reasons: one line per decision, with the numbers that drove it.
        comments: dotted config key -> the short reason written above it in the YAML.
        warnings: problems the user should fix before training.
    """

    architecture: str
    mask_head: str
    backbone: str
    min_size_train: list[int]
    max_size_train: int
    min_size_test: int
    max_size_test: int
    anchor_sizes: list[int] | None
    condinst_sizes_of_interest: list[float] | None
    detections_per_image: int
    ims_per_batch: int
    max_iter: int
    steps: list[int]
    warmup_iters: int
    checkpoint_period: int
    seconds_per_iteration: float
    epochs: float
    class_agnostic_masks: bool | None = None
    reasons: list[str] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def estimated_minutes(self) -> float:
        """Training time of ``max_iter`` iterations at the estimated seconds per iteration."""
        return self.max_iter * self.seconds_per_iteration / 60.0

    def settings(self) -> dict[str, Any]:
        """Dotted config key -> proposed value, in the order the YAML lists them."""
        model: dict[str, Any] = (
            {ANCHOR_SIZES_KEY: self.anchor_sizes}
            if self.anchor_sizes is not None
            else {SIZES_OF_INTEREST_KEY: self.condinst_sizes_of_interest}
        )
        if self.class_agnostic_masks is not None:
            model[CLASS_AGNOSTIC_KEY] = self.class_agnostic_masks
        return {
            **model,
            "model.detections_per_image": self.detections_per_image,
            "data.min_size_train": self.min_size_train,
            "data.max_size_train": self.max_size_train,
            "data.min_size_test": self.min_size_test,
            "data.max_size_test": self.max_size_test,
            "solver.ims_per_batch": self.ims_per_batch,
            "solver.max_iter": self.max_iter,
            "solver.steps": self.steps,
            "solver.warmup_iters": self.warmup_iters,
            "solver.checkpoint_period": self.checkpoint_period,
        }


def _floor_step(value: float) -> int:
    return max(SIZE_STEP, SIZE_STEP * int(value // SIZE_STEP))


def _choose_short_side(stats: DatasetStatistics, budget_iterations: Callable[[int], int]) -> tuple[int, str]:
    """The test short side and the reason for it (see the module docstring)."""
    native, aspect, original = stats.short_side.p50, stats.aspect_ratio.p50, stats.object_size
    tiny = original.p50 < MIN_MEDIAN_OBJECT_PX
    cap = _floor_step(min(MAX_SHORT_SIDE, native * (MAX_UPSCALE if tiny else 1.0)))
    candidates = list(range(min(MIN_SHORT_SIDE, cap), cap + 1, SIZE_STEP))
    resized = {size: resized_object_sizes(stats, size, long_side_for(size, aspect)) for size in candidates}
    median_ok = [size for size in candidates if resized[size].p50 >= MIN_MEDIAN_OBJECT_PX]
    both_ok = [size for size in median_ok if resized[size].p10 >= MIN_SMALL_OBJECT_PX]
    wanted = both_ok[0] if both_ok else median_ok[0] if median_ok else candidates[-1]
    affordable = [size for size in candidates if budget_iterations(size) >= MIN_ITERATIONS] or candidates[:1]
    chosen = min(wanted, affordable[-1])
    after = resized[chosen]
    why = (
        f"short side {chosen} (images' median short side {native:.0f} px, scale {chosen / native:.2f}): "
        f"median object {original.p50:.0f} -> {after.p50:.0f} px (want >= {MIN_MEDIAN_OBJECT_PX:.0f}), "
        f"10th percentile {original.p10:.0f} -> {after.p10:.1f} px (want >= {MIN_SMALL_OBJECT_PX:.0f})"
    )
    if chosen < wanted:
        why += (
            f"; {wanted} would leave fewer than {MIN_ITERATIONS} iterations in the budget "
            f"({budget_iterations(wanted)}), so the budget caps it"
        )
    elif not median_ok:
        limit = f"{MAX_UPSCALE:g}x upscaling" if tiny and cap < MAX_SHORT_SIDE else f"the largest size {cap}"
        why += f"; no size up to {limit} reaches {MIN_MEDIAN_OBJECT_PX:.0f} px"
    elif not both_ok:
        why += f"; the 10th percentile stays below {MIN_SMALL_OBJECT_PX:.0f} px up to {cap}, the median decides"
    elif tiny:
        why += f"; objects are tiny at full resolution, so upscaling (up to {MAX_UPSCALE:g}x) is allowed"
    else:
        why += "; the smallest size that meets both"
    return chosen, why


def _smallest_anchor(small_object: float) -> int:
    """The largest of :data:`SMALLEST_ANCHOR_CHOICES` within half an octave above
    ``small_object`` (``<= small_object * sqrt 2``); the smallest choice when none is."""
    fitting = [a for a in SMALLEST_ANCHOR_CHOICES if a <= small_object * math.sqrt(2.0)]
    return fitting[-1] if fitting else SMALLEST_ANCHOR_CHOICES[0]


@dataclass
class _Decision:
    """Settings (dotted key -> value), the reason written above each, and the report line."""

    settings: dict[str, Any]
    comments: dict[str, str]
    reason: str


def _anchor_decision(resized: Percentiles, architecture: str) -> _Decision:
    """Mask R-CNN: anchors doubling from the smallest that fits the 10th-percentile object.
    CondInst: the relative-coordinate scales, times the same factor over the COCO defaults."""
    smallest = _smallest_anchor(resized.p10)
    anchors = [smallest * 2**level for level in range(ANCHOR_LEVELS)]
    factor = smallest / DEFAULT_ANCHOR_SIZES[0]
    small = f"10th-percentile object {resized.p10:.1f} px after resizing"
    if architecture == "condinst":
        scales = [float(s * factor) for s in DEFAULT_SIZES_OF_INTEREST]
        why = (
            f"{small}: objects at {factor:g}x the COCO scale (smallest anchor {smallest} vs {DEFAULT_ANCHOR_SIZES[0]}), "
            f"so the COCO defaults x {factor:g}"
        )
        return _Decision(
            {SIZES_OF_INTEREST_KEY: scales},
            {SIZES_OF_INTEREST_KEY: why},
            f"relative-coordinate scales: {scales}: {why}",
        )
    why = (
        f"{small} -> smallest anchor {smallest}, doubling per level (p2-p6); "
        f"90th percentile {resized.p90:.0f} px vs largest anchor {anchors[-1]}"
    )
    return _Decision({ANCHOR_SIZES_KEY: anchors}, {ANCHOR_SIZES_KEY: why}, f"anchors: {anchors}: {why}")


def _schedule_decision(
    stats: DatasetStatistics,
    budget_minutes: float,
    per_iteration: float,
    ims_per_batch: int,
    default_cost: bool,
    architecture: str,
    mask_head: str,
) -> _Decision:
    """As many iterations as the budget fits, at most :data:`TARGET_EPOCHS` epochs, at least
    :data:`MIN_ITERATIONS`; steps, warmup and checkpoints in proportion."""
    fit = int(budget_minutes * 60.0 // per_iteration)
    for_epochs = math.ceil(TARGET_EPOCHS * stats.num_train_images / ims_per_batch)
    wanted = min(fit, for_epochs)
    max_iter = max(MIN_ITERATIONS, ITERATION_ROUNDING * (wanted // ITERATION_ROUNDING))
    if wanted < MIN_ITERATIONS:
        limit = f"raised to the floor of {MIN_ITERATIONS}"
    elif for_epochs <= fit:
        limit = f"{TARGET_EPOCHS:g} epochs fit in the budget"
    else:
        limit = "capped by the budget"
    epochs = max_iter * ims_per_batch / stats.num_train_images
    schedule = rescaled_schedule(max_iter)
    steps, warmup = schedule["solver.steps"], schedule["solver.warmup_iters"]
    period = min(max_iter, ITERATION_ROUNDING * math.ceil(max_iter / CHECKPOINTS_PER_RUN / ITERATION_ROUNDING))
    estimate = f"{per_iteration:.2f} s/iteration"
    if default_cost and (architecture, mask_head) != ("mask_rcnn", "maskrcnn"):
        estimate += " (the Mask R-CNN estimate: measure this model's and pass it)"
    why = (
        f"{max_iter} iterations x {ims_per_batch} images = {epochs:.1f} epochs of {stats.num_train_images} training "
        f"images, about {max_iter * per_iteration / 60:.0f} min at {estimate}; the {budget_minutes:g}-min budget "
        f"fits {fit}, {TARGET_EPOCHS:g} epochs need {for_epochs} ({limit})"
    )
    settings = {"solver.ims_per_batch": ims_per_batch, **schedule, "solver.checkpoint_period": period}
    comments = {
        "solver.ims_per_batch": "the CPU batch the time estimate assumes",
        "solver.max_iter": why,
        "solver.steps": f"learning-rate drops at {' and '.join(f'{100 * f:.0f} %' for f in STEP_FRACTIONS)} of max_iter",
        "solver.warmup_iters": f"min({MAX_WARMUP_ITERS}, {100 * WARMUP_FRACTION:.0f} % of max_iter)",
        "solver.checkpoint_period": f"about {CHECKPOINTS_PER_RUN} checkpoints per run",
    }
    return _Decision(settings, comments, f"schedule: {why}; steps {steps}, warmup {warmup}, checkpoint every {period}")


def _detections_decision(stats: DatasetStatistics) -> _Decision:
    dense = stats.instances_per_image.p99
    detections = max(MIN_DETECTIONS, math.ceil(DETECTIONS_PER_DENSE_IMAGE * dense))
    why = f"max({MIN_DETECTIONS}, {DETECTIONS_PER_DENSE_IMAGE:g} x {dense:.1f}, the 99th percentile of objects per image)"
    return _Decision(
        {"model.detections_per_image": detections},
        {"model.detections_per_image": why},
        f"detections per image: {detections} = {why}",
    )


def _mask_channels_decision(stats: DatasetStatistics, architecture: str) -> _Decision:
    """Class-agnostic masks for a RoI mask head when there are several categories.

    A class-specific head trains each category's channel on that category's objects only, which
    a CPU schedule of a few hundred iterations does not make up for; the measurement and the cost
    at COCO's full schedule are in docs/design.md ("Recipes fitted to a dataset")."""
    if architecture != "mask_rcnn" or stats.num_categories < 2:
        return _Decision({}, {}, "")
    why = (
        f"one mask channel for all {stats.num_categories} categories: a channel per category would learn from "
        f"about 1/{stats.num_categories} of the objects, too few for a short CPU schedule"
    )
    return _Decision({CLASS_AGNOSTIC_KEY: True}, {CLASS_AGNOSTIC_KEY: why}, f"masks: class-agnostic, {why}")


def _warnings(stats: DatasetStatistics, budget_minutes: float, max_iter: int, per_iteration: float) -> list[str]:
    warnings = []
    if stats.num_instances_with_points < stats.num_instances:
        warnings.append(
            f"{stats.num_instances - stats.num_instances_with_points} of {stats.num_instances} objects carry no "
            "point_coords/point_labels, and the recipe trains on points: add them with `pointsup simulate` "
            "(from masks) or `pointsup annotate`, or train with supervision=masks"
        )
    if max_iter * per_iteration > budget_minutes * 60.0:
        warnings.append(
            f"the floor of {MIN_ITERATIONS} iterations takes about {max_iter * per_iteration / 60:.0f} min, "
            f"more than the {budget_minutes:g}-min budget"
        )
    return warnings


def propose_recipe(
    stats: DatasetStatistics,
    budget_minutes: float = DEFAULT_BUDGET_MINUTES,
    *,
    architecture: Architecture = "mask_rcnn",
    mask_head: MaskHead = "maskrcnn",
    backbone: Backbone = "efficientnet_lite0",
    seconds_per_iteration: IterationCost | None = None,
    ims_per_batch: int = CPU_IMS_PER_BATCH,
) -> Recipe:
    """Fit the input size, anchors, schedule and detections per image to ``stats`` and a budget.

    Args:
        stats: from :func:`dataset_statistics`.
        budget_minutes: training time to fit the schedule into.
        architecture, mask_head, backbone: the model (CondInst ignores ``mask_head``).
        seconds_per_iteration: the cost model (default :func:`pixel_cost_model`, measured on the
            Mask R-CNN Lite0 recipe).
        ims_per_batch: images per iteration.

    Raises:
        ValueError: a budget that is not positive.
    """
    if not budget_minutes > 0:
        raise ValueError(f"the budget must be positive, got {budget_minutes} minutes")
    mask_head = mask_head if architecture == "mask_rcnn" else "maskrcnn"
    cost = seconds_per_iteration or pixel_cost_model()
    aspect = stats.aspect_ratio.p50

    def seconds_at(size: int) -> float:
        return cost(training_pixels(stats, size, long_side_for(size, aspect)))

    def budget_iterations(size: int) -> int:
        return int(budget_minutes * 60.0 // seconds_at(size))

    short, size_reason = _choose_short_side(stats, budget_iterations)
    long, sizes = long_side_for(short, aspect), train_sizes(short)
    size = _Decision(
        {"data.min_size_train": sizes, "data.max_size_train": long, "data.min_size_test": short, "data.max_size_test": long},
        {
            "data.min_size_test": size_reason,
            "data.max_size_test": f"{short} x the median aspect ratio {aspect:.2f}",
            "data.min_size_train": f"{' / '.join(f'{f:g}' for f in TRAIN_SCALE_FACTORS)} x {short}, multiples of {SIZE_STEP}",
            "data.max_size_train": "as at test time",
        },
        f"input size: {size_reason}; long side at most {long} ({short} x median aspect {aspect:.2f}); training short sides {sizes}",
    )
    per_iteration = seconds_at(short)
    anchors = _anchor_decision(resized_object_sizes(stats, short, long), architecture)
    schedule = _schedule_decision(
        stats, budget_minutes, per_iteration, ims_per_batch, seconds_per_iteration is None, architecture, mask_head
    )
    detections = _detections_decision(stats)
    decisions = [size, anchors, schedule, detections, _mask_channels_decision(stats, architecture)]
    settings = {key: value for decision in decisions for key, value in decision.settings.items()}
    return Recipe(
        architecture=architecture,
        mask_head=mask_head,
        backbone=backbone,
        min_size_train=sizes,
        max_size_train=long,
        min_size_test=short,
        max_size_test=long,
        anchor_sizes=settings.get(ANCHOR_SIZES_KEY),
        condinst_sizes_of_interest=settings.get(SIZES_OF_INTEREST_KEY),
        detections_per_image=settings["model.detections_per_image"],
        ims_per_batch=ims_per_batch,
        max_iter=settings["solver.max_iter"],
        steps=settings["solver.steps"],
        warmup_iters=settings["solver.warmup_iters"],
        checkpoint_period=settings["solver.checkpoint_period"],
        seconds_per_iteration=per_iteration,
        epochs=settings["solver.max_iter"] * ims_per_batch / stats.num_train_images,
        class_agnostic_masks=settings.get(CLASS_AGNOSTIC_KEY),
        reasons=[decision.reason for decision in decisions if decision.reason],
        comments={key: text for decision in decisions for key, text in decision.comments.items()},
        warnings=_warnings(stats, budget_minutes, settings["solver.max_iter"], per_iteration),
    )
