"""AP-vs-data-fraction curves, time to a target AP (Figure 9), the crossover and the plots."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from PIL import Image

from pointsup.analysis.budget_curves import (
    CurvesFormatError,
    crossover_spotting_time,
    curves_from_dict,
    fraction_for_target,
    load_curves,
    plot_ap_vs_hours,
    plot_time_to_target,
    time_to_target,
)
from pointsup.analysis.cost import AnnotationCosts


def curves_dict(runs: dict[str, list[tuple[float, float]]], instances: int = 480, costs: AnnotationCosts | None = None) -> dict:
    """A curves file as benchmarks/budget.py writes it, from (fraction, mask AP) per form."""
    costs = costs or AnnotationCosts()
    return {
        "dataset": "synthetic", "images": 72, "instances": instances, "costs": costs.to_dict(),
        "runs": [{"form": form, "fraction": f, "instances": round(f * instances),
                  "annotation_hours": f * instances * costs.seconds_per_instance(form) / 3600, "segm_AP": ap, "bbox_AP": ap + 5}
                 for form, points in runs.items() for f, ap in points],
    }


#: masks learn faster per instance than P10, as in the paper
FIGURE9_RUNS = {"masks": [(0.25, 12.0), (0.5, 20.0), (1.0, 26.0)], "P10": [(0.25, 9.0), (0.5, 16.0), (1.0, 24.0)]}


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_load_curves_sorts_and_averages(tmp_path: Path) -> None:
    data = curves_dict({"P10": [(1.0, 24.0), (0.25, 9.0), (0.5, 15.0), (0.5, 17.0)], "masks": [(0.5, 20.0)]})
    data["runs"][0]["form"] = "p10"
    curves = load_curves(_write(tmp_path / "curves.json", data))
    assert curves.forms() == ["P10", "masks"] and curves.instances == 480 and curves.costs == AnnotationCosts()
    fractions, aps = curves.ap_curve("P10")
    np.testing.assert_array_equal(fractions, [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(aps, [9.0, 16.0, 24.0])
    with pytest.raises(KeyError, match="boxes"):
        curves.ap_curve("boxes")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["runs"][1].pop("segm_AP"), r"run #1 \(form 'masks', fraction 0.5\): missing segm_AP"),
    (lambda d: d["runs"][0].update(form="lines"), "run #0.*unknown annotation form 'lines'"),
    (lambda d: d["runs"][2].update(fraction=1.5), r"run #2.*fraction must be a number in \[0, 1\]"),
    (lambda d: d["runs"][2].update(fraction=0), "run #2.*fraction must be > 0"),
    (lambda d: d["runs"][0].update(segm_AP="high"), "run #0.*segm_AP"),
    (lambda d: d["runs"].__setitem__(1, 7), "run #1 .*must be an object"),
    (lambda d: d.update(runs=[]), "'runs' must be a non-empty list"),
    (lambda d: d.update(instances=-3), "instances must be an integer"),
    (lambda d: d["costs"].update(box_s=-1), "costs: box_s"),
])
def test_bad_curves_files_name_the_file_and_entry(tmp_path: Path, edit, message: str) -> None:
    data = curves_dict({"masks": [(0.25, 10.0), (0.5, 20.0), (1.0, 25.0)]})
    edit(data)
    path = _write(tmp_path / "curves.json", data)
    with pytest.raises(CurvesFormatError, match=message) as info:
        load_curves(path)
    assert str(info.value).startswith(str(path))


def test_unreadable_curves_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "curves.json"
    path.write_text("{")
    with pytest.raises(CurvesFormatError, match="invalid JSON") as info:
        load_curves(path)
    assert str(path) in str(info.value)


def test_fraction_for_target_interpolates_from_the_origin() -> None:
    assert fraction_for_target([0.5, 1.0], [10.0, 20.0], 15.0) == pytest.approx(0.75)
    assert fraction_for_target([0.5, 1.0], [10.0, 20.0], 5.0) == pytest.approx(0.25)  # between (0, 0) and (0.5, 10)
    assert fraction_for_target([0.5, 1.0], [10.0, 20.0], 0.0) == 0.0
    assert fraction_for_target([0.5, 1.0], [10.0, 20.0], 20.5) is None
    # a dip after a peak does not make the target reachable earlier or later: running maximum
    assert fraction_for_target([0.25, 0.5, 1.0], [12.0, 8.0, 20.0], 12.0) == pytest.approx(0.25)
    assert fraction_for_target([1.0, 0.25], [20.0, 12.0], 16.0) == pytest.approx(0.625)  # unsorted input
    with pytest.raises(ValueError, match="finite"):
        fraction_for_target([0.5], [10.0], float("nan"))


# fractions on a 1/1000 grid: measured fractions are distinct data subsets, never a rounding error apart
curve_points = st.lists(st.tuples(st.integers(10, 1000).map(lambda k: k / 1000), st.floats(0.0, 60.0)), min_size=1,
                        max_size=8, unique_by=lambda p: p[0])


@given(points=curve_points, targets=st.tuples(st.floats(0.01, 70.0), st.floats(0.01, 70.0)))
def test_fraction_for_target_properties(points: list[tuple[float, float]], targets: tuple[float, float]) -> None:
    fractions, aps = (np.array(v) for v in zip(*points))
    order = np.argsort(fractions, kind="stable")
    xs = np.concatenate([[0.0], fractions[order]])
    best = np.maximum.accumulate(np.concatenate([[0.0], aps[order]]))
    low, high = sorted(targets)
    results = [fraction_for_target(fractions, aps, t) for t in (low, high)]
    for target, result in zip((low, high), results):
        if target > best[-1]:
            assert result is None
            continue
        first = int(np.argmax(best >= target))  # first measured point reaching the target
        assert xs[first - 1] <= result <= xs[first]
        assert np.interp(result, xs, best) == pytest.approx(target, rel=1e-9, abs=1e-9)
    if results[1] is not None:
        assert results[0] is not None and results[0] <= results[1]


def test_time_to_target_follows_the_formula() -> None:
    curves = curves_from_dict(curves_dict(FIGURE9_RUNS))
    spotting = np.array([0.0, 43.2, 237.0])
    costs = AnnotationCosts()
    for form, own in (("masks", costs.polygon_s), ("P10", costs.box_s + 10 * costs.point_s)):
        fraction = fraction_for_target(*curves.ap_curve(form), 18.0)
        expected = fraction * curves.instances * (spotting + own) / 3600
        np.testing.assert_allclose(time_to_target(curves, form, 18.0, spotting), expected, rtol=1e-12)
        scaled = time_to_target(curves, form, 18.0, spotting, costs, instances=10 * curves.instances)
        np.testing.assert_allclose(scaled, 10 * expected, rtol=1e-12)
    assert np.isnan(time_to_target(curves, "P10", 25.0, spotting)).all()


@given(target=st.floats(1.0, 23.0), box=st.floats(0.0, 20.0), polygon=st.floats(20.0, 200.0))
def test_crossover_is_where_both_forms_cost_the_same(target: float, box: float, polygon: float) -> None:
    costs = AnnotationCosts(box_s=box, polygon_s=polygon)
    curves = curves_from_dict(curves_dict(FIGURE9_RUNS))
    crossing = crossover_spotting_time(curves, target, (0.0, 1e6), costs=costs)
    f_masks, f_p10 = (fraction_for_target(*curves.ap_curve(form), target) for form in ("masks", "P10"))
    assume(abs(f_masks - f_p10) > 1e-9)
    if crossing is None:  # the lines cross at a negative spotting time or beyond 1e6 s
        at = np.array([0.0, 1e6])
        difference = time_to_target(curves, "masks", target, at, costs) - time_to_target(curves, "P10", target, at, costs)
        assert np.sign(difference[0]) == np.sign(difference[1])
        return
    at = np.array([crossing])
    masks_hours, p10_hours = (time_to_target(curves, form, target, at, costs) for form in ("masks", "P10"))
    assert np.isclose(masks_hours, p10_hours, rtol=1e-9)
    later = np.array([crossing + 10.0])  # masks need less data, so they win once spotting dominates
    assert time_to_target(curves, "masks", target, later, costs) < time_to_target(curves, "P10", target, later, costs)


def test_crossover_none_cases() -> None:
    curves = curves_from_dict(curves_dict(FIGURE9_RUNS))
    crossing = crossover_spotting_time(curves, 18.0)
    assert crossing is not None
    assert crossover_spotting_time(curves, 18.0, (0.0, crossing / 2)) is None  # out of range
    assert crossover_spotting_time(curves, 25.0) is None  # P10 never reaches 25 AP
    same = curves_from_dict(curves_dict({"masks": FIGURE9_RUNS["masks"], "P10": FIGURE9_RUNS["masks"]}))
    assert crossover_spotting_time(same, 18.0) is None  # parallel lines


def _assert_png(payload: bytes, path: Path) -> None:
    assert path.read_bytes() == payload and len(payload) > 0
    with Image.open(io.BytesIO(payload)) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_plots_are_written_as_png(tmp_path: Path) -> None:
    runs = dict(FIGURE9_RUNS, P1=[(0.5, 3.0), (1.0, 5.0)])  # P1 never reaches the target: legend only
    curves = curves_from_dict(curves_dict(runs))
    target_path = tmp_path / "plots" / "time_to_target.png"
    _assert_png(plot_time_to_target(curves, 18.0, target_path, max_spotting_s=100.0), target_path)
    hours_path = tmp_path / "ap_vs_hours.png"
    _assert_png(plot_ap_vs_hours(curves, hours_path), hours_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ap_vs_hours.png", "plots", "time_to_target.png"]  # no temporaries left
