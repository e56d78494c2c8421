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
* ``POST /api/answer`` ``{"annotator", "position", "point_index", "label", "response_ms",
  "answer_id"}`` with ``label`` one of ``object``, ``background``, ``unsure`` -> state; 409 with
  the state when the point is not the annotator's current one (a stale request). ``answer_id``
  (made by the page, :data:`ANSWER_ID_PATTERN`) makes the request idempotent: sent again (the
  reply was lost in an outage), it is recognised, stored once and answered with the state.
  With model suggestions (``serve --weights``), a task carries ``suggestion`` (the model's
  probability that the point is on the object) and the answer says what was shown
  (``suggestion``) and whether the page's accept key gave it (``accepted``); see
  :mod:`pointsup.annotator.assist`.
* ``POST /api/undo`` ``{"annotator"}`` -> state plus ``undone``: the withdrawn point or null.
* ``POST /api/gold`` ``{"annotator", "gold_index", "label", "response_ms"}`` -> state: the
  answer to a gold question (tasks with ``gold``, see :mod:`pointsup.annotator.gold`); sent
  again, it is stored once. 409 when that gold question is not due.
* ``GET  /api/review?annotator=NAME[&position=P]`` -> ``{"objects", "object"}``: the positions
  of the objects the annotator answered (the latest first) and one of them (by default the
  latest) with their answers (``points``: index, x, y, label code); read-only.
* ``POST /api/relabel`` ``{"annotator", "position", "point_index", "label"}`` -> ``{"object"}``:
  changes the label of one of the annotator's answers (review); 404 when there is none.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from pointsup.annotator.assist import suggested_label
from pointsup.annotator.box_store import box_stage_summary
from pointsup.annotator.gold import GoldQuestion
from pointsup.annotator.store import (
    LABEL_CODES,
    AnnotationStore,
    AnswerConflict,
    GoldAnswer,
    PointTask,
    annotator_key,
    check_annotator_name,
)

#: points sent with each state: the current one and the upcoming ones to prefetch
LOOKAHEAD = 6
#: the longest response time kept (an hour), in milliseconds: a longer one (a tab left open) is stored as unknown
MAX_RESPONSE_MS = 3_600_000.0
#: the largest object position or point index a request may name
MAX_INDEX = 2**53
#: how often a page with nothing left asks again: a share of the claim timeout, within bounds (ms)
RECHECK_SHARE = 0.25
RECHECK_MIN_MS, RECHECK_MAX_MS = 250, 15_000

#: what a client-made answer id looks like
ANSWER_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"

AnnotatorName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
AnswerId = Annotated[str, msgspec.Meta(pattern=ANSWER_ID_PATTERN)]
#: a time the page measured: any length is accepted, one over MAX_RESPONSE_MS is stored as unknown (:func:`kept_ms`)
Milliseconds = Annotated[float, msgspec.Meta(ge=0.0)]


def kept_ms(value: float | None) -> float | None:
    """A measured time as stored: None (unknown) when it is over :data:`MAX_RESPONSE_MS` (the
    page was left open), so that the answer or box is kept and the time does not skew medians."""
    return None if value is None or not value <= MAX_RESPONSE_MS else value


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
    response_ms: Milliseconds | None = None
    answer_id: AnswerId | None = None
    #: the model's probability shown with the point, and whether its accept key gave the answer
    suggestion: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    accepted: bool = False


class UndoRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


class StateRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName


class GoldRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    gold_index: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
    label: Literal["object", "background", "unsure"]
    response_ms: Milliseconds | None = None


class RelabelRequest(msgspec.Struct, forbid_unknown_fields=True):
    annotator: AnnotatorName
    position: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
    point_index: Annotated[int, msgspec.Meta(ge=0, le=MAX_INDEX)]
    label: Literal["object", "background", "unsure"]


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
        **({} if task.suggestion is None else {"suggestion": task.suggestion}),
    }


def gold_json(store: AnnotationStore, question: GoldQuestion) -> dict[str, Any]:
    """A gold question as a task: drawn like any point; the right answer (``truth``) is sent
    only in the training round, where the page gives feedback."""
    task = task_json(store, store.point_task(question.position, question.point_index))
    task.update(key=f"g:{question.index}", gold=question.index, training=question.training)
    if question.training:
        task["truth"] = question.truth
    return task


def with_gold_questions(
    store: AnnotationStore, annotator: str, tasks: list[dict[str, Any]], answered: int
) -> list[dict[str, Any]]:
    """``tasks`` with the annotator's gold questions put in their places (none without a
    plan, or when nothing is left to label), at most :data:`LOOKAHEAD` in all."""
    if store.gold is None or not tasks:
        return tasks
    order = store.gold.sequence(annotator_key(annotator), answered, store.gold_count(annotator), len(tasks))
    return [tasks[item] if isinstance(item, int) else gold_json(store, item) for item in order[:LOOKAHEAD]]


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
        "tasks": with_gold_questions(store, annotator, [task_json(store, t) for t in tasks], points),
        "num_points": store.settings.num_points,
        "objects_total": store.objects_total(),
        "points_answered": points,
        "objects_finished": finished,
        "held_by_others": 0 if tasks else store.held_by_others(annotator),
        "claim_timeout_s": store.claim_timeout_s,
        "recheck_ms": recheck_ms(store),
        # a session from a folder of photos: {"stage", "images_left"} (objects may still come), else None
        "boxes": box_stage_summary(store),
    }


def answer(store: AnnotationStore, request: AnswerRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    label = LABEL_CODES[request.label]
    if request.accepted and (request.suggestion is None or label != suggested_label(request.suggestion)):
        raise ApiError(400, "an accepted answer must be the label of the suggestion shown")
    try:
        store.record_answer(
            name,
            request.position,
            request.point_index,
            label,
            kept_ms(request.response_ms),
            request.answer_id,
            suggestion=request.suggestion,
            accepted=request.accepted,
        )
    except AnswerConflict as exc:
        raise ApiError(409, str(exc), state=state(store, name)) from None
    return state(store, name)


def gold_answer(store: AnnotationStore, request: GoldRequest) -> dict[str, Any]:
    """Store the answer to a gold question: the annotator's next one, when it is due (one
    answered before is acknowledged again, not stored twice)."""
    name = annotator_name(request.annotator)
    if store.gold is None:
        raise ApiError(404, "this session asks no gold questions")
    answered = store.gold_count(name)
    if request.gold_index < answered:
        return state(store, name)
    points, _ = store.annotator_counts(name)
    if request.gold_index > answered or answered >= store.gold.due_before(points):
        raise ApiError(409, f"gold question {request.gold_index} is not due", state=state(store, name))
    question = store.gold.question(annotator_key(name), request.gold_index)
    store.record_gold(
        name,
        GoldAnswer(
            question.index,
            question.position,
            question.point_index,
            LABEL_CODES[request.label],
            question.truth,
            question.training,
            kept_ms(request.response_ms),
        ),
    )
    return state(store, name)


def review_object(store: AnnotationStore, annotator: str, position: int) -> dict[str, Any]:
    """The object at ``position`` with the annotator's answers on it (``points``)."""
    answers = store.own_answers(annotator, position)
    if not answers:
        raise ApiError(404, f"{annotator!r} has no answers on object {position}")
    first = store.point_task(position, 0)
    obj = task_json(store, first)
    del obj["x"], obj["y"], obj["point_index"]
    obj["key"] = f"review:{position}"
    obj["points"] = [
        {"index": index, "x": task.x, "y": task.y, "label": label}
        for index, label in sorted(answers.items())
        for task in [store.point_task(position, index)]
    ]
    return obj


def review(store: AnnotationStore, annotator: str, position: int | None) -> dict[str, Any]:
    """The objects the annotator answered (the latest first) and one of them."""
    objects = store.reviewable_objects(annotator)
    if position is None:
        position = objects[0] if objects else None
    elif position not in objects:
        raise ApiError(404, f"{annotator!r} has no answers on object {position}")
    return {"objects": objects, "object": None if position is None else review_object(store, annotator, position)}


def relabel(store: AnnotationStore, request: RelabelRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    if store.relabel(name, request.position, request.point_index, LABEL_CODES[request.label]) is None:
        raise ApiError(404, f"{name!r} has no answer on point {request.point_index} of object {request.position}")
    return {"object": review_object(store, name, request.position)}


def claim_state(store: AnnotationStore, request: StateRequest) -> dict[str, Any]:
    return state(store, annotator_name(request.annotator))


def undo(store: AnnotationStore, request: UndoRequest) -> dict[str, Any]:
    name = annotator_name(request.annotator)
    undone = store.undo_last(name)
    reply = state(store, name)
    reply["undone"] = None if undone is None else {"position": undone[0], "point_index": undone[1]}
    return reply
