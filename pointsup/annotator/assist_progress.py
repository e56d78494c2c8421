"""What the model's suggestions did to a labelling session (``serve --weights``): seconds per point
with and without a suggestion, how often annotators accepted one with its key and how often they
overruled one (gave the other label), and how many labels the model made itself
(``--skip-confident``).

Timing covers the annotators' own answers in force that carry a response time; "without" counts
those shown no suggestion (before the model was there, a point whose suggestion was not computed
yet, a session served without ``--weights``). An *unsure* answer neither follows nor overrules a
suggestion.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape

from pointsup.annotator.assist import AnswerSuggestion, answer_suggestions
from pointsup.annotator.progress import TimingSummary
from pointsup.annotator.store import AnnotationStore, LiveAnswer


@dataclass(frozen=True)
class SuggestionUse:
    """One annotator's (or everyone's) answers with and without a suggestion.

    Attributes:
        with_suggestion, without_suggestion: seconds per point of the answers shown a suggestion, and of the others.
        shown: answers shown a suggestion; ``accepted`` of them given by the accept key.
        compared: of those, the object/background answers; ``overruled`` of them give the other label.
    """

    name: str
    with_suggestion: TimingSummary
    without_suggestion: TimingSummary
    shown: int
    accepted: int
    compared: int
    overruled: int

    @property
    def overrule_rate(self) -> float | None:
        return self.overruled / self.compared if self.compared else None


@dataclass(frozen=True)
class AssistProgress:
    """The whole session's :class:`SuggestionUse` (``overall``), each annotator's, and the labels
    the model made (``model_made``, not counted as anybody's answers)."""

    overall: SuggestionUse
    annotators: tuple[SuggestionUse, ...]
    model_made: int

    def format_lines(self) -> list[str]:
        """Lines for ``annotate progress``."""
        o = self.overall
        lines = [
            f"model suggestions: shown with {o.shown} answers ({o.accepted} accepted with the key); overruled in "
            f"{_percent(o.overrule_rate)} of {o.compared} object/background answers"
            + (f"; {self.model_made} labels made by the model (--skip-confident)" if self.model_made else ""),
            f"seconds per point: {_seconds(o.with_suggestion.median_s)} median with a suggestion "
            f"({o.with_suggestion.count} answers), {_seconds(o.without_suggestion.median_s)} without "
            f"({o.without_suggestion.count})",
        ]
        if len(self.annotators) > 1:
            lines.append(f"{'annotator':<20} {'s with':>7} {'s without':>10} {'accepted':>9} {'overruled':>10}")
            for a in self.annotators:
                lines.append(
                    f"{a.name[:20]:<20} {_seconds(a.with_suggestion.median_s):>7} {_seconds(a.without_suggestion.median_s):>10} "
                    f"{a.accepted:>9} {_percent(a.overrule_rate):>10}"
                )
        return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _use(name: str, answers: list[LiveAnswer], shown: dict[tuple[str, int, int], AnswerSuggestion]) -> SuggestionUse:
    with_times, without_times, accepted, compared, overruled, count = [], [], 0, 0, 0, 0
    for a in answers:
        s = shown.get((a.annotator, a.position, a.point_index))
        if s is None:
            if a.response_ms is not None:
                without_times.append(a.response_ms)
            continue
        count += 1
        accepted += s.accepted
        compared += a.label in (0, 1)
        overruled += s.overruled
        if a.response_ms is not None:
            with_times.append(a.response_ms)
    return SuggestionUse(
        name, TimingSummary.of(with_times), TimingSummary.of(without_times), count, accepted, compared, overruled
    )


def assist_progress(store: AnnotationStore, answers: list[LiveAnswer] | None = None) -> AssistProgress | None:
    """The suggestions' effect on the session; None when no answer was shown one and the model
    made no label (a session served without ``--weights``).

    Args:
        answers: the annotators' own answers in force (model-made ones left out); read from the
            store when None.
    """
    suggestions = answer_suggestions(store)
    if not suggestions:
        return None
    made = {(s.annotator, s.position, s.point_index) for s in suggestions if s.model_made}
    if answers is None:
        answers = [a for a in store.live_answers() if (a.annotator, a.position, a.point_index) not in made]
    shown = {(s.annotator, s.position, s.point_index): s for s in suggestions if not s.model_made}
    by_annotator: dict[str, list[LiveAnswer]] = defaultdict(list)
    for a in answers:
        by_annotator[a.annotator].append(a)
    names = store.display_names()
    per_annotator = tuple(
        _use(names.get(key, key), own, shown) for key, own in sorted(by_annotator.items(), key=lambda kv: names.get(kv[0], kv[0]))
    )
    return AssistProgress(_use("all", answers, shown), per_annotator, len(made))


def render_assist_section(report: AssistProgress) -> str:
    """The progress page's paragraph and table on the model's suggestions (names escaped)."""
    o = report.overall
    made = f"; <b>{report.model_made}</b> labels made by the model itself (--skip-confident)" if report.model_made else ""
    parts = [
        "<h2>Model suggestions</h2>",
        f"<p>Shown with <b>{o.shown}</b> answers, {o.accepted} of them accepted with the key; overruled in "
        f"<b>{_percent(o.overrule_rate)}</b> of {o.compared} object/background answers{made}.</p>",
        f"<p>Seconds per point: median <b>{_seconds(o.with_suggestion.median_s)} s</b> with a suggestion "
        f"({o.with_suggestion.count} answers), <b>{_seconds(o.without_suggestion.median_s)} s</b> without "
        f"({o.without_suggestion.count}).</p>",
    ]
    if len(report.annotators) > 1:
        rows = "".join(
            f"<tr><td>{escape(a.name)}</td><td>{_seconds(a.with_suggestion.median_s)}</td>"
            f"<td>{_seconds(a.without_suggestion.median_s)}</td><td>{a.accepted} of {a.shown}</td>"
            f"<td>{_percent(a.overrule_rate)} <small>of {a.compared}</small></td></tr>"
            for a in report.annotators
        )
        parts.append(
            "<table><thead><tr><th>annotator</th><th>median s with a suggestion</th><th>without</th>"
            f"<th>accepted with the key</th><th>overruled</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)
