"""The JSON API of the box stage (the page ``/boxes``), independent of HTTP.

Requests are strict msgspec structs, as in :mod:`pointsup.annotator.api`. Every reply carries the
annotator's *box state*: their unfinished images, the one on screen first (``images``, each with
its boxes in force), the categories, and counters.

* ``GET  /api/boxes/state?annotator=NAME`` -> box state, read-only;
* ``POST /api/boxes/state`` ``{"annotator"}`` -> box state, claiming images as needed;
* ``POST /api/boxes/box`` ``{"annotator", "image_id", "category_id", "extreme_points" | "box",
  "draw_ms", "total_ms", "box_id"}``: a box, by its four extreme points (pixel indices ``[x, y]``,
  any order) or by its pixel edges ``[x0, y0, x1, y1]`` (dragged); ``draw_ms``: from the moment
  the annotator could start it to its last click, ``total_ms``: to the choice of its category
  (a time over an hour is stored as unknown, not refused: :func:`~pointsup.annotator.api.kept_ms`);
  ``box_id`` (made by the page) makes the request idempotent -> box state; 400 for a box that is
  inverted, too small or outside the image; 409 with the state when the image is not the
  annotator's (released, finished);
* ``POST /api/boxes/finish`` ``{"annotator", "image_id", "finish_id"}``: "no more objects in
  this image" -> box state (409 as above);
* ``POST /api/boxes/skip`` ``{"annotator", "image_id"}``: the page cannot load the photo on
  screen: it goes behind the annotator's other photos (it comes back later) -> box state (409
  as above);
* ``POST /api/boxes/undo`` ``{"annotator"}`` -> box state plus ``undone`` (``{"kind": "box" or
  "finish", "image_id"}``, for a box also ``drawn_by`` and ``mine``: who drew it; or null) and
  ``refused`` (why nothing was undone, or null).

A session made from a COCO file has no box stage (404). With ``serve --stage points`` the state
lists no photos and boxes are refused (409).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pointsup.annotator.api import (
    MAX_INDEX,
    AnnotatorName,
    AnswerId,
    ApiError,
    Milliseconds,
    annotator_name,
    kept_ms,
    recheck_ms,
)
from pointsup.annotator.box_store import BoxConflict, BoxImage, BoxStage
from pointsup.annotator.store import AnnotationStore, annotator_key

Index = Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]


class BoxStateRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


class BoxRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    image_id: Index
    category_id: Index
    extreme_points: Annotated[list[tuple[Index, Index]], msgspec.Meta(min_length=4, max_length=4)] | None = None
    box: Annotated[list[Index], msgspec.Meta(min_length=4, max_length=4)] | None = None
    draw_ms: Milliseconds | None = None
    total_ms: Milliseconds | None = None
    box_id: AnswerId | None = None


class FinishRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    image_id: Index
    finish_id: AnswerId | None = None


class SkipRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    image_id: Index


class BoxUndoRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


def box_stage(store: AnnotationStore) -> BoxStage:
    if not store.settings.from_folder:
        raise ApiError(404, "this session was made from a COCO file with boxes: it has no box stage")
    return BoxStage(store)


def image_json(store: AnnotationStore, image: BoxImage, key: str) -> dict[str, Any]:
    """What the page needs to draw an image and its boxes (``mine``: drawn by this annotator)."""
    file_name, width, height = store.images[image.image_id]
    return {
        "key": f"image:{image.image_id}",
        "image_id": image.image_id,
        "image_url": f"/image/{image.image_id}",
        "file_name": file_name,
        "width": width,
        "height": height,
        "boxes": [
            {
                "id": box.id,
                "category_id": box.category_id,
                "bbox": list(box.bbox_xywh),
                "extreme_points": None if box.extreme_points is None else [list(p) for p in box.extreme_points],
                "mine": box.annotator == key,
            }
            for box in image.boxes
        ],
    }


def box_state(store: AnnotationStore, annotator: str, *, claim: bool = True) -> dict[str, Any]:
    """The annotator's images (the one on screen first), the categories and counters; claims
    images as needed unless ``claim`` is False or the server asks points only."""
    stage = box_stage(store)
    images = [] if store.stage == "points" else stage.held_images(annotator, claim=claim)
    boxes, finished = stage.counts(annotator)
    key = annotator_key(annotator)
    return {
        "annotator": store.display_name(annotator),
        "stage": store.stage,
        "categories": [{"id": k, "name": store.category_names[k]} for k in sorted(store.category_names)],
        "images": [image_json(store, image, key) for image in images],
        "boxes_drawn": boxes,
        "images_finished_by_you": finished,
        **stage.summary(annotator),
        "objects_total": store.objects_total(),
        "claim_timeout_s": store.claim_timeout_s,
        "recheck_ms": recheck_ms(store),
    }


def _check_open(store: AnnotationStore, name: str) -> BoxStage:
    stage = box_stage(store)
    if store.stage == "points":
        raise ApiError(
            409, "this server asks points only (serve --stage points): no boxes are taken", state=box_state(store, name)
        )
    return stage


def add_box(store: AnnotationStore, request: BoxRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    stage = _check_open(store, name)
    if (request.extreme_points is None) == (request.box is None):
        raise ApiError(400, "give either extreme_points (4 points) or box ([x0, y0, x1, y1])")
    try:
        stage.add_box(
            name,
            request.image_id,
            request.category_id,
            extreme_points=request.extreme_points,
            edges=None if request.box is None else (request.box[0], request.box[1], request.box[2], request.box[3]),
            draw_ms=kept_ms(request.draw_ms),
            total_ms=kept_ms(request.total_ms),
            client_id=request.box_id,
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except BoxConflict as exc:
        raise ApiError(409, str(exc), state=box_state(store, name)) from None
    return box_state(store, name)


def finish_image(store: AnnotationStore, request: FinishRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    stage = _check_open(store, name)
    if request.image_id not in store.images:
        raise ApiError(400, f"no image with id {request.image_id}")
    try:
        stage.finish_image(name, request.image_id, request.finish_id)
    except BoxConflict as exc:
        raise ApiError(409, str(exc), state=box_state(store, name)) from None
    return box_state(store, name)


def skip_image(store: AnnotationStore, request: SkipRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    stage = _check_open(store, name)
    try:
        stage.skip_image(name, request.image_id)
    except BoxConflict as exc:
        raise ApiError(409, str(exc), state=box_state(store, name)) from None
    return box_state(store, name)


def undo(store: AnnotationStore, request: BoxUndoRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    undone = _check_open(store, name).undo(name)
    reply = box_state(store, name)
    reply["undone"] = None if undone.kind is None else {"kind": undone.kind, "image_id": undone.image_id}
    if undone.drawn_by is not None:  # the box's author, and whether it is the annotator
        reply["undone"]["drawn_by"] = store.display_names().get(undone.drawn_by, undone.drawn_by)
        reply["undone"]["mine"] = undone.drawn_by == annotator_key(name)
    reply["refused"] = undone.refused
    return reply


def claim_state(store: AnnotationStore, request: BoxStateRequest) -> dict[str, Any]:
    return box_state(store, annotator_name(request.annotator))


def read_state(store: AnnotationStore, query: dict[str, list[str]]) -> dict[str, Any]:
    """``GET /api/boxes/state?annotator=NAME``: the state without claiming anything."""
    names = query.get("annotator")
    if not names or len(names) != 1:
        raise ApiError(400, "give one annotator: /api/boxes/state?annotator=NAME")
    return box_state(store, annotator_name(names[0]), claim=False)


#: the box stage's POST routes: path -> (request type, handler)
POST_ROUTES: dict[str, Any] = {
    "/api/boxes/state": (BoxStateRequest, claim_state),
    "/api/boxes/box": (BoxRequest, add_box),
    "/api/boxes/finish": (FinishRequest, finish_image),
    "/api/boxes/skip": (SkipRequest, skip_image),
    "/api/boxes/undo": (BoxUndoRequest, undo),
}
