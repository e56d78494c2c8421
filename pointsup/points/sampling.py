"""Where annotation points go: uniform in the box, or biased toward the mask boundary.

A point is drawn uniformly in the *continuous* box ``[x, x + w) x [y, y + h)`` and floored
to the integer pixel it falls in (``d = floor(c)``); its label is the mask value at that pixel.
This is the rule of the paper and of the authors' simulation script.

Boundary-biased sampling (the paper's ablation; its exact procedure is not published, so this
is our precise definition, in the manner of PointRend's importance sampling): draw
``oversample * N`` uniform candidates, keep the ``int(importance * N)`` candidates closest to
the mask boundary, and fill the remaining points with fresh uniform draws; the kept points are
then put in random order.

* ``mild``  = ``BoundaryBias(oversample=3, importance=0.75)`` (PointRend's own training values);
* ``heavy`` = ``BoundaryBias(oversample=10, importance=1.0)``.

The *distance to the boundary* of a point at pixel ``p`` is the Euclidean distance from ``p``'s
centre to the centre of the nearest pixel carrying the other mask value (so 1 for a pixel that
touches the boundary), searched within the box enlarged by one pixel and clipped to the image;
it is infinite when the window holds no such pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pointsup.points.rle import RunLengthMasks


@dataclass(frozen=True)
class BoundaryBias:
    """Boundary-biased sampling: ``oversample`` candidates per point, ``importance`` of the
    points taken from the candidates nearest the mask boundary."""

    oversample: int
    importance: float

    def __post_init__(self) -> None:
        if self.oversample < 1:
            raise ValueError(f"oversample must be >= 1, got {self.oversample}")
        if not 0.0 <= self.importance <= 1.0:
            raise ValueError(f"importance must be in [0, 1], got {self.importance}")


BOUNDARY_BIAS_PRESETS: dict[str, BoundaryBias | None] = {
    "none": None,
    "mild": BoundaryBias(oversample=3, importance=0.75),
    "heavy": BoundaryBias(oversample=10, importance=1.0),
}


def clip_boxes_to_images(boxes_xywh: np.ndarray, image_sizes_hw: np.ndarray) -> np.ndarray:
    """Intersect ``[x, y, w, h]`` boxes with their images.

    Args:
        boxes_xywh: ``(A, 4)`` float64.
        image_sizes_hw: ``(A, 2)`` int, ``[height, width]`` of each box's image.

    Returns:
        ``(A, 4)`` float64 ``[x0, y0, x1, y1]`` within ``[0, W] x [0, H]``.
    """
    x0 = np.clip(boxes_xywh[:, 0], 0, image_sizes_hw[:, 1])
    y0 = np.clip(boxes_xywh[:, 1], 0, image_sizes_hw[:, 0])
    x1 = np.clip(boxes_xywh[:, 0] + boxes_xywh[:, 2], 0, image_sizes_hw[:, 1])
    y1 = np.clip(boxes_xywh[:, 1] + boxes_xywh[:, 3], 0, image_sizes_hw[:, 0])
    return np.stack([x0, y0, x1, y1], axis=1)


def pixels_from_unit_draws(unit: np.ndarray, boxes_xyxy: np.ndarray, image_sizes_hw: np.ndarray) -> np.ndarray:
    """Map uniform draws in ``[0, 1)^2`` to integer pixels inside clipped boxes.

    Args:
        unit: ``(A, N, 2)`` float64 draws, ``[..., 0]`` for x and ``[..., 1]`` for y.
        boxes_xyxy: ``(A, 4)`` boxes already clipped to the image.
        image_sizes_hw: ``(A, 2)`` ``[height, width]``.

    Returns:
        ``(A, N, 2)`` int64 ``[x, y]`` pixel indices, ``floor(x0 + u * (x1 - x0))``, kept
        inside the image when float rounding lands exactly on the far border.
    """
    origin = boxes_xyxy[:, None, :2]
    extent = boxes_xyxy[:, None, 2:] - origin
    pixels = np.floor(origin + unit * extent).astype(np.int64)
    upper = image_sizes_hw[:, None, ::-1] - 1
    return np.clip(pixels, 0, upper)


def distances_to_boundary(masks: RunLengthMasks, mask_index: int, box_xyxy: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the boundary of one mask (definition in the module docstring).

    Args:
        masks: the batch holding the mask.
        mask_index: which mask of the batch.
        box_xyxy: ``(4,)`` the object's box.
        pixels: ``(P, 2)`` int ``[x, y]`` pixel indices inside the box.

    Returns:
        ``(P,)`` float64 distances (``inf`` where no pixel of the other value is near).
    """
    height, width = int(masks.heights[mask_index]), int(masks.widths[mask_index])
    wx0 = max(int(np.floor(box_xyxy[0])) - 1, 0)
    wy0 = max(int(np.floor(box_xyxy[1])) - 1, 0)
    wx1 = min(int(np.ceil(box_xyxy[2])) + 1, width)
    wy1 = min(int(np.ceil(box_xyxy[3])) + 1, height)
    wx0, wy0 = min(wx0, int(pixels[:, 0].min())), min(wy0, int(pixels[:, 1].min()))
    wx1, wy1 = max(wx1, int(pixels[:, 0].max()) + 1), max(wy1, int(pixels[:, 1].max()) + 1)
    from scipy.ndimage import distance_transform_edt  # imported here: slow to import, rarely needed

    window = masks.crop(mask_index, wx0, wy0, wx1, wy1)
    local_x, local_y = pixels[:, 0] - wx0, pixels[:, 1] - wy0
    values = window[local_y, local_x]
    result = np.full(len(pixels), np.inf)
    for value in (0, 1):
        here = values == value
        if not here.any() or not (window != value).any():
            continue
        # distance_transform_edt measures from non-zero cells to the nearest zero cell.
        distance = distance_transform_edt(window == value)
        result[here] = distance[local_y[here], local_x[here]]
    return result


def boundary_biased_pixels(
    candidates: np.ndarray,
    fresh: np.ndarray,
    candidate_distances: np.ndarray,
    bias: BoundaryBias,
    order: np.ndarray,
) -> np.ndarray:
    """Select one instance's points for boundary-biased sampling.

    Args:
        candidates: ``(bias.oversample * N, 2)`` uniform candidate pixels.
        fresh: ``(N - int(bias.importance * N), 2)`` further uniform pixels.
        candidate_distances: ``(bias.oversample * N,)`` their distances to the boundary.
        bias: the sampling setting.
        order: ``(N,)`` a permutation putting the chosen points in random order.

    Returns:
        ``(N, 2)`` int64 pixels.
    """
    num_points = len(order)
    num_near = int(bias.importance * num_points)
    nearest = np.argsort(candidate_distances, kind="stable")[:num_near]
    chosen = np.concatenate([candidates[nearest], fresh], axis=0)
    return chosen[order]
