"""Write the answers of a labelling session as a P_N point file (the project's COCO format).

The output is the input COCO file (``info``, ``licenses``, images, categories, every
annotation field but the mask) with ``point_coords``/``point_labels`` on each non-crowd
annotation, validated with :func:`pointsup.points.format.validate_coco` and written
atomically, so ``load_point_dataset`` and training read it as they read simulated points.

Which points go in:

* a point's label is the majority of the object/background answers in force for it (one
  answer without overlap); *unsure* answers are left out, and so are ties between annotators;
  the point order is the order of sampling, with the left-out points removed, so an object
  may carry fewer than ``N`` points;
* by default only *finished* images are written: images whose every non-crowd object was
  answered to the last point by at least one annotator. An image with an unlabelled object
  would teach a detector that the object is background. ``partial=True`` writes the points
  answered so far, but only of objects with at least one labelled point (object or
  background), and the images holding such an object (with their crowd regions); when most
  objects have none, :meth:`ExportSummary.describe` warns;
* ``annotator=NAME`` uses that annotator's answers alone (names are case-insensitive). An
  object they finished after someone else started it keeps only their points.
* objects that an inactive annotator left unfinished go back to the pool and are continued by
  others, so a forgotten browser tab does not keep an image out of the default export.
* labels the model made instead of asking (``serve --weights --skip-confident``) count as the
  answers of the annotator whose chain they are in; when the session has any, every exported
  object lists the indices (into its ``point_coords``) of its points labelled by the model alone
  in :data:`MODEL_LABELLED_FIELD` (an empty list when none).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pointsup.annotator.assist import model_made_answers
from pointsup.annotator.store import AnnotationStore, LiveAnswer, annotator_key
from pointsup.points.format import save_point_dataset, validate_coco


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_points` wrote (``*_left_out``: what it did not)."""

    path: Path
    images: int
    objects: int
    points: int
    unsure_left_out: int
    ties_left_out: int
    unfinished_images_left_out: int
    #: a partial export: objects without a labelled point (left out) and all objects
    unlabelled_objects_left_out: int = 0
    objects_total: int = 0

    @property
    def mostly_unlabelled(self) -> bool:
        """Whether most objects were left out for want of a labelled point (partial export)."""
        return 2 * self.unlabelled_objects_left_out > self.objects_total

    def describe(self) -> str:
        text = (
            f"wrote {self.path}: {self.images} images, {self.objects} objects, {self.points} labelled points "
            f"({self.unsure_left_out} unsure and {self.ties_left_out} tied points left out)"
        )
        if self.unfinished_images_left_out:
            text += f"; {self.unfinished_images_left_out} unfinished images left out (--partial keeps their answered objects)"
        if self.unlabelled_objects_left_out:
            text += f"; {self.unlabelled_objects_left_out} objects without a labelled point left out"
        if self.mostly_unlabelled:
            text += (
                f"\nwarning: {self.unlabelled_objects_left_out} of {self.objects_total} objects have no labelled point yet; "
                "a detector trained on this file never sees them"
            )
        return text


#: :func:`vote_labels` results that leave a point out
UNSURE, TIED = -1, -2
#: the annotation field listing the points (indices into ``point_coords``) whose label the model made
MODEL_LABELLED_FIELD = "model_labelled_points"


def model_labelled(answers: list[LiveAnswer], made: set[tuple[str, int, int]]) -> set[tuple[int, int]]:
    """The points ``(position, point_index)`` whose object/background answers in force are all
    labels the model made (``serve --skip-confident``): an annotator's answer makes a point theirs."""
    by_model: set[tuple[int, int]] = set()
    by_annotators: set[tuple[int, int]] = set()
    for a in answers:
        if a.label in (0, 1):
            (by_model if (a.annotator, a.position, a.point_index) in made else by_annotators).add((a.position, a.point_index))
    return by_model - by_annotators


def vote_labels(answers: list[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
    """Combine answers ``(position, point_index, label)`` into one label per answered point:
    1 or 0 by majority, :data:`UNSURE` when every answer is unsure, :data:`TIED` on a tie."""
    votes: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for position, point_index, label in answers:
        counts = votes[(position, point_index)]
        if label in (0, 1):
            counts[label] += 1
    return {
        key: 1 if ones > zeros else 0 if zeros > ones else UNSURE if ones == 0 else TIED for key, (zeros, ones) in votes.items()
    }


def export_points(
    store: AnnotationStore, output: str | os.PathLike[str], *, partial: bool = False, annotator: str | None = None
) -> ExportSummary:
    """Write the session's answers as a point annotation file (rules in the module docstring),
    atomically.

    Raises:
        ValueError: ``annotator`` gave no answer in this session.
    """
    document, summary = build_export(store, partial=partial, annotator=annotator)
    save_point_dataset(validate_coco(document, str(output)), output)
    return replace(summary, path=Path(output))


def build_export(
    store: AnnotationStore, *, partial: bool = False, annotator: str | None = None
) -> tuple[dict[str, Any], ExportSummary]:
    """The point file as a COCO dict and its summary (whose ``path`` is empty), without writing
    anything (the progress page offers it as a download).

    Raises:
        ValueError: ``annotator`` gave no answer in this session.
    """
    key = None if annotator is None else annotator_key(annotator)
    answers = [a for a in store.live_answers() if key is None or a.annotator == key]
    if annotator is not None and not answers:
        raise ValueError(f"annotator {annotator!r} has no answers in {store.path}")
    labels = vote_labels([(a.position, a.point_index, a.label) for a in answers])
    by_model = model_labelled(answers, model_made_answers(store))
    n = store.settings.num_points
    finished = {position for name, position, answered in store.assignments() if answered == n and (key is None or name == key)}
    objects = {o.annotation_id: o for o in store.objects()}
    labelled = {(position, index) for (position, index), label in labels.items() if label in (0, 1)}
    with_points = {position for position, _ in labelled}

    coco = store.export_template()
    if partial:  # images holding an object with a labelled point
        answered_images = {o.image_id for o in objects.values() if o.position in with_points}
        kept_images = [image for image in coco["images"] if image["id"] in answered_images]
    else:  # images without an unfinished object
        unfinished = {o.image_id for o in objects.values() if o.position not in finished}
        kept_images = [image for image in coco["images"] if image["id"] not in unfinished]
    kept_ids = {image["id"] for image in kept_images}
    annotations: list[dict[str, Any]] = []
    unsure = ties = points = 0
    for ann in coco["annotations"]:
        if ann["image_id"] not in kept_ids:
            continue
        obj = objects.get(ann["id"]) if not ann.get("iscrowd", 0) else None
        if obj is not None:
            if partial and obj.position not in with_points:
                continue
            coords: list[list[int]] = []
            point_labels: list[int] = []
            from_model: list[int] = []
            for index, (x, y) in enumerate(obj.points.tolist()):
                label = labels.get((obj.position, index))
                unsure += label == UNSURE
                ties += label == TIED
                if label in (0, 1):
                    if (obj.position, index) in by_model:
                        from_model.append(len(coords))
                    coords.append([x, y])
                    point_labels.append(label)
            ann = {**ann, "point_coords": coords, "point_labels": point_labels}
            if by_model:  # the session has labels the model made: each object lists its own
                ann[MODEL_LABELLED_FIELD] = from_model
            points += len(coords)
        annotations.append(ann)
    document = {**coco, "images": kept_images, "annotations": annotations}
    summary = ExportSummary(
        path=Path(),
        images=len(kept_images),
        objects=sum(1 for a in annotations if "point_coords" in a),
        points=points,
        unsure_left_out=unsure,
        ties_left_out=ties,
        unfinished_images_left_out=0 if partial else len(coco["images"]) - len(kept_images),
        unlabelled_objects_left_out=len(objects) - len(with_points) if partial else 0,
        objects_total=len(objects),
    )
    return document, summary
