"""How much mask AP do P10 points give compared with full masks? (paper: 94-98 %)

Usage: python benchmarks/supervision_gap.py DATASET [DATASET ...] [--iterations N] [--seed S]
       [--work-dir DIR] [KEY=VALUE ...]

DATASET is "synthetic" (generated, 96 images at 320 px) or "balloon" (../shared/datasets). For
each, the dataset's CPU recipe (configs/cpu/) is trained twice from the same seed, once with the
masks and once with simulated P10 points, and both models are evaluated on the same validation
split with real masks. Prints mask and box AP of both and the ratio points / masks, and writes
supervision_gap.json into the work folder. Acceptance: ratio >= 0.94 with both far above chance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import data_overrides, prepare  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.trainer import train  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

TARGET_RATIO = 0.94


def run(dataset: str, work_dir: Path, seed: int, iterations: int | None, extra: list[str]) -> dict:
    data = prepare(dataset, work_dir / dataset, seed)
    row: dict = {"dataset": dataset}
    for supervision in ("masks", "points"):
        overrides = [f"seed={seed}", "device=cpu", *data_overrides(data, supervision), *extra]
        if iterations:
            overrides.append(f"solver.max_iter={iterations}")
            overrides.append(f"solver.steps=[{int(iterations * 0.75)},{int(iterations * 0.92)}]")
        started = time.perf_counter()
        result = train(load_config(data.config, overrides), work_dir / dataset / supervision)
        row[supervision] = {"segm_AP": result.metrics["segm"]["AP"], "segm_AP50": result.metrics["segm"]["AP50"],
                            "bbox_AP": result.metrics["bbox"]["AP"], "iterations": result.iterations,
                            "minutes": (time.perf_counter() - started) / 60}
    row["ratio"] = row["points"]["segm_AP"] / row["masks"]["segm_AP"] if row["masks"]["segm_AP"] > 0 else float("nan")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="synthetic and/or balloon")
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's solver.max_iter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None, help="keep runs here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", default=[], help="extra KEY=VALUE config overrides for both runs")
    args, unknown = parser.parse_known_args(argv)
    extra = [a for a in args.datasets if "=" in a] + args.overrides + unknown
    datasets = [a for a in args.datasets if "=" not in a]
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        rows = [run(name, work_dir, args.seed, args.iterations, extra) for name in datasets]
        write_json_atomic(work_dir / "supervision_gap.json", rows, indent=2)
    print()
    print(f"{'dataset':<10} {'iters':>6} {'mask AP (masks)':>16} {'mask AP (P10)':>14} {'ratio':>7} "
          f"{'box AP (masks)':>15} {'box AP (P10)':>13} {'verdict':>8}")
    for row in rows:
        verdict = "ok" if row["ratio"] >= TARGET_RATIO else "below"
        print(f"{row['dataset']:<10} {row['points']['iterations']:>6} {row['masks']['segm_AP']:>16.1f} "
              f"{row['points']['segm_AP']:>14.1f} {row['ratio']:>7.1%} {row['masks']['bbox_AP']:>15.1f} "
              f"{row['points']['bbox_AP']:>13.1f} {verdict:>8}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
