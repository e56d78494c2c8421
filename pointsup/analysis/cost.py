"""The annotation cost model (paper §3.3.3 and Appendix D, Table 7).

Every annotation form pays for *spotting and categorising* each instance (43.2 s per instance
in COCO's pipeline; other pipelines spend 2 to 237 s), then for its own labels:

* ``boxes``: a box by extreme clicking (7 s);
* ``P{N}``: a box and N object/background point labels (0.9 s each);
* ``masks``: a polygon (79.2 s); a polygon needs no box.

For COCO train2017 (849,949 instances) this gives the paper's 493 days for boxes, 582 for P10
and 1204 for masks, where *whole days* are truncated (the exact values are 493.8, 582.4 and
1204.1 days).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: spotting + categorisation per instance in COCO's pipeline, seconds
COCO_SPOTTING_S = 43.2
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
_POINT_FORM = re.compile(r"[Pp](\d+)")


@dataclass(frozen=True)
class AnnotationCosts:
    """Seconds per instance of each annotation step (defaults: the paper's figures)."""

    spotting_s: float = COCO_SPOTTING_S
    box_s: float = 7.0
    point_s: float = 0.9
    polygon_s: float = 79.2

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name} must be a finite number of seconds >= 0, got {value!r}")

    def form_seconds(self, form: str) -> float:
        """Seconds per instance of the form's own labels, without spotting."""
        points = points_in_form(form)
        if points is None:
            return self.polygon_s if canonical_form(form) == "masks" else self.box_s
        return self.box_s + points * self.point_s

    def seconds_per_instance(self, form: str) -> float:
        """Total seconds per instance of ``form``: spotting plus the form's own labels."""
        return self.spotting_s + self.form_seconds(form)

    def with_spotting(self, spotting_s: float) -> AnnotationCosts:
        """The same costs with another spotting + categorisation time."""
        return replace(self, spotting_s=spotting_s)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def canonical_form(form: str) -> str:
    """``"boxes"``, ``"masks"`` or ``"P{N}"`` (N >= 1) from a form name such as ``"p5"``."""
    if form in ("boxes", "masks"):
        return form
    match = _POINT_FORM.fullmatch(form) if isinstance(form, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"unknown annotation form {form!r}: expected 'boxes', 'masks' or 'P<N>' with N >= 1 (e.g. 'P10')")
    return f"P{int(match.group(1))}"


def points_in_form(form: str) -> int | None:
    """N for a ``P{N}`` form, None for boxes and masks."""
    name = canonical_form(form)
    return int(name[1:]) if name.startswith("P") else None


def forms_to_list(points: Sequence[int] = (10,)) -> list[str]:
    """``boxes``, then ``P{N}`` for each distinct N in increasing order, then ``masks``."""
    return ["boxes", *(f"P{n}" for n in sorted(set(points))), "masks"]


@dataclass(frozen=True)
class DatasetCounts:
    """How many images and (non-crowd) instances a dataset has."""

    name: str
    images: int
    instances: int


#: COCO train2017 as counted by the paper (Table 7)
COCO2017_TRAIN = DatasetCounts("coco2017-train", images=118_287, instances=849_949)
PRESETS: dict[str, DatasetCounts] = {COCO2017_TRAIN.name: COCO2017_TRAIN}


@dataclass(frozen=True)
class FormCost:
    """What annotating ``instances`` instances in ``form`` costs. ``whole_days`` truncates
    ``days``, as the paper's Table 7 does."""

    form: str
    instances: int
    costs: AnnotationCosts
    seconds_per_instance: float
    seconds: float
    hours: float
    days: float
    whole_days: int
    derivation: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "instances": self.instances,
            "seconds_per_instance": self.seconds_per_instance,
            "seconds": self.seconds,
            "hours": self.hours,
            "days": self.days,
            "whole_days": self.whole_days,
            "derivation": self.derivation,
        }


def _number(value: float) -> str:
    """A cost as written in the paper: ``7`` for 7.0, ``43.2``, ``0.9``."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _per_instance_terms(form: str, costs: AnnotationCosts) -> str:
    terms = [f"{_number(costs.spotting_s)} spotting"]
    points = points_in_form(form)
    if form == "masks":
        terms.append(f"{_number(costs.polygon_s)} polygon")
    else:
        terms.append(f"{_number(costs.box_s)} box")
    if points is not None:
        terms.append(f"{points} × {_number(costs.point_s)} {'point' if points == 1 else 'points'}")
    return " + ".join(terms)


def annotation_time(form: str, instances: int, costs: AnnotationCosts = AnnotationCosts()) -> FormCost:
    """Total time to annotate ``instances`` instances in ``form`` under ``costs``."""
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 0:
        raise ValueError(f"instances must be an integer >= 0, got {instances!r}")
    name = canonical_form(form)
    per_instance = costs.seconds_per_instance(name)
    seconds = per_instance * instances
    days = seconds / SECONDS_PER_DAY
    derivation = (
        f"{name}: ({_per_instance_terms(name, costs)}) s × {instances:,} instances = {seconds:,.0f} s"
        f" = {seconds / SECONDS_PER_HOUR:,.1f} h = {days:,.1f} days"
    )
    return FormCost(name, instances, costs, per_instance, seconds, seconds / SECONDS_PER_HOUR, days, math.floor(days), derivation)


def count_instances(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(images, non-crowd instances) of a COCO JSON file, validated as every reader does.

    Raises:
        PointFormatError: naming the file, when it is not a valid COCO file.
    """
    from pointsup.points.format import read_coco_json, validate_coco

    dataset = validate_coco(read_coco_json(path), str(path), require_points=False)
    return len(dataset.images), sum(not instance.is_crowd for instance in dataset.instances)


def format_cost_table(rows: Sequence[FormCost], images: int, instances: int) -> str:
    """A text table of ``rows`` (one per form; cost relative to masks under the same costs),
    followed by each row's derivation."""
    header = f"{'form':<8} {'s/instance':>10} {'hours':>14} {'days':>12} {'whole days':>11} {'vs masks':>9}"
    lines = [f"annotation time for {images:,} images, {instances:,} instances", header, "-" * len(header)]
    for row in rows:
        masks_per_instance = row.costs.seconds_per_instance("masks")
        relative = f"{100 * row.seconds_per_instance / masks_per_instance:.0f} %" if masks_per_instance > 0 else "-"
        lines.append(
            f"{row.form:<8} {row.seconds_per_instance:>10.1f} {row.hours:>14,.1f} {row.days:>12,.2f}"
            f" {row.whole_days:>11,} {relative:>9}"
        )
    lines.append("")
    lines.extend(row.derivation for row in rows)
    return "\n".join(lines)
