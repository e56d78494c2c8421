"""The annotation cost model: the paper's Table 7, the formula under other costs, counting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pointsup.analysis.cost import (
    COCO2017_TRAIN,
    PRESETS,
    AnnotationCosts,
    annotation_time,
    canonical_form,
    count_instances,
    format_cost_table,
    forms_to_list,
    points_in_form,
)
from pointsup.points.format import PointFormatError

seconds = st.floats(min_value=0.0, max_value=1000.0, allow_nan=False).map(lambda s: round(s, 3))  # ms resolution
costs_strategy = st.builds(AnnotationCosts, spotting_s=seconds, box_s=seconds, point_s=seconds, polygon_s=seconds)


def test_table7_whole_days_for_coco_train2017() -> None:
    """The paper: boxes 493 days, P10 582 days, masks 1204 days (118,287 images, 849,949 instances)."""
    assert PRESETS["coco2017-train"] == COCO2017_TRAIN
    assert (COCO2017_TRAIN.images, COCO2017_TRAIN.instances) == (118_287, 849_949)
    whole_days = {form: annotation_time(form, COCO2017_TRAIN.instances).whole_days for form in ("boxes", "P10", "masks")}
    assert whole_days == {"boxes": 493, "P10": 582, "masks": 1204}


def test_table7_seconds_arithmetic() -> None:
    n = COCO2017_TRAIN.instances
    expected = {"boxes": (43.2 + 7.0) * n, "P10": (43.2 + 7.0 + 10 * 0.9) * n, "masks": (43.2 + 79.2) * n}
    for form, total in expected.items():
        cost = annotation_time(form, n)
        assert cost.seconds == pytest.approx(total, rel=1e-12)
        assert cost.hours == pytest.approx(total / 3600, rel=1e-12)
        assert cost.days == pytest.approx(total / 86400, rel=1e-12)
        assert cost.whole_days == math.floor(cost.days) and cost.whole_days < cost.days
        assert cost.derivation.startswith(f"{form}: (43.2 spotting + ")
        assert f"× {n:,} instances = {cost.seconds:,.0f} s = {cost.hours:,.1f} h = {cost.days:,.1f} days" in cost.derivation
    assert "10 × 0.9 points" in annotation_time("P10", n).derivation
    assert "79.2 polygon" in annotation_time("masks", n).derivation
    assert "box" not in annotation_time("masks", n).derivation


@given(costs=costs_strategy, instances=st.integers(0, 10**7), points=st.integers(1, 100))
def test_custom_costs_follow_the_formula(costs: AnnotationCosts, instances: int, points: int) -> None:
    per_form = {
        "boxes": costs.spotting_s + costs.box_s,
        f"P{points}": costs.spotting_s + costs.box_s + points * costs.point_s,
        "masks": costs.spotting_s + costs.polygon_s,
    }
    for form, per_instance in per_form.items():
        cost = annotation_time(form, instances, costs)
        assert cost.seconds_per_instance == pytest.approx(per_instance, rel=1e-12)
        assert cost.seconds == pytest.approx(per_instance * instances, rel=1e-12, abs=1e-9)
        assert cost.whole_days <= cost.days < cost.whole_days + 1
        assert costs.form_seconds(form) == pytest.approx(per_instance - costs.spotting_s, rel=1e-12, abs=1e-12)


@given(costs=costs_strategy, instances=st.integers(1, 10**7), n=st.integers(1, 50), more=st.integers(1, 50))
def test_more_points_never_cost_less(costs: AnnotationCosts, instances: int, n: int, more: int) -> None:
    fewer_cost = annotation_time(f"P{n}", instances, costs).seconds
    more_cost = annotation_time(f"P{n + more}", instances, costs).seconds
    assert more_cost >= fewer_cost
    assert annotation_time("boxes", instances, costs).seconds <= fewer_cost
    if costs.point_s > 0:
        assert more_cost > fewer_cost


@pytest.mark.parametrize("field", ["spotting_s", "box_s", "point_s", "polygon_s"])
@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "7", True, None])
def test_invalid_costs_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        AnnotationCosts(**{field: value})


@pytest.mark.parametrize("form", ["P0", "P", "p-1", "polygons", "box", "P10 ", "", "Q10", "P1.5"])
def test_unknown_forms_are_refused(form: str) -> None:
    with pytest.raises(ValueError, match="unknown annotation form"):
        AnnotationCosts().seconds_per_instance(form)


def test_form_names() -> None:
    assert canonical_form("p5") == "P5" and canonical_form("P010") == "P10"
    assert points_in_form("p7") == 7 and points_in_form("boxes") is None and points_in_form("masks") is None
    assert AnnotationCosts().seconds_per_instance("p5") == AnnotationCosts().seconds_per_instance("P5")
    assert forms_to_list([10, 1, 10]) == ["boxes", "P1", "P10", "masks"]
    with pytest.raises(ValueError, match="instances"):
        annotation_time("P10", -1)


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_count_instances_skips_crowd(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 10} for i in (1, 2, 3)]
    annotations = [{"id": k, "image_id": 1 + k % 3, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": int(k in (2, 5))}
                   for k in range(7)]
    annotations.append({"id": 7, "image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2]})  # iscrowd absent: not crowd
    path = _write(tmp_path / "train.json", {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]})
    assert count_instances(path) == (3, 6)


_ONE_IMAGE = [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}]
_THING = [{"id": 1, "name": "thing"}]


@pytest.mark.parametrize("data, problem", [
    ({"images": [], "categories": []}, "missing top-level field 'annotations'"),
    ({"images": {}, "annotations": [], "categories": []}, "'images' must be a list"),
    ({"images": [], "annotations": [3], "categories": []}, "annotation #0 \\(no id\\): must be an object"),
    ({"images": _ONE_IMAGE, "categories": _THING,
      "annotations": [{"id": 2**70, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]}, "beyond 64 bits"),
    ({"images": _ONE_IMAGE, "categories": _THING,
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": "no"}]}, "iscrowd"),
    ([1, 2], "top level"),
])
def test_count_instances_errors_name_the_file(tmp_path: Path, data: object, problem: str) -> None:
    path = _write(tmp_path / "bad.json", data)
    with pytest.raises(PointFormatError, match=problem) as info:
        count_instances(path)
    assert str(path) in str(info.value)


def test_count_instances_invalid_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(PointFormatError, match="invalid JSON") as info:
        count_instances(path)
    assert str(path) in str(info.value)


def test_format_cost_table_lists_rows_and_derivations() -> None:
    costs = AnnotationCosts(spotting_s=10.0)
    rows = [annotation_time(form, 1234, costs) for form in forms_to_list([3, 10])]
    table = format_cost_table(rows, 99, 1234)
    lines = table.splitlines()
    assert "99 images, 1,234 instances" in lines[0]
    body = [line.split() for line in lines[3:3 + len(rows)]]
    assert [cells[0] for cells in body] == ["boxes", "P3", "P10", "masks"]
    for cells, row in zip(body, rows):
        assert int(cells[4].replace(",", "")) == row.whole_days
        relative = 100 * row.seconds_per_instance / costs.seconds_per_instance("masks")
        assert cells[5] == f"{relative:.0f}"
    for row in rows:
        assert row.derivation in lines
