"""Does self-training on pseudo masks improve the P10 model? (paper §3.3.2: +0.6 mask AP on COCO)

Usage: python benchmarks/selftrain.py [DATASET ...] [--dataset NAME=TRAIN_JSON:TRAIN_IMAGES:VAL_JSON:VAL_IMAGES ...]
       [--config RECIPE ...] [--backbone lite0|R18] [--seeds N] [--seed S] [--iterations N]
       [--work-dir DIR] [KEY=VALUE ...]

DATASET is "synthetic" (generated, 96 images at 320 px; the seed also draws the images), "balloon"
or "fruits_nuts" (../shared/datasets; fruits_nuts is split by image id: id % 3 == 2 is validation).
--dataset adds a COCO dataset of your own (with masks), trained with its --config recipe (the
Mask R-CNN one if several are given, else the first that is not CondInst: pseudo-labelling needs a
Mask R-CNN-family model). The built-in datasets use the Mask R-CNN CPU recipe of --backbone
(configs/cpu/{dataset}_{backbone}_points.yaml; lite0, the default, or R18; fruits_nuts has no R18
recipe). For each dataset and seed (S..S+N-1) the recipe is trained on simulated P10 points, its
training set is pseudo-labelled with the ground-truth boxes, and the same recipe is trained again
on the pseudo masks (`pointsup selftrain`).

Prints, per seed, the mask AP of both models, its change, the pseudo masks' mean IoU with the true
masks and their agreement with the annotated points; then per dataset the mean ± sample std over
the seeds (n of them; "-" for the std of one seed) of the P10 mask AP, the self-trained mask AP and
the per-seed change. The last line is a JSON object: this invocation's runs and the summary.
Runs go to selftrain.json in the work folder; with --work-dir, runs recorded there (same dataset,
head, seed, backbone and iterations) and finished stages of interrupted runs are not repeated.
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
    CustomDataset,
    Dataset,
    Recipe,
    add_dataset_arguments,
    builtin_recipe,
    data_dir,
    data_overrides,
    dataset_name,
    fail,
    parse_dataset_arguments,
    planned_iterations,
    prepare,
    run_dir,
    schedule_overrides,
)
from benchmarks._stats import format_mean_std, value_summary  # noqa: E402
from pointsup.engine.pseudo_label import mask_ious, point_agreement  # noqa: E402
from pointsup.engine.selftrain import run_selftraining  # noqa: E402
from pointsup.points.format import load_point_dataset  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

#: the metrics summarised over seeds
METRICS = ("p10_segm_AP", "selftrained_segm_AP", "change", "pseudo_mask_mean_iou")
#: what old records lack: they were seed 0 with the ResNet-18 Mask R-CNN recipe
RECORD_DEFAULTS = {"seed": 0, "backbone": "R18", "head": "maskrcnn"}

RunKey = tuple[str, str, int, str, int | None]


def selftrain_recipe(dataset: Dataset, backbone: str) -> Recipe:
    """The recipe that self-trains on ``dataset`` (see the module docstring)."""
    if not isinstance(dataset, CustomDataset):
        return builtin_recipe(dataset, backbone, "maskrcnn")
    usable = sorted((r for r in dataset.recipes if r.head != "condinst"), key=lambda r: r.head != "maskrcnn")
    if not usable:
        fail(f"{dataset.name}: self-training needs a Mask R-CNN-family --config recipe (maskrcnn, pointrend or "
             f"implicit_pointrend head); pseudo-labelling with boxes does not work with CondInst")
    return usable[0]


def with_defaults(row: dict) -> dict:
    """``row`` with the fields old records lack (see :data:`RECORD_DEFAULTS`)."""
    return {**row, **{key: value for key, value in RECORD_DEFAULTS.items() if key not in row}}


def run_key(row: dict) -> RunKey:
    """What makes a recorded run the same run: (dataset, head, seed, backbone, iterations); old
    records without ``iterations`` match no run."""
    row = with_defaults(row)
    iterations = row.get("iterations")
    return row["dataset"], row["head"], int(row["seed"]), row["backbone"], None if iterations is None else int(iterations)


def run_one(data: BenchmarkData, recipe: Recipe, output_dir: Path, seed: int, iterations: int | None, extra: list[str],
            planned: int) -> dict:
    """Self-train ``recipe`` on ``data`` (``planned``: the iterations it trains, recorded); returns its result row."""
    overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, "points"), *extra, *schedule_overrides(iterations)]
    result = run_selftraining(recipe.path, output_dir, overrides, device="cpu")
    pseudo = load_point_dataset(result.paths.pseudo_json, require_points=False)
    ious = mask_ious(pseudo, load_point_dataset(data.train_masks, require_points=False))
    p10, selftrained = result.points_metrics["segm"]["AP"], result.selftrained_metrics["segm"]["AP"]
    return {
        "dataset": data.name,
        "head": recipe.head,
        "seed": seed,
        "backbone": recipe.backbone,
        "iterations": planned,
        "p10_segm_AP": p10,
        "selftrained_segm_AP": selftrained,
        "change": selftrained - p10,
        "p10_bbox_AP": result.points_metrics["bbox"]["AP"],
        "selftrained_bbox_AP": result.selftrained_metrics["bbox"]["AP"],
        "pseudo_mask_mean_iou": sum(ious.values()) / len(ious) if ious else None,
        "pseudo_mask_point_agreement": point_agreement(pseudo, pseudo),
        "instances": len(ious),
        "config": str(recipe.path),
    }


def _change(row: dict) -> float:
    return row.get("change", row["selftrained_segm_AP"] - row["p10_segm_AP"])


def summary_records(rows: list[dict]) -> list[dict]:
    """One record per (dataset, backbone, head, iterations): ``n`` seeds, ``seeds`` and, for each of
    :data:`METRICS`, its mean, sample std and per-seed values. A seed recorded twice counts once
    (the later record)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for row in map(with_defaults, rows):
        groups.setdefault((row["dataset"], row["backbone"], row["head"], row.get("iterations")), {})[int(row["seed"])] = row
    records = []
    for (dataset, backbone, head, iterations), by_seed in groups.items():
        seeds = sorted(by_seed)
        record = {"dataset": dataset, "backbone": backbone, "head": head, "iterations": iterations, "n": len(seeds),
                  "seeds": seeds}
        for metric in METRICS:
            values = [_change(by_seed[s]) if metric == "change" else by_seed[s].get(metric) for s in seeds]
            record[metric] = value_summary(values)
        records.append(record)
    return records


def format_rows(rows: list[dict]) -> list[str]:
    """Per-seed lines, then the mean ± std over seeds of every (dataset, backbone, head, iterations)."""
    rows = [with_defaults(r) for r in rows]
    wd = max([12, *(len(r["dataset"]) for r in rows)])  # custom datasets and recipes bring longer names
    wb = max([9, *(len(r["backbone"]) for r in rows)])
    lines = [f"{'dataset':<{wd}} {'backbone':<{wb}} {'iters':>6} {'seed':>5} {'P10 mask AP':>12} {'self-trained':>12} "
             f"{'change':>12} {'pseudo mIoU':>14} {'point agreement':>16} {'instances':>10}"]
    for r in rows:
        iou = f"{r['pseudo_mask_mean_iou']:.3f}" if r.get("pseudo_mask_mean_iou") is not None else "-"
        agreement = f"{r['pseudo_mask_point_agreement']:.1%}" if r.get("pseudo_mask_point_agreement") is not None else "-"
        lines.append(f"{r['dataset']:<{wd}} {r['backbone']:<{wb}} {r.get('iterations') or '-':>6} {r['seed']:>5} "
                     f"{r['p10_segm_AP']:>12.1f} {r['selftrained_segm_AP']:>12.1f} {_change(r):>+12.1f} {iou:>14} "
                     f"{agreement:>16} {r.get('instances', '-'):>10}")
    for s in summary_records(rows):
        head = "" if s["head"] == "maskrcnn" else f" ({s['head']})"
        lines.append(f"{s['dataset']:<{wd}} {s['backbone']:<{wb}} {s['iterations'] or '-':>6} {'mean':>5} "
                     f"{format_mean_std(s['p10_segm_AP']['values']):>12} "
                     f"{format_mean_std(s['selftrained_segm_AP']['values']):>12} "
                     f"{format_mean_std(s['change']['values'], sign=True):>12} "
                     f"{format_mean_std([v for v in s['pseudo_mask_mean_iou']['values'] if v is not None], digits=3):>14} "
                     f"{'n=' + str(s['n']) + head:>16}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(parser, "keep runs here; recorded runs and finished stages are not repeated")
    args = parse_dataset_arguments(parser, argv)
    schedule = [*args.overrides, *schedule_overrides(args.iterations)]
    plan = [(dataset, selftrain_recipe(dataset, args.backbone)) for dataset in args.datasets]  # recipes checked up front
    plan_iterations = {dataset_name(d): planned_iterations(recipe, schedule) for d, recipe in plan}
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        record = work_dir / "selftrain.json"
        rows: list[dict] = json.loads(record.read_text()) if record.is_file() else []
        planned, done = set(), {run_key(r) for r in rows}
        for seed in args.seed_list:
            for dataset, recipe in plan:
                name = dataset_name(dataset)
                key = (name, recipe.head, seed, recipe.backbone, plan_iterations[name])
                planned.add(key)
                if key in done:
                    print(f"{name} {recipe.backbone} seed {seed}: recorded in {record}, not repeated")
                    continue
                data = prepare(dataset, data_dir(work_dir, dataset, seed), seed, backbone=args.backbone)
                runs = run_dir(work_dir, dataset, recipe.backbone, seed)
                output_dir = runs / f"selftrain_{recipe.head}_{plan_iterations[name]}it"
                print(f"== {name} {recipe.backbone} seed {seed} ({plan_iterations[name]} iterations) -> {output_dir}")
                rows.append(run_one(data, recipe, output_dir, seed, args.iterations, args.overrides, plan_iterations[name]))
                write_json_atomic(record, rows, indent=2)
        selection = [with_defaults(r) for r in rows if run_key(r) in planned]
        records = summary_records(selection)
    print()
    print("\n".join(format_rows(selection)))
    print(json.dumps({"runs": selection, "summary": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
