"""Argument parsing for ``pointsup cost`` (kept light: NumPy and matplotlib load in the handler).

* ``pointsup cost --preset coco2017-train``: the paper's Table 7;
* ``pointsup cost DATASET.json`` or ``--images N --instances M``: the same for other counts;
* ``--curves CURVES.json --target-ap AP [--plot OUT.png]``: also the hours each form needs to
  reach the target AP as the spotting time varies (Figure 9), and where masks and P10 cross.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, cast

from pointsup import cli_types
from pointsup.errors import CommandError

#: spotting + categorisation times (s per instance) listed in the time-to-target table: COCO's
#: pipeline (43.2 s) and the range other pipelines report (2 to 237 s)
SPOTTING_TABLE_S = (0.0, 10.0, 43.2, 100.0, 237.0)


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def _counts(args: argparse.Namespace, curves: Any) -> tuple[int, int]:
    """(images, instances) from the one source of counts the user gave."""
    from pointsup.analysis.cost import PRESETS, count_instances

    given = [
        name
        for name, present in (
            ("DATASET.json", args.dataset is not None),
            ("--images/--instances", args.images is not None or args.instances is not None),
            ("--preset", args.preset is not None),
        )
        if present
    ]
    if len(given) > 1:
        raise CommandError(f"give one source of counts, not {' and '.join(given)}")
    if (args.images is None) != (args.instances is None):
        raise CommandError("--images and --instances go together")
    if args.dataset is not None:
        return count_instances(args.dataset)
    if args.images is not None:
        return args.images, args.instances
    if args.preset is not None:
        preset = PRESETS[args.preset]
        return preset.images, preset.instances
    if curves is not None:
        return curves.images, curves.instances
    raise CommandError("give DATASET.json, --images N --instances M, --preset NAME or --curves CURVES.json")


def _costs(args: argparse.Namespace, base: Any) -> Any:
    """``base`` with the costs given on the command line."""
    from dataclasses import replace

    overrides = {
        field: value
        for field, value in (
            ("spotting_s", args.spotting_seconds),
            ("box_s", args.box_seconds),
            ("point_s", args.point_seconds),
            ("polygon_s", args.polygon_seconds),
        )
        if value is not None
    }
    return replace(base, **overrides)


def _target_report(args: argparse.Namespace, curves: Any, costs: Any, instances: int) -> dict[str, Any]:
    """Hours to reach the target AP per form at the listed spotting times, and the crossover."""
    import numpy as np

    from pointsup.analysis.budget_curves import (
        crossover_spotting_time,
        fraction_for_target,
        time_to_target,
    )

    spotting = [s for s in SPOTTING_TABLE_S if s <= args.max_spotting_seconds]
    forms = curves.forms()
    report: dict[str, Any] = {
        "target_ap": args.target_ap,
        "instances": instances,
        "spotting_s": spotting,
        "fractions": {
            form: fraction_for_target(*cast("tuple[Any, Any]", curves.ap_curve(form)), args.target_ap) for form in forms
        },
        "hours": {
            form: [
                None if math.isnan(h) else float(h)
                for h in time_to_target(curves, form, args.target_ap, np.array(spotting), costs, instances)
            ]
            for form in forms
        },
        "crossover_spotting_s": None,
        "crossover": "needs masks and P10 runs",
    }
    if {"masks", "P10"} <= set(forms):
        fractions = report["fractions"]
        crossing = crossover_spotting_time(curves, args.target_ap, (0.0, args.max_spotting_seconds), ("masks", "P10"), costs)
        report["crossover_spotting_s"] = crossing
        if crossing is None:
            report["crossover"] = f"masks never become cheaper than P10 in 0 to {args.max_spotting_seconds:g} s"
        else:
            side = "above" if fractions["masks"] < fractions["P10"] else "below"
            report["crossover"] = f"masks become cheaper than P10 {side} {crossing:.1f} s of spotting per instance"
    return report


def _format_target_report(report: dict[str, Any]) -> str:
    forms = list(report["hours"])
    needed = ", ".join(f"{form} {'never' if f is None else f'{f:.3f}'}" for form, f in report["fractions"].items())
    title = (
        f"hours to reach {report['target_ap']:g} mask AP on {report['instances']:,} instances (data fraction needed: {needed})"
    )
    lines = [title, f"{'spotting s':>10} " + " ".join(f"{form + ' h':>12}" for form in forms)]
    for row, spotting in enumerate(report["spotting_s"]):
        cells = ["never" if report["hours"][form][row] is None else f"{report['hours'][form][row]:,.1f}" for form in forms]
        lines.append(f"{spotting:>10g} " + " ".join(f"{cell:>12}" for cell in cells))
    lines.append(f"crossover: {report['crossover']}")
    return "\n".join(lines)


def _run_cost(args: argparse.Namespace) -> None:
    from pointsup.analysis.budget_curves import (
        CurvesFormatError,
        load_curves,
        plot_time_to_target,
    )
    from pointsup.analysis.cost import (
        AnnotationCosts,
        annotation_time,
        format_cost_table,
        forms_to_list,
    )
    from pointsup.utils.paths import refuse_output_over_input

    if args.curves is None and (args.target_ap is not None or args.plot is not None):
        raise CommandError("--target-ap and --plot need --curves CURVES.json")
    if args.curves is not None and args.target_ap is None:
        raise CommandError("--curves needs --target-ap AP")
    if args.plot is not None:
        refuse_output_over_input(args.plot, [args.curves, args.dataset], "--plot")
    try:
        curves = load_curves(args.curves) if args.curves is not None else None
    except CurvesFormatError as exc:
        raise CommandError(str(exc)) from None
    images, instances = _counts(args, curves)
    costs = _costs(args, curves.costs if curves is not None else AnnotationCosts())
    rows = [annotation_time(form, instances, costs) for form in forms_to_list(args.points)]
    report = _target_report(args, curves, costs, instances) if curves is not None else None
    if args.plot is not None:
        assert curves is not None  # --plot needs --curves (checked above)
        plot_time_to_target(curves, args.target_ap, args.plot, args.max_spotting_seconds, costs, instances)
    if args.json:
        output = {"images": images, "instances": instances, "costs": costs.to_dict(), "forms": [row.to_dict() for row in rows]}
        if report is not None:
            output["time_to_target"] = report
        print(json.dumps(output, indent=2))
        return
    print(format_cost_table(rows, images, instances))
    if report is not None:
        print()
        print(_format_target_report(report))
    if args.plot is not None:
        print(f"wrote {args.plot}")


def add_cost_parser(commands: argparse._SubParsersAction) -> None:
    """Register the ``cost`` subcommand on the top-level parser."""
    from pointsup.analysis.cost import PRESETS

    cost = commands.add_parser("cost", help="annotation time of boxes, P_N points and masks (Table 7, Figure 9)")
    cost.add_argument(
        "dataset",
        type=Path,
        nargs="?",
        default=None,
        metavar="DATASET.json",
        help="COCO JSON to count images and non-crowd instances in",
    )
    cost.add_argument("--images", type=cli_types.positive_int, default=None, metavar="N", help="image count (with --instances)")
    cost.add_argument(
        "--instances", type=cli_types.positive_int, default=None, metavar="M", help="instance count (with --images)"
    )
    cost.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="published counts (coco2017-train: the paper's Table 7)"
    )
    cost.add_argument(
        "--points", type=cli_types.positive_int, nargs="+", default=[10], metavar="N", help="P_N forms to list (default 10)"
    )
    cost.add_argument(
        "--spotting-seconds",
        type=_seconds,
        default=None,
        metavar="S",
        help="spotting + categorisation per instance, paid by every form (default 43.2, COCO's pipeline)",
    )
    cost.add_argument("--box-seconds", type=_seconds, default=None, metavar="S", help="per box (default 7.0, extreme clicking)")
    cost.add_argument("--point-seconds", type=_seconds, default=None, metavar="S", help="per point label (default 0.9)")
    cost.add_argument("--polygon-seconds", type=_seconds, default=None, metavar="S", help="per polygon mask (default 79.2)")
    cost.add_argument("--json", action="store_true", help="print JSON instead of tables")
    cost.add_argument(
        "--curves",
        type=Path,
        default=None,
        metavar="CURVES.json",
        help="AP-vs-data-fraction runs (benchmarks/budget.py); its costs are the defaults then",
    )
    cost.add_argument("--target-ap", type=_finite, default=None, metavar="AP", help="mask AP to reach (with --curves)")
    cost.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="write the time-to-target plot (Figure 9)")
    cost.add_argument(
        "--max-spotting-seconds",
        type=_positive_seconds,
        default=250.0,
        metavar="S",
        help="right end of the spotting-time range (default 250)",
    )
    cost.set_defaults(handler=_run_cost)
