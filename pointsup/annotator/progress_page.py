"""The progress page as HTML: a summary, a table per annotator and response-time histograms.

Every text from the data (annotator names) goes through :func:`html.escape`; charts are
inline SVG drawn with attributes only (the page's content security policy forbids inline
styles and scripts).
"""

from __future__ import annotations

from html import escape

from pointsup.annotator.assist_progress import render_assist_section
from pointsup.annotator.box_progress import render_box_section
from pointsup.annotator.export import ExportSummary
from pointsup.annotator.progress import HISTOGRAM_EDGES_S, AnnotatorProgress, ProgressReport, TimingSummary

_BAR_WIDTH, _CHART_HEIGHT, _LABEL_HEIGHT = 30, 80, 16


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f} s"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _bin_label(index: int) -> str:
    edges = HISTOGRAM_EDGES_S
    return f"≥{edges[index]:g}" if index == len(edges) - 1 else f"{edges[index]:g}"


def histogram_svg(timing: TimingSummary, title: str) -> str:
    """Bars of the response-time histogram (bin lower edges in seconds below the bars)."""
    counts = timing.histogram
    peak = max(max(counts), 1)
    width = _BAR_WIDTH * len(counts)
    parts = [
        f'<svg class="histogram" width="{width}" height="{_CHART_HEIGHT + _LABEL_HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for k, count in enumerate(counts):
        height = round(_CHART_HEIGHT * count / peak)
        x = k * _BAR_WIDTH
        parts.append(
            f'<rect x="{x + 2}" y="{_CHART_HEIGHT - height}" width="{_BAR_WIDTH - 4}" height="{height}" fill="#3b82c4">'
            f"<title>{escape(_bin_label(k))} s: {count}</title></rect>"
        )
        parts.append(
            f'<text x="{x + _BAR_WIDTH / 2}" y="{_CHART_HEIGHT + 12}" text-anchor="middle" font-size="10">{escape(_bin_label(k))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _progress_bar(done: int, total: int) -> str:
    fraction = done / total if total else 0.0
    return (
        f'<svg class="progress-bar" width="400" height="14" role="img" aria-label="{done} of {total} objects done">'
        f'<rect width="400" height="14" fill="#ddd"/><rect width="{400 * fraction:.1f}" height="14" fill="#2e9e44"/></svg>'
    )


def _annotator_row(a: AnnotatorProgress, has_masks: bool, has_gold: bool) -> str:
    cells = [
        escape(a.name),
        str(a.points),
        str(a.unsure),
        f"{a.objects_finished} / {a.objects_held}",
        _seconds(a.timing.median_s),
        f"{_seconds(a.timing.p10_s)} – {_seconds(a.timing.p90_s)}",
    ]
    if has_masks:
        cells.append(f"{_percent(a.mask_agreement)} <small>({a.mask_compared})</small>")
    if has_gold:
        right, asked = a.gold_training
        cells.append(f"{_percent(a.gold_accuracy)} <small>of {a.gold_checks[1]}; training {right} / {asked} right</small>")
    cells.append(histogram_svg(a.timing, f"seconds per point of {a.name}"))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _export_section(export: ExportSummary | None, partial: ExportSummary | None) -> str:
    """Download links of the point file (nothing when the summaries are not given)."""
    if export is None or partial is None:
        return ""
    parts = [
        "<h2>Export</h2><p>",
        f'<a href="/export.json" download>finished images</a> <small>({export.images} images, {export.objects} objects, '
        f"{export.points} points)</small> · ",
        f'<a href="/export.json?partial=1" download>partial</a> <small>(objects with at least one labelled point: '
        f"{partial.objects} of {partial.objects_total}, {partial.images} images)</small></p>",
    ]
    if partial.mostly_unlabelled:
        parts.append(
            f'<p class="warning">{partial.unlabelled_objects_left_out} of {partial.objects_total} objects have no labelled '
            "point yet: the partial export leaves them out, and a model trained on it never sees them.</p>"
        )
    return "".join(parts)


def render_progress_page(
    report: ProgressReport, export: ExportSummary | None = None, partial: ExportSummary | None = None
) -> str:
    """The whole page (UTF-8 HTML text); with the summaries of the default and the partial
    export, links to download them."""
    summary = [
        f"<p><b>{report.objects_done}</b> of {report.objects_total} objects done "
        f"({report.objects_started} started); {report.num_points} points per object"
        + (f", each object labelled by {report.overlap} annotators" if report.overlap > 1 else "")
        + "</p>",
        _progress_bar(report.objects_done, report.objects_total),
        f"<p>Seconds per point: median <b>{_seconds(report.timing.median_s)}</b> over {report.timing.count} answers "
        f"(the paper: 0.9 s).</p>",
    ]
    if report.has_masks:
        summary.append(
            f"<p>Agreement with the masks: <b>{_percent(report.mask_agreement)}</b> of "
            f"{report.mask_compared} object/background answers (the paper: 90 % on COCO)"
            f"{escape(report.left_out_note())}.</p>"
        )
    if report.annotator_pairs:
        summary.append(
            f"<p>Agreement between annotators: <b>{_percent(report.annotator_agreement)}</b> of "
            f"{report.annotator_pairs} pairs of answers on the same point.</p>"
        )
    headers = ["annotator", "points", "unsure", "objects finished / held", "median", "10–90 %"]
    if report.has_masks:
        headers.append("agreement with masks")
    if report.has_gold:
        headers.append("gold questions right")
    headers.append("seconds per point")
    rows = "".join(_annotator_row(a, report.has_masks, report.has_gold) for a in report.annotators)
    table = (
        "<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in headers)
        + "</tr></thead><tbody>"
        + (rows or f'<tr><td colspan="{len(headers)}">no answers yet</td></tr>')
        + "</tbody></table>"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>pointsup: labelling progress</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/static/annotator.css"></head>'
        '<body class="progress-page"><main><h1>Labelling progress</h1>'
        + "".join(summary)
        + table
        + ("" if report.assist is None else render_assist_section(report.assist))
        + _export_section(export, partial)
        + ("" if report.boxes is None else render_box_section(report.boxes))
        + '<p class="links"><a href="/">labelling page</a> · <a href="/api/progress">JSON</a></p></main></body></html>'
    )
