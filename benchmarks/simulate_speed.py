"""Speed and memory of point simulation: pointsup vs. decoding every mask (the reference's way).

Builds a COCO-scale annotation file by replicating the coco_mini train annotations (images
copied under new ids) to at least --instances instances, then runs, each in its own process:

* baseline: the reference algorithm (implemented here): one NumPy stream seeded 12345, every
  mask decoded to a full H x W array with pycocotools, labels read at the floored points;
* pointsup: ``pointsup simulate --compat detectron2``.

Both read the same file and write their output. It checks that the points and labels are
identical, then prints wall time, peak resident memory and the ratios.

    python benchmarks/simulate_speed.py [--instances 50000] [--dataset ../shared/datasets/coco_mini]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "coco_mini"

# The reference script's algorithm, step for step (detectron2's seed_all_rng(12345) seeds
# NumPy's global stream; the rest is the same calls), minus the detectron2 import.
BASELINE = r'''
import copy, json, sys
import numpy as np
import pycocotools.mask as mask_utils

source, target = sys.argv[1], sys.argv[2]
np.random.seed(12345)
with open(source) as f:
    coco_json = json.load(f)
coco_annos = coco_json.pop("annotations")
coco_points_json = copy.deepcopy(coco_json)
imgs = {img["id"]: img for img in coco_json["images"]}
new_annos = []
for ann in coco_annos:
    t = imgs[ann["image_id"]]
    h, w = t["height"], t["width"]
    segm = ann.pop("segmentation")
    if type(segm) == list:
        rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
    elif type(segm["counts"]) == list:
        rle = mask_utils.frPyObjects(segm, h, w)
    else:
        rle = segm
    mask = mask_utils.decode(rle)
    new_ann = copy.deepcopy(ann)
    box = ann["bbox"]
    p = np.random.rand(10, 2)
    p[:, 0] = p[:, 0] * box[2]
    p[:, 1] = p[:, 1] * box[3]
    p[:, 0] += box[0]
    p[:, 1] += box[1]
    p = np.floor(p).astype(int)
    new_ann["point_coords"] = p.tolist()
    new_ann["point_labels"] = mask[p[:, 1], p[:, 0]].tolist()
    new_annos.append(new_ann)
coco_points_json["annotations"] = new_annos
with open(target, "w") as f:
    json.dump(coco_points_json, f)
'''


def build_replicated_file(dataset: Path, min_instances: int, target: Path) -> int:
    """Write a COCO file of >= min_instances instances made of copies of the train split."""
    with open(dataset / "annotations" / "instances_train2017.json") as handle:
        coco = json.load(handle)
    copies = -(-min_instances // len(coco["annotations"]))
    images, annotations = [], []
    next_image, next_ann = 1, 1
    for _ in range(copies):
        id_map = {}
        for image in coco["images"]:
            id_map[image["id"]] = next_image
            images.append({**image, "id": next_image})
            next_image += 1
        for ann in coco["annotations"]:
            annotations.append({**copy.deepcopy(ann), "id": next_ann, "image_id": id_map[ann["image_id"]]})
            next_ann += 1
    with open(target, "w") as handle:
        json.dump({"info": coco.get("info", {}), "licenses": coco.get("licenses", []), "images": images,
                   "categories": coco["categories"], "annotations": annotations}, handle)
    return len(annotations)


def run_measured(command: list[str]) -> tuple[float, float]:
    """Run a command; return (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, "POINTSUP_NO_PROGRESS": "1"})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(command)}")
    return seconds, usage.ru_maxrss / 1024.0


def load_points(path: Path) -> list[tuple]:
    with open(path) as handle:
        return [(a["id"], a["point_coords"], a["point_labels"]) for a in json.load(handle)["annotations"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=50_000)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = tmp / "instances.json"
        count = build_replicated_file(args.dataset, args.instances, source)
        print(f"input: {count} instances, {source.stat().st_size / 2**20:.1f} MiB of JSON")
        script = tmp / "baseline.py"
        script.write_text(BASELINE)
        base_s, base_mb = run_measured([sys.executable, str(script), str(source), str(tmp / "baseline.json")])
        ours_s, ours_mb = run_measured(
            [sys.executable, "-m", "pointsup", "simulate", str(source), "-o", str(tmp / "pointsup.json"), "--compat", "detectron2", "--quiet"]
        )
        identical = load_points(tmp / "baseline.json") == load_points(tmp / "pointsup.json")

    rows = [
        ("decode every mask (baseline)", base_s, base_mb),
        ("pointsup simulate --compat detectron2", ours_s, ours_mb),
    ]
    print(f"\n{'method':40s} {'seconds':>9s} {'inst/s':>9s} {'peak RSS MiB':>13s}")
    for name, seconds, mb in rows:
        print(f"{name:40s} {seconds:9.2f} {count / seconds:9.0f} {mb:13.0f}")
    speedup = base_s / ours_s
    print(f"\nspeed-up: {speedup:.1f}x (target >= 10x)   memory: {ours_mb / base_mb:.2f}x of baseline (target <= 1.0x)")
    print(f"points and labels identical: {identical}")
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
