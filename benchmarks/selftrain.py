"""Does self-training on pseudo masks improve the P10 model? (paper §3.3.2: +0.6 mask AP on COCO)

Usage: python benchmarks/selftrain.py DATASET [DATASET ...] [--seed S] [--iterations N]
       [--work-dir DIR] [KEY=VALUE ...]

DATASET is "synthetic" (generated, 96 images at 320 px) or "balloon" (../shared/datasets). For
each, the Mask R-CNN CPU recipe is trained on simulated P10 points, its training set is
pseudo-labelled with the ground-truth boxes, and the same recipe is trained again on the pseudo
masks (`pointsup selftrain`). Prints the mask AP of both models, the pseudo masks' mean IoU with
the true masks and their agreement with the annotated points. With --work-dir, finished stages
are kept and not repeated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import add_run_arguments, data_overrides, prepare, schedule_overrides  # noqa: E402
from pointsup.engine.pseudo_label import mask_ious, point_agreement  # noqa: E402
from pointsup.engine.selftrain import run_selftraining  # noqa: E402
from pointsup.points.format import load_point_dataset  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402


def run_dataset(name: str, work_dir: Path, seed: int, iterations: int | None, extra: list[str]) -> dict:
    """Self-train on ``name``; returns its result row."""
    data = prepare(name, work_dir / name, seed)
    overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, "points"), *extra, *schedule_overrides(iterations)]
    result = run_selftraining(data.config, work_dir / name / "selftrain", overrides, device="cpu")
    pseudo = load_point_dataset(result.paths.pseudo_json, require_points=False)
    ious = mask_ious(pseudo, load_point_dataset(data.train_masks, require_points=False))
    return {
        "dataset": name,
        "p10_segm_AP": result.points_metrics["segm"]["AP"],
        "selftrained_segm_AP": result.selftrained_metrics["segm"]["AP"],
        "p10_bbox_AP": result.points_metrics["bbox"]["AP"],
        "selftrained_bbox_AP": result.selftrained_metrics["bbox"]["AP"],
        "pseudo_mask_mean_iou": sum(ious.values()) / len(ious),
        "pseudo_mask_point_agreement": point_agreement(pseudo, pseudo),
        "instances": len(ious),
    }


def format_rows(rows: list[dict]) -> list[str]:
    lines = [f"{'dataset':<10} {'P10 mask AP':>12} {'self-trained':>13} {'change':>7} {'pseudo mIoU':>12} "
             f"{'point agreement':>16} {'instances':>10}"]
    for r in rows:
        change = r["selftrained_segm_AP"] - r["p10_segm_AP"]
        lines.append(f"{r['dataset']:<10} {r['p10_segm_AP']:>12.1f} {r['selftrained_segm_AP']:>13.1f} {change:>+7.1f} "
                     f"{r['pseudo_mask_mean_iou']:>12.3f} {r['pseudo_mask_point_agreement']:>16.1%} {r['instances']:>10}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="synthetic and/or balloon")
    add_run_arguments(parser, "keep runs here; finished stages are not repeated")
    args, extra = parser.parse_known_args(argv)
    extra += [a for a in args.datasets if "=" in a]
    datasets = [a for a in args.datasets if "=" not in a]
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        rows = [run_dataset(name, work_dir, args.seed, args.iterations, extra) for name in datasets]
        write_json_atomic(work_dir / "selftrain.json", rows, indent=2)
    print()
    print("\n".join(format_rows(rows)))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
