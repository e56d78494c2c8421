"""Training speed of pointsup against the authors' implementation (detectron2 PointSup), same machine, same run.

Usage: python benchmarks/reference_speed.py --detectron2 CHECKOUT --coco TRAIN_JSON:IMAGES
           [--reference-python PYTHON] [--head maskrcnn|implicit_pointrend] [--rounds 3]
           [--iterations 2 12] [--systems reference pointsup ...] [--work-dir DIR] [--json FILE]

Both libraries train the point-supervised R50-FPN head of ``--head`` from random weights with
GroupNorm in backbone and FPN, no frozen stages, batch 2, short side 480 (long side at most 800),
on P10 points simulated from ``--coco`` (seed 0; the same file for both), float32 on the CPU, no
loader workers, no evaluation. Each system trains as a whole process (its own command, as a user
runs it) twice, for the short and the long number of ``--iterations``; its seconds per iteration
are the difference of the two wall times divided by the difference of the iterations, so start-up,
dataset loading and the final checkpoint cancel out. The systems take turns within each of
``--rounds`` rounds, so a drift of the machine's speed affects all alike.

Systems (``--systems``, default ``reference pointsup``):
    reference              detectron2 PointSup as shipped, glibc's default heap (as users run it)
    reference-heap-kept    the same with glibc's heap kept as pointsup can keep it, set through
                           MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ (pointsup.utils.heap)
    pointsup               ``pointsup train`` with its defaults (glibc's default heap)
    pointsup-heap-kept     the same with POINTSUP_GLIBC_HEAP_DEFAULTS=0 (heap kept)

The reference: detectron2 built from source (``pip install --no-build-isolation -e CHECKOUT``,
in an environment with this machine's torch and torchvision), with the two one-line fixes without
which PointSup's training crashes (docs/benchmarks.md, reference_speed); ``--reference-python`` is
that environment's interpreter (default: this one). Its child is ``benchmarks/_reference_train.py``.

Prints one row per process (wall seconds, system seconds, peak resident set), then each system's
seconds per iteration per round and their median, and each system's ratio to the first system's,
round by round. ``--work-dir`` keeps every process's output folder and log (each library's own
per-iteration timer is in them); by default they go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._child import last_log_line, run_child  # noqa: E402
from pointsup.points.format import PointFormatError, read_coco_json  # noqa: E402
from pointsup.points.simulate import SimulationConfig, simulate  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402
from pointsup.utils.heap import HEAP_SETTING_VARIABLE, MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES  # noqa: E402

REFERENCE_CHILD = Path(__file__).resolve().parent / "_reference_train.py"
#: pointsup's recipe of each head (the reference's are in _reference_train.REFERENCE_CONFIGS)
POINTSUP_CONFIGS = {
    "maskrcnn": "mask_rcnn_R_50_FPN_1x_points",
    "implicit_pointrend": "implicit_pointrend_R_50_FPN_3x_points_point_aug",
}
#: the side-by-side set-up as pointsup overrides (the reference's: _reference_train.side_by_side_overrides)
POINTSUP_SETTINGS = (
    "seed=0", "device=cpu", "supervision=points", "model.weights=", "model.backbone.weights=",
    "model.backbone.norm=gn", "model.fpn.norm=gn", "model.backbone.trainable_layers=5",
    "data.min_size_train=[480]", "data.max_size_train=800", "solver.ims_per_batch=2",
    "data.num_workers=0", "data.val_json=",
)  # fmt: skip
#: each system's environment on top of this process's
SYSTEM_ENVIRONMENTS = {
    "reference": {},
    "reference-heap-kept": {
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD_BYTES),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD_BYTES),
    },
    "pointsup": {HEAP_SETTING_VARIABLE: "1"},
    "pointsup-heap-kept": {HEAP_SETTING_VARIABLE: "0"},
}


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def write_points(coco: str, scratch: Path) -> tuple[Path, Path]:
    """(P10 JSON, image folder) from ``--coco TRAIN_JSON:IMAGES``: points simulated with seed 0 as
    the reference's script does (crowd annotations get points too: PointSup's mapper needs them)."""
    masks_json, _, images = coco.partition(":")
    if not Path(masks_json).is_file() or not Path(images).is_dir():
        fail(f"--coco {coco}: expected TRAIN_JSON:IMAGE_FOLDER, both existing")
    try:
        points = simulate(
            read_coco_json(Path(masks_json)), SimulationConfig(num_points=10, seed=0, compat="detectron2"), source=masks_json
        )
    except PointFormatError as error:
        fail(f"--coco {masks_json}: {error}")
    path = scratch / "train_p10.json"
    write_json_atomic(path, points.coco)
    return path, Path(images)


def command(args: argparse.Namespace, system: str, iterations: int, data: tuple[Path, Path], output: Path) -> list[str]:
    """The command line of one training process of ``system``."""
    train_json, images = data
    if system.startswith("reference"):
        return [
            args.reference_python, str(REFERENCE_CHILD), "--detectron2", str(args.detectron2), "--head", args.head,
            "--train-json", str(train_json), "--images", str(images), "--iterations", str(iterations),
            "--output", str(output),
        ]  # fmt: skip
    overrides = [
        *POINTSUP_SETTINGS,
        f"data.train_json={train_json}",
        f"data.train_images={images}",
        f"solver.max_iter={iterations}",
    ]
    return [sys.executable, "-m", "pointsup", "train", POINTSUP_CONFIGS[args.head], *overrides, "--output", str(output)]


def run_process(args: argparse.Namespace, system: str, iterations: int, data: tuple[Path, Path], scratch: Path) -> dict:
    """Train ``iterations`` iterations of ``system`` as one process: its wall time and own resource usage."""
    output = scratch / f"{system}-{iterations}-{time.monotonic_ns()}"
    log_file = output.with_suffix(".log")
    env = {**os.environ, **SYSTEM_ENVIRONMENTS[system]}
    child = run_child(command(args, system, iterations, data, output), env, log_file, log_stdout=True)
    if child.exit_code != 0:
        fail(f"{system} ({iterations} iterations) failed, log {log_file}: {last_log_line(log_file)}")
    return {
        "system": system,
        "iterations": iterations,
        "wall_s": child.wall_s,
        "system_s": child.usage.ru_stime,
        "peak_rss_mb": child.peak_rss_mb,
    }


def measure(args: argparse.Namespace, data: tuple[Path, Path], scratch: Path) -> list[dict]:
    """Every system's short and long run, ``--rounds`` times, the systems in turn; one entry per
    (round, system) with its seconds per iteration."""
    short, long = args.iterations
    results = []
    for round_index in range(args.rounds):
        for system in args.systems:
            runs = [run_process(args, system, count, data, scratch) for count in (short, long)]
            s_per_iter = (runs[1]["wall_s"] - runs[0]["wall_s"]) / (long - short)
            results.append({"round": round_index, "system": system, "s_per_iter": s_per_iter, "runs": runs})
            print(f"round {round_index + 1}/{args.rounds}, {system}: {s_per_iter:.3f} s/iter", file=sys.stderr)
    return results


def table(results: list[dict], systems: list[str]) -> str:
    lines = [f"{'system':<21} {'iterations':>10} {'wall s':>8} {'system s':>9} {'peak RSS MB':>12}"]
    for result in results:
        for run in result["runs"]:
            lines.append(
                f"{run['system']:<21} {run['iterations']:>10} {run['wall_s']:>8.1f} {run['system_s']:>9.1f} {run['peak_rss_mb']:>12.0f}"
            )
    per_system = {s: [r["s_per_iter"] for r in results if r["system"] == s] for s in systems}
    lines += ["", f"{'system':<21} {'s/iter per round':<30} {'median':>8}"]
    for system, values in per_system.items():
        lines.append(f"{system:<21} {', '.join(f'{v:.3f}' for v in values):<30} {statistics.median(values):>8.3f}")
    baseline = systems[0]
    for system in systems[1:]:
        ratios = [v / b for v, b in zip(per_system[system], per_system[baseline], strict=True)]
        lines.append(
            f"{system} / {baseline} (s/iter), per round: {', '.join(f'{r:.3f}x' for r in ratios)}; median {statistics.median(ratios):.3f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectron2", type=Path, required=True, help="detectron2 checkout the reference was built from")
    parser.add_argument("--coco", required=True, help="TRAIN_JSON:IMAGES, a COCO file with masks")
    parser.add_argument("--reference-python", default=sys.executable, help="interpreter with detectron2 installed")
    parser.add_argument("--head", choices=sorted(POINTSUP_CONFIGS), default="maskrcnn")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every system (default 3)")
    parser.add_argument("--iterations", type=int, nargs=2, default=[2, 12], metavar=("SHORT", "LONG"))
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEM_ENVIRONMENTS), default=["reference", "pointsup"])
    parser.add_argument("--work-dir", type=Path, help="keep the processes' outputs and logs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write every run here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    if not 1 <= args.iterations[0] < args.iterations[1]:
        parser.error("--iterations: SHORT at least 1 and below LONG")
    if not (args.detectron2 / "projects" / "PointSup").is_dir():
        parser.error(f"--detectron2 {args.detectron2}: no projects/PointSup in it")
    with tempfile.TemporaryDirectory(prefix="reference_speed_") as temporary:
        scratch = Path(temporary) if args.work_dir is None else args.work_dir
        scratch.mkdir(parents=True, exist_ok=True)
        results = measure(args, write_points(args.coco, scratch), scratch)
    print(table(results, args.systems))
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
