"""The labelling loop in one place: photos -> boxes -> points -> train -> model-assisted labelling of
the next batch -> retrain, run unattended.

    python scripts/labelling_loop.py --output loop/                              # synthetic shapes
    python scripts/labelling_loop.py --output loop/ --dataset balloon --iterations 100

Every step runs the real thing: ``pointsup annotate serve`` as a server process spoken to over
HTTP with the requests its pages send (``/api/boxes/*`` for the boxes, ``/api/state`` and
``/api/answer`` for the points), ``pointsup annotate export``, ``pointsup train`` (which evaluates
its final model on a held-out validation set) and ``pointsup annotate progress``. Each step prints
the ``pointsup`` command a person would run for it.

The people are simulated. A *scripted annotator* stands in for them so that the loop can run
without anyone: it knows the dataset's ground-truth masks and answers from them. In the box stage
it clicks the left-, top-, right- and bottom-most pixel of each object's mask (extreme clicking)
with its category, then says "no more objects"; in the point stage it answers each point with the
mask's value there. With the model of the first batch served (``--weights``), it compares the
model's suggestion with its own answer: when they agree it accepts the suggestion (the page's
accept key, ``accepted`` in the request), otherwise it gives its own answer (the suggestion is
overruled). A person does all of this in the browser, on the pages the printed commands serve.

Steps:
  1. a folder of photos per batch (the training images of the dataset split in two; no labels go
     with them) and the held-out validation set;
  2. batch 1, box stage: extreme clicks on every object, then "no more objects" per photo;
  3. batch 1, point stage on the same server; ``annotate export`` writes the P_N file;
  4. ``pointsup train`` (a shipped Lite0 CPU recipe) on that file;
  5. batch 2: box stage, then the point stage served with ``--weights`` of the model of step 4;
     the agreement of its suggestions with the answers is counted;
  6. ``pointsup train`` again on batches 1 + 2 (the two exports merged), and a table of both
     models' mask and box AP on the validation set, the suggestion agreement of batch 2 and the
     session's progress report.

``--dataset synthetic`` (the default) generates its data (``pointsup synthetic``) and needs
nothing else; ``--dataset balloon`` reads ``../shared/datasets/balloon`` (or
``$POINTSUP_SHARED/datasets/balloon``). Everything is written under ``--output``: a non-empty
folder is refused unless ``--force`` (which replaces only what this script writes there). Bad
input stops with one line and exit status 2; a failing step stops with exit status 1.

Layout of ``--output``:
  ground_truth/        (synthetic only) the generated dataset with its masks: what the script knows
  photos/batch1/, photos/batch2/    the photos to label
  val.json             the held-out validation set (masks), categories numbered as the sessions number them
  sessions/            the labelling databases (batch1.points.db, batch2.points.db)
  labels/              the exported P_N files and their merge (batch1_p10.json, batch2_p10.json, batches_1_2_p10.json)
  runs/batch1/, runs/batches_1_2/   the training runs (model_final.pth, final_metrics.json, ...)
  summary.json         the table, the agreement, the commands and the time of each step
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared"))
BALLOON = SHARED / "datasets" / "balloon"
DATASETS = ("synthetic", "balloon")
#: the shipped CPU recipe each dataset trains with (`pointsup configs` lists them)
RECIPES = {"synthetic": "synthetic_lite0_points", "balloon": "balloon_lite0_points"}
ANNOTATOR = "scripted-annotator"
#: the probability from which a suggestion means "object" (pointsup.annotator.assist.OBJECT_THRESHOLD)
OBJECT_THRESHOLD = 0.5
STEPS = 6
#: the share of the synthetic images held out for validation
SYNTHETIC_VAL_FRACTION = 0.25
#: what this script writes under --output (and all that --force removes there)
OUTPUT_ENTRIES = ("ground_truth", "photos", "val.json", "sessions", "labels", "runs", "summary.json")
#: added to every `annotate serve` the script starts: any free port, no request log
SERVE_EXTRAS = ("--port", "0", "--quiet")


class InputError(Exception):
    """Bad input: one line, exit status 2, before anything is written."""


class LoopError(Exception):
    """A step that failed: one line, exit status 1."""


# ---- commands ------------------------------------------------------------------------------------


def shown(command: list[str]) -> str:
    """The command as a person types it."""
    return shlex.join(["pointsup", *command])


def pointsup_command(command: list[str]) -> list[str]:
    """``command`` run with this Python (the same installation of pointsup)."""
    return [sys.executable, "-m", "pointsup", *command]


def child_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_pointsup(command: list[str], *, capture: bool = False) -> str:
    """Run ``pointsup COMMAND``; its output goes to the terminal, or is returned when ``capture``.
    A failure stops the loop (the command's own message is above)."""
    result = subprocess.run(
        pointsup_command(command), stdout=subprocess.PIPE if capture else None, text=True, env=child_environment()
    )
    if result.returncode != 0:
        if capture and result.stdout:
            print(result.stdout, end="")
        raise LoopError(f"`{shown(command)}` failed with exit status {result.returncode} (its messages are above)")
    return result.stdout if capture else ""


def indented(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line if line else line for line in text.rstrip("\n").split("\n"))


class Server:
    """A ``pointsup annotate serve`` process on a free port, for the duration of a ``with`` block."""

    def __init__(self, command: list[str]):
        self.command = command
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            pointsup_command([*self.command, *SERVE_EXTRAS]), stdout=subprocess.PIPE, text=True, env=child_environment()
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            print(indented(line, "      server: "), flush=True)
            if match := re.search(r"labelling page: http://[^ ]*?:(\d+)/", line):
                self.port = int(match.group(1))
                return self
        self.process.wait()
        raise LoopError(f"`{shown(self.command)}` did not start (exit status {self.process.returncode}; its message is above)")

    def __exit__(self, *exc_info: Any) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # as Ctrl-C: the server closes its database
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Client:
    """One kept-alive connection to the server, as a browser tab keeps, sending what the pages send."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.connection.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        payload = json.loads(response.read())
        if response.status != 200:
            raise LoopError(f"POST {path} was refused: {response.status} {payload.get('error', payload)}")
        return payload

    def close(self) -> None:
        self.connection.close()


# ---- the ground truth the scripted annotator answers from ----------------------------------------


@dataclass
class TruthObject:
    """One object of the ground truth: its mask and what the scripted annotator clicks on it."""

    annotation_id: int
    category_id: int  # the session's
    mask: np.ndarray  # (H, W) bool
    extreme_points: list[list[int]] | None  # left, top, right, bottom pixel indices [x, y]; None: cannot be boxed
    edges: tuple[int, int, int, int] | None  # pixel edges x0, y0, x1, y1 of the box they make


def extreme_points(mask: np.ndarray) -> list[list[int]] | None:
    """The left-, top-, right- and bottom-most pixels of ``mask`` as ``[x, y]`` (the middle one
    where several share the extreme row or column); None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None

    def middle(values: np.ndarray) -> int:
        return int(np.sort(values)[values.size // 2])

    left, right, top, bottom = xs.min(), xs.max(), ys.min(), ys.max()
    return [
        [int(left), middle(ys[xs == left])],
        [middle(xs[ys == top]), int(top)],
        [int(right), middle(ys[xs == right])],
        [middle(xs[ys == bottom]), int(bottom)],
    ]


class GroundTruth:
    """A COCO file with masks: the answers of the scripted annotator, by image file name. Masks
    are decoded one image at a time (balloon's masks of 2048-pixel photos would not all fit)."""

    #: a box narrower than this either way is refused by the server (and cannot be clicked)
    MIN_BOX_SPAN = 2

    def __init__(self, coco: dict[str, Any], category_map: dict[int, int]):
        self.images = {image["file_name"]: image for image in coco["images"]}
        self.annotations: dict[int, list[dict[str, Any]]] = {}
        for annotation in coco["annotations"]:
            if not annotation.get("iscrowd", 0):
                self.annotations.setdefault(annotation["image_id"], []).append(annotation)
        self.category_map = category_map
        self._cached: tuple[str, list[TruthObject]] | None = None

    def objects(self, file_name: str) -> list[TruthObject]:
        """The non-crowd objects of an image, in annotation order."""
        if self._cached is not None and self._cached[0] == file_name:
            return self._cached[1]
        from pycocotools import mask as mask_utils

        from pointsup.points.rle import segmentation_to_rle

        image = self.images[file_name]
        objects = []
        for annotation in self.annotations.get(image["id"], []):
            rle = segmentation_to_rle(annotation["segmentation"], image["height"], image["width"])
            mask = mask_utils.decode(rle).astype(bool)
            points = extreme_points(mask)
            edges = None
            if points is not None:
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                edges = (min(xs), min(ys), max(xs) + 1, max(ys) + 1)
                if edges[2] - edges[0] < self.MIN_BOX_SPAN or edges[3] - edges[1] < self.MIN_BOX_SPAN:
                    points, edges = None, None
            objects.append(TruthObject(annotation["id"], self.category_map[annotation["category_id"]], mask, points, edges))
        self._cached = (file_name, objects)
        return objects

    def object_with_box(self, file_name: str, bbox_xywh: list[float]) -> TruthObject:
        """The object whose extreme clicks made the box ``bbox_xywh`` (as the server reports it)."""
        x, y, w, h = (round(v) for v in bbox_xywh)
        for obj in self.objects(file_name):
            if obj.edges == (x, y, x + w, y + h):
                return obj
        raise LoopError(f"{file_name}: no ground-truth object has the box {bbox_xywh} (a box the script did not draw)")

    def label(self, file_name: str, bbox_xywh: list[float], x: int, y: int) -> int:
        """1 when the pixel ``(x, y)`` lies on the object of that box, else 0: the right answer."""
        return int(self.object_with_box(file_name, bbox_xywh).mask[y, x])


# ---- the scripted annotator ----------------------------------------------------------------------


@dataclass
class BoxStageResult:
    photos: int = 0
    boxes: int = 0
    not_boxable: int = 0  # empty or thinner than 2 pixels: nobody could click them
    file_names: dict[int, str] = field(default_factory=dict)  # session image id -> file name


def draw_boxes(port: int, truth: GroundTruth) -> BoxStageResult:
    """The box stage as a person does it on ``/boxes``: for each photo handed out, four extreme
    clicks per object with its category, then "no more objects"."""
    client, result = Client(port), BoxStageResult()
    try:
        state = client.post("/api/boxes/state", {"annotator": ANNOTATOR})
        while state["images"]:
            image = state["images"][0]
            file_name = image["file_name"]
            result.file_names[image["image_id"]] = file_name
            known = truth.images.get(file_name)
            if known is None:
                raise LoopError(f"photo {file_name} is not in the ground truth")
            if (known["width"], known["height"]) != (image["width"], image["height"]):
                raise LoopError(
                    f"photo {file_name}: the server shows {image['width']}x{image['height']} pixels, the ground truth has "
                    f"{known['width']}x{known['height']}"
                )
            started = time.perf_counter()
            for obj in truth.objects(file_name):
                if obj.extreme_points is None:
                    result.not_boxable += 1
                    continue
                elapsed_ms = round((time.perf_counter() - started) * 1000.0, 3)
                state = client.post(
                    "/api/boxes/box",
                    {
                        "annotator": ANNOTATOR,
                        "image_id": image["image_id"],
                        "category_id": obj.category_id,
                        "extreme_points": obj.extreme_points,
                        "draw_ms": elapsed_ms,
                        "total_ms": elapsed_ms,
                    },
                )
                result.boxes += 1
                started = time.perf_counter()
            state = client.post("/api/boxes/finish", {"annotator": ANNOTATOR, "image_id": image["image_id"]})
            result.photos += 1
        if state["images_left"]:
            raise LoopError(f"the box stage ended with {state['images_left']} photos left")
    finally:
        client.close()
    return result


@dataclass
class PointStageResult:
    objects: int = 0
    points: int = 0
    wrong: int = 0  # answers that disagree with the mask (none: the scripted annotator is right)
    shown: int = 0  # points asked with the model's suggestion
    agreed: int = 0  # of those, suggestions equal to the right answer (accepted with the key)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.shown if self.shown else None


def answer_points(port: int, truth: GroundTruth, file_names: dict[int, str]) -> PointStageResult:
    """The point stage as a person does it on ``/``: each point answered with the mask's value
    there; a suggestion that agrees is accepted with the key, one that does not is overruled."""
    client, result = Client(port), PointStageResult()
    try:
        state = client.post("/api/state", {"annotator": ANNOTATOR})
        arrived = time.perf_counter()
        while state["tasks"]:
            task = state["tasks"][0]
            if "gold" in task:
                raise LoopError("the session asks gold questions; the scripted annotator does not answer them")
            right = truth.label(file_names[task["image_id"]], task["bbox"], task["x"], task["y"])
            body: dict[str, Any] = {"annotator": ANNOTATOR, "position": task["position"], "point_index": task["point_index"]}
            label = right
            probability = task.get("suggestion")
            if probability is not None:
                suggested = int(probability >= OBJECT_THRESHOLD)
                result.shown += 1
                body["suggestion"] = probability
                if suggested == right:  # the accept key (A, Enter): the suggestion is the answer
                    result.agreed += 1
                    body["accepted"] = True
                    label = suggested
            body["label"] = "object" if label else "background"
            body["response_ms"] = round((time.perf_counter() - arrived) * 1000.0, 3)
            state = client.post("/api/answer", body)
            arrived = time.perf_counter()
            result.points += 1
            result.wrong += label != right
        result.objects = state["objects_finished"]
        if state["objects_finished"] != state["objects_total"]:
            raise LoopError(f"the point stage ended with {state['objects_total'] - state['objects_finished']} objects unfinished")
    finally:
        client.close()
    return result


# ---- P_N files -----------------------------------------------------------------------------------


@dataclass
class ExportCheck:
    images: int
    objects: int
    points: int
    agreeing: int  # labels equal to the ground-truth mask at their point


def check_export(path: Path, truth: GroundTruth, prefix: str = "") -> ExportCheck:
    """Count the images, objects and labelled points of a P_N file and compare each label with
    the ground-truth mask at its point (``prefix``: the folder the file names carry, in a merge)."""
    coco = json.loads(path.read_text())
    names = {image["id"]: image["file_name"].removeprefix(prefix) for image in coco["images"]}
    points = agreeing = 0
    for annotation in coco["annotations"]:
        obj = truth.object_with_box(names[annotation["image_id"]], annotation["bbox"])
        for (x, y), label in zip(annotation["point_coords"], annotation["point_labels"]):
            points += 1
            agreeing += int(obj.mask[y, x]) == label
    return ExportCheck(len(coco["images"]), len(coco["annotations"]), points, agreeing)


def merge_point_files(parts: list[tuple[Path, str]], output: Path) -> dict[str, int]:
    """One P_N file from several (``(file, folder)``: its images lie in ``folder`` under the common
    image root): image and annotation ids renumbered 1, 2... so they stay unique, file names
    prefixed with their folder, every other field kept. The categories must be the same."""
    from pointsup.points.format import validate_coco
    from pointsup.utils.atomic import write_json_atomic

    merged: dict[str, Any] = {
        "info": {"description": "merged by scripts/labelling_loop.py from " + ", ".join(str(p) for p, _ in parts)},
        "images": [],
        "annotations": [],
        "categories": None,
    }
    for path, folder in parts:
        coco = json.loads(path.read_text())
        if merged["categories"] is None:
            merged["categories"] = coco["categories"]
        elif coco["categories"] != merged["categories"]:
            raise LoopError(f"{path}: its categories differ from those of {parts[0][0]}; the files cannot be merged")
        new_ids = {}
        for image in coco["images"]:
            new_ids[image["id"]] = len(merged["images"]) + 1
            merged["images"].append({**image, "id": new_ids[image["id"]], "file_name": f"{folder}/{image['file_name']}"})
        for annotation in coco["annotations"]:
            merged["annotations"].append(
                {**annotation, "id": len(merged["annotations"]) + 1, "image_id": new_ids[annotation["image_id"]]}
            )
    validate_coco(merged, str(output))  # the check every point file passes
    write_json_atomic(output, merged)
    return {"images": len(merged["images"]), "objects": len(merged["annotations"])}


# ---- data ----------------------------------------------------------------------------------------


@dataclass
class Data:
    """The dataset the loop runs on: the training images' ground truth, their folder, the two
    batches (file names), and the validation set."""

    name: str
    train_coco: dict[str, Any]
    train_images: Path
    val_coco: dict[str, Any]
    val_images: Path
    batches: tuple[list[str], list[str]]
    category_names: list[str]  # the sessions' categories, id 1, 2... in this order
    category_map: dict[int, int]  # ground-truth category id -> session category id


def check_balloon() -> None:
    for path in (BALLOON / "instances_train.json", BALLOON / "instances_val.json", BALLOON / "train", BALLOON / "val"):
        if not path.exists():
            raise InputError(
                f"--dataset balloon: {path} not found (set POINTSUP_SHARED to the folder holding datasets/balloon, "
                "or use --dataset synthetic)"
            )


def prepare_data(args: argparse.Namespace, output: Path) -> Data:
    """Generate or read the dataset and split its training images into the two batches."""
    from pointsup.points.format import read_coco_json

    if args.dataset == "synthetic":
        from pointsup.data.synthetic import generate_synthetic_dataset

        dataset = generate_synthetic_dataset(
            output / "ground_truth",
            num_images=args.images,
            seed=args.seed,
            image_size=args.image_size,
            val_fraction=SYNTHETIC_VAL_FRACTION,
            show_progress=False,
        )
        train_json, train_images, val_json, val_images = (
            dataset.train_json,
            dataset.image_dir,
            dataset.val_json,
            dataset.image_dir,
        )
    else:
        train_json, train_images = BALLOON / "instances_train.json", BALLOON / "train"
        val_json, val_images = BALLOON / "instances_val.json", BALLOON / "val"
    train_coco, val_coco = read_coco_json(train_json), read_coco_json(val_json)
    names = sorted(image["file_name"] for image in train_coco["images"])
    per_batch = args.batch_images or len(names) // 2
    if len(names) != args.training_images:  # checked before anything was written: cannot happen
        raise LoopError(f"{train_json}: {len(names)} training images, {args.training_images} expected")
    categories = sorted(train_coco["categories"], key=lambda c: c["id"])
    return Data(
        args.dataset,
        train_coco,
        train_images,
        val_coco,
        val_images,
        (names[:per_batch], names[per_batch : 2 * per_batch] if args.batch_images else names[per_batch:]),
        [str(c["name"]) for c in categories],
        {int(c["id"]): k for k, c in enumerate(categories, 1)},
    )


def write_photos(data: Data, output: Path) -> list[Path]:
    """Copy each batch's photos (the images only) into ``photos/batchK``."""
    folders = []
    for k, names in enumerate(data.batches, 1):
        folder = output / "photos" / f"batch{k}"
        for name in names:
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data.train_images / name, target)
        folders.append(folder)
    return folders


def write_val_json(data: Data, path: Path) -> dict[str, int]:
    """The validation set with the categories numbered as the sessions number them (by their
    order), so that the models, trained on the exports, are evaluated class for class."""
    from pointsup.utils.atomic import write_json_atomic

    coco = {
        **data.val_coco,
        "categories": [{"id": k, "name": name} for k, name in enumerate(data.category_names, 1)],
        "annotations": [{**a, "category_id": data.category_map[a["category_id"]]} for a in data.val_coco["annotations"]],
    }
    write_json_atomic(path, coco)
    return {"images": len(coco["images"]), "objects": sum(not a.get("iscrowd", 0) for a in coco["annotations"])}


# ---- the loop ------------------------------------------------------------------------------------


class Steps:
    """Prints the steps and keeps their commands and times for summary.json."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.started = time.perf_counter()
        self._current: dict[str, Any] | None = None

    def start(self, title: str) -> None:
        self.finish()
        number = len(self.records) + 1
        print(f"\n[{number}/{STEPS}] {title}", flush=True)
        self._current = {"step": number, "title": title, "commands": [], "started": time.perf_counter()}
        self.records.append(self._current)

    def person_runs(self, command: list[str], note: str = "") -> None:
        assert self._current is not None
        self._current["commands"].append(shown(command))
        print(f"  a person runs: {shown(command)}" + (f"\n      ({note})" if note else ""), flush=True)

    def finish(self) -> None:
        if self._current is not None and "seconds" not in self._current:
            self._current["seconds"] = round(time.perf_counter() - self._current.pop("started"), 1)
            print(f"  ({self._current['seconds']:.1f} s)", flush=True)


def train_command(args: argparse.Namespace, labels: Path, images: Path, val_json: Path, val_images: Path, run: Path) -> list[str]:
    from pointsup.engine.solver import schedule_overrides

    return [
        "train",
        args.config,
        f"data.train_json={labels}",
        f"data.train_images={images}",
        f"data.val_json={val_json}",
        f"data.val_images={val_images}",
        *schedule_overrides(args.iterations),
        f"solver.checkpoint_period={args.iterations}",
        f"seed={args.seed}",
        *args.set,
        "--output",
        str(run),
    ]


def final_metrics(run: Path) -> tuple[float | None, float | None]:
    """Mask AP and box AP of a run's final evaluation (None where COCO gives no number)."""
    metrics = json.loads((run / "final_metrics.json").read_text())

    def ap(task: str) -> float | None:
        value = metrics.get(task, {}).get("AP")
        return None if value is None or value != value or value < 0 else float(value)

    return ap("segm"), ap("bbox")


def _ap(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"| {'model':<22} | training images | objects | mask AP | box AP |",
        f"|{'-' * 24}|----------------:|--------:|--------:|-------:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']:<22} | {row['training_images']:>15} | {row['objects']:>7} | {_ap(row['mask_AP']):>7} "
            f"| {_ap(row['box_AP']):>6} |"
        )
    return "\n".join(lines)


def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    output: Path = args.output
    steps = Steps()
    print(
        "The labelling loop, run unattended: a SCRIPTED ANNOTATOR simulates the people, answering every question from the\n"
        "ground-truth masks over the same HTTP API the pages use. A person runs the commands shown and labels in the browser\n"
        f"(the script adds {' '.join(SERVE_EXTRAS)} to each `annotate serve`).",
        flush=True,
    )
    steps.start("photos: two batches to label, and a held-out validation set")
    data = prepare_data(args, output)
    if args.dataset == "synthetic":
        print(f"  `pointsup synthetic` data with masks (what the scripted annotator knows): {output / 'ground_truth'}")
    folders = write_photos(data, output)
    val_json = output / "val.json"
    val = write_val_json(data, val_json)
    for folder, names in zip(folders, data.batches):
        print(f"  {folder}: {len(names)} photos of {data.name}'s training images, no labels")
    print(f"  {val_json}: {val['images']} validation images with {val['objects']} masked objects ({data.val_images})")
    truth = GroundTruth(data.train_coco, data.category_map)
    sessions, labels, runs = output / "sessions", output / "labels", output / "runs"
    for folder in (sessions, labels, runs):
        folder.mkdir(parents=True, exist_ok=True)
    categories = ",".join(data.category_names)
    n = args.points
    db1, db2 = sessions / "batch1.points.db", sessions / "batch2.points.db"
    export1, export2, merged = labels / f"batch1_p{n}.json", labels / f"batch2_p{n}.json", labels / f"batches_1_2_p{n}.json"
    run1, run2 = runs / "batch1", runs / "batches_1_2"
    summary: dict[str, Any] = {"dataset": data.name, "recipe": args.config, "iterations": args.iterations, "points": n}

    steps.start("batch 1, box stage: four extreme clicks per object, then 'no more objects'")
    serve1 = ["annotate", "serve", "--images", str(folders[0]), "--categories", categories, "--db", str(db1), "--points", str(n)]
    steps.person_runs(serve1, "and draws the boxes on the page /boxes; the point page / asks the points of each finished photo")
    with Server(serve1) as server:
        boxes1 = draw_boxes(server.port, truth)
        print(
            f"  scripted annotator: {boxes1.boxes} boxes on {boxes1.photos} photos by extreme clicking"
            + (f" ({boxes1.not_boxable} objects too thin to box left out)" if boxes1.not_boxable else "")
        )
        steps.start("batch 1, point stage: object or background at each point; export the P_N file")
        print("  (same server) the person answers on the point page: F object, J background, U unsure")
        points1 = answer_points(server.port, truth, boxes1.file_names)
    print(f"  scripted annotator: {points1.points} points answered on {points1.objects} objects, from the masks")
    export1_command = ["annotate", "export", "--db", str(db1), "-o", str(export1)]
    steps.person_runs(export1_command)
    print(indented(run_pointsup(export1_command, capture=True)))
    check1 = check_export(export1, truth)
    print(f"  {export1}: labels agree with the ground-truth masks at {check1.agreeing} of {check1.points} points")

    steps.start(f"train on batch 1 ({args.config}, {args.iterations} iterations; evaluated on the validation set)")
    train1 = train_command(args, export1, folders[0], val_json, data.val_images, run1)
    steps.person_runs(train1)
    run_pointsup(train1)

    steps.start("batch 2: box stage, then the point stage with the model of batch 1 suggesting each answer")
    serve2_boxes = [
        "annotate", "serve", "--images", str(folders[1]), "--categories", categories, "--db", str(db2),
        "--points", str(n), "--stage", "boxes",
    ]  # fmt: skip
    steps.person_runs(serve2_boxes, "and draws the boxes on /boxes, then stops the server (Ctrl-C)")
    with Server(serve2_boxes) as server:
        boxes2 = draw_boxes(server.port, truth)
    print(f"  scripted annotator: {boxes2.boxes} boxes on {boxes2.photos} photos by extreme clicking")
    weights = run1 / "model_final.pth"
    serve2_points = [
        "annotate", "serve", "--images", str(folders[1]), "--db", str(db2), "--stage", "points", "--weights", str(weights),
    ]  # fmt: skip
    steps.person_runs(serve2_points, "the page shows the model's answer with each point: A or Enter accepts it")
    with Server(serve2_points) as server:
        points2 = answer_points(server.port, truth, boxes2.file_names)
    rate = points2.agreement
    print(
        f"  scripted annotator: {points2.points} points answered on {points2.objects} objects; the model's suggestion "
        f"agreed with the right answer at {points2.agreed} of {points2.shown} points "
        f"({'-' if rate is None else f'{100 * rate:.1f} %'}): accepted with the key, the others overruled"
    )
    export2_command = ["annotate", "export", "--db", str(db2), "-o", str(export2)]
    steps.person_runs(export2_command)
    print(indented(run_pointsup(export2_command, capture=True)))
    check2 = check_export(export2, truth)
    print(f"  {export2}: labels agree with the ground-truth masks at {check2.agreeing} of {check2.points} points")

    steps.start("retrain on batches 1 + 2, and compare the two models on the validation set")
    # no pointsup command merges P_N files yet: the two exports are combined here, ids renumbered
    print(
        f"  merging {export1.name} and {export2.name} into {merged} (images and annotations renumbered, file names "
        f"prefixed with their batch folder under {output / 'photos'})"
    )
    merged_counts = merge_point_files([(export1, folders[0].name), (export2, folders[1].name)], merged)
    train2 = train_command(args, merged, output / "photos", val_json, data.val_images, run2)
    steps.person_runs(train2)
    run_pointsup(train2)
    rows = []
    for name, run, check in (("batch 1", run1, check1), ("batches 1+2", run2, None)):
        mask_ap, box_ap = final_metrics(run)
        images = check.images if check else merged_counts["images"]
        objects = check.objects if check else merged_counts["objects"]
        rows.append({"model": name, "training_images": images, "objects": objects, "mask_AP": mask_ap, "box_AP": box_ap})
    evaluate = ["eval", args.config, f"data.val_json={val_json}", f"data.val_images={data.val_images}", *args.set]
    print(
        f"  both runs evaluated their final model on {val_json} (runs/*/final_metrics.json); for any checkpoint:\n"
        f"  {shown([*evaluate, '--weights', str(run2 / 'model_final.pth')])}"
    )
    progress_command = ["annotate", "progress", "--db", str(db2)]
    steps.person_runs(progress_command)
    progress_text = run_pointsup(progress_command, capture=True)
    print(indented(progress_text))
    assist = json.loads(run_pointsup([*progress_command, "--json"], capture=True)).get("assist") or {}
    steps.finish()

    table = format_table(rows)
    print(f"\nmodels evaluated on {val_json} ({val['images']} images, {val['objects']} objects, real masks):")
    print(table)
    print(
        f"model suggestions on batch 2 (model of batch 1, {args.iterations} iterations): agreed with the (ground-truth) "
        f"answer at {points2.agreed} of {points2.shown} points ({'-' if rate is None else f'{100 * rate:.1f} %'})"
    )
    print(f"done in {time.perf_counter() - steps.started:.0f} s; the same, by hand: the commands above, in order")
    summary.update(
        table=rows,
        validation=val,
        batches=[
            {
                "photos": b.photos,
                "boxes": b.boxes,
                "not_boxable": b.not_boxable,
                "points_answered": p.points,
                "objects": c.objects,
                "exported_points": c.points,
                "points_agreeing_with_masks": c.agreeing,
            }
            for b, p, c in ((boxes1, points1, check1), (boxes2, points2, check2))
        ],
        suggestions={
            "shown": points2.shown,
            "agreed": points2.agreed,
            "agreement": rate,
            "progress_report": assist.get("overall"),
        },
        merged=merged_counts,
        steps=steps.records,
        seconds=round(time.perf_counter() - steps.started, 1),
    )
    from pointsup.utils.atomic import write_json_atomic

    write_json_atomic(output / "summary.json", summary, indent=2)
    return summary


# ---- the command line ----------------------------------------------------------------------------


def fail(message: str, status: int) -> NoReturn:
    print(f"labelling_loop: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labelling_loop.py",
        description="photos -> boxes -> points -> train -> model-assisted labelling of the next batch -> retrain, "
        "with a scripted annotator (answers from ground-truth masks) in place of the people",
    )
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for everything the loop writes")
    parser.add_argument("--force", action="store_true", help="replace what an earlier run left in --output")
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        default="synthetic",
        help="synthetic (generated here, the default) or balloon (../shared/datasets/balloon)",
    )
    parser.add_argument(
        "--iterations", type=positive_int, default=200, metavar="N", help="training iterations of each model (default 200)"
    )
    parser.add_argument(
        "--batch-images",
        type=positive_int,
        default=None,
        metavar="K",
        help="photos per batch (default: all the training images, split in two)",
    )
    parser.add_argument("--points", type=positive_int, default=10, metavar="N", help="points per object (default 10)")
    parser.add_argument(
        "--config",
        default=None,
        metavar="RECIPE",
        help="training recipe, a shipped name or a file (default: the dataset's Lite0 CPU recipe)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for both trainings, e.g. solver.ims_per_batch=2 (repeatable)",
    )
    parser.add_argument(
        "--images",
        type=positive_int,
        default=64,
        metavar="N",
        help="synthetic: images to generate (default 64; a quarter are validation)",
    )
    parser.add_argument("--image-size", type=int, default=320, metavar="PX", help="synthetic: image side (default 320)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of training (default 0)")
    return parser


def check_input(args: argparse.Namespace) -> None:
    """Everything that can be checked before anything is written."""
    from pointsup.engine.config import load_config
    from pointsup.errors import PointsupError
    from pointsup.utils.paths import refuse_existing_output

    output: Path = args.output
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()):
        try:
            refuse_existing_output(output, "--output", args.force)
        except PointsupError as exc:
            raise InputError(f"{exc.one_line()} (it replaces only what this script writes there)") from None
    if args.dataset == "balloon":
        check_balloon()
    elif args.image_size < 64:
        raise InputError(f"--image-size {args.image_size}: synthetic images are at least 64 pixels")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: must be 0 or more")
    args.training_images = training_image_count(args)
    if args.training_images < 2 or 2 * (args.batch_images or 1) > args.training_images:
        raise InputError(
            f"{args.dataset} has {args.training_images} training images: two batches of "
            + (f"{args.batch_images} do not fit (--batch-images)" if args.batch_images else "at least 1 each need 2 (--images)")
        )
    args.config = args.config or RECIPES[args.dataset]
    for override in args.set:
        if "=" not in override:
            raise InputError(f"--set {override}: expected KEY=VALUE")
    try:  # the recipe and the overrides, as `pointsup train` will read them
        load_config(args.config, [*args.set, f"solver.max_iter={args.iterations}", "solver.steps=[]", "solver.warmup_iters=0"])
    except PointsupError as exc:
        raise InputError(f"--config {args.config} / --set: {exc.one_line()}") from None


def training_image_count(args: argparse.Namespace) -> int:
    """How many training images the dataset has (the synthetic ones: those it will have)."""
    if args.dataset == "synthetic":
        from pointsup.data.synthetic import num_val_images

        return args.images - num_val_images(args.images, SYNTHETIC_VAL_FRACTION)
    from pointsup.points.format import read_coco_json

    return len(read_coco_json(BALLOON / "instances_train.json")["images"])


def clear_output(output: Path) -> None:
    """--force: remove what an earlier run of this script wrote (nothing else)."""
    for name in OUTPUT_ENTRIES:
        path = output / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_input(args)
    except InputError as exc:
        fail(str(exc), 2)
    if args.force and args.output.is_dir():
        clear_output(args.output)
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        run_loop(args)
    except LoopError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail(f"interrupted; what was written so far is in {args.output} (--force starts over)", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
