"""The box stage of a session started from a folder of photos: images handed out, boxes drawn.

A session made by ``pointsup annotate serve --images DIR --categories a,b,c`` has images and
categories but no objects yet. Annotators draw the boxes in the browser (``/boxes``): by extreme
clicking (the object's left-, top-, right- and bottom-most points; Papadopoulos et al., ICCV
2017) or by dragging, and say "no more objects in this image". Then the image is *finished*:
each of its boxes becomes an object of the point stage (a row of ``objects``), whose points are
drawn as ``pointsup simulate`` draws them (:func:`sample_object_points`), and the point questions
follow as for a session started from a COCO file.

Hand-out, as in the point stage (:mod:`pointsup.annotator.store`):

* an annotator holds at most :data:`MAX_OPEN_IMAGES` unfinished images (the one on screen and
  one ahead, prefetched); images are claimed in folder order, one annotator per image, only by
  POST requests. The image on screen is the one claimed first;
* an annotator who has neither claimed, drawn, undone nor finished anything in the box stage for
  ``claim_timeout_s`` seconds loses their unfinished images when someone else next claims one
  (``annotate release`` does it at once; a reopened image counts as claimed anew). The boxes
  drawn stay: whoever takes the image next sees them and continues;
* every box and every "finished" carries an id made by the page (``client_id``): a request sent
  again after an outage is recognised and stored once;
* undo withdraws the last box in force on the image on screen, whoever drew it (an image taken
  over from an idle annotator comes with their boxes; the box keeps who drew it, and records who
  undid it and when); only when that image has no box does it reopen the image the annotator
  finished last (by ``finish_order``, numbered as ``claim_order`` is), while nothing depends on
  it yet (its objects are the last ones made, and nobody has claimed or answered them);
* a box must lie inside its image, with ``x0 < x1`` and ``y0 < y1``, and span at least
  :data:`MIN_BOX_SIDE` pixels each way.

Objects are numbered in the order their images were finished: object ``k`` (``position``) has
annotation id ``k + 1``, and its points are the ``k``-th object's points of the seeded stream of
``pointsup simulate`` (:func:`pointsup.points.simulate.sample_uniform_pixels`). So the boxes-only
export (:func:`boxes_only_coco`), given to ``annotate serve`` with the same seed and number of
points, asks the very points this session shows.

Coordinates: extreme points are pixel indices ``[x, y]`` (like ``point_coords``), stored in the
order left, top, right, bottom; the box they make runs from the left edge of the left-most
pixel to the right edge of the right-most one: ``[x_left, y_top, x_right + 1 - x_left,
y_bottom + 1 - y_top]``. A dragged box is given by its pixel edges ``x0, y0, x1, y1``.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from pointsup.annotator.store import already_stored, annotator_key
from pointsup.points.format import validate_coco
from pointsup.points.sampling import clip_boxes_to_images, pixels_from_unit_draws
from pointsup.utils.atomic import encode_json, write_json_atomic

if TYPE_CHECKING:
    from pointsup.annotator.store import AnnotationStore

#: unfinished images an annotator may hold at once (the one on screen + one claimed ahead)
MAX_OPEN_IMAGES = 2
EXTREME, DRAG = "extreme", "drag"
STAGES = ("boxes", "points", "both")
#: the paper's time per box by extreme clicking (Papadopoulos et al., ICCV 2017), seconds
PAPER_SECONDS_PER_BOX = 7.0
#: ``meta.source`` of a session started from a folder of photos
FOLDER_SOURCE = "folder"
#: the fewest pixels a box spans each way (four clicks on one pixel are not a box)
MIN_BOX_SIDE = 2


class BoxConflict(Exception):
    """A box-stage request that does not fit the session's state (the image is not the
    annotator's, it was finished or released meanwhile): the page resynchronises."""


@dataclass(frozen=True)
class Box:
    """A box in force: pixel edges ``x0 <= x < x1``, ``y0 <= y < y1``; ``extreme_points``
    (left, top, right, bottom pixel indices) when it was extreme-clicked; ``position``: the
    object it became when its image was finished (None before)."""

    id: int
    image_id: int
    annotator: str
    category_id: int
    x0: int
    y0: int
    x1: int
    y1: int
    extreme_points: tuple[tuple[int, int], ...] | None
    draw_ms: float | None
    total_ms: float | None
    position: int | None

    @property
    def bbox_xywh(self) -> tuple[float, float, float, float]:
        return float(self.x0), float(self.y0), float(self.x1 - self.x0), float(self.y1 - self.y0)

    @property
    def method(self) -> str:
        return DRAG if self.extreme_points is None else EXTREME


@dataclass(frozen=True)
class BoxImage:
    """An image of the box stage and its boxes in force."""

    image_id: int
    boxes: tuple[Box, ...]
    finished: bool


@dataclass(frozen=True)
class Undone:
    """What :meth:`BoxStage.undo` took back: a box (``box_id``, drawn by the annotator key
    ``drawn_by``) or an image's "finished" (``box_id`` None); ``refused``: why nothing was taken
    back (None when something was)."""

    image_id: int | None
    box_id: int | None = None
    refused: str | None = None
    drawn_by: str | None = None

    @property
    def kind(self) -> str | None:
        if self.image_id is None:
            return None
        return "finish" if self.box_id is None else "box"


def order_extreme_points(points: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """The four clicks as ``(left, top, right, bottom)``: the assignment with the largest
    ``-x_left - y_top + x_right + y_bottom`` (clicks come in any order)."""
    if len(points) != 4:
        raise ValueError(f"an extreme-clicked box needs 4 points, got {len(points)}")
    best = max(
        itertools.permutations(range(4)),
        key=lambda p: -points[p[0]][0] - points[p[1]][1] + points[p[2]][0] + points[p[3]][1],
    )
    return tuple((int(points[k][0]), int(points[k][1])) for k in best)


def box_from_extreme_points(points: tuple[tuple[int, int], ...]) -> tuple[int, int, int, int]:
    """Pixel edges ``(x0, y0, x1, y1)`` of the box around four pixel indices."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def sample_object_points(
    position: int, bbox_xywh: tuple[float, float, float, float], width: int, height: int, num_points: int, seed: int
) -> np.ndarray:
    """The ``(num_points, 2)`` pixel indices ``pointsup simulate --seed seed`` draws for the
    ``position``-th non-crowd object of a file (version 1): its rows of the stream
    ``default_rng([seed, 1]).random((objects, num_points, 2))``, reached by advancing the
    generator (one 64-bit draw per number)."""
    bits = np.random.PCG64([seed, 1])  # what default_rng([seed, 1]) uses
    bits.advance(position * num_points * 2)
    unit = np.random.Generator(bits).random((1, num_points, 2))
    sizes = np.array([[height, width]], dtype=np.int64)
    boxes = np.array([bbox_xywh], dtype=np.float64)
    return pixels_from_unit_draws(unit, clip_boxes_to_images(boxes, sizes), sizes)[0]


_BOX_COLUMNS = "id, image_id, annotator, category_id, x0, y0, x1, y1, extreme_points, draw_ms, total_ms, position"


def _box(row: Any) -> Box:
    extreme = None if row[8] is None else tuple(tuple(p) for p in msgspec.json.decode(row[8]))
    return Box(
        int(row[0]), int(row[1]), str(row[2]), int(row[3]), int(row[4]), int(row[5]), int(row[6]), int(row[7]),
        extreme, row[9], row[10], None if row[11] is None else int(row[11]),
    )  # fmt: skip


class BoxStage:
    """The box stage of a store (one started from a folder of photos); every method commits
    before it returns, as the store's do.

    Raises (constructor):
        ValueError: the store was not started from a folder of photos.
    """

    def __init__(self, store: AnnotationStore):
        if not store.settings.from_folder:
            raise ValueError(f"{store.path} was made from a COCO file: it has no box stage")
        self.store = store

    # ---- hand-out --------------------------------------------------------------------------

    def held_images(self, annotator: str, *, claim: bool = True) -> list[BoxImage]:
        """The annotator's unfinished images, the one on screen first, claiming images as
        needed (none when nothing is left); with ``claim=False`` nothing is written."""
        key = annotator_key(annotator)
        store = self.store
        with store._write() if claim else store._read() as db:
            held = self._held(db, key)
            if claim:
                self._claim_more(db, key, annotator, held)
            return [BoxImage(image_id, self._boxes_on(db, image_id), False) for image_id in held]

    def _claim_more(self, db: sqlite3.Connection, key: str, annotator: str, held: list[int]) -> None:
        """Claim images (appended to ``held``) until the annotator holds :data:`MAX_OPEN_IMAGES`
        or none is left."""
        if len(held) >= MAX_OPEN_IMAGES:
            return
        self.store._register(db, key, annotator)
        self._release_inactive(db, key)
        while len(held) < MAX_OPEN_IMAGES:
            row = db.execute(
                "SELECT image_id FROM images WHERE image_id NOT IN "
                "(SELECT image_id FROM box_images WHERE holder IS NOT NULL OR finished_at IS NOT NULL) "
                "ORDER BY image_id LIMIT 1"
            ).fetchone()
            if row is None:
                break
            order = db.execute("SELECT COALESCE(MAX(claim_order), 0) + 1 FROM box_images").fetchone()[0]
            db.execute(
                "INSERT INTO box_images (image_id, holder, claimed_at, claim_order) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (image_id) DO UPDATE SET holder = excluded.holder, claimed_at = excluded.claimed_at, "
                "claim_order = excluded.claim_order",
                (row[0], key, time.time(), order),
            )
            held.append(int(row[0]))

    def release(self, annotator: str | None = None) -> list[tuple[str, int]]:
        """Give the unfinished images of ``annotator`` (everyone's when None) back to the pool
        at once; their boxes stay. Returns ``(annotator key, image id)`` of each."""
        key = None if annotator is None else annotator_key(annotator)
        with self.store._write() as db:
            rows = db.execute(
                "SELECT holder, image_id FROM box_images WHERE holder IS NOT NULL AND finished_at IS NULL "
                "AND (? IS NULL OR holder = ?) ORDER BY holder, image_id",
                (key, key),
            ).fetchall()
            db.execute(
                "UPDATE box_images SET holder = NULL WHERE holder IS NOT NULL AND finished_at IS NULL AND (? IS NULL OR holder = ?)",
                (key, key),
            )
        return [(str(a), int(i)) for a, i in rows]

    # ---- boxes -----------------------------------------------------------------------------

    def add_box(
        self,
        annotator: str,
        image_id: int,
        category_id: int,
        *,
        extreme_points: list[tuple[int, int]] | None = None,
        edges: tuple[int, int, int, int] | None = None,
        draw_ms: float | None = None,
        total_ms: float | None = None,
        client_id: str | None = None,
    ) -> bool:
        """Store a box on an image the annotator holds: four extreme points (pixel indices, any
        order) or the pixel edges ``(x0, y0, x1, y1)`` of a dragged box. Returns False, storing
        nothing, when a box with ``client_id`` was stored before (a request sent again).

        Raises:
            ValueError: no such category or image, the points or edges lie outside the image,
                edges inverted (``x0 >= x1`` or ``y0 >= y1``), a box spanning fewer than
                :data:`MIN_BOX_SIDE` pixels either way, neither or both of ``extreme_points`` and
                ``edges``.
            BoxConflict: the annotator does not hold the image (released, finished meanwhile).
        """
        store = self.store
        if category_id not in store.category_names:
            raise ValueError(f"no category with id {category_id}")
        if image_id not in store.images:
            raise ValueError(f"no image with id {image_id}")
        _, width, height = store.images[image_id]
        if (extreme_points is None) == (edges is None):
            raise ValueError("give either the four extreme points or the box's edges")
        ordered = None
        if extreme_points is not None:
            ordered = order_extreme_points([(int(x), int(y)) for x, y in extreme_points])
            if not all(0 <= x < width and 0 <= y < height for x, y in ordered):
                raise ValueError(f"an extreme point lies outside the image ({width} x {height} pixels)")
            edges = box_from_extreme_points(ordered)
        assert edges is not None
        x0, y0, x1, y1 = edges
        for axis, low, high in (("x", x0, x1), ("y", y0, y1)):
            if low >= high:
                raise ValueError(
                    f"the box {list(edges)} is inverted or empty: {axis}0 ({low}) must be less than {axis}1 ({high})"
                )
        if not (0 <= x0 and x1 <= width and 0 <= y0 and y1 <= height):
            raise ValueError(f"the box {list(edges)} does not lie inside the image ({width} x {height} pixels)")
        if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
            what = "the extreme points span" if ordered is not None else f"the box {list(edges)} spans"
            raise ValueError(f"{what} {x1 - x0} x {y1 - y0} pixels: a box must span at least {MIN_BOX_SIDE} pixels each way")
        key = annotator_key(annotator)
        with store._write() as db:
            if already_stored(db, "boxes", key, client_id):
                return False
            self._check_held(db, key, image_id)
            db.execute(
                "INSERT INTO boxes (image_id, annotator, category_id, x0, y0, x1, y1, extreme_points, draw_ms, total_ms, "
                "drawn_at, client_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id, key, category_id, x0, y0, x1, y1,
                    None if ordered is None else encode_json([list(p) for p in ordered]).decode(),
                    draw_ms, total_ms, time.time(), client_id,
                ),
            )  # fmt: skip
            store._register(db, key, annotator)
        return True

    def finish_image(self, annotator: str, image_id: int, client_id: str | None = None) -> bool:
        """ "No more objects in this image": its boxes become objects of the point stage (none:
        the image is recorded as empty). Returns False, changing nothing, when this annotator
        finished it before (a request sent again).

        Raises:
            BoxConflict: the annotator does not hold the image, or someone else finished it.
        """
        store = self.store
        key = annotator_key(annotator)
        n, seed = store.settings.num_points, store.settings.seed
        with store._write() as db:
            row = db.execute(
                "SELECT holder, finished_at, finished_by, finish_id FROM box_images WHERE image_id = ?", (image_id,)
            ).fetchone()
            if row is not None and row[1] is not None:
                if row[2] == key and (client_id is None or row[3] in (None, client_id)):
                    return False
                raise BoxConflict(f"image {image_id} was finished already")
            self._check_held(db, key, image_id)
            _, width, height = store.images[image_id]
            start = int(db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM objects").fetchone()[0])
            for offset, box in enumerate(self._boxes_on(db, image_id)):
                position = start + offset
                points = sample_object_points(position, box.bbox_xywh, width, height, n, seed)
                db.execute(
                    "INSERT INTO objects (position, annotation_id, image_id, category_id, bbox, points) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        position,
                        position + 1,
                        image_id,
                        box.category_id,
                        encode_json(list(box.bbox_xywh)).decode(),
                        encode_json(points.tolist()).decode(),
                    ),
                )
                db.execute("UPDATE boxes SET position = ? WHERE id = ?", (position, box.id))
            order = db.execute("SELECT COALESCE(MAX(finish_order), 0) + 1 FROM box_images").fetchone()[0]
            db.execute(
                "UPDATE box_images SET finished_at = ?, finished_by = ?, finish_id = ?, finish_order = ? WHERE image_id = ?",
                (time.time(), key, client_id, order, image_id),
            )
            self._count_objects(db)
            store._register(db, key, annotator)
            store.objects_changed()
        return True

    def skip_image(self, annotator: str, image_id: int) -> None:
        """Put an image the annotator holds behind their other held images, claiming one more
        first when they can (the page could not load it): the next one is on screen, and this one
        comes back after it (at once when there is no other).

        Raises:
            BoxConflict: the annotator does not hold the image (released, finished meanwhile).
        """
        store = self.store
        key = annotator_key(annotator)
        with store._write() as db:
            self._check_held(db, key, image_id)
            self._claim_more(db, key, annotator, self._held(db, key))
            order = db.execute("SELECT COALESCE(MAX(claim_order), 0) + 1 FROM box_images").fetchone()[0]
            db.execute("UPDATE box_images SET claim_order = ?, claimed_at = ? WHERE image_id = ?", (order, time.time(), image_id))

    def undo(self, annotator: str) -> Undone:
        """Withdraw the last box in force on the image on screen (the annotator's first held
        one), whoever drew it (it keeps who drew it; ``undone_by`` and ``undone_at`` record the
        undo); when that image has no box, reopen the image the annotator finished last (its
        boxes are kept and its objects removed), unless something may depend on it: objects made
        after its own, objects claimed or answered (then ``refused`` says why)."""
        store = self.store
        key = annotator_key(annotator)
        with store._write() as db:
            held = self._held(db, key)
            if held:
                row = db.execute(
                    "SELECT id, annotator FROM boxes WHERE image_id = ? AND undone_at IS NULL ORDER BY id DESC LIMIT 1",
                    (held[0],),
                ).fetchone()
                if row is not None:
                    db.execute("UPDATE boxes SET undone_at = ?, undone_by = ? WHERE id = ?", (time.time(), key, row[0]))
                    store._register(db, key, annotator)
                    return Undone(held[0], int(row[0]), drawn_by=str(row[1]))
            last = db.execute(
                "SELECT image_id FROM box_images WHERE finished_by = ? AND finished_at IS NOT NULL "
                "ORDER BY finish_order DESC LIMIT 1",
                (key,),
            ).fetchone()
            if last is None:
                return Undone(None)
            image_id = int(last[0])
            refused = self._reopen(db, key, image_id)
            if refused is not None:
                return Undone(None, refused=refused)
            store.objects_changed()
        return Undone(image_id)

    # ---- reading ---------------------------------------------------------------------------

    def boxes(self) -> list[Box]:
        """Every box in force, in the order drawn."""
        with self.store._read() as db:
            rows = db.execute(f"SELECT {_BOX_COLUMNS} FROM boxes WHERE undone_at IS NULL ORDER BY id").fetchall()
        return [_box(row) for row in rows]

    def finished_images(self) -> dict[int, tuple[str, float]]:
        """Image id to ``(annotator key, time)`` of every finished image."""
        with self.store._read() as db:
            rows = db.execute(
                "SELECT image_id, finished_by, finished_at FROM box_images WHERE finished_at IS NOT NULL"
            ).fetchall()
        return {int(i): (str(a), float(t)) for i, a, t in rows}

    def holders(self) -> dict[int, str]:
        """Image id to the annotator key holding it, for the unfinished images held."""
        with self.store._read() as db:
            rows = db.execute(
                "SELECT image_id, holder FROM box_images WHERE holder IS NOT NULL AND finished_at IS NULL"
            ).fetchall()
        return {int(i): str(a) for i, a in rows}

    def counts(self, annotator: str) -> tuple[int, int]:
        """``(boxes in force, images finished)`` of the annotator."""
        key = annotator_key(annotator)
        with self.store._read() as db:
            (boxes,) = db.execute("SELECT COUNT(*) FROM boxes WHERE annotator = ? AND undone_at IS NULL", (key,)).fetchone()
            (images,) = db.execute(
                "SELECT COUNT(*) FROM box_images WHERE finished_by = ? AND finished_at IS NOT NULL", (key,)
            ).fetchone()
        return int(boxes), int(images)

    def summary(self, annotator: str | None = None) -> dict[str, int]:
        """Images in all, finished, held by annotators other than ``annotator``, and left to box."""
        key = None if annotator is None else annotator_key(annotator)
        with self.store._read() as db:
            (finished,) = db.execute("SELECT COUNT(*) FROM box_images WHERE finished_at IS NOT NULL").fetchone()
            (others,) = db.execute(
                "SELECT COUNT(*) FROM box_images WHERE holder IS NOT NULL AND finished_at IS NULL AND holder IS NOT ?", (key,)
            ).fetchone()
        total = len(self.store.images)
        return {
            "images_total": total,
            "images_finished": int(finished),
            "images_held_by_others": int(others),
            "images_left": total - int(finished),
        }

    # ---- internals -------------------------------------------------------------------------

    def _held(self, db: sqlite3.Connection, key: str) -> list[int]:
        rows = db.execute(
            "SELECT image_id FROM box_images WHERE holder = ? AND finished_at IS NULL ORDER BY claim_order, image_id", (key,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def _boxes_on(self, db: sqlite3.Connection, image_id: int) -> tuple[Box, ...]:
        rows = db.execute(f"SELECT {_BOX_COLUMNS} FROM boxes WHERE image_id = ? AND undone_at IS NULL ORDER BY id", (image_id,))
        return tuple(_box(row) for row in rows)

    def _check_held(self, db: sqlite3.Connection, key: str, image_id: int) -> None:
        row = db.execute("SELECT holder, finished_at FROM box_images WHERE image_id = ?", (image_id,)).fetchone()
        if row is None or row[0] != key or row[1] is not None:
            why = "was finished" if row is not None and row[1] is not None else "is not held by this annotator (released?)"
            raise BoxConflict(f"image {image_id} {why}")

    def _count_objects(self, db: sqlite3.Connection) -> None:
        """Keep ``meta.num_objects`` (the objects made so far) up to date."""
        db.execute("UPDATE meta SET value = (SELECT COUNT(*) FROM objects) WHERE key = 'num_objects'")

    def _reopen(self, db: sqlite3.Connection, key: str, image_id: int) -> str | None:
        """Make a finished image unfinished and the annotator's again, claimed now (so that
        the release of idle annotators' images does not take it straight back); why not, or None."""
        positions = [int(r[0]) for r in db.execute("SELECT position FROM objects WHERE image_id = ?", (image_id,))]
        if positions:
            (last,) = db.execute("SELECT MAX(position) FROM objects").fetchone()
            if last != max(positions):
                return "its boxes cannot come back: objects of images finished after it follow theirs"
            marks = ",".join("?" * len(positions))
            if (
                db.execute(f"SELECT 1 FROM assignments WHERE position IN ({marks}) LIMIT 1", positions).fetchone()
                or db.execute(f"SELECT 1 FROM answers WHERE position IN ({marks}) LIMIT 1", positions).fetchone()
            ):
                return "its objects are already being labelled with points"
            db.execute("SAVEPOINT reopen")
            try:
                db.execute(f"UPDATE boxes SET position = NULL WHERE position IN ({marks})", positions)
                db.execute(f"DELETE FROM objects WHERE position IN ({marks})", positions)
            except sqlite3.IntegrityError:  # another table refers to them
                db.execute("ROLLBACK TO reopen")
                return "its objects are already in use"
            finally:
                db.execute("RELEASE reopen")
        db.execute(
            "UPDATE box_images SET finished_at = NULL, finished_by = NULL, finish_id = NULL, finish_order = NULL, holder = ?, "
            "claimed_at = ? WHERE image_id = ?",
            (key, time.time(), image_id),
        )
        self._count_objects(db)
        return None

    def _release_inactive(self, db: sqlite3.Connection, key: str) -> None:
        """Give back the unfinished images of annotators (other than ``key``) who have done
        nothing in the box stage for ``claim_timeout_s`` seconds."""
        cutoff = time.time() - self.store.claim_timeout_s
        holders = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT holder FROM box_images WHERE holder IS NOT NULL AND holder != ? AND finished_at IS NULL", (key,)
            )
        ]
        for holder in holders:
            (active,) = db.execute(
                "SELECT MAX(t) FROM (SELECT claimed_at AS t FROM box_images WHERE holder = ?1 "
                "UNION ALL SELECT finished_at FROM box_images WHERE finished_by = ?1 "
                "UNION ALL SELECT drawn_at FROM boxes WHERE annotator = ?1 UNION ALL SELECT undone_at FROM boxes WHERE undone_by = ?1)",
                (holder,),
            ).fetchone()
            if active is None or active < cutoff:
                db.execute("UPDATE box_images SET holder = NULL WHERE holder = ? AND finished_at IS NULL", (holder,))


def box_stage_summary(store: AnnotationStore) -> dict[str, Any] | None:
    """For the point page of a session from a folder (None otherwise): the stage the server
    asks and how many photos are still to be boxed (objects may still come)."""
    if not store.settings.from_folder:
        return None
    return {"stage": store.stage, "images_left": BoxStage(store).summary()["images_left"]}


# ---- exports -------------------------------------------------------------------------------


def box_annotation(box: Box) -> dict[str, Any]:
    """The COCO annotation of a finished box (id: its object's annotation id)."""
    assert box.position is not None
    x, y, w, h = box.bbox_xywh
    annotation: dict[str, Any] = {
        "id": box.position + 1,
        "image_id": box.image_id,
        "category_id": box.category_id,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
    }
    if box.extreme_points is not None:
        annotation["extreme_points"] = [list(p) for p in box.extreme_points]
    return annotation


def box_export_template(store: AnnotationStore) -> dict[str, Any]:
    """The session's COCO file so far: the images whose boxes are finished (in folder order,
    empty ones included) and the boxes on them (in object order, with ``extreme_points`` when
    extreme-clicked); what the exports start from."""
    stage = BoxStage(store)
    finished = stage.finished_images()
    coco = store.stored_dataset()
    boxes = sorted((b for b in stage.boxes() if b.position is not None), key=lambda b: b.position or 0)
    return {
        **coco,
        "images": [image for image in coco["images"] if image["id"] in finished],
        "annotations": [box_annotation(box) for box in boxes],
    }


def boxes_only_coco(store: AnnotationStore) -> dict[str, Any]:
    """The boxes-only COCO file: :func:`box_export_template` (no points); the points the
    sampler of ``pointsup simulate`` draws from it are this session's."""
    return box_export_template(store)


def validated_boxes_coco(store: AnnotationStore, source: str) -> dict[str, Any]:
    """:func:`boxes_only_coco` checked by :func:`~pointsup.points.format.validate_coco` (named
    ``source`` in its messages) and written out from the checked dataset, as ``annotate export``
    writes a point file; without the empty ``point_coords``/``point_labels`` the check gives each
    object (a file with them would count as carrying points). What ``annotate export --boxes``
    writes and ``/export.json?boxes=1`` serves."""
    document = validate_coco(boxes_only_coco(store), source, require_points=False).to_coco()
    for annotation in document["annotations"]:
        annotation.pop("point_coords", None)
        annotation.pop("point_labels", None)
    return document


def export_boxes(store: AnnotationStore, output: str | os.PathLike[str]) -> str:
    """Write :func:`validated_boxes_coco` to ``output`` atomically; says what it wrote."""
    document = validated_boxes_coco(store, str(output))
    write_json_atomic(output, document)
    left = len(store.images) - len(document["images"])
    extreme = sum("extreme_points" in a for a in document["annotations"])
    return (
        f"wrote {output}: {len(document['images'])} photos with their boxes finished, {len(document['annotations'])} boxes "
        f"({extreme} extreme-clicked, {len(document['annotations']) - extreme} dragged)"
        + (f"; {left} photos not finished yet left out" if left else "")
    )
