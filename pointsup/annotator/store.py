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
  POST only); an *unused* claim (no point of the object answered) of an annotator who has not
  answered anything for ``claim_timeout_s`` seconds expires: the object goes back to the pool
  when someone else next claims;
* an answer is accepted only for the annotator's current point (anything else is a conflict:
  a retried or stale request), so each annotator's answers on an object always form a prefix
  ``0 .. k-1`` of its points, and undo removes the last one.
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
from typing import Any

import msgspec
import numpy as np

from pointsup.annotator.database import SCHEMA_VERSION, StoreError, connect, create_database, has_session
from pointsup.annotator.tasks import LabellingObject
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import DEFAULT_SEED

DEFAULT_NUM_POINTS = 10
#: answer labels as stored: object 1, background 0, unsure -1 (left out of exports)
LABEL_CODES = {"object": 1, "background": 0, "unsure": -1}
#: unfinished objects an annotator may hold at once (current + one claimed ahead)
MAX_OPEN_OBJECTS = 2
MAX_ANNOTATOR_NAME = 64
#: seconds after which an inactive annotator's unused claims go back to the pool
DEFAULT_CLAIM_TIMEOUT_S = 600.0


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


@dataclass(frozen=True)
class LiveAnswer:
    """An answer in force (not undone). ``label``: 1 object, 0 background, -1 unsure."""

    annotator: str
    position: int
    point_index: int
    label: int
    response_ms: float | None
    answered_at: float


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
        )
        #: image id to ``(file_name, width, height)``
        self.images: dict[int, tuple[str, int, int]] = {
            row[0]: (row[1], row[2], row[3])
            for row in connection.execute("SELECT image_id, file_name, width, height FROM images")
        }
        self.category_names: dict[int, str] = dict(connection.execute("SELECT category_id, name FROM categories").fetchall())
        self._object_cache: dict[int, tuple[int, int, int, tuple[float, float, float, float], list[list[int]]]] = {}

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
        n = self.settings.num_points
        with self._write() if claim else self._read() as db:
            open_objects = db.execute(
                "SELECT position, answered FROM assignments WHERE annotator = ? AND answered < ? ORDER BY position LIMIT ?",
                (annotator, n, count),
            ).fetchall()
            tasks: list[PointTask] = []
            for position, answered in open_objects:
                tasks.extend(self._point_tasks(db, position, range(answered, n)))
                if len(tasks) >= count:
                    return tasks[:count]
            while claim and len(tasks) < count and len(open_objects) < MAX_OPEN_OBJECTS:
                position = self._claim(db, annotator)
                if position is None:
                    break
                open_objects.append((position, 0))
                tasks.extend(self._point_tasks(db, position, range(n)))
            return tasks[:count]

    def record_answer(self, annotator: str, position: int, point_index: int, label: int, response_ms: float | None) -> None:
        """Store an answer for the annotator's current point (committed on return).

        Raises:
            AnswerConflict: the point is not the annotator's current one.
            ValueError: ``label`` is not 1, 0 or -1.
        """
        if label not in (1, 0, -1):
            raise ValueError(f"label must be 1, 0 or -1, got {label!r}")
        with self._write() as db:
            current = db.execute(
                "SELECT position, answered FROM assignments WHERE annotator = ? AND answered < ? ORDER BY position LIMIT 1",
                (annotator, self.settings.num_points),
            ).fetchone()
            if current is None or tuple(current) != (position, point_index):
                expected = None if current is None else (int(current[0]), int(current[1]))
                raise AnswerConflict(
                    f"point {point_index} of object {position} is not the current point of {annotator!r}", expected
                )
            db.execute(
                "INSERT INTO answers (annotator, position, point_index, label, response_ms, answered_at) VALUES (?, ?, ?, ?, ?, ?)",
                (annotator, position, point_index, label, response_ms, time.time()),
            )
            db.execute(
                "UPDATE assignments SET answered = answered + 1 WHERE annotator = ? AND position = ?", (annotator, position)
            )

    def undo_last(self, annotator: str) -> tuple[int, int] | None:
        """Withdraw the annotator's latest answer; returns its ``(position, point_index)``
        (which becomes their current point), or None when they have nothing to undo."""
        with self._write() as db:
            row = db.execute(
                "SELECT id, position, point_index FROM answers WHERE annotator = ? AND undone_at IS NULL ORDER BY id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE answers SET undone_at = ? WHERE id = ?", (time.time(), row[0]))
            db.execute("UPDATE assignments SET answered = answered - 1 WHERE annotator = ? AND position = ?", (annotator, row[1]))
            return int(row[1]), int(row[2])

    def annotator_counts(self, annotator: str) -> tuple[int, int]:
        """``(points answered, objects finished)`` by the annotator (undone answers excluded)."""
        with self._read() as db:
            points, finished = db.execute(
                "SELECT COALESCE(SUM(answered), 0), COALESCE(SUM(answered = ?), 0) FROM assignments WHERE annotator = ?",
                (self.settings.num_points, annotator),
            ).fetchone()
        return int(points), int(finished)

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
        """The input COCO file without masks or points (see :func:`tasks.export_template`)."""
        with self._read() as db:
            blob = db.execute("SELECT coco FROM dataset WHERE id = 1").fetchone()[0]
        return msgspec.json.decode(zlib.decompress(blob))

    # ---- internals -------------------------------------------------------------------------

    def _release_expired_claims(self, db: sqlite3.Connection, annotator: str) -> None:
        """Drop the unused claims of annotators (other than ``annotator``) who have neither
        claimed nor answered anything for ``claim_timeout_s`` seconds."""
        cutoff = time.time() - self.claim_timeout_s
        expired = db.execute(
            "SELECT annotator, position FROM assignments AS a WHERE answered = 0 AND annotator != ? AND assigned_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM assignments WHERE annotator = a.annotator AND assigned_at >= ?) "
            "AND NOT EXISTS (SELECT 1 FROM answers WHERE annotator = a.annotator AND answered_at >= ?)",
            (annotator, cutoff, cutoff, cutoff),
        ).fetchall()
        for holder, position in expired:
            db.execute("DELETE FROM assignments WHERE annotator = ? AND position = ?", (holder, position))
            db.execute("UPDATE objects SET assigned = assigned - 1 WHERE position = ?", (position,))

    def _claim(self, db: sqlite3.Connection, annotator: str) -> int | None:
        self._release_expired_claims(db, annotator)
        row = db.execute(
            "SELECT position FROM objects WHERE assigned < ? AND position NOT IN "
            "(SELECT position FROM assignments WHERE annotator = ?) ORDER BY position LIMIT 1",
            (self.settings.overlap, annotator),
        ).fetchone()
        if row is None:
            return None
        db.execute(
            "INSERT INTO assignments (annotator, position, assigned_at) VALUES (?, ?, ?)", (annotator, row[0], time.time())
        )
        db.execute("UPDATE objects SET assigned = assigned + 1 WHERE position = ?", (row[0],))
        return int(row[0])

    def _point_tasks(self, db: sqlite3.Connection, position: int, indices: range) -> list[PointTask]:
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
        return [PointTask(position, i, annotation_id, image_id, category_id, bbox, points[i][0], points[i][1]) for i in indices]


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_session(
    db_path: str | Path,
    dataset_path: str | Path,
    *,
    num_points: int | None = None,
    seed: int | None = None,
    overlap: int | None = None,
    claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
) -> tuple[AnnotationStore, bool]:
    """Open the session in ``db_path``, creating it from ``dataset_path`` when the database
    does not hold one yet. Returns the store and whether it was created.

    Settings left as None take their recorded values (or the defaults: 10 points, seed
    12345, overlap 1, for a new session).

    Raises:
        StoreError: the database was made from a different file (SHA-256) or with other settings.
        PointFormatError: the dataset is not a valid COCO file.
        ValueError: invalid settings.
    """
    db_path = Path(db_path)
    sha256 = file_sha256(dataset_path)
    exists = db_path.is_file() and db_path.stat().st_size > 0
    if exists:
        try:
            probe = connect(db_path)
            exists = has_session(probe)
            probe.close()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{db_path}: not a labelling database ({exc})") from None
    if not exists:
        create_database(
            db_path,
            read_coco_json(dataset_path),
            dataset_path=str(dataset_path),
            dataset_sha256=sha256,
            num_points=DEFAULT_NUM_POINTS if num_points is None else num_points,
            seed=DEFAULT_SEED if seed is None else seed,
            overlap=1 if overlap is None else overlap,
        )
    store = AnnotationStore.open(db_path, claim_timeout_s=claim_timeout_s)
    recorded = store.settings
    mismatches = [
        f"--{name} {given} (it was made with {wanted})"
        for name, given, wanted in (
            ("points", num_points, recorded.num_points),
            ("seed", seed, recorded.seed),
            ("overlap", overlap, recorded.overlap),
        )
        if given is not None and given != wanted
    ]
    if recorded.dataset_sha256 != sha256:
        mismatches.insert(
            0,
            f"{dataset_path} (it was made from a different file: {recorded.dataset_path}, SHA-256 {recorded.dataset_sha256[:12]}...)",
        )
    if mismatches:
        store.close()
        raise StoreError(f"{db_path} does not fit " + "; ".join(mismatches) + "; use another --db for a new session")
    return store, not exists
