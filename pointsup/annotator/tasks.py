"""What there is to label: the objects of a COCO file and the points to show on each.

Points come from :func:`pointsup.points.simulate.sample_uniform_pixels`, so the tool shows
exactly the positions ``pointsup simulate`` would label with the same ``--num-points`` and
``--seed`` (version 1, crowd regions excluded). Objects are presented image by image (the
images in file order, the objects of an image in file order), so consecutive objects mostly
share an image and the browser fetches each image once.

When an annotation has a mask, the mask values at its points are kept: they are what the
progress page compares the answers with (agreement with masks, as the paper measured).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from pointsup.points.format import validate_coco
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


def labelling_objects(coco: dict[str, Any], num_points: int, seed: int, source: str = "<memory>") -> list[LabellingObject]:
    """Validate ``coco`` and list its non-crowd objects with their points, in presentation order.

    Args:
        coco: a COCO instances dict with boxes and categories (masks optional).
        num_points: points per object (``N``).
        seed: the sampling seed (as ``pointsup simulate --seed``).
        source: file name for error messages.

    Raises:
        PointFormatError: when ``coco`` is not a valid COCO file.
        ValueError: when ``num_points < 1`` or ``seed < 0``.
    """
    if num_points < 1:
        raise ValueError(f"the number of points must be >= 1, got {num_points}")
    if seed < 0:
        raise ValueError(f"the seed must be >= 0, got {seed}")
    validate_coco(coco, source, require_points=False)
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


#: annotation fields the export replaces (the point file stands in for the masks)
_REPLACED_FIELDS = frozenset({"segmentation", "point_coords", "point_labels"})


def export_template(coco: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of ``coco`` whose annotations lack masks and points: what the export
    fills in with the answers."""
    annotations = [{k: v for k, v in ann.items() if k not in _REPLACED_FIELDS} for ann in coco["annotations"]]
    return {**coco, "annotations": annotations}
