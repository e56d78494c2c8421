"""AP against the fraction of annotated data, and the hours each form needs to reach a target
AP as the spotting time varies (the paper's Figure 9).

A curves file (written by ``benchmarks/budget.py``) holds one run per (form, data fraction)::

    {"dataset": "synthetic", "images": 72, "instances": 480,
     "costs": {"spotting_s": 43.2, "box_s": 7.0, "point_s": 0.9, "polygon_s": 79.2},
     "runs": [{"form": "masks", "fraction": 0.25, "instances": 120, "annotation_hours": 4.08,
               "segm_AP": 10.1, "bbox_AP": 20.0}, ...]}

Hours to reach a target with a form are ``fraction × instances × (spotting + form's own cost)
/ 3600``, where ``fraction`` is the smallest data fraction whose AP reaches the target. Both
forms' totals are linear in the spotting time, so masks and P10 cross at most once.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointsup.analysis.cost import (
    COCO_SPOTTING_S,
    SECONDS_PER_HOUR,
    AnnotationCosts,
    canonical_form,
)
from pointsup.errors import PointsupError


class CurvesFormatError(PointsupError, ValueError):
    """A curves file that cannot be used; the message names the file and the bad entry."""


@dataclass(frozen=True)
class BudgetRun:
    """One training run: ``form`` annotations on ``fraction`` of the training instances."""

    form: str
    fraction: float
    instances: int
    annotation_hours: float
    segm_AP: float
    bbox_AP: float | None = None


@dataclass(frozen=True)
class BudgetCurves:
    """The runs of a budget benchmark on a dataset of ``images`` images, ``instances`` instances."""

    dataset: str
    images: int
    instances: int
    costs: AnnotationCosts
    runs: tuple[BudgetRun, ...]

    def forms(self) -> list[str]:
        """The forms measured, in order of first appearance."""
        return list(dict.fromkeys(run.form for run in self.runs))

    def points(self, form: str, x: str = "fraction") -> tuple[np.ndarray, np.ndarray]:
        """(x values, mask APs) of ``form`` sorted by fraction; runs repeated at one fraction
        (several seeds) are averaged. ``x``: ``"fraction"`` or ``"annotation_hours"``."""
        name = canonical_form(form)
        by_fraction: dict[float, list[BudgetRun]] = {}
        for run in self.runs:
            if run.form == name:
                by_fraction.setdefault(run.fraction, []).append(run)
        if not by_fraction:
            raise KeyError(f"no runs with form {name!r} (measured: {', '.join(self.forms()) or 'none'})")
        keys = sorted(by_fraction)
        xs = np.array([np.mean([getattr(r, x) for r in by_fraction[k]]) for k in keys], dtype=np.float64)
        aps = np.array([np.mean([r.segm_AP for r in by_fraction[k]]) for k in keys], dtype=np.float64)
        return xs, aps

    def ap_curve(self, form: str) -> tuple[np.ndarray, np.ndarray]:
        """(fractions (K,), mask APs (K,)) of ``form``, sorted by fraction."""
        return self.points(form, "fraction")


def _number(value: Any, low: float, high: float, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise CurvesFormatError(f"{where}: {name} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _count(value: Any, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CurvesFormatError(f"{where}: {name} must be an integer >= 0, got {value!r}")
    return value


def _parse_run(entry: Any, where: str) -> BudgetRun:
    if not isinstance(entry, dict):
        raise CurvesFormatError(f"{where}: must be an object, got {type(entry).__name__}")
    missing = [key for key in ("form", "fraction", "instances", "annotation_hours", "segm_AP") if key not in entry]
    if missing:
        raise CurvesFormatError(f"{where}: missing {', '.join(missing)}")
    try:
        form = canonical_form(entry["form"])
    except ValueError as exc:
        raise CurvesFormatError(f"{where}: {exc}") from None
    fraction = _number(entry["fraction"], 0.0, 1.0, where, "fraction")
    if fraction == 0.0:
        raise CurvesFormatError(f"{where}: fraction must be > 0 (AP at fraction 0 is 0 by definition)")
    bbox = entry.get("bbox_AP")
    return BudgetRun(
        form,
        fraction,
        _count(entry["instances"], where, "instances"),
        _number(entry["annotation_hours"], 0.0, math.inf, where, "annotation_hours"),
        _number(entry["segm_AP"], 0.0, 100.0, where, "segm_AP"),
        None if bbox is None else _number(bbox, 0.0, 100.0, where, "bbox_AP"),
    )


def curves_from_dict(data: Any, source: str = "<memory>") -> BudgetCurves:
    """Validate a decoded curves file; errors name ``source`` and the bad entry."""
    if not isinstance(data, dict):
        raise CurvesFormatError(f"{source}: the top level must be a JSON object")
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise CurvesFormatError(f"{source}: 'runs' must be a non-empty list")
    try:
        costs = AnnotationCosts(**data.get("costs", {}))
    except (TypeError, ValueError) as exc:
        raise CurvesFormatError(f"{source}: costs: {exc}") from None
    parsed = []
    for index, entry in enumerate(runs):
        label = f"form {entry.get('form')!r}, fraction {entry.get('fraction')!r}" if isinstance(entry, dict) else "no form"
        parsed.append(_parse_run(entry, f"{source}: run #{index} ({label})"))
    return BudgetCurves(
        str(data.get("dataset", "")),
        _count(data.get("images"), source, "images"),
        _count(data.get("instances"), source, "instances"),
        costs,
        tuple(parsed),
    )


def load_curves(path: str | os.PathLike[str]) -> BudgetCurves:
    """Read and validate a curves JSON file."""
    from pointsup.points.format import PointFormatError, read_coco_json

    try:
        data = read_coco_json(path)
    except PointFormatError as exc:
        raise CurvesFormatError(f"{path}: {'; '.join(exc.problems)}") from None
    return curves_from_dict(data, str(path))


def fraction_for_target(
    fractions: Sequence[float] | np.ndarray, aps: Sequence[float] | np.ndarray, target_ap: float
) -> float | None:
    """The smallest data fraction at which AP reaches ``target_ap``, or None if it never does.

    AP is taken as the running maximum of the measured points (K,) joined by straight lines,
    starting from AP 0 at fraction 0 (so a target <= 0 needs no data).
    """
    if not math.isfinite(target_ap):
        raise ValueError(f"target AP must be finite, got {target_ap}")
    order = np.argsort(np.asarray(fractions, dtype=np.float64), kind="stable")
    xs = np.concatenate([[0.0], np.asarray(fractions, dtype=np.float64)[order]])
    best = np.maximum.accumulate(np.concatenate([[0.0], np.asarray(aps, dtype=np.float64)[order]]))
    if target_ap <= best[0]:
        return 0.0
    reached = np.flatnonzero(best >= target_ap)
    if not len(reached):
        return None
    i = int(reached[0])  # best[i - 1] < target <= best[i]
    t = (target_ap - best[i - 1]) / (best[i] - best[i - 1])
    return float(xs[i - 1] + t * (xs[i] - xs[i - 1]))


def _fraction_of(curves: BudgetCurves, form: str, target_ap: float) -> float | None:
    return fraction_for_target(*curves.ap_curve(form), target_ap)


def time_to_target(
    curves: BudgetCurves,
    form: str,
    target_ap: float,
    spotting_s_values: np.ndarray,
    costs: AnnotationCosts | None = None,
    instances: int | None = None,
) -> np.ndarray:
    """Hours (S,) to reach ``target_ap`` with ``form`` for each spotting time (S,) in seconds
    per instance; NaN where the form never reaches the target. ``costs`` and ``instances``
    (the dataset the fraction applies to) default to the curves file's."""
    costs = costs or curves.costs
    spotting = np.asarray(spotting_s_values, dtype=np.float64)
    fraction = _fraction_of(curves, form, target_ap)
    if fraction is None:
        return np.full(spotting.shape, np.nan)
    total = curves.instances if instances is None else instances
    return fraction * total * (spotting + costs.form_seconds(form)) / SECONDS_PER_HOUR


def crossover_spotting_time(
    curves: BudgetCurves,
    target_ap: float,
    spotting_range: tuple[float, float] = (0.0, 250.0),
    forms: tuple[str, str] = ("masks", "P10"),
    costs: AnnotationCosts | None = None,
) -> float | None:
    """The spotting time (s per instance) at which the two forms need equal hours to reach
    ``target_ap``; None when either never reaches it, the lines are parallel, or the crossing
    lies outside ``spotting_range``. (Independent of the instance count.)"""
    costs = costs or curves.costs
    slopes, offsets = [], []
    for form in forms:
        fraction = _fraction_of(curves, form, target_ap)
        if fraction is None:
            return None
        slopes.append(fraction)  # hours ∝ fraction × (s + own cost)
        offsets.append(fraction * costs.form_seconds(form))
    if math.isclose(slopes[0], slopes[1], rel_tol=1e-12, abs_tol=0.0):
        return None
    crossing = (offsets[1] - offsets[0]) / (slopes[0] - slopes[1])
    low, high = spotting_range
    return crossing if low <= crossing <= high else None


def _png(figure: Any, path: str | os.PathLike[str] | None) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from pointsup.utils.atomic import write_bytes_atomic

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    payload = buffer.getvalue()
    if path is not None:
        write_bytes_atomic(path, payload)
    return payload


def plot_time_to_target(
    curves: BudgetCurves,
    target_ap: float,
    path: str | os.PathLike[str] | None = None,
    max_spotting_s: float = 250.0,
    costs: AnnotationCosts | None = None,
    instances: int | None = None,
) -> bytes:
    """Figure 9: hours to reach ``target_ap`` (y) against spotting seconds per instance (x),
    one line per form, a dotted line at COCO's 43.2 s. Returns the PNG (also written to
    ``path`` atomically when given)."""
    from matplotlib.figure import Figure

    spotting = np.linspace(0.0, max_spotting_s, 201)
    total = curves.instances if instances is None else instances
    figure = Figure(figsize=(6.4, 4.4), dpi=100)
    axes = figure.add_subplot()
    for form in curves.forms():
        hours = time_to_target(curves, form, target_ap, spotting, costs, total)
        if np.isnan(hours).all():
            axes.plot([], [], label=f"{form} (never reaches {target_ap:g} AP)")
        else:
            axes.plot(spotting, hours, label=form)
    axes.axvline(COCO_SPOTTING_S, linestyle=":", color="gray", label=f"COCO pipeline ({COCO_SPOTTING_S:g} s)")
    axes.set_xlim(0.0, max_spotting_s)
    axes.set_ylim(bottom=0.0)
    axes.set_xlabel("spotting + categorisation (s per instance)")
    axes.set_ylabel("annotation hours to reach target")
    axes.set_title(f"time to reach {target_ap:g} mask AP ({curves.dataset or 'dataset'}, {total:,} instances)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _png(figure, path)


def plot_ap_vs_hours(curves: BudgetCurves, path: str | os.PathLike[str] | None = None) -> bytes:
    """Mask AP (y) against annotation hours (x), one line with markers per form. Returns the
    PNG (also written to ``path`` atomically when given)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), dpi=100)
    axes = figure.add_subplot()
    for form in curves.forms():
        hours, aps = curves.points(form, "annotation_hours")
        axes.plot(hours, aps, marker="o", label=form)
    axes.set_xlabel("annotation hours")
    axes.set_ylabel("mask AP")
    axes.set_title(f"mask AP against annotation time ({curves.dataset or 'dataset'})")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _png(figure, path)
