"""Where a training iteration's time goes: the share of each stage, from timers around the stages.

Usage: python benchmarks/train_profile.py [--config RECIPE] [--device cpu|cuda|auto] [--iterations 10]
           [--warmup 2] [--batch N] [--workers 0] [--coco TRAIN_JSON:IMAGES | --image-size 320 --images 16]
           [--json FILE] [KEY=VALUE ...]

Trains the recipe (default: the demo's, synthetic_lite0_points; e.g. mask_rcnn_R_50_FPN_1x_points
with data.min_size_train=[800] for the COCO size) through the trainer's own step, and times, per
iteration:

* data: the loader's next batch (decoding, augmentation, target building; in this process with
  ``--workers 0``, the default, so that it is counted; with workers, only the wait for them);
* the forward pass by stage. Mask R-CNN: normalise and pad, backbone + FPN, RPN (anchors,
  proposals, its losses), RoI sampling and box targets, box head (RoIAlign, FCs, predictor), box
  losses and mask targets (the rest of the RoI heads outside the mask head), mask head and its
  point (or mask) loss. CondInst: normalise and pad, backbone + FPN, FCOS head and controller,
  mask branch, losses (location assignment, FCOS losses, dynamic mask head, mask losses);
* backward (and gradient clipping), the optimiser step, and the logging the trainer does every
  iteration (loss reduction and the metrics' ``float()``, which waits for the device).

Stages nest (the mask head runs inside the RoI heads), and each is reported by its own time, its
inner stages excluded. Timers wrap the modules' methods from outside: the model is unchanged. On
CUDA every timer synchronises, which serialises the GPU slightly. The table lists seconds per
iteration (median over the timed iterations) and the share of the iteration's wall time; the
rows sum to the iteration.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_throughput import benchmark_trainer, fail, training_data  # noqa: E402
from pointsup.engine.distributed import DeviceError, reduce_dict, resolve_device  # noqa: E402
from pointsup.engine.trainer import Trainer  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

DEFAULT_RECIPE = "synthetic_lite0_points"


class StageTimer:
    """Exclusive wall time of nested stages: a stage's inner stages are subtracted from it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._inner: list[float] = []  # per open stage, the time its inner stages took

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, stage: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._sync()
        started = time.perf_counter()
        self._inner.append(0.0)
        try:
            return function(*args, **kwargs)
        finally:
            self._sync()
            elapsed = time.perf_counter() - started
            inner = self._inner.pop()
            self.seconds[stage] += elapsed - inner
            if self._inner:
                self._inner[-1] += elapsed

    def wrap(self, owner: Any, method: str, stage: str) -> None:
        """Time every call of ``owner.method`` as ``stage`` (an instance attribute shadows it)."""
        original = getattr(owner, method)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            return self.run(stage, original, *args, **kwargs)

        setattr(owner, method, timed)

    def take(self) -> dict[str, float]:
        """The seconds of each stage since the last call, and start again."""
        seconds, self.seconds = dict(self.seconds), defaultdict(float)
        return seconds


def instrument(trainer: Trainer, timer: StageTimer) -> None:
    """Wrap the stages of the trainer's model (Mask R-CNN or CondInst) and optimiser."""
    model = trainer.model
    stages: list[tuple[Any, str, str]] = [
        (model, "preprocess", "normalise + pad"),
        (model.backbone, "forward", "backbone + FPN"),
        (trainer.optimizer, "step", "optimiser step"),
    ]
    if hasattr(model, "roi_heads"):  # Mask R-CNN
        roi_heads = model.roi_heads
        stages += [
            (model.rpn, "forward", "RPN (proposals + loss)"),
            (roi_heads, "forward_train", "box losses + mask targets"),
            (roi_heads, "select_training_samples", "RoI sampling + box targets"),
            (roi_heads, "box_outputs", "box head"),
            (roi_heads.point_mask_head, "losses", "mask head + its loss"),
        ]
    else:  # CondInst
        stages += [
            (model.head, "forward", "FCOS head + controller"),
            (model.mask_branch, "forward", "mask branch"),
            (model, "losses", "losses (assignment, FCOS, masks)"),
        ]
    for owner, method, stage in stages:
        timer.wrap(owner, method, stage)


def logged_values(outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """What the trainer logs every iteration: the outputs reduced over processes, as floats."""
    return {key: float(value) for key, value in reduce_dict({k: v.detach().float() for k, v in outputs.items()}).items()}


def profile(args: argparse.Namespace, train_json: Path, images: Path, scratch: Path) -> tuple[list[dict], str]:
    device = resolve_device(args.device)
    settings = [f"solver.ims_per_batch={args.batch}"] if args.batch else []
    trainer, loader = benchmark_trainer(args, device, train_json, images, scratch / "run", settings)
    config = trainer.config
    timer = StageTimer(device)
    instrument(trainer, timer)
    iterations: list[dict[str, float]] = []
    for index in range(args.warmup + args.iterations):
        started = time.perf_counter()
        batch = timer.run("data", next, loader)
        loss, outputs = timer.run("forward (rest)", trainer.step, batch)
        timer.run("backward (+ clipping)", trainer.backward_and_step, loss)
        timer.run("logging (loss reduction, float())", logged_values, outputs)
        seconds = timer.take()
        seconds["total"] = time.perf_counter() - started
        if index >= args.warmup:
            iterations.append(seconds)
    stages = [name for name in iterations[0] if name != "total"]
    total = statistics.median(i["total"] for i in iterations)
    rows = []
    for stage in stages:
        median = statistics.median(i.get(stage, 0.0) for i in iterations)
        mean_share = statistics.mean(i.get(stage, 0.0) / i["total"] for i in iterations)
        rows.append({"stage": stage, "median_s": median, "share": mean_share})
    rows.sort(key=lambda r: -r["share"])
    rows.append({"stage": "iteration", "median_s": total, "share": 1.0})
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    title = (
        f"{args.config} on {where}: batch {config.solver.ims_per_batch}, short side {config.data.min_size_train}, "
        f"{args.iterations} iterations after {args.warmup} warm-up, {args.workers} loader workers"
    )
    return rows, title


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_RECIPE, help=f"recipe file or shipped name (default {DEFAULT_RECIPE})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None, help="images per iteration (default: the recipe's)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes (default 0: loading is timed)")
    parser.add_argument("--coco", default=None, metavar="TRAIN_JSON:IMAGES", help="real COCO training data (with masks)")
    parser.add_argument("--image-size", type=int, default=320, help="synthetic images' side (default 320)")
    parser.add_argument("--images", type=int, default=16, help="synthetic images (default 16)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args, overrides = parser.parse_known_args(argv)
    args.overrides = overrides
    if bad := [o for o in overrides if "=" not in o]:
        fail(f"unrecognised argument {bad[0]!r}")
    if args.iterations < 1 or args.warmup < 0 or (args.batch is not None and args.batch < 1):
        fail("--iterations and --batch must be >= 1, --warmup >= 0")
    try:
        resolve_device(args.device)
    except DeviceError as error:
        fail(f"--device: {error.one_line()}")
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        train_json, images = training_data(args, scratch)
        rows, title = profile(args, train_json, images, scratch)
    print(title)
    print(f"{'stage':<36} {'s/iter':>8} {'share':>7}")
    for row in rows:
        print(f"{row['stage']:<36} {row['median_s']:>8.3f} {row['share']:>6.1%}")
    if args.json:
        write_json_atomic(args.json, {"title": title, "rows": rows}, indent=2)
    print(json.dumps({"title": title, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
