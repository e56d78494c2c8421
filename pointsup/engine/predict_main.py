"""``pointsup predict``: COCO results JSON (and optional PNG overlays) for many image files.

Inputs are files, folders (their image files, sorted) and glob patterns. The run is resumable:

* every finished batch is appended to a journal, ``OUT/predictions.json.partial``, one JSON line
  per image (its file name, size and detections), flushed to disk before the next batch;
* an interrupted run started again with the same weights and settings reads the journal, drops
  a last line cut short by the interruption, and predicts only the images not in it;
* at the end ``predictions.json`` is written in one atomic step from the journal, and the
  journal is removed. So ``predictions.json`` is either absent (or the previous run's) or
  complete, and never a broken file.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointsup.engine.config import load_config
from pointsup.engine.predictor import coco_results, load_trained_model, predict_files
from pointsup.errors import PointsupError
from pointsup.evaluation.overlay import save_overlay
from pointsup.utils.atomic import encode_json, output_write_error, write_json_atomic
from pointsup.utils.progress import progress

#: The COCO results file :func:`predict_to_folder` writes into its output folder.
PREDICTIONS_FILE = "predictions.json"
#: The journal of a run in progress (JSON lines), beside :data:`PREDICTIONS_FILE`.
JOURNAL_FILE = PREDICTIONS_FILE + ".partial"
#: Version of the journal's layout, in its first line.
JOURNAL_VERSION = 1
#: File suffixes a folder given to ``pointsup predict`` is searched for (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class PredictInputError(PointsupError, ValueError):
    """An image argument that names nothing, or a journal that belongs to another run."""


def expand_image_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by ``inputs``, in order: a file as given, a folder's image files
    (:data:`IMAGE_SUFFIXES`, not recursive) sorted by name, a glob pattern's matches sorted
    (``**`` recurses).

    Raises:
        PredictInputError: an argument that is neither a file nor a folder and matches no file,
            or a folder without image files (the message names it).
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise PredictInputError(f"{path}: a folder without image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if os.path.isfile(p))
            if not matches:
                raise PredictInputError(f"{item}: no file matches this pattern")
            files.extend(matches)
        else:
            raise PredictInputError(f"{path}: no such image file or folder")
    return files


def overlay_path(output_dir: str | Path, index: int, image: str | Path) -> Path:
    """The overlay of input ``index``: ``OUT/NNNN_<stem>_pred.png``."""
    return Path(output_dir) / f"{index:04d}_{Path(image).stem}_pred.png"


def output_files(images: Sequence[str | Path], output_dir: str | Path, overlays: bool = True) -> list[Path]:
    """The files :func:`predict_to_folder` writes: one ``NNNN_<stem>_pred.png`` overlay per image
    (``NNNN`` its position in ``images``) when ``overlays``, then ``predictions.json``."""
    output = Path(output_dir)
    drawn = [overlay_path(output, index, image) for index, image in enumerate(images)] if overlays else []
    return [*drawn, output / PREDICTIONS_FILE]


def _settings(weights: str | Path, score_threshold: float, config_path: str | Path | None) -> dict[str, Any]:
    """What a journal must share with a run that continues it."""
    stat = Path(weights).stat()
    return {
        "weights": str(Path(weights).resolve()),
        "weights_size": stat.st_size,
        "weights_mtime_ns": stat.st_mtime_ns,
        "score_threshold": score_threshold,
        "config": None if config_path is None else str(Path(config_path).resolve()),
    }


class Journal:
    """The append-only record of the images a run has finished (see the module docstring).

    Args:
        path: the journal file.
        settings: the run's settings, the journal's first line.
    """

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.settings = settings
        self.records: dict[str, dict[str, Any]] = {}

    def open(self) -> None:
        """Read what an interrupted run left (dropping a line it did not finish), or start the file.

        Raises:
            PredictInputError: the journal was written with other weights or settings.
        """
        header = {"pointsup_predict_journal": JOURNAL_VERSION, **self.settings}
        if self.path.exists():
            lines, good_bytes = self._read_complete_lines()
            if lines and lines[0] != header:
                raise PredictInputError(
                    f"{self.path} holds an interrupted run with other weights or settings: "
                    "give the same ones to continue it, or delete the file to start over"
                )
            for record in lines[1:]:
                self.records[record["file_name"]] = record
            if lines:
                self._truncate(good_bytes)
                return
        self._write_lines([header], mode="wb")

    def _read_complete_lines(self) -> tuple[list[dict[str, Any]], int]:
        """The journal's complete JSON lines and their length in bytes (a torn last line ends it)."""
        data = self.path.read_bytes()
        lines: list[dict[str, Any]] = []
        good = 0
        for raw in data.splitlines(keepends=True):
            if not raw.endswith(b"\n"):
                break
            try:
                lines.append(json.loads(raw))
            except ValueError:
                break
            good += len(raw)
        return lines, good

    def _truncate(self, size: int) -> None:
        try:
            with open(self.path, "r+b") as handle:
                handle.truncate(size)
        except OSError as exc:
            raise output_write_error(self.path, exc) from None

    def _write_lines(self, records: Sequence[dict[str, Any]], mode: str = "ab") -> None:
        payload = b"".join(encode_json(record) + b"\n" for record in records)
        try:
            with open(self.path, mode) as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise output_write_error(self.path, exc) from None

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Record finished images (each ``{"file_name", "height", "width", "annotations"}``) durably."""
        self._write_lines(records)
        for record in records:
            self.records[record["file_name"]] = record

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def predict_to_folder(
    weights: str | Path,
    images: Sequence[str | Path],
    output_dir: str | Path,
    score_threshold: float = 0.5,
    device: str = "auto",
    config_path: str | Path | None = None,
    *,
    batch_size: int = 1,
    num_workers: int = 0,
    overlays: bool = True,
) -> Path:
    """Predict every image; write ``predictions.json`` (COCO results, ``image_id`` = position in
    ``images``, plus an ``images`` list naming the files and the ``categories``) and, with
    ``overlays``, the pictures of :func:`output_files`. Continues an interrupted run in the
    same folder (module docstring).

    Args:
        batch_size: images per forward pass.
        num_workers: DataLoader processes decoding images while the model runs.

    Returns:
        the path of ``predictions.json``.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    journal = Journal(output / JOURNAL_FILE, _settings(weights, score_threshold, config_path))
    trained = load_trained_model(weights, device, load_config(config_path) if config_path else None)
    journal.open()
    names = [str(path) for path in images]
    todo = [index for index, name in enumerate(names) if name not in journal.records]
    if len(todo) < len(names):
        print(f"continuing an interrupted run: {len(names) - len(todo)} of {len(names)} images already done")
    pending: list[dict[str, Any]] = []
    detections_stream = predict_files(trained, [names[i] for i in todo], batch_size, num_workers)
    for position, (path, sample, detections) in enumerate(
        progress(detections_stream, total=len(todo), desc="predict", unit="img")
    ):
        index = todo[position]
        annotations = coco_results(detections, index, trained.label_to_category_id, score_threshold)
        for entry in annotations:
            del entry["image_id"]  # the position may change when a run continues with more inputs
        pending.append(
            {
                "file_name": str(path),
                "height": detections.image_size[0],
                "width": detections.image_size[1],
                "annotations": annotations,
            }
        )
        if overlays:
            save_overlay(overlay_path(output, index, path), sample.image, detections, trained.category_names, score_threshold)
        if len(pending) >= batch_size:
            journal.append(pending)
            pending = []
    if pending:
        journal.append(pending)
    files: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, name in enumerate(names):
        record = journal.records[name]
        files.append({"id": index, "file_name": name, "height": record["height"], "width": record["width"]})
        results.extend({"image_id": index, **entry} for entry in record["annotations"])
    categories = [{"id": c, "name": n} for c, n in zip(trained.label_to_category_id, trained.category_names)]
    target = output / PREDICTIONS_FILE
    write_json_atomic(target, {"images": files, "categories": categories, "annotations": results}, indent=None)
    journal.remove()
    print(f"wrote {len(results)} detections for {len(files)} images to {target}")
    return target
