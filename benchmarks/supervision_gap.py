"""How much mask AP do P10 points give compared with full masks, for each mask head? (paper: 94-98 %)

Usage: python benchmarks/supervision_gap.py [DATASET ...] [--dataset NAME=TRAIN_JSON:TRAIN_IMAGES:VAL_JSON:VAL_IMAGES ...]
       [--config RECIPE ...] [--backbone lite0|R18] [--heads HEAD ...] [--supervisions masks points boxes]
       [--seeds N] [--seed S] [--iterations N] [--work-dir DIR] [--jobs N] [KEY=VALUE ...]

DATASET is "synthetic" (generated, 96 images at 320 px; the seed also draws the images), "balloon"
or "fruits_nuts" (../shared/datasets; fruits_nuts is split by image id: id % 3 == 2 is validation,
6 images, the other 12 train). --dataset adds a COCO dataset of your own (with masks); it trains
the --config recipes (repeat --config for more mask heads; heads without a recipe are skipped).
HEAD is "maskrcnn", "pointrend", "implicit_pointrend" or "condinst" (default: all four). The
built-in datasets train the CPU recipes of --backbone: configs/cpu/{dataset}_{backbone}_points.yaml
(Mask R-CNN) and configs/cpu/{dataset}_{backbone}_{head}_points.yaml; lite0 (ImageNet
EfficientNet-Lite0, the default) or R18 (ResNet-18 from scratch; none for fruits_nuts). For each
dataset, seed (S..S+N-1) and head, the recipe is trained once with the masks and once with
simulated P10 points, and CondInst also from the boxes alone (BoxInst); every model is evaluated on
the same validation split with real masks. The supervision is set by the override supervision=...

Runs train on the CPU; the override device=cuda trains them on a GPU (each record says where), and
--jobs N trains N runs at once in worker processes (on a GPU with several CPU cores, N runs share it).

Prints, per dataset, backbone, head and supervision, the mean ± sample std over seeds (n of them;
"-" for the std of one seed) of mask AP, box AP and the mask IoU of each run's confident detections
that found an object (box IoU >= 0.7 with a ground-truth box; it separates mask quality from
detection quality, see pointsup.evaluation.mask_quality), and the ratio P10 / masks of the mean mask
APs. Checks the acceptance criteria on the means: Implicit PointRend P10 >= Mask R-CNN P10; Mask
R-CNN P10 >= 94 % of Mask R-CNN masks; Implicit PointRend P10 at most 1 mask AP below Mask R-CNN
masks; CondInst P10 >= 90 % of CondInst masks; CondInst P10 > BoxInst (a head recorded at several
schedules is judged at its longest). The last line is a JSON object: this invocation's runs and
the summary, with every metric's per-seed values.

Runs go to supervision_gap.json in the work folder (the summary to supervision_gap_summary.json);
with --work-dir, runs already recorded there (same dataset, head, supervision, seed, backbone and
iterations; records without "seed" are seed 0, without "backbone" R18) are not repeated, so an
interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import (  # noqa: E402
    HEADS,
    BenchmarkData,
    Dataset,
    Recipe,
    add_dataset_arguments,
    data_dir,
    data_overrides,
    dataset_name,
    fail,
    find_recipe,
    parse_dataset_arguments,
    planned_iterations,
    prepare,
    run_dir,
    schedule_overrides,
)
from benchmarks._stats import format_mean_std, value_summary  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.trainer import TrainingResult, evaluation_dir, train  # noqa: E402
from pointsup.evaluation.coco_evaluator import RESULTS_FILE, load_ground_truth  # noqa: E402
from pointsup.evaluation.mask_quality import matched_mask_iou  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

SUPERVISIONS = ("masks", "points", "boxes")
#: CondInst with P10 must keep this share of its mask-supervised AP
CONDINST_TARGET_RATIO = 0.9
#: Mask R-CNN with P10 must keep this share of its mask-supervised AP (the paper's low end)
MASKRCNN_TARGET_RATIO = 0.94
#: Implicit PointRend with P10 may be at most this much mask AP below Mask R-CNN with masks
IMPLICIT_MARGIN_AP = 1.0
#: the metrics summarised over seeds
METRICS = ("segm_AP", "segm_AP50", "bbox_AP", "mask_iou")
#: what old records lack: they were seed 0 with the ResNet-18 recipes
RECORD_DEFAULTS = {"seed": 0, "backbone": "R18"}

RunKey = tuple[str, str, str, int, str, int]


@dataclass(frozen=True)
class PlannedRun:
    """One training run: ``dataset`` with ``recipe`` (its head and backbone) under ``supervision``."""

    dataset: Dataset
    recipe: Recipe
    supervision: str
    seed: int
    iterations: int

    @property
    def key(self) -> RunKey:
        return (dataset_name(self.dataset), self.recipe.head, self.supervision, self.seed, self.recipe.backbone, self.iterations)


def with_defaults(row: dict) -> dict:
    """``row`` with the fields old records lack (see :data:`RECORD_DEFAULTS`)."""
    return {**row, **{key: value for key, value in RECORD_DEFAULTS.items() if key not in row}}


def run_key(row: dict) -> RunKey:
    """What makes a recorded run the same run: (dataset, head, supervision, seed, backbone, iterations)."""
    row = with_defaults(row)
    return row["dataset"], row["head"], row["supervision"], int(row["seed"]), row["backbone"], int(row["iterations"])


def plan_runs(
    datasets: list[Dataset],
    heads: list[str],
    supervisions: list[str],
    backbone: str,
    seeds: list[int],
    iterations: int | None,
    extra: list[str],
) -> list[PlannedRun]:
    """Every run to record, seed by seed; recipes are found and read before anything trains."""
    runs = []
    for dataset in datasets:
        recipes = {head: find_recipe(dataset, backbone, head) for head in heads}
        skipped = [head for head, recipe in recipes.items() if recipe is None]
        if skipped:
            print(f"{dataset_name(dataset)}: no --config recipe with mask head {', '.join(skipped)}: skipped")
        schedule = {
            head: planned_iterations(recipe, [*extra, *schedule_overrides(iterations)])
            for head, recipe in recipes.items()
            if recipe is not None
        }
        for seed in seeds:
            for head, recipe in recipes.items():
                for supervision in supervisions:
                    if recipe is None or (supervision == "boxes" and head != "condinst"):
                        continue  # box supervision (BoxInst) exists for CondInst only
                    runs.append(PlannedRun(dataset, recipe, supervision, seed, schedule[head]))
    if not runs:
        fail("nothing to run: no recipe for the chosen heads, or only boxes (BoxInst) without condinst")
    return runs


def train_one(
    data: BenchmarkData, recipe: Recipe, supervision: str, output_dir: Path, seed: int, iterations: int | None, extra: list[str]
) -> dict:
    """Train and evaluate one run; returns its result row."""
    overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, supervision), *extra, *schedule_overrides(iterations)]
    started = time.perf_counter()
    config = load_config(recipe.path, overrides)
    result = train(config, output_dir)
    minutes = (time.perf_counter() - started) / 60
    return {
        "dataset": data.name,
        "head": recipe.head,
        "supervision": supervision,
        "seed": seed,
        "backbone": recipe.backbone,
        "segm_AP": result.metrics["segm"]["AP"],
        "segm_AP50": result.metrics["segm"]["AP50"],
        "bbox_AP": result.metrics["bbox"]["AP"],
        "mask_iou": final_mask_iou(result, config.data.val_json),
        "iterations": result.iterations,
        "minutes": minutes,
        "config": str(recipe.path),
        "device": config.device,
    }


def _limit_threads(threads: int) -> None:
    """Worker initialiser: share the machine's cores between the parallel runs."""
    torch.set_num_threads(threads)


def run_jobs(jobs: list[tuple[PlannedRun, tuple]], parallel: int) -> Iterator[dict]:
    """Train each job (a planned run and :func:`train_one`'s arguments); yields the result rows as
    the runs finish. With ``parallel`` > 1 the runs train in that many worker processes at once
    (spawned: safe with CUDA), each with an equal share of the CPU threads."""

    def announce(run: PlannedRun) -> None:
        name, head, supervision, seed, backbone, iterations = run.key
        print(f"== {name} {backbone} seed {seed} {head} {supervision} ({iterations} iterations)", flush=True)

    if parallel <= 1 or len(jobs) <= 1:
        for run, arguments in jobs:
            announce(run)
            yield train_one(*arguments)
        return
    threads = max(1, (os.cpu_count() or 1) // parallel)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context, initializer=_limit_threads, initargs=(threads,)) as pool:
        pending = {}
        for run, arguments in jobs:
            announce(run)
            pending[pool.submit(train_one, *arguments)] = run
        for future in as_completed(pending):
            yield future.result()


def final_mask_iou(result: TrainingResult, val_json: str | None) -> float | None:
    """Mean mask IoU of the final evaluation's matched detections (None when none matched)."""
    predictions = evaluation_dir(result.output_dir, result.iterations) / RESULTS_FILE
    if val_json is None or not predictions.is_file():
        return None
    quality = matched_mask_iou(load_ground_truth(val_json, needs_masks=True), json.loads(predictions.read_text()))
    return quality.mean_iou if quality.matched else None


def _order(values: list, known: tuple) -> list:
    """``values`` deduplicated, those in ``known`` first in its order, then the rest as they came."""
    unique = list(dict.fromkeys(values))
    return [v for v in known if v in unique] + [v for v in unique if v not in known]


def summary_records(rows: list[dict]) -> list[dict]:
    """One record per (dataset, backbone, head, supervision, iterations) of ``rows``: ``n`` seeds,
    ``seeds``, and for each of :data:`METRICS` its mean, sample std and per-seed values (see
    :func:`benchmarks._stats.value_summary`); P10 records also get ``p10_over_masks``, the ratio of
    the mean mask APs of P10 and masks (None without a masks record or with a masks mean of 0).
    A seed recorded twice counts once (the later record)."""
    groups: dict[tuple, dict[int, dict]] = {}
    for row in map(with_defaults, rows):
        key = (row["dataset"], row["backbone"], row["head"], row["supervision"], int(row["iterations"]))
        groups.setdefault(key, {})[int(row["seed"])] = row
    records = []
    for dataset in _order([k[0] for k in groups], ()):
        for backbone in _order([k[1] for k in groups if k[0] == dataset], ()):
            keys = [k for k in groups if k[:2] == (dataset, backbone)]
            for head in _order([k[2] for k in keys], HEADS):
                for iterations in sorted({k[4] for k in keys if k[2] == head}):
                    for supervision in _order([k[3] for k in keys if k[2] == head and k[4] == iterations], SUPERVISIONS):
                        by_seed = groups[dataset, backbone, head, supervision, iterations]
                        seeds = sorted(by_seed)
                        record = {
                            "dataset": dataset,
                            "backbone": backbone,
                            "head": head,
                            "supervision": supervision,
                            "iterations": iterations,
                            "n": len(seeds),
                            "seeds": seeds,
                        }
                        for metric in METRICS:
                            record[metric] = value_summary([by_seed[s].get(metric) for s in seeds])
                        records.append(record)
    for record in records:
        if record["supervision"] == "points":
            masks = next(
                (
                    r
                    for r in records
                    if r["supervision"] == "masks"
                    and all(r[k] == record[k] for k in ("dataset", "backbone", "head", "iterations"))
                ),
                None,
            )
            record["p10_over_masks"] = _ratio(record, masks)
    return records


def _ratio(points: dict | None, masks: dict | None) -> float | None:
    """Mean mask AP of ``points`` over that of ``masks`` (None when either is missing or masks is 0)."""
    if not points or not masks or not masks["segm_AP"]["mean"]:
        return None
    return points["segm_AP"]["mean"] / masks["segm_AP"]["mean"]


def summarise(rows: list[dict]) -> list[str]:
    """The table lines (mean ± std over seeds) and acceptance verdicts of the recorded runs ``rows``."""
    records = summary_records(rows)
    wd = max([12, *(len(r["dataset"]) for r in records)])  # custom datasets and recipes bring longer names
    wb = max([9, *(len(r["backbone"]) for r in records)])
    lines = [
        f"{'dataset':<{wd}} {'backbone':<{wb}} {'head':<19} {'supervision':<11} {'iters':>6} {'n':>3} {'mask AP':>13} "
        f"{'box AP':>13} {'mask IoU':>13} {'P10/masks':>10}"
    ]
    for r in records:
        ratio = f"{r['p10_over_masks']:.1%}" if r.get("p10_over_masks") is not None else "-"
        iou = format_mean_std([v for v in r["mask_iou"]["values"] if v is not None], digits=2)
        lines.append(
            f"{r['dataset']:<{wd}} {r['backbone']:<{wb}} {r['head']:<19} {r['supervision']:<11} {r['iterations']:>6} "
            f"{r['n']:>3} {format_mean_std(r['segm_AP']['values']):>13} {format_mean_std(r['bbox_AP']['values']):>13} "
            f"{iou:>13} {ratio:>10}"
        )
    return lines + verdicts(records)


def verdicts(records: list[dict]) -> list[str]:
    """The acceptance verdicts on the mean mask APs of :func:`summary_records`, per dataset and backbone."""
    lines = []
    for dataset, backbone in dict.fromkeys((r["dataset"], r["backbone"]) for r in records):
        pick: dict[tuple[str, str], dict] = {}  # (head, supervision) -> its longest schedule
        for r in records:
            key = (r["head"], r["supervision"])
            if (r["dataset"], r["backbone"]) != (dataset, backbone):
                continue
            if key not in pick or r["iterations"] > pick[key]["iterations"]:
                pick[key] = r
        lines += _verdicts_of(pick, f"{dataset} {backbone}")
    return lines


def _verdicts_of(pick: dict[tuple[str, str], dict], where: str) -> list[str]:
    """The verdicts of one dataset and backbone; ``pick`` maps (head, supervision) to its summary record."""
    lines = []

    def ap(head: str, supervision: str) -> float:
        return pick[head, supervision]["segm_AP"]["mean"]

    def shown(head: str, supervision: str) -> str:
        return f"{ap(head, supervision):.1f} (n={pick[head, supervision]['n']})"

    def ok(met: bool) -> str:
        return "ok" if met else "NOT MET"

    def have(*keys: tuple[str, str]) -> bool:
        return all(k in pick for k in keys)

    def ratio_line(head: str, name: str, target: float) -> str:
        p, m = pick[head, "points"], pick[head, "masks"]
        ratio = ap(head, "points") / max(ap(head, "masks"), 1e-9)
        return (
            f"{where}: {name} P10 / masks {ratio:.1%} (means, n={p['n']}/{m['n']}; target >= {target:.0%}): {ok(ratio >= target)}"
        )

    def versus_line(
        first: tuple[str, str],
        first_name: str,
        second: tuple[str, str],
        second_name: str,
        margin: float = 0.0,
        strict: bool = False,
    ) -> str:
        """``first`` against ``second`` on the mean mask AP: met when first >= second - margin (first >
        second when ``strict``)."""
        assert not (strict and margin), "a strict comparison has no margin"
        target = "means" if margin == 0 else f"means; target: at most {margin:.1f} below"
        met = ap(*first) > ap(*second) if strict else ap(*first) >= ap(*second) - margin
        return f"{where}: {first_name} {shown(*first)} vs {second_name} {shown(*second)} mask AP ({target}): {ok(met)}"

    implicit_points, maskrcnn_points, maskrcnn_masks = (
        ("implicit_pointrend", "points"),
        ("maskrcnn", "points"),
        ("maskrcnn", "masks"),
    )
    if have(implicit_points, maskrcnn_points):
        lines.append(versus_line(implicit_points, "Implicit PointRend P10", maskrcnn_points, "Mask R-CNN P10"))
    if have(maskrcnn_points, maskrcnn_masks):
        lines.append(ratio_line("maskrcnn", "Mask R-CNN", MASKRCNN_TARGET_RATIO))
    if have(implicit_points, maskrcnn_masks):
        lines.append(
            versus_line(implicit_points, "Implicit PointRend P10", maskrcnn_masks, "Mask R-CNN masks", IMPLICIT_MARGIN_AP)
        )
    if have(("condinst", "points"), ("condinst", "masks")):
        lines.append(ratio_line("condinst", "CondInst", CONDINST_TARGET_RATIO))
    if have(("condinst", "points"), ("condinst", "boxes")):
        lines.append(versus_line(("condinst", "points"), "CondInst P10", ("condinst", "boxes"), "BoxInst", strict=True))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--supervisions", nargs="+", choices=SUPERVISIONS, default=list(SUPERVISIONS))
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at once in worker processes (e.g. several on one GPU; default 1)",
    )
    add_dataset_arguments(parser, "keep runs here and skip those already recorded")
    args = parse_dataset_arguments(parser, argv)
    runs = plan_runs(args.datasets, args.heads, args.supervisions, args.backbone, args.seed_list, args.iterations, args.overrides)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        record = work_dir / "supervision_gap.json"
        rows: list[dict] = json.loads(record.read_text()) if record.is_file() else []
        done = {run_key(r) for r in rows}
        prepared: dict[tuple[str, int], BenchmarkData] = {}
        jobs = []
        for run in runs:
            name, head, supervision, seed, backbone, iterations = run.key
            if run.key in done:
                print(f"{name} {backbone} seed {seed} {head} {supervision}: recorded in {record}, not repeated")
                continue
            if (name, seed) not in prepared:
                prepared[name, seed] = prepare(run.dataset, data_dir(work_dir, run.dataset, seed), seed, backbone=args.backbone)
            output_dir = run_dir(work_dir, run.dataset, backbone, seed) / head / supervision
            jobs.append((run, (prepared[name, seed], run.recipe, supervision, output_dir, seed, args.iterations, args.overrides)))
        for row in run_jobs(jobs, args.jobs):
            rows.append(row)
            write_json_atomic(record, rows, indent=2)  # after each run: an interrupted benchmark keeps what finished
        planned = {run.key for run in runs}
        selection = [with_defaults(r) for r in rows if run_key(r) in planned]
        records = summary_records(selection)
        write_json_atomic(work_dir / "supervision_gap_summary.json", records, indent=2)
    print()
    print("\n".join(summarise(selection)))
    print(json.dumps({"runs": selection, "summary": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
