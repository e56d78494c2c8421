"""Progress of a labelling session: objects done, time per point, agreement.

* An object is *done* when ``overlap`` annotators answered all its points.
* Time per point is the response time the browser measured (from the point appearing on
  screen to the key press), over the answers in force; the paper reports 0.9 s.
* Agreement with masks (when the input had masks): the share of object/background answers
  equal to the mask value at the point; the paper measured 90 % against COCO's polygons.
* Agreement between annotators (with overlap): the share of agreeing pairs of answers on the
  same point.
* Gold questions (``serve --gold``): per annotator, right answers in the training round and
  accuracy on the later gold questions (an *unsure* answer counts as not right).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from pointsup.annotator.store import AnnotationStore, LiveAnswer

if TYPE_CHECKING:
    from pointsup.annotator.assist_progress import AssistProgress
    from pointsup.annotator.box_progress import BoxProgress

#: edges (seconds) of the response-time histogram; the last bin is open: ``>= 5 s``
HISTOGRAM_EDGES_S = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class TimingSummary:
    """Seconds per point: ``count`` timed answers, median, 10th and 90th percentiles (None
    without timed answers) and counts per :data:`HISTOGRAM_EDGES_S` bin."""

    count: int
    median_s: float | None
    p10_s: float | None
    p90_s: float | None
    histogram: tuple[int, ...]

    @classmethod
    def of(cls, milliseconds: list[float]) -> TimingSummary:
        seconds = np.asarray(milliseconds, dtype=np.float64) / 1000.0
        bins = np.searchsorted(np.asarray(HISTOGRAM_EDGES_S), seconds, side="right") - 1
        histogram = tuple(int(c) for c in np.bincount(bins, minlength=len(HISTOGRAM_EDGES_S)))
        if not len(seconds):
            return cls(0, None, None, None, histogram)
        p10, median, p90 = (float(v) for v in np.percentile(seconds, [10, 50, 90]))
        return cls(len(seconds), median, p10, p90, histogram)


@dataclass(frozen=True)
class AnnotatorProgress:
    """One annotator's work: answers in force (``unsure`` of them), objects finished and
    held, timing, and agreement with the masks over ``mask_compared`` answers."""

    name: str
    points: int
    unsure: int
    objects_finished: int
    objects_held: int
    timing: TimingSummary
    mask_agreement: float | None
    mask_compared: int
    #: gold questions: training round ``(right, asked)`` and later checks ``(right, asked)``
    gold_training: tuple[int, int] = (0, 0)
    gold_checks: tuple[int, int] = (0, 0)

    @property
    def gold_accuracy(self) -> float | None:
        """The share of right answers to the gold questions after the training round."""
        right, asked = self.gold_checks
        return right / asked if asked else None


@dataclass(frozen=True)
class ProgressReport:
    """The whole session (see the module docstring for the definitions)."""

    objects_total: int
    objects_done: int
    objects_started: int
    num_points: int
    overlap: int
    has_masks: bool
    timing: TimingSummary
    mask_agreement: float | None
    mask_compared: int
    #: objects whose mask is malformed (or missing) in a session with masks: left out of the agreement
    objects_without_mask: int
    annotator_agreement: float | None
    annotator_pairs: int
    annotators: tuple[AnnotatorProgress, ...]
    #: whether any gold question was answered
    has_gold: bool = False
    #: the box stage of a session from a folder of photos (None: made from a COCO file)
    boxes: BoxProgress | None = None
    #: model suggestions (``serve --weights``): seconds per point with and without, overrule rate (None: never shown)
    assist: AssistProgress | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "histogram_edges_s": list(HISTOGRAM_EDGES_S)}

    def left_out_note(self) -> str:
        """What the agreement leaves out, in words ("" when nothing)."""
        if not (self.has_masks and self.objects_without_mask):
            return ""
        return f" ({self.objects_without_mask} of {self.objects_total} objects left out: their masks are missing or malformed)"

    def format_table(self) -> str:
        """A plain-text report for the terminal."""
        lines = [
            f"objects done: {self.objects_done} / {self.objects_total} (started: {self.objects_started}); "
            f"{self.num_points} points per object, overlap {self.overlap}",
            f"seconds per point: {_seconds(self.timing.median_s)} median over {self.timing.count} answers",
        ]
        if self.has_masks:
            lines.append(
                f"agreement with masks: {_percent(self.mask_agreement)} of {self.mask_compared} answers" + self.left_out_note()
            )
        if self.annotator_pairs:
            lines.append(f"agreement between annotators: {_percent(self.annotator_agreement)} of {self.annotator_pairs} pairs")
        header = (
            f"{'annotator':<20} {'points':>7} {'unsure':>7} {'objects':>8} {'median s':>9} {'p10 s':>6} {'p90 s':>6} {'masks':>7}"
        )
        lines += ["", header + (f" {'gold':>15}" if self.has_gold else "")]
        for a in self.annotators:
            gold = f" {_percent(a.gold_accuracy):>7} of {a.gold_checks[1]:<4}" if self.has_gold else ""
            lines.append(
                f"{a.name[:20]:<20} {a.points:>7} {a.unsure:>7} {a.objects_finished:>8} {_seconds(a.timing.median_s):>9} "
                f"{_seconds(a.timing.p10_s):>6} {_seconds(a.timing.p90_s):>6} {_percent(a.mask_agreement):>7}{gold}"
            )
        if self.boxes is not None:
            lines += ["", *self.boxes.format_lines()]
        if self.assist is not None:
            lines += ["", *self.assist.format_lines()]
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _mask_agreement(answers: list[LiveAnswer], mask_values: dict[int, list[int]]) -> tuple[float | None, int]:
    matches = [
        a.label == mask_values[a.position][a.point_index] for a in answers if a.label in (0, 1) and a.position in mask_values
    ]
    return (sum(matches) / len(matches) if matches else None), len(matches)


def _pair_agreement(answers: list[LiveAnswer]) -> tuple[float | None, int]:
    counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        if a.label in (0, 1):
            counts[(a.position, a.point_index)][a.label] += 1
    pairs = agreeing = 0
    for zeros, ones in counts.values():
        total = zeros + ones
        pairs += total * (total - 1) // 2
        agreeing += zeros * (zeros - 1) // 2 + ones * (ones - 1) // 2
    return (agreeing / pairs if pairs else None), pairs


def compute_progress(store: AnnotationStore) -> ProgressReport:
    """Gather the session's progress from its database."""
    from pointsup.annotator.assist import model_made_answers
    from pointsup.annotator.assist_progress import assist_progress
    from pointsup.annotator.box_progress import box_progress

    n = store.settings.num_points
    made = model_made_answers(store)  # labels the model made (--skip-confident): nobody's answers
    answers = [a for a in store.live_answers() if (a.annotator, a.position, a.point_index) not in made]
    assignments = store.assignments()
    objects = store.objects()
    mask_values = {o.position: o.mask_values.tolist() for o in objects if o.mask_values is not None}

    finished_by: dict[int, int] = defaultdict(int)
    held: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, position, answered in assignments:
        held[name][0] += 1
        if answered == n:
            held[name][1] += 1
            finished_by[position] += 1
    by_annotator: dict[str, list[LiveAnswer]] = defaultdict(list)
    for a in answers:
        by_annotator[a.annotator].append(a)

    gold: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # training right, asked; checks right, asked
    for name, g in store.gold_answers():
        counts = gold[name]
        offset = 0 if g.training else 2
        counts[offset] += g.label == g.truth
        counts[offset + 1] += 1
    annotators = []
    shown = store.display_names()
    for name in sorted(held.keys() | by_annotator.keys() | gold.keys(), key=lambda key: shown.get(key, key)):
        own = by_annotator.get(name, [])
        agreement, compared = _mask_agreement(own, mask_values)
        annotators.append(
            AnnotatorProgress(
                name=shown.get(name, name),
                points=len(own),
                unsure=sum(a.label == -1 for a in own),
                objects_finished=held[name][1],
                objects_held=held[name][0],
                timing=TimingSummary.of([a.response_ms for a in own if a.response_ms is not None]),
                mask_agreement=agreement,
                mask_compared=compared,
                gold_training=(gold[name][0], gold[name][1]) if name in gold else (0, 0),
                gold_checks=(gold[name][2], gold[name][3]) if name in gold else (0, 0),
            )
        )
    agreement, compared = _mask_agreement(answers, mask_values)
    pair_agreement, pairs = _pair_agreement(answers)
    return ProgressReport(
        objects_total=store.objects_total(),
        objects_done=sum(count >= store.settings.overlap for count in finished_by.values()),
        objects_started=len({position for _, position, answered in assignments if answered > 0}),
        num_points=n,
        overlap=store.settings.overlap,
        has_masks=store.settings.has_masks,
        timing=TimingSummary.of([a.response_ms for a in answers if a.response_ms is not None]),
        mask_agreement=agreement,
        mask_compared=compared,
        objects_without_mask=len(objects) - len(mask_values) if store.settings.has_masks else 0,
        annotator_agreement=pair_agreement,
        annotator_pairs=pairs,
        annotators=tuple(annotators),
        has_gold=bool(gold),
        boxes=box_progress(store),
        assist=assist_progress(store, answers),
    )
