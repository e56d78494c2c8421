"""Model-assisted labelling (``annotate serve --weights CHECKPOINT``): the model's suggestion at each point.

For each object, a trained Mask R-CNN-family model segments the object's box given the box and
the class, with no detection step: the path of ``pointsup pseudo-label``
(:meth:`~pointsup.modeling.mask_rcnn.MaskRCNN.segment_boxes` on the image resized to the
model's test size). The probability at each of the object's points is read from the
box-relative map as :func:`~pointsup.modeling.postprocess.paste_masks` reads it (bilinear at the
pixel centre), so a point is "object" by the model exactly when the pseudo mask holds it. The
points themselves stay the uniformly drawn ones (the paper's scheme): the model never chooses
which points are asked, it only suggests an answer.

Suggestions are computed off the request path and kept in the session database (table
``suggestions``, by checkpoint: the SHA-256 of its file): ``serve`` computes those missing
before it starts serving (with a progress bar; a restart with the same checkpoint computes
nothing again), and a background thread (:class:`SuggestionWorker`) computes them for objects
that appear later (the box stage makes objects while serving) or whose box changed. An answer
never waits for the model.

The page shows the suggestion ("model: object 93 %") and one key accepts it. The answer keeps,
beside it (table ``answer_suggestions``), the probability shown and whether the key accepted
it; the progress report compares seconds per point with and without a suggestion and counts how
often annotators overrule one (:mod:`pointsup.annotator.assist_progress`).

With ``skip_confident`` P (``--skip-confident``, off by default), a point whose probability is at
least P or at most 1 - P is not asked: when an annotator's chain of answers on an object reaches
it, the model's label is recorded in their chain (``model_made``), and the export lists such
labels (``model_labelled_points``). Only suggestions stored before the annotator took the object
are used for this, so the points a page was given stay the points it is asked.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from pointsup.errors import PointsupError

if TYPE_CHECKING:  # torch is imported where a model is used: the server and the reports start without it
    import torch

    from pointsup.annotator.store import AnnotationStore, PointTask
    from pointsup.engine.predictor import TrainedModel

#: how often the background worker looks for objects without suggestions (seconds)
POLL_INTERVAL_S = 1.0
#: a point is "object" by the model when its probability is at least this (the pseudo masks' threshold)
OBJECT_THRESHOLD = 0.5
#: what the ``suggestions.object`` column holds of an object: its category, box and points as stored
OBJECT_SIGNATURE_SQL = "(o.category_id || '|' || o.bbox || '|' || o.points)"


class AssistError(PointsupError, ValueError):
    """A checkpoint that cannot make suggestions for this session (other categories, no mask head)."""


def suggested_label(probability: float) -> int:
    """1 (object) or 0 (background): the label the model suggests."""
    return 1 if probability >= OBJECT_THRESHOLD else 0


def check_skip_threshold(value: float) -> float:
    """``value`` when it is a valid ``--skip-confident`` threshold (0.5 < P <= 1), else AssistError."""
    if not 0.5 < value <= 1.0:
        raise AssistError(f"--skip-confident must be above 0.5 and at most 1 (e.g. 0.95), got {value:g}")
    return value


@dataclass(frozen=True)
class ObjectToSuggest:
    """An object whose suggestions are to be computed, as the database holds it."""

    position: int
    image_id: int
    category_id: int
    bbox_xywh: tuple[float, float, float, float]
    points: np.ndarray
    signature: str


class SuggestionModel:
    """A checkpoint that suggests labels: its model and how the session's categories map to its
    classes.

    Args:
        trained: the model (Mask R-CNN family, with a mask head).
        weights: the checkpoint file (for messages).
        digest: the SHA-256 of the file, under which its suggestions are stored.
    """

    def __init__(self, trained: TrainedModel, weights: Path, digest: str):
        from pointsup.engine.predictor import inference_transforms
        from pointsup.modeling.mask_rcnn import MaskRCNN

        if not isinstance(trained.model, MaskRCNN):
            raise AssistError(
                f"{weights}: suggestions segment given boxes, which needs a Mask R-CNN-family model "
                f"(PointRend, Implicit PointRend included), not {type(trained.model).__name__}"
            )
        if trained.model.roi_heads.point_mask_head is None:
            raise AssistError(f"{weights}: the model has no mask head: nothing to suggest with")
        self.trained = trained
        self.model = trained.model.eval()
        self.weights = weights
        self.digest = digest
        self.transforms = inference_transforms(trained)
        #: session category id to the model's class (set by :meth:`check_categories`)
        self.label_of: dict[int, int] = {}

    @classmethod
    def load(cls, weights: str | Path, device: str = "auto") -> SuggestionModel:
        """Load a checkpoint written by ``pointsup train``.

        Raises:
            CheckpointError: the file is missing, unreadable or not a pointsup checkpoint.
            AssistError: its model cannot segment given boxes.
        """
        from pointsup.annotator.store import file_sha256
        from pointsup.engine.predictor import load_trained_model

        path = Path(weights)
        trained = load_trained_model(path, device)
        return cls(trained, path, file_sha256(path))

    def check_categories(self, category_names: dict[int, str], source: str) -> None:
        """Map the session's categories (id to name) to the model's classes: by id when the ids
        are the model's, else by name when the names (in id order) are the model's.

        Raises:
            AssistError: neither fits (one line naming the checkpoint and the session's file).
        """
        ids = sorted(category_names)
        names = [category_names[i] for i in ids]
        model_ids = [int(i) for i in self.trained.label_to_category_id]
        if ids == model_ids or names == list(self.trained.category_names):
            self.label_of = {category_id: label for label, category_id in enumerate(ids)}
            return
        raise AssistError(
            f"{self.weights}: the model was trained on the categories {_describe(model_ids, self.trained.category_names)} "
            f"but {source} has {_describe(ids, names)}: give the checkpoint of a model trained for these categories"
        )

    def probabilities(self, image: torch.Tensor, objects: list[ObjectToSuggest]) -> list[np.ndarray]:
        """The model's probability at each point of each object of one image.

        Args:
            image: (3, H, W) uint8 RGB, the image file's pixel grid.
            objects: objects of that image (boxes and points in its pixels).

        Returns:
            per object, (N,) float64 probabilities (zeros for a box without area in the image).
        """
        import torch

        from pointsup.engine.predictor import make_sample

        if not objects:
            return []
        sample = make_sample(image, 0, "<image>")
        height, width = sample.original_size
        boxes = torch.tensor([_xyxy(o.bbox_xywh) for o in objects], dtype=torch.float32)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0.0, float(width))
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0.0, float(height))
        usable = ((boxes[:, 2] - boxes[:, 0]) > 1e-5) & ((boxes[:, 3] - boxes[:, 1]) > 1e-5)
        results = [np.zeros(len(o.points), dtype=np.float64) for o in objects]
        keep = torch.nonzero(usable).squeeze(1).tolist()
        if not keep:
            return results
        resized = self.transforms(sample, np.random.default_rng(0))
        scale = boxes.new_tensor([resized.image_size[1] / width, resized.image_size[0] / height] * 2)
        classes = torch.tensor([self.label_of[objects[k].category_id] for k in keep], dtype=torch.int64)
        with torch.inference_mode():
            (mask_probs,) = self.model.segment_boxes([resized], [boxes[keep] * scale], [classes])
        values = probabilities_at_points(
            mask_probs.float().cpu(), boxes[keep], [np.asarray(objects[k].points, dtype=np.float32) for k in keep]
        )
        for k, value in zip(keep, values):
            results[k] = value
        return results


def _xyxy(bbox: tuple[float, float, float, float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _describe(ids: list[int], names: Iterable[str]) -> str:
    pairs = [f"{i} {name}" for i, name in zip(ids, names)]
    return "[" + ", ".join(pairs[:8]) + (", ..." if len(pairs) > 8 else "") + "]"


def probabilities_at_points(mask_probs: torch.Tensor, boxes: torch.Tensor, points: list[np.ndarray]) -> list[np.ndarray]:
    """The box-relative (K, M, M) probabilities read at pixel indices ``[x, y]`` (their centres),
    as :func:`~pointsup.modeling.postprocess.paste_masks` reads them: bilinear, zero outside.

    Args:
        mask_probs: (K, M, M) probabilities.
        boxes: (K, 4) xyxy boxes in image pixels.
        points: K arrays (N_k, 2) of pixel indices.
    """
    import torch
    import torch.nn.functional as F

    results = []
    for probs, box, indices in zip(mask_probs, boxes, points):
        pixels = torch.as_tensor(indices, dtype=torch.float32)
        x0, y0, x1, y1 = box.tolist()
        u = (pixels[:, 0] + 0.5 - x0) / (x1 - x0) * 2 - 1
        v = (pixels[:, 1] + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack([u, v], dim=1)[None, None]  # (1, 1, N, 2)
        sampled = F.grid_sample(probs[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        results.append(sampled.reshape(-1).double().numpy())
    return results


# ---- the store's side: suggestions while handing out points ------------------------------------


@dataclass(frozen=True)
class Assist:
    """What the store consults while handing out points (``store.assist``).

    Attributes:
        model: the checkpoint's SHA-256, under which its suggestions are stored.
        skip_confident: P of ``--skip-confident``, or None (every point is asked).
    """

    model: str
    skip_confident: float | None = None

    def suggestions(self, db: sqlite3.Connection, position: int) -> tuple[list[float], float] | None:
        """The object's probabilities and when they were computed; None when there are none for
        the object as it is now."""
        row = db.execute(
            "SELECT s.probabilities, s.computed_at FROM suggestions AS s JOIN objects AS o ON o.position = s.position "
            f"WHERE s.model = ? AND s.position = ? AND s.object = {OBJECT_SIGNATURE_SQL}",
            (self.model, position),
        ).fetchone()
        return None if row is None else (msgspec.json.decode(row[0]), float(row[1]))

    def model_label(self, probability: float) -> int | None:
        """The label the model makes itself for a point this confident, None when it is asked."""
        if self.skip_confident is None:
            return None
        if probability >= self.skip_confident:
            return 1
        if probability <= 1.0 - self.skip_confident:
            return 0
        return None

    def _skips(self, db: sqlite3.Connection, key: str, position: int) -> tuple[list[float] | None, list[float]]:
        """``(probabilities the skipping uses or None, probabilities to show)``."""
        found = self.suggestions(db, position)
        if found is None:
            return None, []
        probabilities, computed_at = found
        if self.skip_confident is None:
            return None, probabilities
        row = db.execute("SELECT assigned_at FROM assignments WHERE annotator = ? AND position = ?", (key, position)).fetchone()
        usable = row is not None and computed_at <= float(row[0])
        return (probabilities if usable else None), probabilities

    def with_suggestions(self, db: sqlite3.Connection, key: str, position: int, tasks: list[PointTask]) -> list[PointTask]:
        """The annotator's tasks on one object with their suggestions, the points the model labels
        itself left out."""
        skipping, shown = self._skips(db, key, position)
        if not shown:
            return tasks
        return [
            replace(task, suggestion=shown[task.point_index])
            for task in tasks
            if skipping is None or self.model_label(skipping[task.point_index]) is None
        ]

    def advance(self, db: sqlite3.Connection, key: str, position: int) -> int:
        """Record the model's labels for the confident points at the head of the annotator's
        chain on the object (see the module docstring); returns the points now answered."""
        row = db.execute("SELECT answered FROM assignments WHERE annotator = ? AND position = ?", (key, position)).fetchone()
        if row is None:
            return 0
        answered = start = int(row[0])
        skipping, _ = self._skips(db, key, position) if self.skip_confident is not None else (None, [])
        if skipping is None:
            return answered
        now = time.time()
        while answered < len(skipping) and (label := self.model_label(skipping[answered])) is not None:
            cursor = db.execute(
                "INSERT INTO answers (annotator, position, point_index, label, response_ms, answered_at, client_id) "
                "VALUES (?, ?, ?, ?, NULL, ?, NULL)",
                (key, position, answered, label, now),
            )
            db.execute(
                "INSERT INTO answer_suggestions (answer, model, probability, accepted, model_made) VALUES (?, ?, ?, 0, 1)",
                (cursor.lastrowid, self.model, skipping[answered]),
            )
            answered += 1
        if answered != start:
            db.execute("UPDATE assignments SET answered = ? WHERE annotator = ? AND position = ?", (answered, key, position))
        return answered

    def advance_held(self, db: sqlite3.Connection, key: str, num_points: int) -> None:
        """:meth:`advance` on every unfinished object the annotator holds."""
        if self.skip_confident is None:
            return
        for (position,) in db.execute(
            "SELECT position FROM assignments WHERE annotator = ? AND answered < ?", (key, num_points)
        ).fetchall():
            self.advance(db, key, int(position))


def record_answer_suggestion(
    db: sqlite3.Connection, answer_id: int, model: str | None, probability: float, accepted: bool
) -> None:
    """Keep the suggestion an annotator was shown beside their answer."""
    db.execute(
        "INSERT INTO answer_suggestions (answer, model, probability, accepted, model_made) VALUES (?, ?, ?, ?, 0)",
        (answer_id, model, probability, int(accepted)),
    )


@dataclass(frozen=True)
class AnswerSuggestion:
    """A suggestion beside an answer in force: ``label`` the answer's (1, 0, -1)."""

    annotator: str
    position: int
    point_index: int
    label: int
    response_ms: float | None
    probability: float
    accepted: bool
    model_made: bool

    @property
    def overruled(self) -> bool:
        """The annotator gave the other label than the model's (an unsure answer overrules nothing)."""
        return not self.model_made and self.label in (0, 1) and self.label != suggested_label(self.probability)


def answer_suggestions(store: AnnotationStore) -> list[AnswerSuggestion]:
    """Every answer in force that was shown a suggestion or that the model made, oldest first."""
    with store._read() as db:
        rows = db.execute(
            "SELECT a.annotator, a.position, a.point_index, a.label, a.response_ms, s.probability, s.accepted, s.model_made "
            "FROM answers AS a JOIN answer_suggestions AS s ON s.answer = a.id WHERE a.undone_at IS NULL ORDER BY a.id"
        ).fetchall()
    return [AnswerSuggestion(str(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4], float(r[5]), bool(r[6]), bool(r[7])) for r in rows]


def model_made_answers(store: AnnotationStore) -> set[tuple[str, int, int]]:
    """``(annotator key, position, point_index)`` of the answers in force the model made."""
    return {(s.annotator, s.position, s.point_index) for s in answer_suggestions(store) if s.model_made}


# ---- computing them ------------------------------------------------------------------------


def objects_without_suggestions(store: AnnotationStore, model: str) -> list[ObjectToSuggest]:
    """The objects (in presentation order) that have no suggestions of ``model`` for their
    current box and points."""
    decoder = msgspec.json.Decoder()
    with store._read() as db:
        rows = db.execute(
            f"SELECT o.position, o.image_id, o.category_id, o.bbox, o.points, {OBJECT_SIGNATURE_SQL} FROM objects AS o "
            "LEFT JOIN suggestions AS s ON s.model = ? AND s.position = o.position "
            f"WHERE s.object IS NULL OR s.object != {OBJECT_SIGNATURE_SQL} ORDER BY o.position",
            (model,),
        ).fetchall()
    return [
        ObjectToSuggest(
            position=int(row[0]),
            image_id=int(row[1]),
            category_id=int(row[2]),
            bbox_xywh=tuple(decoder.decode(row[3])),
            points=np.array(decoder.decode(row[4]), dtype=np.int64).reshape(-1, 2),
            signature=str(row[5]),
        )
        for row in rows
    ]


def store_suggestions(store: AnnotationStore, model: str, computed: list[tuple[ObjectToSuggest, np.ndarray]]) -> None:
    """Keep the probabilities of some objects (one transaction)."""
    now = time.time()
    with store._write() as db:
        db.executemany(
            "INSERT OR REPLACE INTO suggestions (model, position, object, probabilities, computed_at) VALUES (?, ?, ?, ?, ?)",
            [
                (model, o.position, o.signature, msgspec.json.encode([round(float(p), 4) for p in values]).decode(), now)
                for o, values in computed
            ],
        )


class SuggestionWorker:
    """Computes the suggestions a session lacks: all at once (:meth:`compute_missing`, before
    serving) and then in a background thread (:meth:`start`) for objects that appear later.

    An image that cannot be read is reported once through ``log`` and its objects go without
    suggestions (they are asked as usual).
    """

    def __init__(
        self,
        store: AnnotationStore,
        model: SuggestionModel,
        images_dir: str | Path,
        log: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.model = model
        self.images_dir = Path(images_dir)
        self.log = log
        self._failed: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def compute_missing(self, show_progress: bool = False) -> int:
        """Compute and store the suggestions of every object that lacks them; returns how many
        objects got suggestions."""
        from pointsup.utils.progress import progress

        missing = [o for o in objects_without_suggestions(self.store, self.model.digest) if o.image_id not in self._failed]
        by_image: dict[int, list[ObjectToSuggest]] = {}
        for obj in missing:
            by_image.setdefault(obj.image_id, []).append(obj)
        done = 0
        for image_id, objects in progress(
            by_image.items(), total=len(by_image), desc="model suggestions", unit="img", enabled=show_progress
        ):
            if self._stop.is_set():
                break
            image = self._read_image(image_id)
            if image is None:
                continue
            values = self.model.probabilities(image, objects)
            store_suggestions(self.store, self.model.digest, list(zip(objects, values)))
            done += len(objects)
        return done

    def _read_image(self, image_id: int) -> torch.Tensor | None:
        from pointsup.data.dataset import read_image

        file_name, width, height = self.store.images[image_id]
        try:
            return read_image(self.images_dir / file_name, image_id, expected_size=(width, height))
        except PointsupError as exc:
            self._failed.add(image_id)
            if self.log is not None:
                self.log(f"no model suggestions for the objects of image {image_id}: {exc.one_line()}")
            return None

    def start(self, interval_s: float = POLL_INTERVAL_S) -> None:
        """Look for objects without suggestions every ``interval_s`` seconds, in a daemon thread."""

        def run() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.compute_missing()
                except sqlite3.ProgrammingError:  # the store was closed: the server stopped
                    return
                except Exception as exc:  # noqa: BLE001 - the server goes on without suggestions
                    if self.log is not None:
                        self.log(f"model suggestions stopped: {type(exc).__name__}: {exc}")
                    return

        self._thread = threading.Thread(target=run, name="suggestions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def start_assist(
    store: AnnotationStore,
    model: SuggestionModel,
    images_dir: str | Path,
    *,
    source: str,
    skip_confident: float | None = None,
    log: Callable[[str], None] | None = None,
    show_progress: bool = True,
) -> tuple[SuggestionWorker, int]:
    """``serve --weights``: check that the model fits the session, compute the suggestions the
    session lacks (a progress bar on stderr), let the store hand them out and start the
    background worker. Returns the worker and how many objects were computed now.

    Raises:
        AssistError: the model's categories are not the session's (``source``: the session's
            file, for the message), or ``skip_confident`` is not a threshold.
    """
    if skip_confident is not None:
        check_skip_threshold(skip_confident)
    model.check_categories(store.category_names, source)
    worker = SuggestionWorker(store, model, images_dir, log)
    computed = worker.compute_missing(show_progress=show_progress)
    store.assist = Assist(model.digest, skip_confident)
    worker.start()
    return worker, computed
