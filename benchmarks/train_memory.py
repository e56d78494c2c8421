"""Peak training memory of the full-size model with each mask head (target: < 24 GB on CPU, batch 2).

Usage: python benchmarks/train_memory.py [--heads maskrcnn pointrend implicit_pointrend]
                                         [--iterations 3] [--batch 2] [--supervision points|masks]
                                         [--device cpu|cuda|auto] [--image-size 800 1333]
                                         [--instances 15] [--classes 80] [--threads N] [--seed 0]

Each head trains in its own process (so that peaks are separate): the default model (ResNet-50-FPN,
frozen BatchNorm, 80 classes, no pretrained weights) is built with ``build_model``, with the
project's SGD (momentum 0.9, weight decay 1e-4; learning rate 0, so that the random weights,
whose activations are huge without pretraining, stay finite while every buffer is still used),
and runs ``--iterations`` steps (forward, backward, optimiser step) on one fixed batch of
synthetic images: random pixels, ``--instances`` random boxes per image with elliptic masks and
10 annotated points each (labels read from the mask; the masks are only built with
``--supervision masks``). Momentum buffers exist from the first step on, so the peak is reached
from the second.

Reported per head: parameters, the resident set after building model and optimiser, the peak
resident set of the process (``VmHWM``), that peak divided by the batch size, seconds per
iteration (median after the first, which also allocates) and the foreground RoIs per image that
reached the mask head. On a GPU (``--device cuda``) the memory columns are
``torch.cuda.memory_allocated`` after the build and ``torch.cuda.max_memory_allocated`` over
training instead. The last line is a JSON summary; the exit code is 1 when a CPU peak reaches
24 GB or a child fails, else 0.

``--image-size 256 320 --instances 3 --iterations 2 --heads maskrcnn`` is a quick smoke test.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointsup.engine.distributed import resolve_device  # noqa: E402
from pointsup.engine.solver import build_optimizer  # noqa: E402
from pointsup.modeling.build import build_model  # noqa: E402
from pointsup.modeling.config import ModelConfig  # noqa: E402
from pointsup.modeling.detector import total_loss  # noqa: E402
from pointsup.modeling.mask_heads import MASK_HEADS  # noqa: E402
from pointsup.modeling.mask_heads.config import MaskHeadConfig  # noqa: E402
from pointsup.structures.instances import InstanceTargets, Sample  # noqa: E402

#: Training at default sizes must fit in this much memory on the CPU at batch 2.
LIMIT_GB = 24.0
POINTS_PER_INSTANCE = 10
#: The optimiser step runs in full (momentum, weight decay, update) but leaves the weights as
#: they are: a randomly initialised ResNet-50 with frozen (identity) BatchNorm has huge
#: activations, and any learning rate soon turns them into NaN, which would change the work done.
LEARNING_RATE = 0.0
#: Marks the child's result line on its standard output.
RESULT_PREFIX = "TRAIN_MEMORY_RESULT "


def proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (e.g. VmRSS, VmHWM) in bytes; None where absent."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM (counts only this process image), else ru_maxrss."""
    peak = proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, kB on Linux


def synthetic_sample(height: int, width: int, num_instances: int, num_classes: int, with_masks: bool,
                     generator: torch.Generator, image_id: int) -> Sample:
    """A random-pixel image with ``num_instances`` boxes (sides 24 px to 3/4 of the shorter image
    side), elliptic masks filling them, and 10 points per instance labelled from the mask."""
    shortest = min(height, width)
    side = 24 + (0.75 * shortest - 24) * torch.rand(num_instances, 2, generator=generator)
    box_w, box_h = side[:, 0], side[:, 1]
    x0 = torch.rand(num_instances, generator=generator) * (width - box_w)
    y0 = torch.rand(num_instances, generator=generator) * (height - box_h)
    boxes = torch.stack([x0, y0, x0 + box_w, y0 + box_h], dim=1)
    # Stored integer points inside the box; their centres are d + 0.5 (continuous coordinates).
    fractions = torch.rand(num_instances, POINTS_PER_INSTANCE, 2, generator=generator)
    pixels = (boxes[:, None, :2] + fractions * (boxes[:, None, 2:] - boxes[:, None, :2])).floor()
    pixels = torch.minimum(pixels, torch.tensor([width - 1.0, height - 1.0]))
    point_coords = pixels + 0.5
    centres, radii = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2
    inside = (((point_coords - centres[:, None]) / radii[:, None]) ** 2).sum(dim=2) <= 1
    masks = None
    if with_masks:
        ys = torch.arange(height, dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(width, dtype=torch.float32)[None, :] + 0.5
        masks = torch.stack([(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8)
                             for (cx, cy), (rx, ry) in zip(centres.tolist(), radii.tolist())])
    targets = InstanceTargets(
        boxes=boxes,
        classes=torch.randint(0, num_classes, (num_instances,), generator=generator),
        point_coords=point_coords,
        point_labels=inside.to(torch.float32),
        masks=masks,
        annotation_ids=torch.arange(num_instances, dtype=torch.int64),
    )
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    return Sample(image, image_id, f"synthetic_{image_id}.png", (height, width), targets)


def measure_head(head: str, args: argparse.Namespace) -> dict:
    """Build, train ``args.iterations`` steps and return this process's memory and speed."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model = build_model(ModelConfig(mask_head=MaskHeadConfig(name=head)), args.classes, args.supervision).to(device).train()
    optimizer = build_optimizer(model, LEARNING_RATE, 0.9, 1e-4, 0.0)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        after_build = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_after_build = proc_status_bytes("VmRSS")

    generator = torch.Generator().manual_seed(args.seed)
    height, width = args.image_size
    batch = [synthetic_sample(height, width, args.instances, args.classes, args.supervision == "masks", generator, i)
             for i in range(args.batch)]
    seconds, foreground = [], []
    for iteration in range(args.iterations):
        started = time.perf_counter()
        outputs = model(batch)
        loss = total_loss(outputs)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{head}: the loss is {loss.item()} at iteration {iteration + 1}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
        foreground.append(float(outputs["num_fg_rois"]))
        print(f"[{head}] iteration {iteration + 1}/{args.iterations}: {seconds[-1]:.1f} s, loss {loss.item():.3f}, "
              f"peak RSS {peak_rss_bytes() / 1e9:.2f} GB", file=sys.stderr, flush=True)
    result = {
        "head": head,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "parameters": parameters,
        "trainable_parameters": trainable,
        "rss_after_build_bytes": rss_after_build,
        "peak_rss_bytes": peak_rss_bytes(),
        "seconds_per_iteration": statistics.median(seconds[1:] or seconds),
        "seconds": seconds,
        "foreground_rois_per_image": statistics.mean(foreground),
    }
    if device.type == "cuda":
        result.update(cuda_after_build_bytes=after_build, cuda_peak_bytes=torch.cuda.max_memory_allocated(device),
                      gpu=torch.cuda.get_device_name(device))
    return result


def child_command(head: str, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", head,
               "--iterations", str(args.iterations), "--batch", str(args.batch), "--supervision", args.supervision,
               "--device", args.device, "--image-size", *map(str, args.image_size), "--instances", str(args.instances),
               "--classes", str(args.classes), "--seed", str(args.seed)]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    return command


def run_child(head: str, args: argparse.Namespace) -> dict | None:
    """Measure ``head`` in a fresh process; None (after printing why) when it fails."""
    completed = subprocess.run(child_command(head, args), check=False, stdout=subprocess.PIPE, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        print(f"[{head}] failed with exit code {completed.returncode}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def print_table(results: list[dict], args: argparse.Namespace) -> bool:
    """The table and verdict; True when every CPU peak is under the limit."""
    gb = 1e9
    on_gpu = any("cuda_peak_bytes" in r for r in results)
    first = results[0]
    where = first.get("gpu", f"cpu, {first['threads']} threads")
    print(f"\ntraining memory, {where}: batch {args.batch} of {args.image_size[0]}x{args.image_size[1]} images, "
          f"{args.instances} instances each, {args.supervision} supervision, {args.iterations} iterations")
    memory = ("GPU alloc after build GB", "GPU peak alloc GB", "GPU peak / image GB") if on_gpu else \
        ("RSS after build GB", "peak RSS GB", "peak / image GB")
    print(f"{'head':<20} {'params M':>9} {memory[0]:>{len(memory[0]) + 1}} {memory[1]:>{len(memory[1]) + 1}} "
          f"{memory[2]:>{len(memory[2]) + 1}} {'s/it':>7} {'fg RoIs/img':>12}")
    for r in results:
        if on_gpu:
            built, peak = r["cuda_after_build_bytes"], r["cuda_peak_bytes"]
        else:
            built, peak = r["rss_after_build_bytes"], r["peak_rss_bytes"]
        built_text = "-" if built is None else f"{built / gb:.2f}"
        print(f"{r['head']:<20} {r['parameters'] / 1e6:>9.1f} {built_text:>{len(memory[0]) + 1}} "
              f"{peak / gb:>{len(memory[1]) + 1}.2f} {peak / gb / args.batch:>{len(memory[2]) + 1}.2f} "
              f"{r['seconds_per_iteration']:>7.2f} {r['foreground_rois_per_image']:>12.1f}")
    if on_gpu:
        print("(the 24 GB limit is for CPU training; peak RSS of the GPU runs: "
              + ", ".join(f"{r['head']} {r['peak_rss_bytes'] / gb:.2f} GB" for r in results) + ")")
        return True
    worst = max(results, key=lambda r: r["peak_rss_bytes"])
    fits = worst["peak_rss_bytes"] < LIMIT_GB * gb
    print(f"largest peak: {worst['head']} {worst['peak_rss_bytes'] / gb:.2f} GB -> "
          f"{'fits' if fits else 'DOES NOT FIT'} in {LIMIT_GB:g} GB at batch {args.batch}")
    return fits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=list(MASK_HEADS), default=list(MASK_HEADS))
    parser.add_argument("--iterations", type=int, default=3, help="training steps per head (at least 2 to include momentum)")
    parser.add_argument("--batch", type=int, default=2, help="images per batch")
    parser.add_argument("--supervision", choices=["points", "masks"], default="points")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="auto: the GPU when one is available, else the CPU")
    parser.add_argument("--image-size", type=int, nargs=2, default=[800, 1333], metavar=("H", "W"))
    parser.add_argument("--instances", type=int, default=15, help="annotated instances per image")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=list(MASK_HEADS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.batch < 1 or args.instances < 1:
        parser.error("--iterations, --batch and --instances must be positive")

    if args.child is not None:
        print(RESULT_PREFIX + json.dumps(measure_head(args.child, args)), flush=True)
        return 0

    results = []
    for head in args.heads:
        print(f"measuring {head} in a new process ...", file=sys.stderr, flush=True)
        result = run_child(head, args)
        if result is not None:
            results.append(result)
    if not results:
        return 1
    fits = print_table(results, args)
    summary = {
        "batch": args.batch,
        "image_size": args.image_size,
        "instances": args.instances,
        "supervision": args.supervision,
        "iterations": args.iterations,
        "limit_gb": LIMIT_GB,
        "fits": fits,
        "results": results,
    }
    print(json.dumps(summary))
    return 0 if fits and len(results) == len(args.heads) else 1


if __name__ == "__main__":
    sys.exit(main())
