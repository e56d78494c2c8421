"""Inference time of the three RoI mask heads, and the fast paths checked against the reference.

Usage: python benchmarks/head_speed.py [--detections 100] [--repeats 5] [--warmup 1] [--threads N]
                                       [--device cpu|cuda|auto] [--classes 80] [--channels 256]
                                       [--conv-dim 256] [--fc-dim 1024] [--point-fc-dim 256]
                                       [--image-size 800 1216] [--seed 0]

Times ``predict`` (under ``torch.inference_mode``) of the Mask R-CNN, PointRend and Implicit
PointRend heads at their default sizes on one padded image's random FPN features (p2 = 200 x 304
for 800 x 1216) with random but plausible detections (boxes of COCO-like sizes and shapes inside
the image, random classes). PointRend and Implicit PointRend run twice: with their fast inference
(only the predicted class is evaluated; the implicit head predicts only that class's row of the
last layer) and with ``fast_inference = False``, the straightforward computation (all C classes
at every subdivision step, every parameter predicted). Reported:

* median seconds per image over ``--repeats`` calls after ``--warmup`` calls, and the peak memory
  of one call (GPU: ``torch.cuda.max_memory_allocated``; CPU: the rise of the resident set,
  sampled every millisecond, so approximate and a lower bound);
* Implicit PointRend (fast) / Mask R-CNN, against the target of at most 2x on CPU;
* fast / straightforward: largest difference of the 224 x 224 probabilities and the number of
  pixels whose binary mask (probability > 0.5) differs. Float rounding (~1e-7) is expected from
  the different matmul shapes; more than a negligible number of differing pixels is flagged.

On CUDA, TF32 is turned off so that both paths compute in float32. On the CPU the C heap is glibc's
default, as in ``pointsup predict``; ``POINTSUP_GLIBC_HEAP_DEFAULTS=0`` keeps freed memory in it
(:mod:`pointsup.utils.heap`), as both can.

Heads are randomly initialised as at the start of training (seeded), so the masks are those of an
untrained head; the table states how many probabilities lie within 0.01 of 0.5, which is where a
rounding difference can flip a pixel. A quick smoke test (seconds):
``--classes 3 --channels 16 --conv-dim 16 --fc-dim 64 --point-fc-dim 16 --image-size 128 192
--detections 10``. The exit code is 1 when the fast path's masks differ beyond rounding, else 0
(whatever the speed). The last line of output is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointsup.engine.distributed import resolve_device  # noqa: E402
from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES  # noqa: E402
from pointsup.modeling.mask_heads import mask_head_class  # noqa: E402
from pointsup.modeling.mask_heads.base import RoIMaskHead  # noqa: E402
from pointsup.modeling.mask_heads.config import MaskHeadConfig  # noqa: E402
from pointsup.utils.heap import HEAP_SETTING_VARIABLE, keep_freed_memory_in_heap  # noqa: E402

#: Implicit PointRend (fast) may take at most this multiple of the Mask R-CNN head's time on CPU.
TARGET_RATIO = 2.0
#: Fast and straightforward binary masks may differ in at most this fraction of pixels (rounding).
NEGLIGIBLE_PIXEL_FRACTION = 1e-6
#: Probabilities this close to 0.5 are "borderline": a rounding difference could flip them.
BORDERLINE = 0.01


@dataclass
class Variant:
    """One timed configuration: a head kind and whether its fast inference is on."""

    name: str
    kind: str
    fast: bool | None  # None: the head has no fast/straightforward switch


VARIANTS = [
    Variant("maskrcnn", "maskrcnn", None),
    Variant("pointrend (fast)", "pointrend", True),
    Variant("pointrend (straightforward)", "pointrend", False),
    Variant("implicit (fast)", "implicit_pointrend", True),
    Variant("implicit (straightforward)", "implicit_pointrend", False),
]


@dataclass
class Result:
    """Timings, memory and the last output of one variant."""

    seconds: list[float]
    peak_memory_mb: float | None
    masks: Tensor  # (K, M, M) probabilities of the last call, on the CPU


def fpn_features(height: int, width: int, channels: int, generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    """Random (1, channels, H_l, W_l) FPN maps of one padded ``height x width`` image, keyed as the
    backbone keys them ("0".."3" = p2..p5, "pool" = p6 at half p5's size)."""
    features = {}
    for name, stride in zip(FEATURE_NAMES, FEATURE_STRIDES):
        shape = (1, channels, math.ceil(height / stride), math.ceil(width / stride))
        features[name] = torch.randn(shape, generator=generator)
    p5 = features[FEATURE_NAMES[-1]]
    features["pool"] = torch.randn((1, channels, math.ceil(p5.shape[2] / 2), math.ceil(p5.shape[3] / 2)), generator=generator)
    return {name: f.to(device) for name, f in features.items()}


def random_detections(count: int, height: int, width: int, num_classes: int, generator: torch.Generator,
                      device: torch.device) -> tuple[Tensor, Tensor]:
    """(count, 4) xyxy boxes inside the image and (count,) classes.

    Box sides are log-uniform between 12 px and 3/4 of the image's shorter side, aspect ratios
    log-uniform in [1/3, 3], positions uniform where the box fits.
    """
    shortest = min(height, width)
    low, high = math.log(min(12.0, shortest / 2)), math.log(0.75 * shortest)
    side = torch.exp(low + (high - low) * torch.rand(count, generator=generator))
    aspect = torch.exp(math.log(3.0) * (2 * torch.rand(count, generator=generator) - 1))
    box_w = (side * aspect.sqrt()).clamp(max=width - 1.0)
    box_h = (side / aspect.sqrt()).clamp(max=height - 1.0)
    x0 = torch.rand(count, generator=generator) * (width - box_w)
    y0 = torch.rand(count, generator=generator) * (height - box_h)
    boxes = torch.stack([x0, y0, x0 + box_w, y0 + box_h], dim=1)
    classes = torch.randint(0, num_classes, (count,), generator=generator)
    return boxes.to(device), classes.to(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_bytes() -> int:
    """The process's current resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mb(call, device: torch.device) -> float | None:
    """Peak memory of one ``call()`` above what was in use before it, in MB (None if unmeasurable)."""
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not os.path.exists("/proc/self/statm"):
        return None
    before = resident_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return (max(peak, resident_bytes()) - before) / 2**20


def measure(head: RoIMaskHead, features: dict[str, Tensor], boxes: Tensor, classes: Tensor, warmup: int, repeats: int,
            device: torch.device) -> Result:
    """Time ``head.predict`` on one image's detections; also its peak memory and last output."""
    outputs: list[Tensor] = []

    def call() -> None:
        outputs[:] = head.predict(features, [boxes], [classes])

    with torch.inference_mode():
        for _ in range(warmup):
            call()
        memory = peak_memory_mb(call, device)
        seconds = []
        for _ in range(repeats):
            synchronize(device)
            started = time.perf_counter()
            call()
            synchronize(device)
            seconds.append(time.perf_counter() - started)
    return Result(seconds, memory, outputs[0].float().cpu())


def compare_masks(fast: Tensor, reference: Tensor) -> dict[str, float | int | bool]:
    """Differences between two (K, M, M) probability tensors and their masks at 0.5."""
    differing = int(((fast > 0.5) != (reference > 0.5)).sum())
    total = reference.numel()
    return {
        "max_abs_prob_diff": float((fast - reference).abs().max()) if total else 0.0,
        "differing_pixels": differing,
        "pixels": total,
        "borderline_pixels": int(((reference - 0.5).abs() < BORDERLINE).sum()),
        "foreground_fraction": float((reference > 0.5).float().mean()) if total else 0.0,
        "equal": differing <= NEGLIGIBLE_PIXEL_FRACTION * total,
    }


def run_variants(args: argparse.Namespace, device: torch.device) -> dict[str, Result]:
    """Build each head once (seeded) and time its variants; heads are freed one after another."""
    generator = torch.Generator().manual_seed(args.seed)
    height, width = args.image_size
    features = fpn_features(height, width, args.channels, generator, device)
    boxes, classes = random_detections(args.detections, height, width, args.classes, generator, device)
    results: dict[str, Result] = {}
    for kind in dict.fromkeys(v.kind for v in VARIANTS):
        torch.manual_seed(args.seed)
        started = time.perf_counter()
        config = MaskHeadConfig(name=kind, conv_dim=args.conv_dim)
        for section in (config.pointrend, config.implicit_pointrend):
            section.fc_dim, section.point_fc_dim = args.fc_dim, args.point_fc_dim
        head = mask_head_class(kind).from_config(config, args.classes, "masks", args.channels).to(device).eval()
        built = time.perf_counter() - started
        parameters = sum(p.numel() for p in head.parameters())
        print(f"built {kind}: {parameters / 1e6:.1f} M parameters in {built:.1f} s", flush=True)
        for variant in (v for v in VARIANTS if v.kind == kind):
            if variant.fast is not None:
                head.fast_inference = variant.fast
            results[variant.name] = measure(head, features, boxes, classes, args.warmup, args.repeats, device)
            print(f"  {variant.name}: {statistics.median(results[variant.name].seconds):.3f} s", flush=True)
        del head
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per variant before timing")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto",
                        help="auto: the GPU when one is available, else the CPU")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--channels", type=int, default=256, help="FPN channels")
    parser.add_argument("--conv-dim", type=int, default=256, help="conv width of the Mask R-CNN and coarse/parameter heads")
    parser.add_argument("--fc-dim", type=int, default=1024, help="FC width of the coarse/parameter heads")
    parser.add_argument("--point-fc-dim", type=int, default=256, help="hidden width of the point heads")
    parser.add_argument("--image-size", type=int, nargs=2, default=[800, 1216], metavar=("H", "W"),
                        help="padded input size (p2 is a quarter of it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.detections < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--detections and --repeats must be positive, --warmup non-negative")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    heap_kept = device.type == "cpu" and keep_freed_memory_in_heap()
    if device.type == "cuda":  # TF32 would round cuDNN's convolutions (the straightforward path) but not the matmuls
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    height, width = args.image_size

    results = run_variants(args, device)
    seconds = {name: statistics.median(r.seconds) for name, r in results.items()}
    ratio = seconds["implicit (fast)"] / seconds["maskrcnn"]
    speedups = {kind: seconds[f"{kind} (straightforward)"] / seconds[f"{kind} (fast)"] for kind in ("pointrend", "implicit")}
    equality = {kind: compare_masks(results[f"{kind} (fast)"].masks, results[f"{kind} (straightforward)"].masks)
                for kind in ("pointrend", "implicit")}

    where = f"{device.type}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
                                f", {torch.get_num_threads()} threads, "
                                f"{'heap kept' if heap_kept else 'glibc heap defaults (' + HEAP_SETTING_VARIABLE + ')'}")
    print(f"\nmask head inference, {where}: {args.detections} detections on a {height}x{width} image, "
          f"{args.classes} classes, {args.channels} channels; median of {args.repeats} after {args.warmup} warmup")
    memory_label = "peak MB" if device.type == "cuda" else "RSS rise MB"
    print(f"{'head':<28} {'s/image':>8} {'min':>8} {'max':>8} {memory_label:>12} {'mask side':>10}")
    for name, result in results.items():
        memory = "-" if result.peak_memory_mb is None else f"{result.peak_memory_mb:.0f}"
        print(f"{name:<28} {seconds[name]:>8.3f} {min(result.seconds):>8.3f} {max(result.seconds):>8.3f} "
              f"{memory:>12} {result.masks.shape[-1]:>10}")
    target = f"target <= {TARGET_RATIO:g}x on CPU: {'met' if ratio <= TARGET_RATIO else 'NOT MET'}" \
        if device.type == "cpu" else f"(the {TARGET_RATIO:g}x target is for the CPU)"
    print(f"\nimplicit (fast) / maskrcnn = {ratio:.2f}x  {target}")
    for kind, speedup in speedups.items():
        print(f"{kind}: fast is {speedup:.2f}x faster than straightforward")

    print(f"\nfast vs straightforward ({'/'.join(str(s) for s in results['implicit (fast)'].masks.shape)} probabilities per head)")
    print(f"{'head':<10} {'max |dp|':>10} {'diff px':>8} {'of pixels':>10} {'|p-0.5|<0.01':>13} {'foreground':>11} {'result':>8}")
    for kind, check in equality.items():
        print(f"{kind:<10} {check['max_abs_prob_diff']:>10.2e} {check['differing_pixels']:>8d} {check['pixels']:>10d} "
              f"{check['borderline_pixels']:>13d} {check['foreground_fraction']:>11.3f} "
              f"{'equal' if check['equal'] else 'DIFFER':>8}")

    summary = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "heap_kept": heap_kept,
        "detections": args.detections,
        "classes": args.classes,
        "channels": args.channels,
        "image_size": [height, width],
        "repeats": args.repeats,
        "seconds_per_image": {name: round(value, 5) for name, value in seconds.items()},
        "peak_memory_mb": {name: None if r.peak_memory_mb is None else round(r.peak_memory_mb, 1) for name, r in results.items()},
        "implicit_fast_over_maskrcnn": round(ratio, 4),
        "target_met": ratio <= TARGET_RATIO if device.type == "cpu" else None,
        "speedup_fast_over_straightforward": {kind: round(value, 3) for kind, value in speedups.items()},
        "equality": equality,
    }
    print(json.dumps(summary))
    return 0 if all(check["equal"] for check in equality.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
