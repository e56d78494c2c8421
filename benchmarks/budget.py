"""Mask AP for the same annotation time: masks against P10 (paper §3.3.3, Figure 5).

Usage: python benchmarks/budget.py DATASET [--fractions F ...] [--forms masks P10 boxes] [--seed S]
       [--iterations N] [--spotting-seconds S] [--work-dir DIR] [--plot OUT.png] [KEY=VALUE ...]

Annotation time per instance follows `pointsup cost`: spotting + categorisation (43.2 s) plus
7 s + 10 x 0.9 s for P10 or 79.2 s for a polygon mask. Each budget is a fraction F of what P10
labels of the whole training set cost; for every budget, images are taken in one seeded random
order until the budget is spent, once for P10 and once for masks (so the mask subsets are
smaller, and every subset is contained in the next larger one). Masks also get their own full
budget. The Mask R-CNN CPU recipe trains on every masks and P10 subset with the same schedule;
with `--forms ... boxes`, boxes (spotting + 7 s) train BoxInst, the CondInst CPU recipe from boxes
alone, on that recipe's own schedule (longer on balloon) unless --iterations sets one for all.
Each model is evaluated on the whole validation split.

Prints AP against annotation hours, writes the runs as a curves JSON (the input of
`pointsup cost --curves ... --target-ap ...`, the paper's Figure 9) and plots AP against hours.
With --work-dir, finished runs are kept and not repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import (  # noqa: E402
    BenchmarkData,
    add_run_arguments,
    data_overrides,
    head_config,
    prepare,
    schedule_overrides,
)
from pointsup.analysis.budget_curves import curves_from_dict, plot_ap_vs_hours  # noqa: E402
from pointsup.analysis.cost import AnnotationCosts  # noqa: E402
from pointsup.analysis.subsets import Subset, nested_subsets  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.trainer import train  # noqa: E402
from pointsup.points.format import read_coco_json  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

#: form -> (supervision, mask head / architecture of its CPU recipe)
FORMS = {"P10": ("points", "maskrcnn"), "masks": ("masks", "maskrcnn"), "boxes": ("boxes", "condinst")}


def plan(data: BenchmarkData, forms: list[str], fractions: list[float], costs: AnnotationCosts, seed: int) -> dict[str, list[Subset]]:
    """The training subsets of each form: one per budget (and the whole set for masks)."""
    points_coco, masks_coco = read_coco_json(data.train_points), read_coco_json(data.train_masks)
    whole = nested_subsets(points_coco, costs.seconds_per_instance("P10"), [float("inf")], seed)[0]
    budgets = [f * whole.seconds for f in sorted(fractions)]
    subsets = {}
    for form in forms:
        coco = points_coco if form == "P10" else masks_coco
        form_budgets = [*budgets, whole.instances * costs.seconds_per_instance("masks")] if form == "masks" else budgets
        chosen = nested_subsets(coco, costs.seconds_per_instance(form), form_budgets, seed)
        subsets[form] = list({s.instances: s for s in chosen if s.instances}.values())  # capped budgets repeat a subset
    return subsets


def train_subset(data: BenchmarkData, form: str, subset: Subset, run_dir: Path, seed: int, iterations: int | None,
                 extra: list[str]) -> dict:
    """Train the recipe on ``subset`` (skipped when ``run_dir`` holds a finished run)."""
    metrics_path = run_dir / "final_metrics.json"
    if not metrics_path.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        train_json = run_dir / "train.json"
        write_json_atomic(train_json, subset.coco)
        supervision, head = FORMS[form]
        overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, supervision), f"data.train_json={train_json}", *extra,
                     *schedule_overrides(iterations)]
        print(f"== {form}: {subset.instances} instances in {subset.images} images ({subset.seconds / 3600:.2f} h) -> {run_dir}")
        train(load_config(head_config(data, head), overrides), run_dir, resume=True)
    metrics = json.loads(metrics_path.read_text())
    return {"segm_AP": metrics["segm"]["AP"], "bbox_AP": metrics["bbox"]["AP"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="synthetic or balloon")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                        help="budgets as fractions of the P10 cost of the whole training set")
    parser.add_argument("--forms", nargs="+", choices=list(FORMS), default=["masks", "P10"],
                        help="annotation forms to compare (boxes train BoxInst)")
    parser.add_argument("--spotting-seconds", type=float, default=AnnotationCosts().spotting_s)
    add_run_arguments(parser, "keep runs here; finished runs are not repeated")
    parser.add_argument("--plot", type=Path, default=None, help="also write the AP-vs-hours plot here")
    args, extra = parser.parse_known_args(argv)
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error("--fractions must lie in (0, 1]")
    costs = AnnotationCosts(spotting_s=args.spotting_seconds)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = (args.work_dir or Path(scratch)) / args.dataset
        data = prepare(args.dataset, work_dir, args.seed)
        subsets = plan(data, args.forms, args.fractions, costs, args.seed)
        total = len([a for a in read_coco_json(data.train_masks)["annotations"] if not a.get("iscrowd")])
        runs = []
        for form, form_subsets in subsets.items():
            for subset in form_subsets:
                metrics = train_subset(data, form, subset, work_dir / "budget" / f"{form}_{subset.instances}", args.seed,
                                       args.iterations, extra)
                runs.append({"form": form, "fraction": subset.instances / total, "instances": subset.instances,
                             "annotation_hours": subset.seconds / 3600, **metrics})
        curves = {"dataset": args.dataset, "images": len(read_coco_json(data.train_points)["images"]), "instances": total,
                  "costs": costs.to_dict(), "runs": runs}
        write_json_atomic(work_dir / "budget_curves.json", curves, indent=2)
        plot_ap_vs_hours(curves_from_dict(curves), args.plot or work_dir / "budget_ap_vs_hours.png")
        print()
        print(f"{'form':<6} {'instances':>10} {'fraction':>9} {'hours':>7} {'mask AP':>8} {'box AP':>7}")
        for run in sorted(runs, key=lambda r: (r["annotation_hours"], r["form"])):
            print(f"{run['form']:<6} {run['instances']:>10} {run['fraction']:>9.2f} {run['annotation_hours']:>7.2f} "
                  f"{run['segm_AP']:>8.1f} {run['bbox_AP']:>7.1f}")
        print(f"curves: {work_dir / 'budget_curves.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
