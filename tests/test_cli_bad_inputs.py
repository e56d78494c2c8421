"""Every ``pointsup`` command, run as ``python -m pointsup`` in a subprocess, on bad inputs.

Each case gives one command one bad thing (a missing file, a folder for a file, malformed,
truncated or absurdly nested JSON, out-of-range ids, a corrupt image, a decompression bomb, an
output that cannot be written, a device that is not there, an unreadable checkpoint...) and
expects what a user should see: exit status 2, no traceback, and a last line of stderr that
names the offending file or option. Every bad file is built here, in the test's folder, from a
tiny synthetic dataset (3 images of 64 x 64); each command should refuse its bad input before
any real work, and the model and schedule are tiny in case one does not.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

CONFIG = REPO_ROOT / "configs" / "cpu" / "synthetic_R18_points.yaml"

#: seconds a case may run: a command that fails early takes a few (most of it importing PyTorch)
TIMEOUT_S = 60.0
#: `annotate serve` that wrongly accepts its input serves forever: give up on it sooner
SERVE_TIMEOUT_S = 30.0

#: an id that does not fit in 64 bits (SQLite, NumPy and PyTorch integers)
HUGE_ID = 2**70

#: a model and schedule small enough that a case which gets too far still ends quickly
TINY = [
    "seed=0", "device=cpu", "log_period=1",
    "model.fpn.channels=32", "model.mask_head.conv_dim=16",
    "model.rpn.pre_nms_top_n_train=100", "model.rpn.post_nms_top_n_train=50",
    "model.rpn.pre_nms_top_n_test=50", "model.rpn.post_nms_top_n_test=20", "model.roi_heads.batch_size_per_image=16",
    "model.detections_per_image=10",
    "data.min_size_train=[64]", "data.max_size_train=96", "data.min_size_test=64", "data.max_size_test=96",
    "data.num_workers=0",
    "solver.ims_per_batch=2", "solver.warmup_iters=1", "solver.steps=[]", "solver.max_iter=1",
    "solver.checkpoint_period=100",
]

#: bad JSON inputs: the file is absent, a folder, not JSON, cut short, nested 100000 deep
FILE_KINDS = ["missing", "folder", "malformed", "truncated", "deep"]
#: well-formed COCO with a bad value
COCO_KINDS = ["huge-image-id", "huge-annotation-id", "iscrowd-string"]
JSON_KINDS = [*FILE_KINDS, *COCO_KINDS]


# --------------------------------------------------------------------------- valid material


@dataclass(frozen=True)
class Data:
    """A valid dataset to derive bad inputs from: 3 images of 64 x 64 with masks, and points."""

    image_dir: Path
    train_json: Path
    val_json: Path
    points_json: Path  # train_json with P10 points


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    from pointsup.data.synthetic import generate_synthetic_dataset
    from pointsup.points.format import read_coco_json
    from pointsup.points.simulate import SimulationConfig, simulate
    from pointsup.utils.atomic import write_json_atomic

    root = tmp_path_factory.mktemp("synthetic")
    dataset = generate_synthetic_dataset(root, num_images=3, image_size=64, show_progress=False)
    points = simulate(read_coco_json(dataset.train_json), SimulationConfig(num_points=10), source=str(dataset.train_json))
    write_json_atomic(root / "train_p10.json", points.coco)
    return Data(dataset.image_dir, dataset.train_json, dataset.val_json, root / "train_p10.json")


def data_overrides(data: Data, train_json: Path | None = None, val_json: Path | None = None,
                   images: Path | None = None, evaluate: bool = True) -> list[str]:
    """The config overrides that point a run at ``data`` (or at the given replacements); without
    ``evaluate``, no validation set (a training case then checks one dataset, not two)."""
    images = images or data.image_dir
    training = [f"data.train_json={train_json or data.points_json}", f"data.train_images={images}"]
    if not evaluate:
        return [*training, "data.val_json=null"]
    return [*training, f"data.val_json={val_json or data.val_json}", f"data.val_images={images}"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, data: Data) -> Path:
    """A valid (untrained) checkpoint of the :data:`TINY` model, as `pointsup train` writes them."""
    from pointsup.engine.builders import model_for_checkpoint
    from pointsup.engine.checkpoint import Checkpointer
    from pointsup.engine.config import load_config

    config = load_config(CONFIG, [*TINY, *data_overrides(data)])
    categories = json.loads(data.train_json.read_text())["categories"]
    model = model_for_checkpoint(config, len(categories))
    extra = {"iteration": 0, "seed": 0, "config": config.to_dict(), "num_classes": len(categories),
             "category_names": [c["name"] for c in categories], "label_to_category_id": [c["id"] for c in categories]}
    return Checkpointer(tmp_path_factory.mktemp("checkpoint")).save("model_final", model, extra=extra)


# --------------------------------------------------------------------------- bad material


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG whose header claims ``width`` x ``height`` RGB pixels (the data is a few bytes)."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def garbage(size: int = 4096, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def edit_coco(source: Path, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    coco = json.loads(source.read_text())
    edit(coco)
    target.write_text(json.dumps(coco))
    return target


def _huge_image_id(coco: dict[str, Any]) -> None:
    old = coco["images"][0]["id"]
    coco["images"][0]["id"] = HUGE_ID
    for annotation in coco["annotations"]:
        if annotation["image_id"] == old:
            annotation["image_id"] = HUGE_ID


def _huge_annotation_id(coco: dict[str, Any]) -> None:
    coco["annotations"][0]["id"] = HUGE_ID


def _iscrowd_string(coco: dict[str, Any]) -> None:
    coco["annotations"][0]["iscrowd"] = "yes"


def _empty(coco: dict[str, Any]) -> None:
    coco["images"], coco["annotations"] = [], []


def _no_masks(coco: dict[str, Any]) -> None:
    for annotation in coco["annotations"]:
        annotation.pop("segmentation", None)


COCO_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "no-masks": _no_masks,
    "huge-image-id": _huge_image_id,
    "huge-annotation-id": _huge_annotation_id,
    "iscrowd-string": _iscrowd_string,
    "empty": _empty,
}


@dataclass
class Workspace:
    """One case's folder, the valid material, and makers of bad files inside the folder."""

    tmp: Path
    data: Data
    request: pytest.FixtureRequest
    read_only: list[Path] = field(default_factory=list)

    @property
    def checkpoint(self) -> Path:
        return self.request.getfixturevalue("checkpoint")

    def bad_file(self, kind: str, suffix: str) -> Path:
        """A file-level bad input (one of :data:`FILE_KINDS`) named ``bad-KIND.SUFFIX``."""
        path = self.tmp / f"bad-{kind}.{suffix}"
        if kind == "folder":
            path.mkdir()
        elif kind == "malformed":
            path.write_text('{"images": [{"id": 1,, "file_name": }' if suffix == "json" else "model: [unclosed\n  - : :\n")
        elif kind == "deep":
            path.write_text("[" * 100_000)
        elif kind != "missing":
            raise ValueError(f"not a file kind: {kind}")
        return path

    def bad_json(self, kind: str, source: Path) -> Path:
        """A bad JSON input (one of :data:`JSON_KINDS` or ``empty``) made from the valid ``source``."""
        path = self.tmp / f"bad-{kind}.json"
        if kind == "truncated":
            text = source.read_text()
            path.write_text(text[: len(text) // 2])
            return path
        if kind in COCO_EDITS:
            return edit_coco(source, path, COCO_EDITS[kind])
        return self.bad_file(kind, "json")

    def bad_checkpoint(self, kind: str) -> Path:
        """``missing``, ``folder``, ``garbage`` bytes, or ``no-keys``: a valid torch file of a
        dict without the keys a checkpoint has."""
        path = self.tmp / f"bad-{kind}.pth"
        if kind == "garbage":
            path.write_bytes(garbage())
        elif kind == "no-keys":
            import torch

            torch.save({"hello": "world", "answer": 42}, path)
        else:
            self.bad_file(kind, "pth")
        return path

    def images_with(self, kind: str, source: Path) -> tuple[Path, Path, Path]:
        """(dataset JSON, image folder, the bad image): a copy of the images where the first image
        of ``source`` is ``corrupt`` (random bytes) or a decompression ``bomb``; for a bomb the
        JSON gives the image the size its header claims, so no size check catches it first."""
        images = self.tmp / "images"
        shutil.copytree(self.data.image_dir, images)
        first = json.loads(source.read_text())["images"][0]
        bad = images / first["file_name"]
        if kind == "corrupt":
            bad.write_bytes(garbage())
            return source, images, bad
        bad.write_bytes(bomb_png())

        def claim_bomb_size(coco: dict[str, Any]) -> None:
            coco["images"][0]["width"] = coco["images"][0]["height"] = 100_000

        return edit_coco(source, self.tmp / f"bomb-{source.name}", claim_bomb_size), images, bad

    def unwritable(self, name: str) -> Path:
        """``name`` in a folder nobody may write to; as root (whom permissions do not stop) a
        path under a regular file instead, which fails with ENOTDIR for everyone."""
        if os.geteuid() == 0:
            blocker = self.tmp / "not-a-folder.txt"
            blocker.write_text("a regular file\n")
            return blocker / name
        folder = self.tmp / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        self.read_only.append(folder)
        return folder / name

    def existing_folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir()
        return path

    def existing_file(self, name: str = "a-file.txt") -> Path:
        path = self.tmp / name
        path.write_text("a regular file\n")
        return path


@pytest.fixture
def ws(tmp_path: Path, data: Data, request: pytest.FixtureRequest) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path, data, request)
    yield workspace
    for folder in workspace.read_only:  # let pytest remove it
        folder.chmod(0o755)


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Invocation:
    """``pointsup ARGV``, and the names of which the last stderr line must contain one (as a
    whole word: ``-o`` is not found in ``pytest-of-root``)."""

    argv: list[str]
    names: tuple[str, ...]
    timeout_s: float = TIMEOUT_S


def invocation(argv: list[str | Path], *offending: str | Path, timeout_s: float = TIMEOUT_S) -> Invocation:
    """A path is named by its file name (robust to how the message spells the folder); an
    unwritable path by its parent, the part that cannot be written."""
    names: list[str] = []
    for item in offending:
        if isinstance(item, Path):
            names.append(item.parent.name if item.parent.name in ("not-a-folder.txt", "read-only") else item.name)
        else:
            names.append(item)
    return Invocation([str(a) for a in argv], tuple(names), timeout_s)


Builder = Callable[[Workspace, str], Invocation]


@dataclass(frozen=True)
class Case:
    """A test case: ``build(workspace, kind)`` makes the bad input and the invocation."""

    id: str
    build: Builder
    kind: str


def cases(command: str, what: str, build: Builder, kinds: list[str]) -> list[Case]:
    return [Case(f"{command}-{what}-{kind}", build, kind) for kind in kinds]


def output_cases(command: str, what: str, build: Callable[[Workspace, Path], Invocation], file_name: str | None,
                 unwritable: bool = True) -> list[Case]:
    """An output that exists as the wrong type: a folder where the file ``file_name`` (with the
    right suffix, so only the type is wrong) is written, or a regular file where an output
    folder (``file_name`` None) is made; and, when ``unwritable``, an output that cannot be
    written (see :meth:`Workspace.unwritable`)."""

    def not_writable(ws: Workspace, kind: str) -> Invocation:
        return build(ws, ws.unwritable(file_name or "out"))

    def wrong_type(ws: Workspace, kind: str) -> Invocation:
        return build(ws, ws.existing_folder(f"a-folder{Path(file_name).suffix}") if file_name else ws.existing_file())

    wrong = Case(f"{command}-{what}-existing-{'folder' if file_name else 'file'}", wrong_type, "wrong-type")
    return [wrong, Case(f"{command}-{what}-unwritable", not_writable, "unwritable")] if unwritable else [wrong]


# simulate IN.json -o OUT.json [--stats-json S.json]

def simulate_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.train_json)
    return invocation(["simulate", bad, "-o", ws.tmp / "out.json", "-q"], bad)


def simulate_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["simulate", ws.data.train_json, "-o", output, "-q"], output, "-o")


def simulate_stats_json(ws: Workspace, output: Path) -> Invocation:
    return invocation(["simulate", ws.data.train_json, "-o", ws.tmp / "out.json", "--stats-json", output, "-q"], output, "--stats-json")


# stats FILE.json [--masks MASKS.json]

def stats_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.points_json)
    return invocation(["stats", bad], bad)


def stats_masks(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.train_json)
    return invocation(["stats", ws.data.points_json, "--masks", bad], bad, "--masks")


# synthetic OUT_DIR

def synthetic_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["synthetic", output, "--images", "2", "--image-size", "64", "-q"], output)


# show FILE.json --images DIR -o OUT.png

def show_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.points_json)
    return invocation(["show", bad, "--images", ws.data.image_dir, "-o", ws.tmp / "out.png"], bad)


def show_images_folder(ws: Workspace, kind: str) -> Invocation:
    folder = ws.tmp / "missing-images" if kind == "missing" else ws.existing_file("images-file.txt")
    return invocation(["show", ws.data.points_json, "--images", folder, "-o", ws.tmp / "out.png"], folder, "--images")


def show_image(ws: Workspace, kind: str) -> Invocation:
    dataset, images, bad = ws.images_with(kind, ws.data.points_json)
    return invocation(["show", dataset, "--images", images, "-o", ws.tmp / "out.png"], bad)


def show_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["show", ws.data.points_json, "--images", ws.data.image_dir, "-o", output], output, "-o")


# recipe DATASET.json --images DIR [-o OUT.yaml] [--base BASE.yaml]

def recipe_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.train_json)
    return invocation(["recipe", bad, "--images", ws.data.image_dir], bad)


def recipe_images(ws: Workspace, kind: str) -> Invocation:
    folder = ws.tmp / "missing-images"
    return invocation(["recipe", ws.data.train_json, "--images", folder], folder, "--images")


def recipe_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["recipe", ws.data.train_json, "--images", ws.data.image_dir, "-o", output], output, "-o")


def recipe_base(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_file(kind, "yaml")
    return invocation(["recipe", ws.data.train_json, "--images", ws.data.image_dir, "--base", bad], bad, "--base")


# annotate serve DATASET.json --images DIR [--db FILE]; annotate export / progress --db FILE

def serve(ws: Workspace, dataset: Path, images: Path, db: Path, *offending: str | Path) -> Invocation:
    argv = ["annotate", "serve", dataset, "--images", images, "--db", db, "--port", "0", "-q"]
    return invocation(argv, *offending, timeout_s=SERVE_TIMEOUT_S)


def serve_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.train_json)
    return serve(ws, bad, ws.data.image_dir, ws.tmp / "session.db", bad)


def serve_images(ws: Workspace, kind: str) -> Invocation:
    folder = ws.tmp / "missing-images"
    return serve(ws, ws.data.train_json, folder, ws.tmp / "session.db", folder, "--images")


def bad_db(ws: Workspace, kind: str) -> Path:
    """``missing``, ``folder``, or ``garbage``: random bytes where an SQLite database should be."""
    if kind == "garbage":
        path = ws.tmp / "bad-garbage.db"
        path.write_bytes(garbage())
        return path
    return ws.bad_file(kind, "db")


def serve_db(ws: Workspace, kind: str) -> Invocation:
    if kind == "unwritable":
        db = ws.unwritable("session.db")
    elif kind == "folder":
        db = ws.existing_folder("a-folder.db")
    else:
        db = bad_db(ws, kind)
    return serve(ws, ws.data.train_json, ws.data.image_dir, db, db, "--db")


def export_db(ws: Workspace, kind: str) -> Invocation:
    db = bad_db(ws, kind)
    return invocation(["annotate", "export", "--db", db, "-o", ws.tmp / "out.json", "--partial"], db, "--db")


def export_output(ws: Workspace, output: Path) -> Invocation:
    from pointsup.annotator.store import open_session

    db = ws.tmp / "session.db"
    store, _ = open_session(db, ws.data.train_json)
    store.close()
    return invocation(["annotate", "export", "--db", db, "-o", output, "--partial"], output, "-o")


def progress_db(ws: Workspace, kind: str) -> Invocation:
    db = bad_db(ws, kind)
    return invocation(["annotate", "progress", "--db", db], db, "--db")


# cost [DATASET.json] [--curves CURVES.json --target-ap AP]

def cost_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.train_json)
    return invocation(["cost", bad], bad)


def cost_curves(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_file(kind, "json")
    return invocation(["cost", "--curves", bad, "--target-ap", "30"], bad, "--curves")


# train CONFIG [KEY=VALUE ...] --output DIR

def train(ws: Workspace, *overrides: str, config: Path = CONFIG, output: Path | None = None, train_json: Path | None = None,
          images: Path | None = None) -> list[str | Path]:
    data = data_overrides(ws.data, train_json=train_json, images=images, evaluate=False)
    return ["train", config, *TINY, *data, *overrides, "--output", output or ws.tmp / "run"]


def train_config(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_file(kind, "yaml")
    return invocation(train(ws, config=bad), bad)


def train_data(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.points_json)
    return invocation(train(ws, train_json=bad), bad, "data.train_json")


def train_image(ws: Workspace, kind: str) -> Invocation:
    dataset, images, bad = ws.images_with(kind, ws.data.points_json)
    return invocation(train(ws, train_json=dataset, images=images), bad)


def train_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(train(ws, output=output), output, "--output")


def train_device(ws: Workspace, kind: str) -> Invocation:
    return invocation(train(ws, "device=cuda"), "device=cuda", "device 'cuda'", "device: cuda")


def train_weights(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_checkpoint(kind)
    return invocation(train(ws, f"model.weights={bad}"), bad, "model.weights")


# eval CONFIG [KEY=VALUE ...] --weights W [--output DIR]

def evaluate(ws: Workspace, weights: Path | None = None, output: Path | None = None, val_json: Path | None = None) -> list[str | Path]:
    data = data_overrides(ws.data, val_json=val_json)
    return ["eval", CONFIG, *TINY, *data, "--weights", weights or ws.checkpoint, "--output", output or ws.tmp / "eval"]


def eval_weights(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_checkpoint(kind)
    return invocation(evaluate(ws, weights=bad), bad, "--weights")


def eval_data(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.val_json)
    return invocation(evaluate(ws, val_json=bad), bad, "data.val_json")


def eval_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(evaluate(ws, output=output), output, "--output")


# predict IMAGE ... --weights W [-o DIR] [--device D]

def predict(ws: Workspace, *extra: str | Path, image: Path | None = None, weights: Path | None = None,
            output: Path | None = None) -> list[str | Path]:
    image = image or ws.data.image_dir / "000001.png"
    return ["predict", image, "--weights", weights or ws.checkpoint, "-o", output or ws.tmp / "predictions", *extra]


def predict_image(ws: Workspace, kind: str) -> Invocation:
    if kind in ("corrupt", "bomb"):
        _, _, bad = ws.images_with(kind, ws.data.val_json)
    elif kind == "folder":
        bad = ws.existing_folder("a-folder.png")
    else:
        bad = ws.tmp / "missing.png"
    return invocation(predict(ws, image=bad), bad)


def predict_weights(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_checkpoint(kind)
    return invocation(predict(ws, weights=bad), bad, "--weights")


def predict_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(predict(ws, output=output), output, "-o")


def predict_device(ws: Workspace, kind: str) -> Invocation:
    return invocation(predict(ws, "--device", "cuda"), "--device", "device 'cuda'")


# pseudo-label --weights W --dataset D.json --images DIR -o OUT.json

def pseudo_label(ws: Workspace, dataset: Path | None = None, output: Path | None = None,
                 images: Path | None = None) -> list[str | Path]:
    return ["pseudo-label", "--weights", ws.checkpoint, "--dataset", dataset or ws.data.points_json,
            "--images", images or ws.data.image_dir, "-o", output or ws.tmp / "pseudo.json"]


def pseudo_dataset(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.points_json)
    return invocation(pseudo_label(ws, dataset=bad), bad, "--dataset")


def pseudo_image(ws: Workspace, kind: str) -> Invocation:
    dataset, images, bad = ws.images_with(kind, ws.data.points_json)
    return invocation(pseudo_label(ws, dataset=dataset, images=images), bad)


def pseudo_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(pseudo_label(ws, output=output), output, "-o")


# selftrain CONFIG [KEY=VALUE ...] --output DIR; demo --output DIR

def selftrain(ws: Workspace, config: Path = CONFIG, output: Path | None = None) -> list[str | Path]:
    return ["selftrain", config, *TINY, *data_overrides(ws.data, evaluate=False), "--output", output or ws.tmp / "selftrain"]


def selftrain_config(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_file(kind, "yaml")
    return invocation(selftrain(ws, config=bad), bad)


def selftrain_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(selftrain(ws, output=output), output, "--output")


def demo_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["demo", "--output", output, "--images", "4", "--iterations", "1"], output, "--output")


# convert IN -o OUT (--from FORMAT [--images DIR] | --to FORMAT)

#: YOLO label-file problems: (label file stem, its line)
YOLO_BAD_LINES = {"image-missing": ("no-such-image", "0 0.5 0.5 0.2 0.2"),
                  "class-out-of-range": ("000001", "7 0.5 0.5 0.2 0.2"), "degenerate-box": ("000001", "0 0.5 0.5 0.0 0.2")}


def convert_yolo_labels(ws: Workspace, kind: str) -> Invocation:
    labels = ws.tmp / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("shape\n")
    stem, line = YOLO_BAD_LINES[kind]
    bad = labels / f"{stem}.txt"
    bad.write_text(line + "\n")
    return invocation(["convert", labels, "-o", ws.tmp / "out.json", "--from", "yolo", "--images", ws.data.image_dir], bad)


def convert_import(ws: Workspace, kind: str) -> Invocation:
    """``FORMAT-KIND``: a bad file (:data:`FILE_KINDS`) or a VOC file with a degenerate box."""
    fmt, _, what = kind.partition("-")
    if what == "degenerate-box":
        bad = ws.tmp / "bad-box.xml"
        bad.write_text("<annotation><filename>000001.png</filename><size><width>64</width><height>64</height></size>"
                       "<object><name>shape</name><bndbox><xmin>9</xmin><ymin>9</ymin><xmax>5</xmax><ymax>20</ymax></bndbox></object></annotation>")
    else:
        bad = ws.bad_file(what, "json" if fmt == "labelstudio" else "xml")
    return invocation(["convert", bad, "-o", ws.tmp / "out.json", "--from", fmt], bad)


def convert_export_input(ws: Workspace, kind: str) -> Invocation:
    bad = ws.bad_json(kind, ws.data.points_json)
    return invocation(["convert", bad, "-o", ws.tmp / "out.xml", "--to", "cvat"], bad)


def convert_output(ws: Workspace, output: Path) -> Invocation:
    return invocation(["convert", ws.data.points_json, "-o", output, "--to", "cvat"], output, "-o")


# A command that imports PyTorch takes about 4 s a case, the others under one. The light ones get
# every bad JSON input and unwritable outputs; the PyTorch ones get the bad inputs that reach code
# of their own (datasets as tensors, checkpoints, image headers, devices, output folders), each
# path once: eval and pseudo-label read checkpoints and images as predict and train do.
CASES: list[Case] = [
    *cases("simulate", "input", simulate_input, JSON_KINDS),
    *output_cases("simulate", "output", simulate_output, "out.json"),
    *output_cases("simulate", "stats-json", simulate_stats_json, "stats.json"),
    *cases("stats", "input", stats_input, JSON_KINDS),
    *cases("stats", "masks", stats_masks, ["missing", "malformed", "deep"]),
    *output_cases("synthetic", "output-dir", synthetic_output, None),
    *cases("show", "input", show_input, JSON_KINDS),
    *cases("show", "images", show_images_folder, ["missing", "file"]),
    *cases("show", "image", show_image, ["corrupt", "bomb"]),
    *output_cases("show", "output", show_output, "out.png"),
    *cases("recipe", "input", recipe_input, [*JSON_KINDS, "empty"]),
    *cases("recipe", "images", recipe_images, ["missing"]),
    *output_cases("recipe", "output", recipe_output, "recipe.yaml"),
    *cases("recipe", "base", recipe_base, ["missing", "malformed", "deep"]),
    *cases("annotate-serve", "input", serve_input, JSON_KINDS),
    *cases("annotate-serve", "images", serve_images, ["missing"]),
    *cases("annotate-serve", "db", serve_db, ["folder", "garbage", "unwritable"]),
    *cases("annotate-export", "db", export_db, ["missing", "folder", "garbage"]),
    *output_cases("annotate-export", "output", export_output, "out.json"),
    *cases("annotate-progress", "db", progress_db, ["missing", "folder", "garbage"]),
    *cases("cost", "input", cost_input, JSON_KINDS),
    *cases("cost", "curves", cost_curves, ["missing", "malformed", "deep"]),
    *cases("train", "config", train_config, ["missing"]),
    *cases("train", "train-json", train_data, ["huge-image-id", "empty"]),
    *cases("train", "image", train_image, ["corrupt", "bomb"]),
    *output_cases("train", "output", train_output, None, unwritable=False),
    *cases("train", "device", train_device, ["cuda"]),
    *cases("train", "model-weights", train_weights, ["garbage", "no-keys"]),
    *cases("eval", "weights", eval_weights, ["no-keys"]),
    *cases("eval", "val-json", eval_data, ["empty", "no-masks"]),
    *output_cases("eval", "output", eval_output, None, unwritable=False),
    *cases("predict", "image", predict_image, ["missing", "folder", "corrupt", "bomb"]),
    *cases("predict", "weights", predict_weights, ["missing", "garbage", "no-keys"]),
    *output_cases("predict", "output", predict_output, None, unwritable=False),
    *cases("predict", "device", predict_device, ["cuda"]),
    *cases("pseudo-label", "dataset", pseudo_dataset, ["huge-annotation-id"]),
    *cases("pseudo-label", "image", pseudo_image, ["corrupt"]),
    *output_cases("pseudo-label", "output", pseudo_output, "pseudo.json", unwritable=False),
    *cases("selftrain", "config", selftrain_config, ["missing"]),
    *output_cases("selftrain", "output", selftrain_output, None, unwritable=False),
    *output_cases("demo", "output", demo_output, None),
    *cases("convert", "yolo-labels", convert_yolo_labels, list(YOLO_BAD_LINES)),
    *cases("convert", "import", convert_import, ["cvat-malformed", "cvat-deep", "cvat-folder", "voc-malformed", "voc-degenerate-box",
                                                 "labelstudio-malformed", "labelstudio-missing", "labelstudio-deep"]),
    *cases("convert", "export-input", convert_export_input, JSON_KINDS),
    *output_cases("convert", "output", convert_output, "out.xml"),
]


# --------------------------------------------------------------------------- the test


def run_pointsup(argv: list[str], cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``python -m pointsup ARGV`` with no GPU visible (so ``cuda`` is never there) and no stdin."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "POINTSUP_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "pointsup", *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout_s)


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def test_cases_have_unique_ids() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_is_refused_naming_it(case: Case, ws: Workspace) -> None:
    call = case.build(ws, case.kind)
    command = f"pointsup {' '.join(call.argv)}"
    try:
        result = run_pointsup(call.argv, ws.tmp, call.timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command}\nstill running after {call.timeout_s:g} s: the bad input was not refused")
    last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    problems: list[str] = []
    if result.returncode != 2:
        problems.append(f"exit status {result.returncode}, not 2")
    if "Traceback" in result.stderr:
        problems.append("a traceback on stderr")
    if not any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", last) for name in call.names):
        problems.append(f"the last stderr line names none of {list(call.names)}")
    assert not problems, f"{command}\n{'; '.join(problems)}\nstderr ends:\n{_tail(result.stderr)}"
