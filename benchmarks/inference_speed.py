"""Deployed inference speed: PyTorch eager, TorchScript and onnxruntime, for each exported model.

Usage: python benchmarks/inference_speed.py [--sizes 800 320] [--images 3] [--warmup 2]
                                            [--threads 2] [--heads maskrcnn pointrend
                                            implicit_pointrend condinst] [--json OUT.json]

For each head (Mask R-CNN with the maskrcnn, pointrend and implicit_pointrend mask heads, and
CondInst), built from the CPU recipes' configs (``configs/cpu/synthetic_R18_*points.yaml``,
ResNet-18-FPN) with seeded random weights and 80 classes, and for each test size (short side
``--sizes``, long side capped at 1333 / 533 as the COCO and CPU recipes do), the script exports
the model to ONNX and TorchScript once, then measures in one run, each setting in a fresh
subprocess limited to ``--threads`` threads:

* ``eager``: ``pointsup.Predictor`` (PyTorch, the baseline);
* ``torchscript``: :class:`pointsup.deploy.torchscript_runner.TorchScriptPredictor`;
* ``onnxruntime``: :class:`pointsup.deploy.onnx_runner.OnnxPredictor` (CPU provider).

All three include resizing, box scaling and mask pasting. Reported: images per second over
``--images`` timed images after ``--warmup`` untimed ones (640 x 480 noise images resized to the
test size), detections per image, and the subprocess's peak resident memory (``ru_maxrss``: model,
runtime and one image's activations). Untrained weights give nearly uniform scores (about 1/80,
under the 0.05 threshold), so the score threshold is set to 0 and each image keeps
``detections_per_image`` (100) detections: an upper bound on the mask heads' work, for speed
only (the masks mean nothing). Two warm-up images: TorchScript's profiling executor optimises on
its first calls. Prints a Markdown table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADS = ("maskrcnn", "pointrend", "implicit_pointrend", "condinst")
BACKENDS = ("eager", "torchscript", "onnxruntime")
MAX_SIZE = {800: 1333, 320: 533}
NUM_CLASSES = 80


def head_config(head: str, size: int):  # noqa: ANN201  (a pointsup Config; imported lazily)
    from pointsup.engine.config import load_config

    name = "synthetic_R18_condinst_points.yaml" if head == "condinst" else "synthetic_R18_points.yaml"
    extra = [] if head == "condinst" else [f"model.mask_head.name={head}"]
    max_size = MAX_SIZE.get(size, round(size * 1333 / 800))
    return load_config(
        ROOT / "configs" / "cpu" / name,
        [*extra, "model.backbone.weights=null", f"data.min_size_test={size}", f"data.max_size_test={max_size}", "device=cpu"],
    )


def untrained(head: str, size: int):  # noqa: ANN201  (a TrainedModel)
    import torch

    from pointsup.engine.builders import model_for_checkpoint
    from pointsup.engine.predictor import TrainedModel

    torch.manual_seed(0)
    config = head_config(head, size)
    model = model_for_checkpoint(config, NUM_CLASSES).eval()
    if head == "condinst":  # untrained scores (~1/80) fall under 0.05: keep them, for the heads' full workload
        model.inference.score_thresh = 0.0
    else:
        model.roi_heads.score_thresh = 0.0
    names = [f"class{k}" for k in range(NUM_CLASSES)]
    return TrainedModel(model, config, names, list(range(1, NUM_CLASSES + 1)), torch.device("cpu"))


def measure(head: str, size: int, backend: str, folder: Path, images: int, warmup: int, threads: int) -> dict[str, float]:
    """One setting, in this process (run as a subprocess by :func:`main`)."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    if backend == "eager":
        from pointsup.engine.predictor import Predictor

        predictor = Predictor(untrained(head, size), score_threshold=0.0)
    elif backend == "torchscript":
        from pointsup.deploy.torchscript_runner import TorchScriptPredictor

        predictor = TorchScriptPredictor(folder / f"{head}_{size}.pt", score_threshold=0.0, threads=threads)
    else:
        from pointsup.deploy.onnx_runner import OnnxPredictor

        predictor = OnnxPredictor(folder / f"{head}_{size}.onnx", score_threshold=0.0, threads=threads)
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(images + warmup)]
    for image in inputs[:warmup]:
        predictor(image)
    detections = 0
    start = time.perf_counter()
    for image in inputs[warmup:]:
        detections += len(predictor(image))
    seconds = time.perf_counter() - start
    peak_mib = peak_resident_mib()
    return {"images_per_s": images / seconds, "detections": detections / images, "peak_mib": peak_mib}


def peak_resident_mib() -> float:
    """This process's peak resident memory: ``VmHWM`` (``ru_maxrss`` would include the parent's
    peak, which Linux carries across ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export(head: str, size: int, folder: Path) -> None:
    from pointsup.deploy.export import onnx_bytes, torchscript_bytes

    trained = untrained(head, size)
    (folder / f"{head}_{size}.onnx").write_bytes(onnx_bytes(trained))
    (folder / f"{head}_{size}.pt").write_bytes(torchscript_bytes(trained))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[800, 320])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", nargs=3, metavar=("HEAD", "SIZE", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        head, size, backend = args.child
        print(json.dumps(measure(head, int(size), backend, args.folder, args.images, args.warmup, args.threads)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for head in args.heads:
            for size in args.sizes:
                export(head, size, folder)
                for backend in BACKENDS:
                    command = [
                        sys.executable,
                        __file__,
                        "--child",
                        head,
                        str(size),
                        backend,
                        "--folder",
                        str(folder),
                        "--images",
                        str(args.images),
                        "--warmup",
                        str(args.warmup),
                        "--threads",
                        str(args.threads),
                    ]
                    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
                    if result.returncode != 0:
                        print(result.stderr, file=sys.stderr)
                        return 1
                    row = {"head": head, "size": size, "backend": backend, **json.loads(result.stdout.strip().splitlines()[-1])}
                    rows.append(row)
                    print(f"{head} {size} {backend}: {row['images_per_s']:.2f} img/s, {row['peak_mib']:.0f} MiB", file=sys.stderr)
    print("| head | short side | backend | images/s | vs eager | detections/image | peak memory (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        eager = next(r for r in rows if r["head"] == row["head"] and r["size"] == row["size"] and r["backend"] == "eager")
        print(
            f"| {row['head']} | {row['size']} | {row['backend']} | {row['images_per_s']:.2f} | "
            f"{row['images_per_s'] / eager['images_per_s']:.2f}x | {row['detections']:.0f} | {row['peak_mib']:.0f} |"
        )
    summary = {"threads": args.threads, "images": args.images, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
