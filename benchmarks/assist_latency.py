"""Model-assisted labelling: answer -> next point latency and seconds per point, with and without --weights.

A scripted annotator labels a session over HTTP, as the labelling page does (one kept-alive
connection, each answer's reply brings the next points), against a real ``pointsup annotate
serve`` process: once without a model and once with ``--weights``. It accepts the model's
suggestion when the model is at least --trust sure, and answers from the masks otherwise; it
waits --think-ms before each answer (0: as fast as the server lets it) and sends the time since
the point arrived as the response time, as the page does.

It prints, for each run, the median and 95th percentile of the answer -> next point time (the
round trip of ``POST /api/answer``, whose reply carries the next point), and the time per point
with and without a suggestion from ``annotate progress`` (its seconds per point, shown in
milliseconds: a script answers in well under one). The scripted times say nothing about people;
they show what is measured.

Without --weights it builds its own data: --images pictures of bright blobs (64 px) and a tiny
checkpoint fitted to their masks (:func:`build_tiny_checkpoint`: one iteration of ``pointsup
train`` for a valid checkpoint, then the mask head alone fitted to the masks given the boxes;
about a minute on a CPU). With --weights, give --dataset and --image-dir of its kind.

    python benchmarks/assist_latency.py [--images 40] [--points 10] [--think-ms 0] [--trust 0.8]
    python benchmarks/assist_latency.py --weights model_final.pth --dataset train.json --image-dir images/
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: the shipped recipe the tiny checkpoint starts from, and what it changes (kept few)
BASE_RECIPE = "synthetic_R18_points"
TINY_OVERRIDES = ("device=cpu", "seed=0", "model.fpn.channels=32", "model.mask_head.conv_dim=16", "data.num_workers=0")


# ---- data and a tiny model ---------------------------------------------------------------------


def make_blob_dataset(root: Path, num_images: int = 8, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Pictures of 1 to 3 bright ellipses ("blob", category 1) on a dark noisy ground, with their
    masks: ``(root/blobs.json, root/images)``."""
    from pycocotools import mask as mask_utils

    from pointsup.data.synthetic import encode_png
    from pointsup.utils.atomic import write_json_atomic

    rng = np.random.default_rng(seed)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[0:size, 0:size]
    images, annotations = [], []
    for index in range(num_images):
        picture = np.full((size, size, 3), 60.0) + rng.normal(0.0, 4.0, (size, size, 3))
        taken = np.zeros((size, size), dtype=bool)
        for _ in range(int(rng.integers(1, 4))):
            for _attempt in range(50):
                cx, cy = rng.uniform(0.2 * size, 0.8 * size, 2)
                rx, ry = rng.uniform(size / 12, size / 6, 2)
                mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
                if not (mask & taken).any():
                    break
            else:
                continue
            taken |= mask
            picture[mask] = rng.uniform(150.0, 255.0, 3)
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": 1,
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                    "segmentation": {"size": [size, size], "counts": rle["counts"].decode("ascii")},
                }
            )
        name = f"blob_{index:03d}.png"
        (images_dir / name).write_bytes(encode_png(np.clip(picture, 0, 255).astype(np.uint8)))
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
    path = root / "blobs.json"
    write_json_atomic(path, {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "blob"}]})
    return path, images_dir


def build_tiny_checkpoint(dataset: Path, images: Path, output: Path, steps: int = 150) -> Path:
    """A checkpoint of a tiny Mask R-CNN whose mask head fits the dataset's masks: ``pointsup
    train`` for one iteration (mask supervision, test size = the images' size) writes a valid
    checkpoint; then the mask head alone is fitted, ``steps`` Adam steps, to the masks sampled on
    its grid, given the boxes and the backbone's features (kept as they are); the weights are
    written back into the checkpoint. Returns its path."""
    import torch

    from pointsup.data.dataset import read_image
    from pointsup.engine.config import load_config
    from pointsup.engine.predictor import inference_transforms, load_trained_model, make_sample
    from pointsup.engine.trainer import train
    from pointsup.points.format import read_coco_json
    from pointsup.points.rle import segmentation_to_rle

    coco = read_coco_json(dataset)
    size = max(max(i["width"], i["height"]) for i in coco["images"])
    config = load_config(
        BASE_RECIPE,
        [
            *TINY_OVERRIDES,
            "supervision=masks",
            f"data.train_json={dataset}",
            f"data.train_images={images}",
            "data.val_json=null",
            f"data.min_size_train=[{size}]",
            f"data.max_size_train={size}",
            f"data.min_size_test={size}",
            f"data.max_size_test={size}",
            "solver.max_iter=1",
            "solver.steps=[]",
            "solver.ims_per_batch=2",
        ],
    )
    checkpoint = train(config, output).final_checkpoint
    trained = load_trained_model(checkpoint, "cpu")
    model = trained.model
    head = model.roi_heads.point_mask_head  # type: ignore[union-attr]
    transforms = inference_transforms(trained)
    samples, boxes, classes, targets = [], [], [], []
    from pycocotools import mask as mask_utils

    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"] and not a.get("iscrowd", 0)]
        if not anns:
            continue
        sample = transforms(
            make_sample(read_image(images / image["file_name"]), image["id"], image["file_name"]), np.random.default_rng(0)
        )
        scale = sample.image_size[1] / image["width"]
        grid = 2 * head.pooler.output_size  # the head's M x M mask
        cells = (np.arange(grid) + 0.5) / grid
        box_list, mask_list = [], []
        for ann in anns:
            x, y, w, h = ann["bbox"]
            mask = mask_utils.decode(segmentation_to_rle(ann["segmentation"], image["height"], image["width"]))
            columns = np.clip(np.floor(x + cells * w).astype(int), 0, image["width"] - 1)
            rows = np.clip(np.floor(y + cells * h).astype(int), 0, image["height"] - 1)
            mask_list.append(mask[rows][:, columns])
            box_list.append([x * scale, y * scale, (x + w) * scale, (y + h) * scale])
        samples.append(sample)
        boxes.append(torch.tensor(box_list, dtype=torch.float32))
        classes.append(torch.zeros(len(anns), dtype=torch.int64))
        targets.append(torch.tensor(np.stack(mask_list), dtype=torch.float32))
    target = torch.cat(targets)
    with torch.no_grad():
        features = model.backbone(model.preprocess(samples).tensors)  # type: ignore[attr-defined]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        probs = torch.cat(head.predict(features, boxes, classes)).clamp(1e-6, 1 - 1e-6)
        loss = torch.nn.functional.binary_cross_entropy(probs, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["model"] = model.state_dict()
    torch.save(payload, checkpoint)
    return checkpoint


# ---- the scripted annotator --------------------------------------------------------------------


class Client:
    """One kept-alive HTTP connection to the server, as a browser tab keeps."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.connection.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {payload}")
        return payload


def start_server(dataset: Path, images: Path, db: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    """``pointsup annotate serve`` on a free port; returns the process and its port."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pointsup",
            "annotate",
            "serve",
            str(dataset),
            "--images",
            str(images),
            "--db",
            str(db),
            "--port",
            "0",
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "POINTSUP_NO_PROGRESS": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"labelling page: http://[^:/]+:(\d+)/", line):
            return process, int(match.group(1))
    process.kill()
    raise RuntimeError("the server did not start")


def label_session(port: int, truth: dict[tuple[int, int], int], think_ms: float, trust: float) -> dict[str, Any]:
    """Label everything as annotator "script"; returns the answer round trips (ms) and counts."""
    client = Client(port)
    reply = client.post("/api/state", {"annotator": "script"})
    round_trips, accepted, answered = [], 0, 0
    arrived = time.perf_counter()
    while reply["tasks"]:
        task = reply["tasks"][0]
        if think_ms:
            time.sleep(think_ms / 1000.0)
        probability = task.get("suggestion")
        body: dict[str, Any] = {"annotator": "script", "position": task["position"], "point_index": task["point_index"]}
        if probability is not None and max(probability, 1.0 - probability) >= trust:
            body.update(label="object" if probability >= 0.5 else "background", accepted=True)
            accepted += 1
        else:
            body["label"] = "object" if truth[(task["position"], task["point_index"])] else "background"
        if probability is not None:
            body["suggestion"] = probability
        body["response_ms"] = round((time.perf_counter() - arrived) * 1000.0, 3)
        sent = time.perf_counter()
        reply = client.post("/api/answer", body)
        arrived = time.perf_counter()
        round_trips.append((arrived - sent) * 1000.0)
        answered += 1
    return {"round_trips_ms": round_trips, "answered": answered, "accepted": accepted}


def mask_truth(db: Path) -> dict[tuple[int, int], int]:
    from pointsup.annotator.store import AnnotationStore

    store = AnnotationStore.open(db)
    try:
        return {
            (o.position, k): int(v) for o in store.objects() if o.mask_values is not None for k, v in enumerate(o.mask_values)
        }
    finally:
        store.close()


def run(dataset: Path, images: Path, work: Path, name: str, think_ms: float, trust: float, *extra: str) -> dict[str, Any]:
    db = work / f"{name}.points.db"
    process, port = start_server(dataset, images, db, *extra)
    try:
        result = label_session(port, mask_truth(db), think_ms, trust)
    finally:
        process.terminate()
        process.wait()
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pointsup", "annotate", "progress", "--db", str(db), "--json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    result["progress"] = report
    return result


def _quantile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000.0 * seconds:.2f}"


HEADER = (
    "| server        | answers | median ms | p95 ms | max ms | accepted | ms/point with a suggestion | ms/point without |\n"
    "|---------------|--------:|----------:|-------:|-------:|---------:|---------------------------:|-----------------:|"
)


def format_row(name: str, result: dict[str, Any]) -> str:
    """One row of the table: answer round trips and the progress report's time per point (the
    scripted annotator's median, in milliseconds)."""
    trips = result["round_trips_ms"]
    assist = result["progress"].get("assist")
    if assist:
        with_s = assist["overall"]["with_suggestion"]["median_s"]
        without_s = assist["overall"]["without_suggestion"]["median_s"]
    else:
        with_s, without_s = None, result["progress"]["timing"]["median_s"]
    return (
        f"| {name:<13} | {len(trips):>7} | {statistics.median(trips):>9.1f} | {_quantile(trips, 95):>6.1f} | {max(trips):>6.1f} "
        f"| {result['accepted']:>8} | {_milliseconds(with_s):>26} | {_milliseconds(without_s):>16} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="pictures of the built-in data (default %(default)s)")
    parser.add_argument("--points", type=int, default=10, help="points per object (default %(default)s)")
    parser.add_argument("--think-ms", type=float, default=0.0, help="the scripted annotator's wait before each answer")
    parser.add_argument("--trust", type=float, default=0.8, help="accept the suggestion when the model is this sure")
    parser.add_argument("--weights", type=Path, default=None, help="a checkpoint (default: build a tiny one)")
    parser.add_argument("--dataset", type=Path, default=None, help="with --weights: the COCO file (with masks)")
    parser.add_argument("--image-dir", type=Path, default=None, help="with --weights: its images")
    parser.add_argument("--work", type=Path, default=None, help="folder for the data and sessions (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="assist_latency_") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        if args.weights is None:
            dataset, images = make_blob_dataset(work / "data", num_images=args.images)
            started = time.perf_counter()
            weights = build_tiny_checkpoint(dataset, images, work / "model")
            print(f"built a tiny checkpoint in {time.perf_counter() - started:.0f} s: {weights}")
        else:
            if args.dataset is None or args.image_dir is None:
                parser.error("--weights needs --dataset and --image-dir")
            weights, dataset, images = args.weights, args.dataset, args.image_dir
        common = ("--points", str(args.points))
        without = run(dataset, images, work, "without", args.think_ms, args.trust, *common)
        started = time.perf_counter()
        with_model = run(
            dataset, images, work, "with", args.think_ms, args.trust, *common, "--weights", str(weights), "--device", "cpu"
        )
        print(f"(serve --weights started and labelled in {time.perf_counter() - started:.1f} s)")
    print()
    print("answer -> next point: the round trip of POST /api/answer, whose reply carries the next point")
    print(HEADER)
    print(format_row("without model", without))
    print(format_row("--weights", with_model))
    assist = with_model["progress"].get("assist")
    if assist:
        rate = assist["overall"]["compared"] and assist["overall"]["overruled"] / assist["overall"]["compared"]
        print(f"overruled suggestions: {100 * rate:.1f} % of {assist['overall']['compared']} answers (scripted: from the masks)")


if __name__ == "__main__":
    main()
