"""What there is to label: the objects of a COCO file and the points to show on each.

Points come from :func:`pointsup.points.simulate.sample_uniform_pixels`, so the tool shows
exactly the positions ``pointsup simulate`` would label with the same ``--num-points`` and
``--seed`` (version 1, crowd regions excluded). Objects are presented image by image (the
images in file order, the objects of an image in file order), so consecutive objects mostly
share an image and the browser fetches each image once.

With ``use_points`` the tool shows the file's own ``point_coords`` instead, in their order
(every non-crowd object must carry the same number of them); their ``point_labels`` are not
shown and not kept: the answers replace them.

When an annotation has a mask, the mask values at its points are kept: they are what the
progress page compares the answers with (agreement with masks, as the paper measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from pointsup.errors import PointsupError
from pointsup.points.format import PointDataset, validate_coco
from pointsup.points.mask_lookup import mask_values_at_pixels
from pointsup.points.simulate import sample_uniform_pixels


@dataclass(frozen=True)
class LabellingObject:
    """One object to label.

    Attributes:
        position: its place in the presentation order (0-based).
        annotation_id, image_id, category_id: from the COCO annotation.
        bbox_xywh: ``[x, y, w, h]`` in continuous image coordinates.
        points: ``(N, 2)`` int64 ``[x, y]`` pixel indices, in the order they are shown.
        mask_values: ``(N,)`` uint8 mask values at the points, or None without a usable mask.
    """

    position: int
    annotation_id: int
    image_id: int
    category_id: int
    bbox_xywh: tuple[float, float, float, float]
    points: np.ndarray
    mask_values: np.ndarray | None


def labelling_objects(
    coco: dict[str, Any], num_points: int, seed: int, source: str = "<memory>", *, use_points: bool = False
) -> list[LabellingObject]:
    """Validate ``coco`` and list its non-crowd objects with their points, in presentation order.

    Args:
        coco: a COCO instances dict with boxes and categories (masks optional).
        num_points: points per object (``N``); with ``use_points``, the number each object carries.
        seed: the sampling seed (as ``pointsup simulate --seed``).
        source: file name for error messages.
        use_points: label the annotations' own ``point_coords`` instead of sampling.

    Raises:
        PointFormatError: when ``coco`` is not a valid COCO file.
        GivenPointsError: ``use_points`` and an object lacks points or carries another number.
        ValueError: when ``num_points < 1`` or ``seed < 0``.
    """
    if num_points < 1:
        raise ValueError(f"the number of points must be >= 1, got {num_points}")
    if seed < 0:
        raise ValueError(f"the seed must be >= 0, got {seed}")
    checked = validate_coco(coco, source, require_points=False)
    if use_points:
        pixels_by_id = given_pixels(coco, checked, num_points, source)
    else:
        pixels_by_id = sample_uniform_pixels(coco, num_points, seed=seed)
    image_rank = {image["id"]: k for k, image in enumerate(coco["images"])}
    sizes_hw = {image["id"]: (image["height"], image["width"]) for image in coco["images"]}
    chosen = [ann for ann in coco["annotations"] if ann["id"] in pixels_by_id]
    order = sorted(range(len(chosen)), key=lambda k: (image_rank[chosen[k]["image_id"]], k))
    chosen = [chosen[k] for k in order]
    if not chosen:
        return []

    pixels = np.stack([pixels_by_id[ann["id"]] for ann in chosen])
    mask_values, problems = mask_values_at_pixels(
        [ann.get("segmentation") for ann in chosen],
        np.array([sizes_hw[ann["image_id"]] for ann in chosen], dtype=np.int64),
        pixels,
    )
    return [
        LabellingObject(
            position=k,
            annotation_id=ann["id"],
            image_id=ann["image_id"],
            category_id=ann["category_id"],
            bbox_xywh=cast("tuple[float, float, float, float]", tuple(float(v) for v in ann["bbox"])),
            points=pixels[k],
            mask_values=None if k in problems else mask_values[k],
        )
        for k, ann in enumerate(chosen)
    ]


def same_category_overlaps(objects: list[LabellingObject]) -> dict[int, int]:
    """For each object's position, how many other objects of its image and category have a box
    that overlaps its box (a shared area above zero): where "the balloon" alone is ambiguous."""
    groups: dict[tuple[int, int], list[LabellingObject]] = {}
    for obj in objects:
        groups.setdefault((obj.image_id, obj.category_id), []).append(obj)
    counts = {obj.position: 0 for obj in objects}
    for group in groups.values():
        for k, a in enumerate(group):
            for b in group[k + 1 :]:
                if _boxes_overlap(a.bbox_xywh, b.bbox_xywh):
                    counts[a.position] += 1
                    counts[b.position] += 1
    return counts


def _boxes_overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])


class GivenPointsError(PointsupError, ValueError):
    """``--use-points`` on a file whose objects do not all carry the same number of points."""


def count_given_points(coco: dict[str, Any]) -> dict[int, int]:
    """How many annotations (non-crowd) carry ``point_coords``, by their number of points."""
    counts: dict[int, int] = {}
    for ann in coco.get("annotations", []):
        coords = ann.get("point_coords") if isinstance(ann, dict) and not ann.get("iscrowd", 0) else None
        if isinstance(coords, list):
            counts[len(coords)] = counts.get(len(coords), 0) + 1
    return counts


def given_pixels(coco: dict[str, Any], checked: PointDataset, num_points: int, source: str) -> dict[int, np.ndarray]:
    """The (validated) ``point_coords`` of every non-crowd annotation, by annotation id.

    Raises:
        GivenPointsError: an annotation has no points, or not ``num_points`` of them.
    """
    pixels: dict[int, np.ndarray] = {}
    for instance in checked.instances:
        if instance.is_crowd:
            continue
        if instance.num_points != num_points:
            raise GivenPointsError(
                f"{source}: --use-points needs the same number of point_coords on every object, but annotation id "
                f"{instance.annotation_id} has {instance.num_points} and the session labels {num_points}"
            )
        pixels[instance.annotation_id] = instance.point_coords.astype(np.int64)
    return pixels


#: annotation fields the export replaces (the point file stands in for the masks)
_REPLACED_FIELDS = frozenset({"segmentation", "point_coords", "point_labels"})


def export_template(coco: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``coco`` whose annotations lack masks and points: what the export
    fills in with the answers."""
    annotations = [{k: v for k, v in ann.items() if k not in _REPLACED_FIELDS} for ann in coco["annotations"]]
    return {**coco, "annotations": annotations}
