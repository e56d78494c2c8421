"""Subsets of a COCO dataset that fit an annotation budget.

Images are the unit an annotator works on: they are visited in a seeded random order and
taken while the running annotation time (non-crowd instances × seconds per instance) stays
within the budget. The subset is a *prefix* of that order, so for one seed a larger budget
always yields a superset of a smaller budget's images. Images without non-crowd instances
are left out: they add nothing to training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Subset:
    """The chosen COCO dict and what it costs: ``images`` images holding ``instances``
    non-crowd instances, annotated in ``seconds``."""

    coco: dict[str, Any]
    images: int
    instances: int
    seconds: float


def _instances_per_image(coco: dict[str, Any]) -> dict[Any, int]:
    """Non-crowd annotations per image id, for every image of ``coco``."""
    images, annotations = coco.get("images"), coco.get("annotations")
    if not isinstance(images, list) or not isinstance(annotations, list):
        raise ValueError("a COCO dict needs 'images' and 'annotations' lists")
    counts: dict[Any, int] = {}
    for index, image in enumerate(images):
        if not isinstance(image, dict) or "id" not in image:
            raise ValueError(f"image #{index} has no id")
        counts[image["id"]] = 0
    for index, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise ValueError(f"annotation #{index} has no image_id")
        if not ann.get("iscrowd", 0) and ann["image_id"] in counts:
            counts[ann["image_id"]] += 1
    return counts


def visiting_order(coco: dict[str, Any], seed: int) -> list[tuple[Any, int]]:
    """(image id, non-crowd instances) of the images with instances, in the seeded random
    order the budget is spent in (independent of the order of images in the file)."""
    counts = _instances_per_image(coco)
    eligible = sorted((image_id for image_id, count in counts.items() if count > 0), key=lambda i: (isinstance(i, str), i))
    permutation = np.random.default_rng(seed).permutation(len(eligible))
    return [(eligible[i], counts[eligible[i]]) for i in permutation]


def _validate(seconds_per_instance: float, budget: float) -> None:
    if not math.isfinite(seconds_per_instance) or seconds_per_instance < 0:
        raise ValueError(f"seconds per instance must be finite and >= 0, got {seconds_per_instance}")
    if math.isnan(budget) or budget < 0:
        raise ValueError(f"budget must be >= 0 seconds, got {budget}")


def _take(coco: dict[str, Any], order: list[tuple[Any, int]], seconds_per_instance: float, budget: float) -> Subset:
    # the running time of the first k images, computed from whole instance counts so that
    # equal prefixes cost exactly the same whatever the budget
    cumulative = np.cumsum([count for _, count in order], dtype=np.int64)
    taken = int(np.searchsorted(cumulative * seconds_per_instance, budget, side="right"))
    chosen = {image_id for image_id, _ in order[:taken]}
    instances = int(cumulative[taken - 1]) if taken else 0
    subset = {key: value for key, value in coco.items() if key not in ("images", "annotations")}
    subset["images"] = [image for image in coco["images"] if image["id"] in chosen]
    subset["annotations"] = [ann for ann in coco["annotations"] if ann["image_id"] in chosen]
    return Subset(subset, len(chosen), instances, instances * seconds_per_instance)


def budget_subset(coco: dict[str, Any], seconds_per_instance: float, budget_seconds: float, seed: int) -> Subset:
    """The images (with all their annotations, crowd ones included; all categories and other
    top-level keys kept) that fit ``budget_seconds`` when each non-crowd instance costs
    ``seconds_per_instance``: the longest prefix of :func:`visiting_order` within budget."""
    _validate(seconds_per_instance, budget_seconds)
    return _take(coco, visiting_order(coco, seed), seconds_per_instance, budget_seconds)


def nested_subsets(
    coco: dict[str, Any], seconds_per_instance: float, budgets_seconds: Sequence[float], seed: int
) -> list[Subset]:
    """:func:`budget_subset` for each budget (one visiting order for all): for budgets
    ``a <= b`` the subset for ``a`` is contained in the subset for ``b``."""
    order = visiting_order(coco, seed)
    subsets = []
    for budget in budgets_seconds:
        _validate(seconds_per_instance, budget)
        subsets.append(_take(coco, order, seconds_per_instance, budget))
    return subsets
