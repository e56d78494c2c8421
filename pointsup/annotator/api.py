"""The JSON API of the labelling server, independent of HTTP.

Requests are decoded into strict msgspec structs (unknown fields, wrong types, out-of-range
numbers: 400). Every reply carries the annotator's *state*: their current point followed by
the next few (``tasks``; the browser draws the first and prefetches the others' images) and
their counters.

The state also says the name as the annotator first typed it (names are case-insensitive),
how many unfinished objects others hold (``held_by_others``) and, when nothing is left for the
annotator, after how many milliseconds to ask again (``recheck_ms``: objects of inactive
annotators come back to the pool after ``claim_timeout_s``). Each task names how many other
objects of its category overlap its box (``overlapping``): the page then insists on the box.

* ``GET  /api/state?annotator=NAME`` -> state, read-only: the points of the objects the
  annotator already holds (no GET changes the session);
* ``POST /api/state`` ``{"annotator"}`` -> state, claiming objects for the annotator as needed
  (the page sends this when it opens and whenever it resynchronises);
* ``POST /api/answer`` ``{"annotator", "position", "point_index", "label", "response_ms"}``
  with ``label`` one of ``object``, ``background``, ``unsure`` -> state; 409 with the state
  when the point is not the annotator's current one (a stale or repeated request).
* ``POST /api/undo`` ``{"annotator"}`` -> state plus ``undone``: the withdrawn point or null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pointsup.annotator.store import LABEL_CODES, AnnotationStore, AnswerConflict, PointTask, check_annotator_name

#: points sent with each state: the current one and the upcoming ones to prefetch
LOOKAHEAD = 6
#: the longest response time accepted (an hour), in milliseconds
MAX_RESPONSE_MS = 3_600_000.0
#: the largest object position or point index a request may name
MAX_INDEX = 2**53
#: how often a page with nothing left asks again: a share of the claim timeout, within bounds (ms)
RECHECK_SHARE = 0.25
RECHECK_MIN_MS, RECHECK_MAX_MS = 250, 15_000

AnnotatorName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ApiError(Exception):
    """A request the server refuses: HTTP ``status``, a message and extra JSON fields."""

    def __init__(self, status: int, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class AnswerRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    position: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
    point_index: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
    label: Literal["object", "background", "unsure"]
    response_ms: Annotated[float, msgspec.Meta(ge=0.0, le=MAX_RESPONSE_MS)] | None = None


class UndoRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


class StateRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


def decode_request(body: bytes, kind: type[msgspec.Struct]) -> Any:
    """Decode a JSON body into ``kind``; ApiError 400 naming the problem otherwise."""
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, f"bad request body: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad request body: nested too deeply") from None


def annotator_name(raw: str) -> str:
    try:
        return check_annotator_name(raw)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def task_json(store: AnnotationStore, task: PointTask) -> dict[str, Any]:
    """What the browser needs to draw a point (``x``, ``y``: pixel indices; the marker goes
    at the pixel centre ``x + 0.5, y + 0.5``)."""
    _, width, height = store.images[task.image_id]
    return {
        "key": f"{task.position}:{task.point_index}",
        "position": task.position,
        "point_index": task.point_index,
        "annotation_id": task.annotation_id,
        "image_id": task.image_id,
        "image_url": f"/image/{task.image_id}",
        "width": width,
        "height": height,
        "category": store.category_names.get(task.category_id, str(task.category_id)),
        "bbox": list(task.bbox_xywh),
        "x": task.x,
        "y": task.y,
        "overlapping": store.same_category_overlaps(task.position),
    }


def recheck_ms(store: AnnotationStore) -> int:
    """How long a page with nothing to label waits before asking for work again."""
    wanted = RECHECK_SHARE * store.claim_timeout_s * 1000.0
    return int(min(max(wanted, RECHECK_MIN_MS), RECHECK_MAX_MS))


def state(store: AnnotationStore, annotator: str, *, claim: bool = True) -> dict[str, Any]:
    """The annotator's current and upcoming points and counters; claims objects as needed
    unless ``claim`` is False (then nothing is written)."""
    tasks = store.next_points(annotator, LOOKAHEAD, claim=claim)
    points, finished = store.annotator_counts(annotator)
    return {
        "annotator": store.display_name(annotator),
        "tasks": [task_json(store, t) for t in tasks],
        "num_points": store.settings.num_points,
        "objects_total": store.settings.num_objects,
        "points_answered": points,
        "objects_finished": finished,
        "held_by_others": 0 if tasks else store.held_by_others(annotator),
        "claim_timeout_s": store.claim_timeout_s,
        "recheck_ms": recheck_ms(store),
    }


def answer(store: AnnotationStore, request: AnswerRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    try:
        store.record_answer(name, request.position, request.point_index, LABEL_CODES[request.label], request.response_ms)
    except AnswerConflict as exc:
        raise ApiError(409, str(exc), state=state(store, name)) from None
    return state(store, name)


def claim_state(store: AnnotationStore, request: StateRequest) -> dict[str, Any]:
    return state(store, annotator_name(request.annotator))


def undo(store: AnnotationStore, request: UndoRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    undone = store.undo_last(name)
    reply = state(store, name)
    reply["undone"] = None if undone is None else {"position": undone[0], "point_index": undone[1]}
    return reply
