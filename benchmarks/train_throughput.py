"""Training throughput (images per second) and peak memory of a recipe, with and without mixed precision.

Usage: python benchmarks/train_throughput.py [--config RECIPE] [--device cpu|cuda|auto]
           [--precisions fp32 amp] [--iterations 50] [--warmup 5] [--block 5] [--batch 2] [--workers 2]
           [--coco TRAIN_JSON:IMAGES | --image-size 800 --images 16] [--json FILE] [KEY=VALUE ...]

Trains ``--iterations`` timed iterations of the recipe (default: the COCO recipe
mask_rcnn_R_50_FPN_1x_points, R50-FPN) after ``--warmup`` untimed ones, through the trainer's own step (forward under autocast
when AMP is on, scaled backward, optimiser and LR step) and its data loader (``--workers``
processes decoding and augmenting while the model computes). Each precision trains its own model
from the same seed; fp32 is the baseline the others are compared with, in the same run. The
precisions take turns in blocks of ``--block`` timed iterations, so that a change in machine
load affects each alike; all their models stay in memory meanwhile.

* ``fp32``: float32 everywhere (TF32 as PyTorch's defaults leave it: off for matmuls, on for
  cuDNN convolutions).
* ``amp``: mixed precision as the trainer runs it: on CUDA float16 autocast with a gradient
  scaler (``solver.amp``), on the CPU bfloat16 autocast (``solver.amp_cpu``; fast on CPUs with
  AVX-512 BF16 or AMX).

Data: ``--coco TRAIN_JSON:IMAGES``, a COCO file with masks (P10 points are simulated from them,
seed 0), e.g. ../shared/datasets/coco_mini; else a synthetic dataset of ``--images`` square images
of ``--image-size`` pixels, generated in a temporary folder. The backbone starts from random
weights (``model.backbone.weights`` is cleared: no network needed; speed does not depend on them).

Prints one row per precision: seconds per iteration (median of per-iteration times, and the
mean over the timed block), images per second (from the block's wall time), peak memory (CUDA:
``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set, a whole-process upper
bound; on CUDA the other precisions' models, gradients and optimiser states are resident too)
and the speed-up over fp32. ``--json FILE`` also writes the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointsup.data.loader import build_train_loader  # noqa: E402
from pointsup.data.synthetic import generate_synthetic_dataset  # noqa: E402
from pointsup.engine.builders import train_transforms  # noqa: E402
from pointsup.engine.config import ConfigError, load_config  # noqa: E402
from pointsup.engine.distributed import DeviceError, DistributedContext, resolve_device  # noqa: E402
from pointsup.engine.trainer import Trainer  # noqa: E402
from pointsup.points.format import read_coco_json  # noqa: E402
from pointsup.points.simulate import SimulationConfig, simulate  # noqa: E402
from pointsup.structures.instances import Sample  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

DEFAULT_RECIPE = "mask_rcnn_R_50_FPN_1x_points"
PRECISIONS = ("fp32", "amp")


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def training_data(args: argparse.Namespace, scratch: Path) -> tuple[Path, Path]:
    """(P10 training JSON, image folder): from ``--coco`` or a generated synthetic dataset."""
    if args.coco:
        masks_json, _, images = args.coco.partition(":")
        masks, image_dir = Path(masks_json), Path(images)
        if not masks.is_file() or not image_dir.is_dir():
            fail(f"--coco {args.coco}: expected TRAIN_JSON:IMAGE_FOLDER, both existing")
    else:
        data = generate_synthetic_dataset(
            scratch / "synthetic", num_images=args.images, image_size=args.image_size, val_fraction=0.0, show_progress=False
        )
        masks, image_dir = data.train_json, data.image_dir
    points = simulate(read_coco_json(masks), SimulationConfig(num_points=10, seed=0), source=str(masks))
    write_json_atomic(scratch / "train_p10.json", points.coco)
    return scratch / "train_p10.json", image_dir


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark_trainer(
    args: argparse.Namespace, device: torch.device, train_json: Path, images: Path, run_dir: Path, settings: list[str]
) -> tuple[Trainer, Iterator[list[Sample]]]:
    """The trainer of ``args.config`` on the P10 data, without validation, for ``args.warmup +
    args.iterations`` iterations, in training mode, and its data stream. ``settings`` are
    overrides of the caller's; the command line's ``KEY=VALUE`` come last."""
    overrides = [
        "seed=0",
        f"device={device}",
        "supervision=points",
        f"data.train_json={train_json}",
        f"data.train_images={images}",
        "data.val_json=",
        f"data.num_workers={args.workers}",
        f"solver.max_iter={args.warmup + args.iterations}",
        *settings,
        *args.overrides,
    ]
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        fail(f"--config {args.config}: {error.one_line()}")
    trainer = Trainer(config, run_dir, DistributedContext(0, 1, 0, device), resume=False)
    loader = build_train_loader(trainer.train_set, train_transforms(config), config.solver.ims_per_batch, args.workers, seed=0)
    trainer.ddp_model.train()
    return trainer, loader


class Runner:
    """One precision's trainer and data stream."""

    def __init__(self, args: argparse.Namespace, precision: str, train_json: Path, images: Path, scratch: Path):
        self.precision = precision
        self.device = resolve_device(args.device)
        amp = str(precision == "amp").lower()
        settings = [
            "model.backbone.weights=",
            "model.weights=",
            f"solver.ims_per_batch={args.batch}",
            f"solver.amp={amp}",
            f"solver.amp_cpu={amp}",
        ]
        self.trainer, self.loader = benchmark_trainer(args, self.device, train_json, images, scratch / precision, settings)
        self.times: list[float] = []
        self.peak_mb = 0.0

    def iteration(self) -> float:
        started = time.perf_counter()
        loss, _ = self.trainer.step(next(self.loader))
        self.trainer.backward_and_step(loss)
        synchronize(self.device)  # per-iteration times need the GPU's work finished
        return time.perf_counter() - started

    def block(self, count: int, timed: bool) -> None:
        """``count`` iterations; their times and the block's peak memory are kept when ``timed``."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        times = [self.iteration() for _ in range(count)]
        if timed:
            self.times.extend(times)
            self.peak_mb = max(self.peak_mb, peak_memory_mb(self.device))

    def row(self, args: argparse.Namespace) -> dict:
        total = sum(self.times)
        return {
            "precision": self.precision,
            "device": str(self.device),
            "config": str(args.config),
            "batch": args.batch,
            "iterations": len(self.times),
            "median_s_per_iter": statistics.median(self.times),
            "mean_s_per_iter": total / len(self.times),
            "images_per_s": len(self.times) * args.batch / total,
            "peak_memory_mb": self.peak_mb,
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
        }


def measure(args: argparse.Namespace, train_json: Path, images: Path, scratch: Path) -> list[dict]:
    """Warm every precision up, then time them in alternating blocks of ``--block`` iterations, so
    that a change of machine load (other processes, clocks) affects each alike."""
    runners = [Runner(args, precision, train_json, images, scratch) for precision in args.precisions]
    for runner in runners:
        runner.block(args.warmup, timed=False)
    remaining = args.iterations
    while remaining > 0:
        count = min(args.block, remaining)
        for runner in runners:
            runner.block(count, timed=True)
        remaining -= count
    return [runner.row(args) for runner in runners]


def table(rows: list[dict]) -> str:
    baseline = next((r for r in rows if r["precision"] == "fp32"), None)
    lines = [f"{'precision':<10} {'s/iter (median)':>16} {'s/iter (mean)':>14} {'img/s':>8} {'peak MB':>9} {'vs fp32':>8}"]
    for row in rows:
        ratio = f"{row['images_per_s'] / baseline['images_per_s']:.2f}x" if baseline else "-"
        lines.append(
            f"{row['precision']:<10} {row['median_s_per_iter']:>16.4f} {row['mean_s_per_iter']:>14.4f} "
            f"{row['images_per_s']:>8.2f} {row['peak_memory_mb']:>9.0f} {ratio:>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE, help=f"recipe file or shipped name (default {DEFAULT_RECIPE})")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--block", type=int, default=5, help="timed iterations per precision before switching (default 5)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="data loader processes (default 2)")
    parser.add_argument("--coco", default=None, metavar="TRAIN_JSON:IMAGES", help="real COCO training data (with masks)")
    parser.add_argument("--image-size", type=int, default=800, help="synthetic images' side (default 800)")
    parser.add_argument("--images", type=int, default=16, help="synthetic images (default 16)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args, overrides = parser.parse_known_args(argv)
    args.overrides = overrides
    if bad := [o for o in overrides if "=" not in o]:
        fail(f"unrecognised argument {bad[0]!r}")
    if args.iterations < 1 or args.warmup < 0 or args.batch < 1 or args.block < 1:
        fail("--iterations, --batch and --block must be >= 1, --warmup >= 0")
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        fail(f"--device: {error.one_line()}")
    if "amp" in args.precisions and device.type not in ("cuda", "cpu"):
        fail(f"--precisions amp: the trainer autocasts on CUDA and the CPU only, not on {device}")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        train_json, images = training_data(args, scratch)
        rows = measure(args, train_json, images, scratch)
    print(
        f"{args.config} on {rows[0]['device_name']}, batch {args.batch}, {args.iterations} timed iterations "
        f"after {args.warmup} warm-up, {args.workers} loader workers"
    )
    print(table(rows))
    if args.json:
        write_json_atomic(args.json, rows, indent=2)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
