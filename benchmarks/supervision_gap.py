"""How much mask AP do P10 points give compared with full masks, for each mask head? (paper: 94-98 %)

Usage: python benchmarks/supervision_gap.py DATASET [DATASET ...] [--heads HEAD ...]
       [--supervisions masks points] [--iterations N] [--seed S] [--work-dir DIR] [KEY=VALUE ...]

DATASET is "synthetic" (generated, 96 images at 320 px) or "balloon" (../shared/datasets). HEAD is
"maskrcnn", "pointrend", "implicit_pointrend" or "condinst" (default: all four). For each dataset
and head, the CPU recipe (configs/cpu/) is trained from the same seed once with the masks and once
with simulated P10 points, and CondInst also from the boxes alone (BoxInst); every model is
evaluated on the same validation split with real masks.

Prints mask and box AP of every run, the ratio P10 / masks per head, the mask IoU of each run's
confident detections that found an object (box IoU >= 0.7 with a ground-truth box; it separates
mask quality from detection quality, see pointsup.evaluation.mask_quality), and checks the acceptance
criteria: Implicit PointRend with P10 >= Mask R-CNN with P10; CondInst with P10 >= 90 % of
CondInst with masks, and CondInst with P10 > BoxInst. Results go to
supervision_gap.json in the work folder; with --work-dir, runs already recorded there are not
repeated, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import add_run_arguments, data_overrides, head_config, prepare, schedule_overrides  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.trainer import TrainingResult, evaluation_dir, train  # noqa: E402
from pointsup.evaluation.coco_evaluator import RESULTS_FILE, load_ground_truth  # noqa: E402
from pointsup.evaluation.mask_quality import matched_mask_iou  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

HEADS = ("maskrcnn", "pointrend", "implicit_pointrend", "condinst")
SUPERVISIONS = ("masks", "points", "boxes")
#: CondInst with P10 must keep this share of its mask-supervised AP
CONDINST_TARGET_RATIO = 0.9


def train_one(dataset: str, head: str, supervision: str, work_dir: Path, seed: int, iterations: int | None,
              extra: list[str]) -> dict:
    """Train and evaluate one (dataset, head, supervision) run; returns its result row."""
    data = prepare(dataset, work_dir / dataset, seed)
    overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, supervision), *extra, *schedule_overrides(iterations)]
    started = time.perf_counter()
    config = load_config(head_config(data, head), overrides)
    result = train(config, work_dir / dataset / head / supervision)
    minutes = (time.perf_counter() - started) / 60
    return {"dataset": dataset, "head": head, "supervision": supervision,
            "segm_AP": result.metrics["segm"]["AP"], "segm_AP50": result.metrics["segm"]["AP50"],
            "bbox_AP": result.metrics["bbox"]["AP"], "mask_iou": final_mask_iou(result, config.data.val_json),
            "iterations": result.iterations, "minutes": minutes}


def final_mask_iou(result: TrainingResult, val_json: str | None) -> float | None:
    """Mean mask IoU of the final evaluation's matched detections (None when none matched)."""
    predictions = evaluation_dir(result.output_dir, result.iterations) / RESULTS_FILE
    if val_json is None or not predictions.is_file():
        return None
    quality = matched_mask_iou(load_ground_truth(val_json, needs_masks=True), json.loads(predictions.read_text()))
    return quality.mean_iou if quality.matched else None


def summarise(rows: list[dict]) -> list[str]:
    """The table lines and acceptance verdicts of the recorded runs."""
    by_key = {(r["dataset"], r["head"], r["supervision"]): r for r in rows}
    lines = [f"{'dataset':<10} {'head':<19} {'iters':>6} {'mask AP masks':>14} {'mask AP P10':>12} {'P10/masks':>10} "
             f"{'mask AP boxes':>14} {'box AP masks':>13} {'box AP P10':>11} {'mask IoU masks/P10/boxes':>25}"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for head in HEADS:
            masks, points = by_key.get((dataset, head, "masks")), by_key.get((dataset, head, "points"))
            boxes = by_key.get((dataset, head, "boxes"))
            if not masks and not points and not boxes:
                continue
            iters = (points or masks or boxes)["iterations"]

            def value(row: dict | None, key: str) -> str:
                return f"{row[key]:.1f}" if row else "-"

            def iou(row: dict | None) -> str:
                return f"{row['mask_iou']:.2f}" if row and row.get("mask_iou") is not None else "-"

            ratio = f"{points['segm_AP'] / masks['segm_AP']:.1%}" if masks and points and masks["segm_AP"] > 0 else "-"
            ious = "/".join(iou(row) for row in ((masks, points, boxes) if head == "condinst" else (masks, points)))
            lines.append(f"{dataset:<10} {head:<19} {iters:>6} {value(masks, 'segm_AP'):>14} {value(points, 'segm_AP'):>12} "
                         f"{ratio:>10} {value(boxes, 'segm_AP'):>14} {value(masks, 'bbox_AP'):>13} {value(points, 'bbox_AP'):>11} "
                         f"{ious:>25}")
        implicit, maskrcnn = by_key.get((dataset, "implicit_pointrend", "points")), by_key.get((dataset, "maskrcnn", "points"))
        if implicit and maskrcnn:
            verdict = "ok" if implicit["segm_AP"] >= maskrcnn["segm_AP"] else "NOT MET"
            lines.append(f"{dataset}: Implicit PointRend P10 {implicit['segm_AP']:.1f} vs Mask R-CNN P10 "
                         f"{maskrcnn['segm_AP']:.1f} mask AP: {verdict}")
        condinst = {sup: by_key.get((dataset, "condinst", sup)) for sup in SUPERVISIONS}
        if condinst["points"] and condinst["masks"]:
            ratio = condinst["points"]["segm_AP"] / max(condinst["masks"]["segm_AP"], 1e-9)
            verdict = "ok" if ratio >= CONDINST_TARGET_RATIO else "NOT MET"
            lines.append(f"{dataset}: CondInst P10 / masks {ratio:.1%} (target >= {CONDINST_TARGET_RATIO:.0%}): {verdict}")
        if condinst["points"] and condinst["boxes"]:
            verdict = "ok" if condinst["points"]["segm_AP"] > condinst["boxes"]["segm_AP"] else "NOT MET"
            lines.append(f"{dataset}: CondInst P10 {condinst['points']['segm_AP']:.1f} vs BoxInst "
                         f"{condinst['boxes']['segm_AP']:.1f} mask AP: {verdict}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="synthetic and/or balloon")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--supervisions", nargs="+", choices=SUPERVISIONS, default=list(SUPERVISIONS))
    add_run_arguments(parser, "keep runs here and skip those already recorded")
    parser.add_argument("overrides", nargs="*", default=[], help="extra KEY=VALUE config overrides for every run")
    args, unknown = parser.parse_known_args(argv)
    extra = [a for a in args.datasets if "=" in a] + args.overrides + unknown
    datasets = [a for a in args.datasets if "=" not in a]
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        record = work_dir / "supervision_gap.json"
        rows: list[dict] = json.loads(record.read_text()) if record.is_file() else []
        for dataset in datasets:
            for head in args.heads:
                for supervision in args.supervisions:
                    if supervision == "boxes" and head != "condinst":
                        continue  # box supervision (BoxInst) exists for CondInst only
                    done = [r for r in rows if (r["dataset"], r["head"], r["supervision"]) == (dataset, head, supervision)
                            and (args.iterations is None or r["iterations"] == args.iterations)]
                    if done:
                        print(f"{dataset} {head} {supervision}: recorded in {record}, not repeated")
                        continue
                    rows.append(train_one(dataset, head, supervision, work_dir, args.seed, args.iterations, extra))
                    write_json_atomic(record, rows, indent=2)
    print()
    print("\n".join(summarise(rows)))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
