"""The labelling session: hands out points, records answers, reads them back.

Everything lives in one SQLite database (layout in :mod:`pointsup.annotator.database`): the
settings, a copy of the input without masks, the objects with their points, which annotator
holds which object, and every answer ever given (undone ones are kept, marked as undone).

Durability: each answer is committed (``synchronous=FULL``) before the server acknowledges
it, so killing the server loses nothing that was acknowledged. State is derived from the
database alone, so a restarted server resumes each annotator where they stopped.

Hand-out rules:

* an annotator's *current point* is the first unanswered point of the first object they hold
  that is unfinished (objects in presentation order, points in order);
* an annotator claims the first object (in presentation order) held by fewer than ``overlap``
  annotators and not by them, and holds at most :data:`MAX_OPEN_OBJECTS` unfinished objects
  (the current one and one claimed ahead, so that the next point can be prefetched);
* with ``overlap = 1`` (the default) no object is ever handed to two annotators. Claims run
  in ``BEGIN IMMEDIATE`` transactions, so this holds across threads and processes;
* only :meth:`AnnotationStore.next_points` with ``claim=True`` claims (the server calls it on
  POST only);
* an annotator who has neither claimed, answered nor undone anything for ``claim_timeout_s``
  seconds is *inactive*: the unfinished objects they hold go back to the pool when someone else
  next claims (:meth:`AnnotationStore.release` does it at once). Their answers stay: whoever
  claims a partly answered object next continues it at its first unanswered point;
* an answer is accepted only for the annotator's current point (anything else is a conflict:
  a retried or stale request, or an object released meanwhile). So the answers on each of an
  object's ``overlap`` *chains* (the answers one holder after another gave) form a prefix
  ``0 .. k-1`` of its points, and undo removes the last answer of a chain its annotator holds
  (answers on released objects stay as they are);
* annotator names are case-insensitive: the store keys them by :func:`annotator_key` and keeps
  the name as first typed for display (:meth:`AnnotationStore.display_name`);
* with a model (``store.assist``, :mod:`pointsup.annotator.assist`), points carry its
  suggestion, and with ``--skip-confident`` the model's label of a confident point is recorded
  in the chain of the annotator who reaches it (not asked; undone with their answer before it).

A chain is not stored: from the answers in force on an object and its holders' counts, the
released chains' lengths follow (:func:`free_chain_starts`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
import time
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from pointsup.annotator.database import (
    POINTS_GIVEN,
    SCHEMA_VERSION,
    StoreError,
    connect,
    create_database,
    has_session,
    holds_session,
    schema_complete,
    upgrade,
)
from pointsup.annotator.images import ImageFolderError, check_image_folder, fill_image_sizes
from pointsup.annotator.tasks import GivenPointsError, LabellingObject, count_given_points, same_category_overlaps
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import DEFAULT_SEED

if TYPE_CHECKING:
    from pointsup.annotator.assist import Assist
    from pointsup.annotator.gold import GoldPlan

DEFAULT_NUM_POINTS = 10
#: answer labels as stored: object 1, background 0, unsure -1 (left out of exports)
LABEL_CODES = {"object": 1, "background": 0, "unsure": -1}
#: unfinished objects an annotator may hold at once (current + one claimed ahead)
MAX_OPEN_OBJECTS = 2
MAX_ANNOTATOR_NAME = 64
#: seconds of inactivity after which an annotator's unfinished objects go back to the pool
DEFAULT_CLAIM_TIMEOUT_S = 600.0
#: the ids of the answers the model made (``serve --skip-confident``, :mod:`pointsup.annotator.assist`)
_MODEL_MADE = "SELECT answer FROM answer_suggestions WHERE model_made = 1"


class AnswerConflict(Exception):
    """An answer for a point that is not the annotator's current one.

    Attributes:
        expected: ``(position, point_index)`` of the current point, None when nothing is left.
    """

    def __init__(self, message: str, expected: tuple[int, int] | None):
        super().__init__(message)
        self.expected = expected


@dataclass(frozen=True)
class StoreSettings:
    """The session's fixed settings, recorded when the database is created."""

    num_points: int
    seed: int
    overlap: int
    dataset_path: str
    dataset_sha256: str
    num_objects: int
    has_masks: bool
    #: the points are the file's own (``--use-points``), not drawn
    points_given: bool = False
    #: annotations whose ``point_coords`` were ignored (new points drawn) when the session was made
    given_points_ignored: int = 0
    #: started from a folder of photos: the objects come from the box stage (:mod:`~pointsup.annotator.box_store`)
    from_folder: bool = False


@dataclass(frozen=True)
class PointTask:
    """One point to show: which object, which point, where (``x``, ``y``: pixel indices)."""

    position: int
    point_index: int
    annotation_id: int
    image_id: int
    category_id: int
    bbox_xywh: tuple[float, float, float, float]
    x: int
    y: int
    #: the model's probability that the point is on the object (``serve --weights``), None without
    suggestion: float | None = None


@dataclass(frozen=True)
class LiveAnswer:
    """An answer in force (not undone). ``label``: 1 object, 0 background, -1 unsure."""

    annotator: str
    position: int
    point_index: int
    label: int
    response_ms: float | None
    answered_at: float


@dataclass(frozen=True)
class GoldAnswer:
    """An answer to a gold question: the annotator's ``gold_index``-th, on a point whose mask
    value (``truth``) is known; ``training``: asked in the training round, with feedback."""

    gold_index: int
    position: int
    point_index: int
    label: int
    truth: int
    training: bool
    response_ms: float | None


@dataclass(frozen=True)
class Released:
    """What :meth:`AnnotationStore.release` gave back: ``(annotator key, position, points
    answered)`` of each unfinished object taken from its holder."""

    objects: tuple[tuple[str, int, int], ...]

    @property
    def partly_answered(self) -> int:
        return sum(answered > 0 for _, _, answered in self.objects)


def annotator_key(name: str) -> str:
    """How the store knows an annotator: the name stripped, NFKC-normalised and case-folded, so
    that "Kim", "kim" and "KIM" are one annotator."""
    return unicodedata.normalize("NFKC", name.strip()).casefold()


#: the tables whose rows carry the page's ``client_id`` (see :func:`already_stored`)
CLIENT_ID_TABLES = ("answers", "boxes")


def already_stored(db: sqlite3.Connection, table: str, key: str, client_id: str | None) -> bool:
    """Whether ``table`` holds a row of annotator ``key`` sent with ``client_id``: the page sent
    the same request again (say after an outage), and it must count once. False without an id."""
    if table not in CLIENT_ID_TABLES:
        raise ValueError(f"{table!r} has no client ids; choose from {CLIENT_ID_TABLES}")
    if client_id is None:
        return False
    query = f"SELECT 1 FROM {table} WHERE annotator = ? AND client_id = ?"  # table: one of CLIENT_ID_TABLES
    return db.execute(query, (key, client_id)).fetchone() is not None


def free_chain_starts(counts: list[int], held: list[int], fresh: int) -> list[int]:
    """The points at which an object's free chains continue, longest first.

    Args:
        counts: answers in force at each point of the object (all annotators).
        held: points answered on the chains its current holders work on.
        fresh: chains nobody has answered on yet (``overlap`` minus holders and released chains).

    Every chain is a prefix of the points, so the released chains covering point ``i`` number
    ``f_i = counts[i] - #{held > i}``, and ``f_{L-1} - f_L`` of them have length ``L``.
    """
    free = [c - sum(h > i for h in held) for i, c in enumerate(counts)] + [0]
    starts = [length for length in range(len(counts), 0, -1) if free[length - 1] > free[length]]
    return starts + ([0] if fresh > 0 else [])


def check_annotator_name(name: str) -> str:
    """The name without surrounding spaces; ValueError when empty, too long or holding control
    or formatting characters."""
    stripped = name.strip()
    if not stripped:
        raise ValueError("the annotator name is empty")
    if len(stripped) > MAX_ANNOTATOR_NAME:
        raise ValueError(f"the annotator name is longer than {MAX_ANNOTATOR_NAME} characters")
    if any(unicodedata.category(c).startswith("C") for c in stripped):
        raise ValueError("the annotator name holds control characters")
    return stripped


class AnnotationStore:
    """A labelling session backed by one SQLite file; safe to share between threads.

    Open one with :meth:`open`, or with :func:`open_session` (which creates it first when needed).
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, *, claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S):
        self.path = path
        self.claim_timeout_s = claim_timeout_s
        self._connection = connection
        self._lock = threading.RLock()
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        if int(meta.get("schema_version", -1)) != SCHEMA_VERSION:
            raise StoreError(f"{path}: schema version {meta.get('schema_version')!r}, expected {SCHEMA_VERSION}")
        self.settings = StoreSettings(
            num_points=int(meta["num_points"]),
            seed=int(meta["seed"]),
            overlap=int(meta["overlap"]),
            dataset_path=meta["dataset_path"],
            dataset_sha256=meta["dataset_sha256"],
            num_objects=int(meta["num_objects"]),
            has_masks=meta["has_masks"] == "1",
            points_given=meta.get("points_source") == POINTS_GIVEN,
            given_points_ignored=int(meta.get("given_points_ignored", 0)),
            from_folder=meta.get("source") == "folder",
        )
        #: image id to ``(file_name, width, height)``
        self.images: dict[int, tuple[str, int, int]] = {
            row[0]: (row[1], row[2], row[3])
            for row in connection.execute("SELECT image_id, file_name, width, height FROM images")
        }
        self.category_names: dict[int, str] = dict(connection.execute("SELECT category_id, name FROM categories").fetchall())
        self._object_cache: dict[int, tuple[int, int, int, tuple[float, float, float, float], list[list[int]]]] = {}
        self._overlaps: dict[int, int] | None = None
        self._names: dict[str, str] = {}
        #: gold questions to ask (set by the server; None: none)
        self.gold: GoldPlan | None = None
        #: model suggestions (``serve --weights``, :mod:`pointsup.annotator.assist`; None: none)
        self.assist: Assist | None = None
        #: what a session from a folder asks (``serve --stage``): "boxes", "points" or "both"
        self.stage = "both" if self.settings.from_folder else "points"

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | Path, *, claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S) -> AnnotationStore:
        """Open an existing session database.

        Raises:
            StoreError: the file is missing or holds no labelling session.
        """
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path}: no such database")
        try:
            connection = connect(path)
            if not has_session(connection):
                connection.close()
                raise StoreError(f"{path} holds no labelling session")
            version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if (
                version is not None
                and version[0].isdigit()
                and (int(version[0]) < SCHEMA_VERSION or (int(version[0]) == SCHEMA_VERSION and not schema_complete(connection)))
            ):  # an older version, or one made by a build with only some of this version's tables
                upgrade(connection, annotator_key)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a labelling database ({exc})") from None
        return cls(path, connection, claim_timeout_s=claim_timeout_s)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # ---- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN")
            try:
                yield self._connection
            finally:
                self._connection.execute("COMMIT")

    # ---- labelling -------------------------------------------------------------------------

    def next_points(self, annotator: str, count: int, *, claim: bool = True) -> list[PointTask]:
        """The annotator's current point followed by up to ``count - 1`` upcoming ones,
        claiming objects as needed (empty when nothing is left for them). With
        ``claim=False`` nothing is written: only the objects they already hold are listed."""
        if self.stage == "boxes":
            return []
        n = self.settings.num_points
        key = annotator_key(annotator)
        with self._write() if claim else self._read() as db:
            if claim and self.assist is not None:  # the model labels the confident points it reached
                self.assist.advance_held(db, key, n)
            open_objects = db.execute(
                "SELECT position, answered FROM assignments WHERE annotator = ? AND answered < ? ORDER BY position LIMIT ?",
                (key, n, count),
            ).fetchall()
            tasks: list[PointTask] = []
            for position, answered in open_objects:
                tasks.extend(self._point_tasks(db, position, range(answered, n), key))
                if len(tasks) >= count:
                    return tasks[:count]
            if claim:
                self._register(db, key, annotator)
            while claim and len(tasks) < count and len(open_objects) < MAX_OPEN_OBJECTS:
                claimed = self._claim(db, key)
                if claimed is None:
                    break
                if self.assist is not None and (claimed := (claimed[0], self.assist.advance(db, key, claimed[0])))[1] == n:
                    continue  # the model labelled every point left
                open_objects.append(claimed)
                tasks.extend(self._point_tasks(db, claimed[0], range(claimed[1], n), key))
            return tasks[:count]

    def point_task(self, position: int, point_index: int) -> PointTask:
        """Any point of any object, as a task (gold questions, review)."""
        with self._read() as db:
            return self._point_tasks(db, position, range(point_index, point_index + 1))[0]

    def record_answer(
        self,
        annotator: str,
        position: int,
        point_index: int,
        label: int,
        response_ms: float | None,
        client_id: str | None = None,
        suggestion: float | None = None,
        accepted: bool = False,
    ) -> bool:
        """Store an answer for the annotator's current point (committed on return). Returns
        False, storing nothing, when an answer with ``client_id`` was stored before (the page
        sent it again, say after an outage): each answer counts exactly once. ``suggestion``:
        the model's probability shown with the point (kept beside the answer), ``accepted``:
        whether its key gave the answer.

        Raises:
            AnswerConflict: the point is not the annotator's current one.
            ValueError: ``label`` is not 1, 0 or -1.
        """
        if label not in (1, 0, -1):
            raise ValueError(f"label must be 1, 0 or -1, got {label!r}")
        key = annotator_key(annotator)
        with self._write() as db:
            if already_stored(db, "answers", key, client_id):
                return False
            current = db.execute(
                "SELECT position, answered FROM assignments WHERE annotator = ? AND answered < ? ORDER BY position LIMIT 1",
                (key, self.settings.num_points),
            ).fetchone()
            if current is None or tuple(current) != (position, point_index):
                expected = None if current is None else (int(current[0]), int(current[1]))
                raise AnswerConflict(
                    f"point {point_index} of object {position} is not the current point of {annotator!r}", expected
                )
            cursor = db.execute(
                "INSERT INTO answers (annotator, position, point_index, label, response_ms, answered_at, client_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, position, point_index, label, response_ms, time.time(), client_id),
            )
            db.execute("UPDATE assignments SET answered = answered + 1 WHERE annotator = ? AND position = ?", (key, position))
            if suggestion is not None or self.assist is not None:
                from pointsup.annotator.assist import record_answer_suggestion

                if suggestion is not None:
                    model = None if self.assist is None else self.assist.model
                    record_answer_suggestion(db, int(cursor.lastrowid or 0), model, suggestion, accepted)
                if self.assist is not None:
                    self.assist.advance(db, key, position)
            self._register(db, key, annotator)
        return True

    # ---- review ----------------------------------------------------------------------------

    def reviewable_objects(self, annotator: str) -> list[int]:
        """Positions of the objects the annotator has answers in force on, the one answered
        last first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT position FROM answers WHERE annotator = ? AND undone_at IS NULL GROUP BY position ORDER BY MAX(id) DESC",
                (annotator_key(annotator),),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def own_answers(self, annotator: str, position: int) -> dict[int, int]:
        """The annotator's labels in force on the object, by point index."""
        with self._read() as db:
            rows = db.execute(
                "SELECT point_index, label FROM answers WHERE annotator = ? AND position = ? AND undone_at IS NULL",
                (annotator_key(annotator), position),
            ).fetchall()
        return {int(i): int(label) for i, label in rows}

    def relabel(self, annotator: str, position: int, point_index: int, label: int) -> int | None:
        """Change the label of the annotator's answer in force on the point (the old label is
        kept in ``relabels``); returns the old label, None when there is no such answer.
        Setting the label an answer already has changes nothing (so a repeated request is
        harmless)."""
        if label not in (1, 0, -1):
            raise ValueError(f"label must be 1, 0 or -1, got {label!r}")
        key = annotator_key(annotator)
        with self._write() as db:
            row = db.execute(
                "SELECT id, label FROM answers WHERE annotator = ? AND position = ? AND point_index = ? AND undone_at IS NULL",
                (key, position, point_index),
            ).fetchone()
            if row is None:
                return None
            if row[1] != label:
                db.execute("UPDATE answers SET label = ? WHERE id = ?", (label, row[0]))
                db.execute("UPDATE answer_suggestions SET model_made = 0 WHERE answer = ?", (row[0],))  # now the annotator's
                db.execute(
                    "INSERT INTO relabels (answer, old_label, new_label, relabelled_at) VALUES (?, ?, ?, ?)",
                    (row[0], row[1], label, time.time()),
                )
                self._register(db, key, annotator)
            return int(row[1])

    # ---- gold questions --------------------------------------------------------------------

    def gold_count(self, annotator: str) -> int:
        """How many gold questions the annotator has answered."""
        with self._read() as db:
            (count,) = db.execute("SELECT COUNT(*) FROM gold_answers WHERE annotator = ?", (annotator_key(annotator),)).fetchone()
        return int(count)

    def record_gold(self, annotator: str, answer: GoldAnswer) -> bool:
        """Store the answer to the annotator's gold question ``answer.gold_index``; False when
        it was stored before (a request sent again)."""
        key = annotator_key(annotator)
        with self._write() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO gold_answers (annotator, gold_index, position, point_index, label, truth, training, "
                "response_ms, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    answer.gold_index,
                    answer.position,
                    answer.point_index,
                    answer.label,
                    answer.truth,
                    int(answer.training),
                    answer.response_ms,
                    time.time(),
                ),
            )
            stored = cursor.rowcount == 1
            if stored:
                self._register(db, key, annotator)
        return stored

    def gold_answers(self) -> list[tuple[str, GoldAnswer]]:
        """Every gold answer as ``(annotator key, answer)``."""
        with self._read() as db:
            rows = db.execute(
                "SELECT annotator, gold_index, position, point_index, label, truth, training, response_ms FROM gold_answers "
                "ORDER BY annotator, gold_index"
            ).fetchall()
        return [(str(r[0]), GoldAnswer(int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), bool(r[6]), r[7])) for r in rows]

    def undo_last(self, annotator: str) -> tuple[int, int] | None:
        """Withdraw the annotator's latest answer that ends a chain they hold, with the labels the
        model made after it on that chain (``--skip-confident``); returns its ``(position,
        point_index)`` (which becomes their current point), or None when they have nothing to
        undo (answers on objects released from them stay)."""
        key = annotator_key(annotator)
        with self._write() as db:
            # the latest own answer followed on its chain by model-made labels only (none, mostly)
            row = db.execute(
                "SELECT a.id, a.position, a.point_index FROM answers AS a JOIN assignments AS s "
                "ON s.annotator = a.annotator AND s.position = a.position AND a.point_index < s.answered "
                f"WHERE a.annotator = ? AND a.undone_at IS NULL AND a.id NOT IN ({_MODEL_MADE}) "
                "AND s.answered - 1 - a.point_index = (SELECT COUNT(*) FROM answers AS b WHERE b.annotator = a.annotator "
                "AND b.position = a.position AND b.undone_at IS NULL AND b.point_index > a.point_index "
                f"AND b.point_index < s.answered AND b.id IN ({_MODEL_MADE})) ORDER BY a.id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE answers SET undone_at = ? WHERE annotator = ? AND position = ? AND point_index >= ? AND undone_at IS NULL",
                (time.time(), key, row[1], row[2]),
            )
            db.execute("UPDATE assignments SET answered = ? WHERE annotator = ? AND position = ?", (row[2], key, row[1]))
            return int(row[1]), int(row[2])

    def annotator_counts(self, annotator: str) -> tuple[int, int]:
        """``(points answered, objects finished)`` by the annotator (undone answers excluded; an
        object they finished after someone else started it counts as theirs)."""
        key = annotator_key(annotator)
        with self._read() as db:
            (points,) = db.execute(
                f"SELECT COUNT(*) FROM answers WHERE annotator = ? AND undone_at IS NULL AND id NOT IN ({_MODEL_MADE})", (key,)
            ).fetchone()
            (finished,) = db.execute(
                "SELECT COUNT(*) FROM assignments WHERE annotator = ? AND answered = ?", (key, self.settings.num_points)
            ).fetchone()
        return int(points), int(finished)

    def held_by_others(self, annotator: str) -> int:
        """Unfinished objects other annotators hold (what may still come back to the pool)."""
        with self._read() as db:
            (count,) = db.execute(
                "SELECT COUNT(DISTINCT position) FROM assignments WHERE annotator != ? AND answered < ?",
                (annotator_key(annotator), self.settings.num_points),
            ).fetchone()
        return int(count)

    def release(self, annotator: str | None = None) -> Released:
        """Give the unfinished objects of ``annotator`` (everyone's when None) back to the pool
        at once; their answers stay and the next claimant continues them.

        Raises:
            StoreError: ``annotator`` has never labelled in this session.
        """
        key = None if annotator is None else annotator_key(annotator)
        with self._write() as db:
            if key is not None and db.execute("SELECT 1 FROM annotators WHERE key = ?", (key,)).fetchone() is None:
                known = [row[0] for row in db.execute("SELECT name FROM annotators ORDER BY first_seen")]
                raise StoreError(f"no annotator {annotator!r} in {self.path} (annotators: {', '.join(known) or 'none yet'})")
            rows = db.execute(
                "SELECT annotator, position, answered FROM assignments WHERE answered < ? AND (? IS NULL OR annotator = ?) "
                "ORDER BY annotator, position",
                (self.settings.num_points, key, key),
            ).fetchall()
            self._drop_assignments(db, rows)
        return Released(tuple((str(a), int(p), int(k)) for a, p, k in rows))

    def display_name(self, annotator: str) -> str:
        """The name as the annotator first typed it (``annotator`` itself when they are new)."""
        key = annotator_key(annotator)
        if key not in self._names:
            with self._read() as db:
                row = db.execute("SELECT name FROM annotators WHERE key = ?", (key,)).fetchone()
            if row is None:
                return annotator
            self._names[key] = row[0]
        return self._names[key]

    def display_names(self) -> dict[str, str]:
        """Every annotator key to the name as first typed."""
        with self._read() as db:
            return dict(db.execute("SELECT key, name FROM annotators").fetchall())

    def objects_total(self) -> int:
        """How many objects there are to label (in a session from a folder: so far)."""
        if not self.settings.from_folder:
            return self.settings.num_objects
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])

    def objects_changed(self) -> None:
        """Forget what is cached about the objects (the box stage added or removed some)."""
        self._object_cache.clear()
        self._overlaps = None

    def same_category_overlaps(self, position: int) -> int:
        """How many other objects of the object's image and category overlap its box."""
        if self._overlaps is None or position not in self._overlaps:  # new objects (box stage)
            self._overlaps = same_category_overlaps(self.objects())
        return self._overlaps.get(position, 0)

    # ---- reading everything (export, progress) ---------------------------------------------

    def live_answers(self) -> list[LiveAnswer]:
        """Every answer in force, oldest first."""
        with self._read() as db:
            rows = db.execute(
                "SELECT annotator, position, point_index, label, response_ms, answered_at FROM answers "
                "WHERE undone_at IS NULL ORDER BY id"
            ).fetchall()
        return [LiveAnswer(*row) for row in rows]

    def assignments(self) -> list[tuple[str, int, int]]:
        """Every ``(annotator, position, points answered)``."""
        with self._read() as db:
            return [
                tuple(row)
                for row in db.execute("SELECT annotator, position, answered FROM assignments ORDER BY position, annotator")
            ]

    def objects(self) -> list[LabellingObject]:
        """Every object to label, in presentation order."""
        decoder = msgspec.json.Decoder()
        with self._read() as db:
            rows = db.execute(
                "SELECT position, annotation_id, image_id, category_id, bbox, points, mask_values FROM objects ORDER BY position"
            ).fetchall()
        return [
            LabellingObject(
                position=row[0],
                annotation_id=row[1],
                image_id=row[2],
                category_id=row[3],
                bbox_xywh=tuple(decoder.decode(row[4])),
                points=np.array(decoder.decode(row[5]), dtype=np.int64).reshape(-1, 2),
                mask_values=None if row[6] is None else np.array(decoder.decode(row[6]), dtype=np.uint8),
            )
            for row in rows
        ]

    def export_template(self) -> dict[str, Any]:
        """The input COCO file without masks or points (see :func:`tasks.export_template`); from a
        folder of photos, the images whose boxes are finished with their boxes."""
        if self.settings.from_folder:
            from pointsup.annotator.box_store import box_export_template

            return box_export_template(self)
        return self.stored_dataset()

    def stored_dataset(self) -> dict[str, Any]:
        """The COCO file stored when the session was made (without masks or points; from a
        folder of photos: its images and categories, no annotations)."""
        with self._read() as db:
            blob = db.execute("SELECT coco FROM dataset WHERE id = 1").fetchone()[0]
        return msgspec.json.decode(zlib.decompress(blob))

    # ---- internals -------------------------------------------------------------------------

    def _register(self, db: sqlite3.Connection, key: str, name: str) -> None:
        """Record the annotator's name as typed, the first time they write anything."""
        if key not in self._names:
            db.execute("INSERT OR IGNORE INTO annotators (key, name, first_seen) VALUES (?, ?, ?)", (key, name, time.time()))
            self._names[key] = db.execute("SELECT name FROM annotators WHERE key = ?", (key,)).fetchone()[0]

    def _drop_assignments(self, db: sqlite3.Connection, rows: list[Any]) -> None:
        for holder, position, _ in rows:
            db.execute("DELETE FROM assignments WHERE annotator = ? AND position = ?", (holder, position))
            db.execute("UPDATE objects SET assigned = assigned - 1 WHERE position = ?", (position,))

    def _release_inactive(self, db: sqlite3.Connection, key: str) -> None:
        """Give back the unfinished objects of annotators (other than ``key``) who have neither
        claimed, answered nor undone anything for ``claim_timeout_s`` seconds."""
        cutoff = time.time() - self.claim_timeout_s
        expired = db.execute(
            "SELECT annotator, position, answered FROM assignments AS a WHERE answered < ? AND annotator != ? "
            "AND assigned_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM assignments WHERE annotator = a.annotator AND assigned_at >= ?) "
            "AND NOT EXISTS (SELECT 1 FROM answers WHERE annotator = a.annotator AND (answered_at >= ? OR undone_at >= ?))",
            (self.settings.num_points, key, cutoff, cutoff, cutoff, cutoff),
        ).fetchall()
        self._drop_assignments(db, expired)

    def _claim(self, db: sqlite3.Connection, key: str) -> tuple[int, int] | None:
        """Claim the first object in the pool the annotator may take; ``(position, point to
        start at)`` or None. A partly answered object is continued on its longest free chain
        that the annotator has not answered on past its end (one vote per annotator and point)."""
        self._release_inactive(db, key)
        candidates = db.execute(
            "SELECT position, assigned FROM objects WHERE assigned < ? AND position NOT IN "
            "(SELECT position FROM assignments WHERE annotator = ?) ORDER BY position",
            (self.settings.overlap, key),
        )
        for position, assigned in candidates:  # read lazily: mostly the first one is taken
            start = self._start_point(db, key, position, assigned)
            if start is not None:
                db.execute(
                    "INSERT INTO assignments (annotator, position, assigned_at, answered) VALUES (?, ?, ?, ?)",
                    (key, position, time.time(), start),
                )
                db.execute("UPDATE objects SET assigned = assigned + 1 WHERE position = ?", (position,))
                return int(position), start
        return None

    def _start_point(self, db: sqlite3.Connection, key: str, position: int, assigned: int) -> int | None:
        """Where the annotator would continue the object, None when they may not take it."""
        n = self.settings.num_points
        counts = [0] * n
        own_last = -1
        for point_index, annotator in db.execute(
            "SELECT point_index, annotator FROM answers WHERE position = ? AND undone_at IS NULL", (position,)
        ):
            counts[point_index] += 1
            if annotator == key:
                own_last = max(own_last, point_index)
        if not any(counts):
            return 0
        held = [row[0] for row in db.execute("SELECT answered FROM assignments WHERE position = ?", (position,))]
        released = max(counts[0] - sum(h > 0 for h in held), 0)
        starts = free_chain_starts(counts, held, self.settings.overlap - assigned - released)
        return next((start for start in starts if start > own_last), None)

    def _point_tasks(self, db: sqlite3.Connection, position: int, indices: range, key: str | None = None) -> list[PointTask]:
        """The points ``indices`` of an object; with the annotator's ``key``, with the model's
        suggestions and without the points it labels itself (when the session has a model)."""
        cached = self._object_cache.get(position)
        if cached is None:
            annotation_id, image_id, category_id, bbox, points = db.execute(
                "SELECT annotation_id, image_id, category_id, bbox, points FROM objects WHERE position = ?", (position,)
            ).fetchone()
            cached = (annotation_id, image_id, category_id, tuple(msgspec.json.decode(bbox)), msgspec.json.decode(points))
            if len(self._object_cache) > 4096:
                self._object_cache.clear()
            self._object_cache[position] = cached
        annotation_id, image_id, category_id, bbox, points = cached
        tasks = [PointTask(position, i, annotation_id, image_id, category_id, bbox, points[i][0], points[i][1]) for i in indices]
        if key is not None and self.assist is not None:
            tasks = self.assist.with_suggestions(db, key, position, tasks)
        return tasks


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def settings_mismatches(recorded: StoreSettings, num_points: int | None, seed: int | None, overlap: int | None) -> list[str]:
    """The settings given (None: not given) that differ from those the session was made with,
    each as ``--points 4 (it was made with 10)``."""
    return [
        f"--{name} {given} (it was made with {wanted})"
        for name, given, wanted in (
            ("points", num_points, recorded.num_points),
            ("seed", seed, recorded.seed),
            ("overlap", overlap, recorded.overlap),
        )
        if given is not None and given != wanted
    ]


def open_session(
    db_path: str | Path,
    dataset_path: str | Path,
    *,
    num_points: int | None = None,
    seed: int | None = None,
    overlap: int | None = None,
    claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
    images_dir: str | Path | None = None,
    use_points: bool = False,
) -> tuple[AnnotationStore, bool]:
    """Open the session in ``db_path``, creating it from ``dataset_path`` when the database
    does not hold one yet. Returns the store and whether it was created.

    Settings left as None take their recorded values (or the defaults: 10 points, seed
    12345, overlap 1, for a new session). With ``images_dir``, every image file must be there,
    and a new session reads the sizes that image entries lack from the files. With
    ``use_points`` a new session labels the file's own ``point_coords`` (their number per object
    is ``num_points``, by default the number the file's objects carry).

    Raises:
        StoreError: the database was made from a different file (SHA-256) or with other settings,
            or cannot be created where asked.
        PointFormatError: the dataset is not a valid COCO file.
        ImageFolderError: an image file is missing under ``images_dir`` (or its size unreadable).
        GivenPointsError: ``use_points`` and the objects do not all carry ``num_points`` points.
        ValueError: invalid settings.
    """
    db_path = Path(db_path)
    sha256 = file_sha256(dataset_path)
    exists = holds_session(db_path)
    images = None if images_dir is None else Path(images_dir)
    if not exists:
        coco = read_coco_json(dataset_path)
        if images is not None:
            fill_image_sizes(coco, images)
        given = count_given_points(coco)
        if use_points and num_points is None:
            num_points = max(given, key=lambda k: given[k]) if given else None
            if num_points is None:
                raise GivenPointsError(f"{dataset_path}: --use-points, but no annotation carries point_coords")
        create_database(
            db_path,
            coco,
            dataset_path=str(dataset_path),
            dataset_sha256=sha256,
            num_points=DEFAULT_NUM_POINTS if num_points is None else num_points,
            seed=DEFAULT_SEED if seed is None else seed,
            overlap=1 if overlap is None else overlap,
            use_points=use_points,
            given_points_ignored=0 if use_points else sum(given.values()),
            check=None if images is None else lambda names: check_image_folder(images, names),
        )
    store = AnnotationStore.open(db_path, claim_timeout_s=claim_timeout_s)
    if images is not None:
        try:
            check_image_folder(images, [name for name, _, _ in store.images.values()])
        except ImageFolderError:
            store.close()
            raise
    recorded = store.settings
    mismatches = settings_mismatches(recorded, num_points, seed, overlap)
    if use_points and not recorded.points_given:
        mismatches.append("--use-points (it labels points drawn as `pointsup simulate` draws them)")
    if recorded.dataset_sha256 != sha256:
        mismatches.insert(
            0,
            f"{dataset_path} (it was made from a different file: {recorded.dataset_path}, SHA-256 {recorded.dataset_sha256[:12]}...)",
        )
    if mismatches:
        store.close()
        raise StoreError(f"{db_path} does not fit " + "; ".join(mismatches) + "; use another --db for a new session")
    return store, not exists
