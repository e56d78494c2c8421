"""Seconds per training iteration with point supervision vs mask supervision.

Usage: python benchmarks/train_speed.py [DATASET] [--iterations N] [--warmup N] [KEY=VALUE ...]

Same model, same images, same seed, one process: the data loading (in the main process, so it
is counted), forward, backward and optimiser step of N iterations after a warmup, alternating
the two supervisions in blocks so that machine load affects both alike. Points need no mask
decoding, resizing or RoIAlign of masks, so they must not be slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import data_overrides, prepare  # noqa: E402
from pointsup.data.loader import build_train_loader  # noqa: E402
from pointsup.engine.builders import build_train_dataset, model_from_config, train_transforms  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.solver import build_optimizer  # noqa: E402
from pointsup.modeling.detector import total_loss  # noqa: E402


class Runner:
    """One supervision's model, optimiser and data stream."""

    def __init__(self, data, supervision: str, extra: list[str]):
        config = load_config(data.config, ["seed=0", "device=cpu", "data.num_workers=0", *data_overrides(data, supervision), *extra])
        torch.manual_seed(0)
        dataset = build_train_dataset(config)
        self.model = model_from_config(config, dataset.num_classes).train()
        self.optimizer = build_optimizer(self.model, 0.002, 0.9, 1e-4, 0.0)
        self.loader = build_train_loader(dataset, train_transforms(config), config.solver.ims_per_batch, 0, seed=0)

    def iteration(self) -> float:
        started = time.perf_counter()
        loss = total_loss(self.model(next(self.loader)))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="synthetic", help="synthetic (default) or balloon")
    parser.add_argument("--iterations", type=int, default=20, help="timed iterations per supervision")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--block", type=int, default=5, help="iterations per alternation block")
    args, extra = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        data = prepare(args.dataset, Path(scratch))
        runners = {s: Runner(data, s, extra) for s in ("masks", "points")}
        for runner in runners.values():
            for _ in range(args.warmup):
                runner.iteration()
        times: dict[str, list[float]] = {s: [] for s in runners}
        while min(len(t) for t in times.values()) < args.iterations:
            for supervision, runner in runners.items():
                times[supervision].extend(runner.iteration() for _ in range(args.block))
    masks, points = statistics.median(times["masks"]), statistics.median(times["points"])
    print(f"\n{args.dataset}: median seconds per iteration over {len(times['points'])} iterations each "
          f"({torch.get_num_threads()} threads, batch from {data.config.name})")
    print(f"{'supervision':<12} {'s/iter':>8} {'mean':>8} {'min':>8}")
    for name, values in times.items():
        print(f"{name:<12} {statistics.median(values):>8.3f} {statistics.mean(values):>8.3f} {min(values):>8.3f}")
    print(f"points / masks = {points / masks:.3f} ({'not slower' if points <= masks * 1.02 else 'SLOWER'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
