"""Budget subsets: a seeded greedy prefix of images, nested across budgets, never over budget."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointsup.analysis.subsets import (
    Subset,
    budget_subset,
    nested_subsets,
    visiting_order,
)


def make_coco(layout: list[tuple[int, int]]) -> dict:
    """A COCO dict with one image per (non-crowd instances, crowd instances) pair."""
    images, annotations = [], []
    for image_id, (instances, crowd) in enumerate(layout, start=1):
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 32, "height": 32})
        for k in range(instances + crowd):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1 + k % 2,
                                "bbox": [0, 0, 4, 4], "iscrowd": int(k >= instances)})
    return {"info": {"description": "test"}, "images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


layouts = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), min_size=0, max_size=25)
costs = st.floats(0.5, 200.0).map(lambda s: round(s, 2))


def _non_crowd(annotations: list[dict]) -> int:
    return sum(not a["iscrowd"] for a in annotations)


def _check(coco: dict, subset: Subset, per_instance: float, budget: float, seed: int) -> None:
    chosen = {image["id"] for image in subset.coco["images"]}
    assert subset.images == len(chosen)
    assert subset.coco["annotations"] == [a for a in coco["annotations"] if a["image_id"] in chosen]  # crowd kept
    assert subset.coco["categories"] == coco["categories"] and subset.coco["info"] == coco["info"]
    assert subset.instances == _non_crowd(subset.coco["annotations"])
    assert subset.seconds == subset.instances * per_instance <= budget
    order = visiting_order(coco, seed)
    assert chosen == {image_id for image_id, _ in order[:subset.images]}  # a prefix of the visiting order
    assert all(count > 0 for _, count in order)  # images without non-crowd instances are never taken
    if subset.images < len(order):  # greedy prefix: the next image would break the budget
        assert (subset.instances + order[subset.images][1]) * per_instance > budget


@given(layout=layouts, per_instance=costs, budgets=st.tuples(st.floats(0, 5000), st.floats(0, 5000)), seed=st.integers(0, 2**32 - 1))
def test_subsets_are_within_budget_greedy_and_nested(layout: list[tuple[int, int]], per_instance: float,
                                                    budgets: tuple[float, float], seed: int) -> None:
    coco = make_coco(layout)
    small, large = sorted(budgets)
    subsets = [budget_subset(coco, per_instance, budget, seed) for budget in (small, large)]
    for subset, budget in zip(subsets, (small, large)):
        _check(coco, subset, per_instance, budget, seed)
    small_ids, large_ids = ({image["id"] for image in s.coco["images"]} for s in subsets)
    assert small_ids <= large_ids
    assert nested_subsets(coco, per_instance, [small, large], seed) == subsets


def test_zero_and_unlimited_budgets() -> None:
    coco = make_coco([(3, 1), (0, 2), (5, 0), (1, 0)])
    empty = budget_subset(coco, 10.0, 0.0, seed=0)
    assert (empty.images, empty.instances, empty.seconds) == (0, 0, 0.0) and empty.coco["images"] == []
    everything = budget_subset(coco, 10.0, math.inf, seed=0)
    assert {image["id"] for image in everything.coco["images"]} == {1, 3, 4}  # image 2 has crowd only
    assert everything.instances == 9 and everything.seconds == 90.0


def test_seed_decides_the_order_not_the_file_order() -> None:
    coco = make_coco([(k % 4 + 1, k % 2) for k in range(30)])
    shuffled = dict(coco, images=random.Random(1).sample(coco["images"], len(coco["images"])))
    first, again, reordered = (budget_subset(c, 1.0, 20.0, seed=7) for c in (coco, coco, shuffled))
    assert first == again
    assert {i["id"] for i in first.coco["images"]} == {i["id"] for i in reordered.coco["images"]}
    orders = {tuple(image_id for image_id, _ in visiting_order(coco, seed)) for seed in range(5)}
    assert len(orders) == 5


@pytest.mark.parametrize("per_instance, budget", [(-1.0, 10.0), (math.nan, 10.0), (math.inf, 10.0), (1.0, -5.0), (1.0, math.nan)])
def test_invalid_costs_and_budgets(per_instance: float, budget: float) -> None:
    with pytest.raises(ValueError, match="seconds per instance|budget"):
        budget_subset(make_coco([(1, 0)]), per_instance, budget, seed=0)


def test_malformed_coco_is_refused() -> None:
    with pytest.raises(ValueError, match="'images' and 'annotations'"):
        budget_subset({"images": []}, 1.0, 10.0, seed=0)
    with pytest.raises(ValueError, match="annotation #0 has no image_id"):
        budget_subset({"images": [{"id": 1}], "annotations": [{"id": 3}]}, 1.0, 10.0, seed=0)
