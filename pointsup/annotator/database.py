"""The session database file: its schema, how it is opened, and how a new one is written.

One SQLite file in WAL mode with ``synchronous=FULL``: every committed transaction is on disk
before the commit returns, readers (export, progress) never block the server, and a killed
process leaves the last committed state. The tables:

* ``meta``: settings (``num_points``, ``seed``, ``overlap``, the dataset's path and SHA-256...);
* ``dataset``: the input COCO file without masks or points, zlib-compressed JSON (the export
  starts from it, so it needs only the database);
* ``images``, ``categories``: what the server shows;
* ``objects``: one row per object to label, in presentation order, with its points (JSON) and
  the mask values at them (JSON, NULL without a mask), and how many annotators hold it;
* ``assignments``: which annotator holds which object and how many of its points they answered;
* ``answers``: every answer ever given; an undo sets ``undone_at``. A partial unique index
  allows one answer in force per annotator and point. ``client_id`` is the id the page gave the
  answer (unique per annotator): a request sent again after an outage is recognised and not
  stored twice;
* ``relabels``: every change of an answer's label made in review (the answer keeps its row and
  takes the new label; the old one is kept here);
* ``gold_answers``: answers to gold questions (points whose mask value is known), apart from
  the answers proper: they never reach the export or the hand-out;
* ``annotators``: each annotator's key (the name normalised: case-insensitive, see
  :func:`pointsup.annotator.store.annotator_key`), which ``assignments`` and ``answers`` store,
  and the name as it was first typed, which the pages show.

* ``box_images``, ``boxes`` (sessions started from a folder of photos, the box stage of
  :mod:`pointsup.annotator.box_store`): which annotator holds which image and whether its boxes
  are finished ("no more objects", numbered in the order they were: ``finish_order``), and
  every box drawn, with its extreme points, its time, who drew it, who undid it (``undone_by``)
  and when, and the object (``objects.position``) it became when its image was finished.
* ``suggestions``, ``answer_suggestions`` (model-assisted labelling, ``serve --weights``; see
  :mod:`pointsup.annotator.assist`): the model's probability at each point of an object, by
  checkpoint (its SHA-256) and with the object as it was then (a changed object is computed
  again); and, beside an answer, the suggestion shown with it, whether the annotator accepted it
  with its key, and whether the model made the label itself (``--skip-confident``).

Older databases are upgraded in place when they are opened (:func:`upgrade`), in one
transaction: version 1 had no ``annotators`` table (names stored as typed), version 2 had no
``client_id``, ``relabels`` or ``gold_answers``, version 3 none of the tables of
:data:`_VERSION_4`. The statements that add tables and indexes are idempotent, and every open
checks (:func:`schema_complete`) that all of them, of every version, have run: a database whose
recorded version is current but that was made by a build with only some of its tables (the box
stage without model suggestions, or the reverse) gets the others too.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pointsup.annotator.tasks import LabellingObject, export_template, labelling_objects
from pointsup.errors import PointsupError
from pointsup.utils.atomic import encode_json

SCHEMA_VERSION = 4
#: ``meta.points_source``: points drawn as ``pointsup simulate`` draws them, or the file's own
POINTS_SAMPLED, POINTS_GIVEN = "sampled", "given"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE dataset (id INTEGER PRIMARY KEY CHECK (id = 1), coco BLOB NOT NULL);
CREATE TABLE images (image_id INTEGER PRIMARY KEY, file_name TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE categories (category_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE objects (
    position INTEGER PRIMARY KEY,
    annotation_id INTEGER NOT NULL UNIQUE,
    image_id INTEGER NOT NULL REFERENCES images(image_id),
    category_id INTEGER NOT NULL REFERENCES categories(category_id),
    bbox TEXT NOT NULL,
    points TEXT NOT NULL,
    mask_values TEXT,
    assigned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX objects_by_assigned ON objects(assigned, position);
CREATE TABLE assignments (
    annotator TEXT NOT NULL,
    position INTEGER NOT NULL REFERENCES objects(position),
    assigned_at REAL NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (annotator, position)
) WITHOUT ROWID;
CREATE TABLE answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    position INTEGER NOT NULL REFERENCES objects(position),
    point_index INTEGER NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (-1, 0, 1)),
    response_ms REAL,
    answered_at REAL NOT NULL,
    undone_at REAL,
    client_id TEXT
);
CREATE UNIQUE INDEX answers_live ON answers(annotator, position, point_index) WHERE undone_at IS NULL;
CREATE INDEX answers_by_annotator ON answers(annotator, id);
"""
_ANNOTATORS_TABLE = "CREATE TABLE annotators (key TEXT PRIMARY KEY, name TEXT NOT NULL, first_seen REAL NOT NULL) WITHOUT ROWID"
#: what version 3 added (each statement may run on a database that already has it)
_VERSION_3 = """
CREATE UNIQUE INDEX IF NOT EXISTS answers_by_client_id ON answers(annotator, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS relabels (
    answer INTEGER NOT NULL REFERENCES answers(id),
    old_label INTEGER NOT NULL,
    new_label INTEGER NOT NULL,
    relabelled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gold_answers (
    annotator TEXT NOT NULL,
    gold_index INTEGER NOT NULL,
    position INTEGER NOT NULL REFERENCES objects(position),
    point_index INTEGER NOT NULL,
    label INTEGER NOT NULL CHECK (label IN (-1, 0, 1)),
    truth INTEGER NOT NULL CHECK (truth IN (0, 1)),
    training INTEGER NOT NULL,
    response_ms REAL,
    answered_at REAL NOT NULL,
    PRIMARY KEY (annotator, gold_index)
) WITHOUT ROWID
"""
_SCHEMA += _ANNOTATORS_TABLE + ";" + _VERSION_3
#: what version 4 added (each statement may run on a database that already has it): the box stage and
#: model-assisted labelling
_VERSION_4 = """
CREATE TABLE IF NOT EXISTS box_images (
    image_id INTEGER PRIMARY KEY REFERENCES images(image_id),
    holder TEXT,
    claimed_at REAL,
    claim_order INTEGER,
    finished_at REAL,
    finished_by TEXT,
    finish_id TEXT,
    finish_order INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS box_images_by_holder ON box_images(holder, finished_at);
CREATE TABLE IF NOT EXISTS boxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id INTEGER NOT NULL REFERENCES images(image_id),
    annotator TEXT NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories(category_id),
    x0 INTEGER NOT NULL,
    y0 INTEGER NOT NULL,
    x1 INTEGER NOT NULL,
    y1 INTEGER NOT NULL,
    extreme_points TEXT,
    draw_ms REAL,
    total_ms REAL,
    drawn_at REAL NOT NULL,
    undone_at REAL,
    client_id TEXT,
    position INTEGER UNIQUE,
    undone_by TEXT
);
CREATE INDEX IF NOT EXISTS boxes_by_image ON boxes(image_id, id);
CREATE INDEX IF NOT EXISTS boxes_by_annotator ON boxes(annotator, undone_at);
CREATE INDEX IF NOT EXISTS boxes_by_undoer ON boxes(undone_by, undone_at) WHERE undone_by IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS boxes_by_client_id ON boxes(annotator, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS suggestions (
    model TEXT NOT NULL,
    position INTEGER NOT NULL,
    object TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    computed_at REAL NOT NULL,
    PRIMARY KEY (model, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS answer_suggestions (
    answer INTEGER PRIMARY KEY REFERENCES answers(id),
    model TEXT NOT NULL,
    probability REAL NOT NULL,
    accepted INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    model_made INTEGER NOT NULL CHECK (model_made IN (0, 1))
)
"""
_SCHEMA += ";" + _VERSION_4
#: the statements every open makes sure have run (each may run again): so a database made by a build
#: that had only some of a version's tables (the box stage or model suggestions) gets the others
_IDEMPOTENT = (_VERSION_3, _VERSION_4)
#: columns added to a table of :data:`_IDEMPOTENT` after it was first written: ``(table, column,
#: declaration, what fills it in an older table)``; added (and filled) when a table lacks them
_ADDED_COLUMNS = (
    (
        "box_images",
        "finish_order",
        "INTEGER",
        "UPDATE box_images SET finish_order = (SELECT COUNT(*) FROM box_images AS b WHERE b.finished_at IS NOT NULL "
        "AND (b.finished_at, b.image_id) <= (box_images.finished_at, box_images.image_id)) WHERE finished_at IS NOT NULL",
    ),
    ("boxes", "undone_by", "TEXT", "UPDATE boxes SET undone_by = annotator WHERE undone_at IS NOT NULL"),
)


class StoreError(PointsupError):
    """The database cannot be used as asked (a different dataset or settings, a foreign file)."""


def connect(path: str | Path) -> sqlite3.Connection:
    """Open ``path`` (created if missing) in autocommit mode, WAL, full synchronous commits;
    transactions are begun explicitly by the caller."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def has_session(connection: sqlite3.Connection) -> bool:
    """Whether the database holds a (fully created) labelling session."""
    return connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is not None


def holds_session(path: Path) -> bool:
    """Whether the file at ``path`` holds a labelling session (False: missing or empty).

    Raises:
        StoreError: the file is not an SQLite database.
    """
    if not (path.is_file() and path.stat().st_size > 0):
        return False
    try:
        probe = connect(path)
        try:
            return has_session(probe)
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not a labelling database ({exc})") from None


def schema_complete(connection: sqlite3.Connection) -> bool:
    """Whether every table, index and column of :data:`_IDEMPOTENT` and :data:`_ADDED_COLUMNS`
    is there (read-only: what :func:`upgrade` would add otherwise)."""
    wanted = set(re.findall(r"CREATE (?:UNIQUE )?(?:TABLE|INDEX) IF NOT EXISTS (\w+)", "".join(_IDEMPOTENT)))
    present = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
    return wanted <= present and all(_has_column(connection, table, column) for table, column, _, _ in _ADDED_COLUMNS)


def _has_column(connection: sqlite3.Connection, table: str, column: str) -> bool:
    return column in {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}


def check_folder_writable(path: Path) -> None:
    """StoreError naming ``path``'s folder and ``--db`` when a new database cannot be created
    there (the folder is missing, not a folder, or not writable: tried, so it holds for root too)."""
    folder = path.parent
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = "does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir() else "is not writable"
        raise StoreError(
            f"cannot create the session database {path}: the folder {folder} {reason} ({exc.strerror or exc}); "
            "choose another place with --db FILE"
        ) from None


def upgrade(connection: sqlite3.Connection, key_of: Callable[[str], str]) -> None:
    """Bring an older or incomplete session to the current version, in one transaction (see the
    module docstring); changes nothing in a complete current one."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = int(connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        if version < 2:
            _upgrade_to_2(connection, key_of)
        if version < 3:
            _upgrade_to_3(connection)
        for table, column, declaration, fill in _ADDED_COLUMNS:  # tables made before these columns
            if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone():
                if not _has_column(connection, table, column):
                    connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    connection.execute(fill)
        for statements in _IDEMPOTENT:  # every version's, whatever the recorded version says
            for statement in statements.split(";"):
                connection.execute(statement)
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        connection.execute("COMMIT")
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")


def _upgrade_to_3(connection: sqlite3.Connection) -> None:
    """Add ``answers.client_id``, ``relabels`` and ``gold_answers``."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(answers)")}
    if "client_id" not in columns:
        connection.execute("ALTER TABLE answers ADD COLUMN client_id TEXT")
    for statement in _VERSION_3.split(";"):
        connection.execute(statement)


def _upgrade_to_2(connection: sqlite3.Connection, key_of: Callable[[str], str]) -> None:
    """Add the ``annotators`` table and store each name as its key (``key_of``), keeping the
    name as typed for display. When two old names share a key ("Kim" and "kim"), the first one
    seen takes it and the other keeps its rows unchanged (its answers still count in exports)."""
    connection.execute(_ANNOTATORS_TABLE)
    first_seen: dict[str, float] = {}
    for name, at in connection.execute(
        "SELECT annotator, MIN(t) FROM (SELECT annotator, answered_at AS t FROM answers "
        "UNION ALL SELECT annotator, assigned_at FROM assignments) GROUP BY annotator ORDER BY MIN(t)"
    ).fetchall():
        key = key_of(name)
        if key in first_seen:
            key = name  # a clash: left as it was
        elif key != name:
            connection.execute("UPDATE answers SET annotator = ? WHERE annotator = ?", (key, name))
            connection.execute("UPDATE assignments SET annotator = ? WHERE annotator = ?", (key, name))
        first_seen[key] = at
        connection.execute("INSERT OR IGNORE INTO annotators (key, name, first_seen) VALUES (?, ?, ?)", (key, name, at))


def create_database(
    path: str | Path,
    coco: dict[str, Any],
    *,
    dataset_path: str,
    dataset_sha256: str,
    num_points: int,
    seed: int,
    overlap: int = 1,
    use_points: bool = False,
    given_points_ignored: int = 0,
    check: Callable[[list[str]], None] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> None:
    """Write a new session for ``coco`` into ``path``, in one transaction (an interrupted
        creation leaves no session behind). With ``use_points`` the objects' own ``point_coords``
        are labelled instead of sampled ones (see :func:`tasks.labelling_objects`). ``check`` is
    called with the image file names once the file is validated, before anything is written.
    ``extra_meta`` adds settings to ``meta`` (a session from a folder of photos records its source).

        Raises:
            PointFormatError: ``coco`` is not a valid COCO file.
            StoreError: ``path`` already holds a session, is not an SQLite database, or cannot be
                created (its folder is missing or not writable).
            ValueError: invalid ``num_points``, ``seed`` or ``overlap``.
    """
    if overlap < 1:
        raise ValueError(f"overlap must be >= 1, got {overlap}")
    objects = labelling_objects(coco, num_points, seed, source=dataset_path, use_points=use_points)
    if check is not None:
        check([image["file_name"] for image in coco["images"]])
    check_folder_writable(Path(path))
    meta = {
        "schema_version": SCHEMA_VERSION,
        "num_points": num_points,
        "seed": seed,
        "overlap": overlap,
        "dataset_path": dataset_path,
        "dataset_sha256": dataset_sha256,
        "num_objects": len(objects),
        "has_masks": int(any(o.mask_values is not None for o in objects)),
        "points_source": POINTS_GIVEN if use_points else POINTS_SAMPLED,
        "given_points_ignored": given_points_ignored,
        "created_at": time.time(),
        **(extra_meta or {}),
    }
    try:
        connection = connect(path)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not an SQLite database ({exc})") from None
    try:
        if has_session(connection):
            raise StoreError(f"{path} already holds a labelling session")
        connection.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            connection.execute(statement)
        _insert_dataset(connection, coco, objects, meta)
        connection.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot write the session ({exc})") from None
    finally:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        connection.close()


def _insert_dataset(db: sqlite3.Connection, coco: dict[str, Any], objects: list[LabellingObject], meta: dict[str, Any]) -> None:
    db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
    db.execute("INSERT INTO dataset (id, coco) VALUES (1, ?)", (zlib.compress(encode_json(export_template(coco)), 6),))
    db.executemany(
        "INSERT INTO images (image_id, file_name, width, height) VALUES (?, ?, ?, ?)",
        [(i["id"], i["file_name"], i["width"], i["height"]) for i in coco["images"]],
    )
    db.executemany(
        "INSERT INTO categories (category_id, name) VALUES (?, ?)",
        [(c["id"], str(c.get("name", c["id"]))) for c in coco["categories"]],
    )
    db.executemany(
        "INSERT INTO objects (position, annotation_id, image_id, category_id, bbox, points, mask_values) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                o.position,
                o.annotation_id,
                o.image_id,
                o.category_id,
                encode_json(list(o.bbox_xywh)).decode(),
                encode_json(o.points).decode(),
                None if o.mask_values is None else encode_json(o.mask_values).decode(),
            )
            for o in objects
        ],
    )
