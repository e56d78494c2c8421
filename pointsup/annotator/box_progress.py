"""Progress of the box stage (a session from a folder of photos): photos finished, boxes drawn,
seconds per box against the paper's 7 s.

Seconds per box: the time the page measured from the moment the annotator could start the box
(the photo shown, the previous box done, an undo) to its last click (the fourth extreme point,
or the end of the drag), over the boxes in force; Papadopoulos et al. (ICCV 2017) report 7.0 s
per box by extreme clicking. When there are several categories, the time until the category was
chosen is reported too. The summaries are :class:`~pointsup.annotator.progress.TimingSummary`, as
for points (its histogram keeps the point page's bins); a time over an hour (a tab left open) is
stored as unknown and counts in none of them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from pointsup.annotator.box_store import PAPER_SECONDS_PER_BOX, Box, BoxStage
from pointsup.annotator.progress import TimingSummary, _seconds
from pointsup.annotator.store import AnnotationStore


@dataclass(frozen=True)
class BoxAnnotatorProgress:
    """One annotator's boxes in force (``extreme`` of them extreme-clicked), photos finished and
    held, and seconds per box."""

    name: str
    boxes: int
    extreme: int
    images_finished: int
    images_held: int
    timing: TimingSummary


@dataclass(frozen=True)
class BoxProgress:
    """The box stage of the session (see the module docstring)."""

    stage: str
    images_total: int
    images_finished: int
    #: finished photos with no object ("no more objects" before any box)
    images_empty: int
    images_held: int
    boxes: int
    extreme: int
    timing: TimingSummary
    #: to the choice of the category (differs from ``timing`` only with several categories)
    timing_with_category: TimingSummary
    annotators: tuple[BoxAnnotatorProgress, ...]
    paper_s: float = PAPER_SECONDS_PER_BOX

    def summary_line(self) -> str:
        return (
            f"photos boxed: {self.images_finished} / {self.images_total} ({self.images_empty} without objects, "
            f"{self.images_held} held now); {self.boxes} boxes ({self.extreme} extreme-clicked, "
            f"{self.boxes - self.extreme} dragged); stage {self.stage}"
        )

    def timing_line(self) -> str:
        text = f"seconds per box: {_seconds(self.timing.median_s)} median over {self.timing.count} boxes (the paper: {self.paper_s:.1f} s)"
        if self.timing_with_category.median_s != self.timing.median_s:
            text += f"; {_seconds(self.timing_with_category.median_s)} with the choice of the category"
        return text

    def format_lines(self) -> list[str]:
        """Lines of the terminal report."""
        lines = [self.summary_line(), self.timing_line()]
        if self.annotators:
            lines += [
                "",
                f"{'box annotator':<20} {'boxes':>7} {'extreme':>8} {'photos':>7} {'median s':>9} {'p10 s':>6} {'p90 s':>6}",
            ]
            lines += [
                f"{a.name[:20]:<20} {a.boxes:>7} {a.extreme:>8} {a.images_finished:>7} {_seconds(a.timing.median_s):>9} "
                f"{_seconds(a.timing.p10_s):>6} {_seconds(a.timing.p90_s):>6}"
                for a in self.annotators
            ]
        return lines


def box_progress(store: AnnotationStore) -> BoxProgress | None:
    """The box stage's progress; None for a session made from a COCO file."""
    if not store.settings.from_folder:
        return None
    stage = BoxStage(store)
    boxes = stage.boxes()
    finished = stage.finished_images()
    holders = stage.holders()
    with_objects = {b.image_id for b in boxes if b.position is not None}
    by_annotator: dict[str, list[Box]] = defaultdict(list)
    for box in boxes:
        by_annotator[box.annotator].append(box)
    finished_by: dict[str, int] = defaultdict(int)
    for key, _ in finished.values():
        finished_by[key] += 1
    held_by: dict[str, int] = defaultdict(int)
    for key in holders.values():
        held_by[key] += 1
    shown = store.display_names()
    annotators = tuple(
        BoxAnnotatorProgress(
            name=shown.get(key, key),
            boxes=len(by_annotator[key]),
            extreme=sum(b.extreme_points is not None for b in by_annotator[key]),
            images_finished=finished_by[key],
            images_held=held_by[key],
            timing=TimingSummary.of([b.draw_ms for b in by_annotator[key] if b.draw_ms is not None]),
        )
        for key in sorted(by_annotator.keys() | finished_by.keys() | held_by.keys(), key=lambda k: shown.get(k, k))
    )
    return BoxProgress(
        stage=store.stage,
        images_total=len(store.images),
        images_finished=len(finished),
        images_empty=len(finished.keys() - with_objects),
        images_held=len(holders),
        boxes=len(boxes),
        extreme=sum(b.extreme_points is not None for b in boxes),
        timing=TimingSummary.of([b.draw_ms for b in boxes if b.draw_ms is not None]),
        timing_with_category=TimingSummary.of([b.total_ms for b in boxes if b.total_ms is not None]),
        annotators=annotators,
    )


def render_box_section(progress: BoxProgress) -> str:
    """The box stage's part of the progress page (HTML; names escaped)."""
    rows = "".join(
        f"<tr><td>{escape(a.name)}</td><td>{a.boxes}</td><td>{a.extreme}</td><td>{a.images_finished} / {a.images_held}</td>"
        f"<td>{_seconds(a.timing.median_s)} s</td><td>{_seconds(a.timing.p10_s)} – {_seconds(a.timing.p90_s)} s</td></tr>"
        for a in progress.annotators
    )
    return (
        '<h2 id="box-stage">Boxes</h2>'
        f"<p>{escape(progress.summary_line())}.</p>"
        f"<p>Seconds per box: median <b>{_seconds(progress.timing.median_s)} s</b> over {progress.timing.count} boxes "
        f"(the paper: {progress.paper_s:.1f} s by extreme clicking)"
        + (
            f"; {_seconds(progress.timing_with_category.median_s)} s with the choice of the category"
            if progress.timing_with_category.median_s != progress.timing.median_s
            else ""
        )
        + ".</p>"
        + (
            "<table><thead><tr><th>annotator</th><th>boxes</th><th>extreme-clicked</th><th>photos finished / held</th>"
            f"<th>median per box</th><th>10–90 %</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else ""
        )
        + '<p><a href="/boxes">box page</a> · <a href="/export.json?boxes=1" download>boxes only (COCO)</a></p>'
    )
