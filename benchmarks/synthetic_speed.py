"""Speed of the synthetic dataset generator (target: >= 20 images/s at 512 px on one CPU core).

Usage: python benchmarks/synthetic_speed.py [--images N] [--image-size PX] [--seed S]

Generates the images into a temporary folder (removed afterwards) and prints a small table.
The exit code is 0 whatever the speed; only an exception makes it fail.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointsup.data.synthetic import generate_synthetic_dataset  # noqa: E402

TARGET_IMAGES_PER_S = 20.0


def _pin_to_one_core() -> str:
    """Restrict this process to one CPU core where the OS allows it; return a description."""
    if hasattr(os, "sched_setaffinity"):
        try:
            core = min(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {core})
            return f"pinned to core {core}"
        except OSError:
            pass
    return "not pinned"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    pinning = _pin_to_one_core()
    with tempfile.TemporaryDirectory(prefix="pointsup-synthetic-") as tmp:
        # Warm-up (imports, allocator) outside the timed run.
        generate_synthetic_dataset(Path(tmp) / "warmup", num_images=2, seed=args.seed, image_size=args.image_size, show_progress=False)
        start = time.perf_counter()
        result = generate_synthetic_dataset(
            Path(tmp) / "data", num_images=args.images, seed=args.seed, image_size=args.image_size, show_progress=False
        )
        seconds = time.perf_counter() - start
        disk_mb = sum(p.stat().st_size for p in result.image_dir.iterdir()) / 1e6

    rate = result.num_images / seconds
    verdict = "pass" if rate >= TARGET_IMAGES_PER_S else "FAIL"
    print(f"synthetic dataset speed ({args.image_size} px, {pinning}, {result.num_instances} instances, {disk_mb:.1f} MB of PNG)")
    print(f"{'images':>8} {'seconds':>9} {'images/s':>9} {'target/s':>9} {'result':>7}")
    print(f"{result.num_images:>8d} {seconds:>9.2f} {rate:>9.1f} {TARGET_IMAGES_PER_S:>9.1f} {verdict:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
