"""Pixel values of COCO polygon masks, read at chosen pixels without rasterising the masks.

pycocotools turns a polygon into a mask (``rleFrPoly``) by scan conversion: the vertices are
scaled by 5 and rounded (``(int)(5 * v + 0.5)``), every edge is walked point by point on that
fine lattice (a DDA along its longer axis), and wherever the walk steps between fine columns
``5x + 2`` and ``5x + 3`` (the centre line of image column ``x``) it records a crossing at row
``ceil(clamp((min(v, v') + 0.5) / 5 - 0.5, 0, H))``. Each crossing toggles the mask from that
row down. Because the walk is a closed path that moves at most one fine column per step, every
column is crossed an even number of times, so the value of pixel ``(x, y)`` is the parity of
the crossings in column ``x`` at rows ``<= y``; a multi-part polygon is the union of its parts.

:func:`polygon_values_at` evaluates exactly that rule, with the same floating-point
expressions, only for the edges and columns the query pixels need. It is tested against
pycocotools' decoded masks pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

SCALE = 5.0


@dataclass(frozen=True)
class PolygonBatch:
    """Polygons of many annotations, flattened.

    Attributes:
        vertex_x, vertex_y: ``(V,)`` int64 vertices on the fine lattice (``(int)(5 v + 0.5)``).
        part_starts: ``(Q + 1,)`` int64, part ``q`` owns vertices ``part_starts[q]:part_starts[q + 1]``.
        part_owner: ``(Q,)`` int64, the annotation (index in the batch) of each part.
        num_annotations: number of annotations ``A``.
    """

    vertex_x: np.ndarray
    vertex_y: np.ndarray
    part_starts: np.ndarray
    part_owner: np.ndarray
    num_annotations: int

    @classmethod
    def from_segmentations(cls, segmentations: Sequence[list[list[float]]]) -> PolygonBatch:
        """Build from COCO polygon segmentations (each a list of flat ``[x0, y0, x1, y1, ...]`` parts)."""
        parts = list(chain.from_iterable(segmentations))
        part_lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        coordinates = np.fromiter(chain.from_iterable(parts), dtype=np.float64, count=int(part_lengths.sum()))
        # The C code casts with (int), which truncates toward zero.
        fine = np.trunc(SCALE * coordinates + 0.5).astype(np.int64)
        parts_per_annotation = np.fromiter((len(s) for s in segmentations), dtype=np.int64, count=len(segmentations))
        return cls(
            vertex_x=fine[0::2],
            vertex_y=fine[1::2],
            part_starts=np.concatenate(([0], np.cumsum(part_lengths // 2))),
            part_owner=np.repeat(np.arange(len(segmentations)), parts_per_annotation),
            num_annotations=len(segmentations),
        )


def _edge_crossing_rows(
    xs: np.ndarray, ys: np.ndarray, xe: np.ndarray, ye: np.ndarray, column: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For edges (fine lattice, original direction) and an image column each, find whether the
    edge's walk crosses the column's centre line and the fine row ``min(v, v')`` there.

    All inputs are ``(E,)`` int64. Returns ``(crosses (E,) bool, fine_row (E,) int64)``.
    """
    dx, dy = np.abs(xe - xs), np.abs(ye - ys)
    x_major = dx >= dy
    flip = (x_major & (xs > xe)) | (~x_major & (ys > ye))
    x0, y0 = np.where(flip, xe, xs), np.where(flip, ye, ys)
    x1, y1 = np.where(flip, xs, xe), np.where(flip, ys, ye)
    u0 = 5 * column + 2  # the fine column left of the centre line; u0 + 1 is right of it
    crosses = np.zeros(len(xs), dtype=bool)
    row = np.zeros(len(xs), dtype=np.int64)

    # Walk along x: u = x0 + t for t = 0..dx, v(t) = (int)(y0 + s t + 0.5), s = (y1 - y0) / dx.
    xm = np.flatnonzero(x_major & (dx > 0))
    t = u0[xm] - x0[xm]
    hit = (t >= 0) & (t + 1 <= dx[xm])
    xm, t = xm[hit], t[hit]
    slope = (y1[xm] - y0[xm]) / dx[xm]
    v_a = np.trunc(y0[xm] + slope * t + 0.5)
    v_b = np.trunc(y0[xm] + slope * (t + 1) + 0.5)
    crosses[xm] = True
    row[xm] = np.minimum(v_a, v_b).astype(np.int64)

    # Walk along y: v = y0 + t for t = 0..dy, u(t) = (int)(x0 + s t + 0.5), s = (x1 - x0) / dy;
    # u is monotone with steps of at most one, so at most one t has {u(t), u(t + 1)} = {u0, u0 + 1}.
    ym = np.flatnonzero(~x_major & (x0 != x1))
    slope = (x1[ym] - x0[ym]) / dy[ym]
    estimate = np.floor((u0[ym] + 0.5 - x0[ym]) / slope).astype(np.int64)
    for offset in (-1, 0, 1):
        t = estimate + offset
        inside = (t >= 0) & (t + 1 <= dy[ym])
        u_a = np.trunc(x0[ym] + slope * t + 0.5)
        u_b = np.trunc(x0[ym] + slope * (t + 1) + 0.5)
        found = inside & (np.minimum(u_a, u_b) == u0[ym]) & (np.maximum(u_a, u_b) == u0[ym] + 1)
        crosses[ym[found]] = True
        row[ym[found]] = y0[ym[found]] + t[found]
    return crosses, row


def polygon_values_at(
    polygons: PolygonBatch, heights: np.ndarray, point_owner: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Mask values of polygon annotations at integer pixels, as pycocotools rasterises them.

    Args:
        polygons: the annotations' polygons (``A`` annotations).
        heights: ``(A,)`` image height of each annotation.
        point_owner: ``(P,)`` annotation index of each query pixel.
        x, y: ``(P,)`` pixel indices, ``0 <= x < W``, ``0 <= y < H``.

    Returns:
        ``(P,)`` uint8 in {0, 1}.
    """
    point_owner = np.asarray(point_owner, np.int64)
    num_parts = len(polygons.part_owner)
    part_sizes = np.diff(polygons.part_starts)
    # Edges: vertex i to vertex i + 1 of the same part, the last one closing the part.
    edge_part = np.repeat(np.arange(num_parts), part_sizes)
    edge_start = np.arange(len(polygons.vertex_x))
    edge_end = edge_start + 1
    last = polygons.part_starts[1:] - 1
    edge_end[last[part_sizes > 0]] = polygons.part_starts[:-1][part_sizes > 0]

    # Pair each edge only with the query pixels whose column centre line its fine x-range spans
    # (u0 = 5c + 2 >= min x and u0 + 1 <= max x), found by binary search over the pixels
    # sorted by (annotation, column).
    x = np.asarray(x, np.int64)
    stride = int(x.max()) + 2 if len(x) else 1
    pixel_key = point_owner * stride + x
    order = np.argsort(pixel_key, kind="stable")
    sorted_key = pixel_key[order]
    edge_owner = polygons.part_owner[edge_part]
    low_x = np.minimum(polygons.vertex_x[edge_start], polygons.vertex_x[edge_end])
    high_x = np.maximum(polygons.vertex_x[edge_start], polygons.vertex_x[edge_end])
    first_column = np.maximum(-((2 - low_x) // 5), 0)
    last_column = np.minimum((high_x - 3) // 5, stride - 1)
    lower = np.searchsorted(sorted_key, edge_owner * stride + first_column, side="left")
    upper = np.searchsorted(sorted_key, edge_owner * stride + last_column, side="right")
    repeats = np.where(last_column >= first_column, np.maximum(upper - lower, 0), 0)
    pair_edge = np.repeat(np.arange(len(edge_start)), repeats)
    pair_rank = np.arange(len(pair_edge)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    pair_point = order[lower[pair_edge] + pair_rank]

    crosses, fine_row = _edge_crossing_rows(
        polygons.vertex_x[edge_start[pair_edge]],
        polygons.vertex_y[edge_start[pair_edge]],
        polygons.vertex_x[edge_end[pair_edge]],
        polygons.vertex_y[edge_end[pair_edge]],
        x[pair_point],
    )
    height = heights[point_owner[pair_point]].astype(np.float64)
    row = np.ceil(np.clip((fine_row + 0.5) / SCALE - 0.5, 0.0, height))
    counted = crosses & (row <= np.asarray(y, np.int64)[pair_point])
    # Parity per (part, pixel), then the union over the parts of an annotation.
    key = edge_part[pair_edge[counted]] * len(point_owner) + pair_point[counted]
    unique_keys, counts = np.unique(key, return_counts=True)
    inside_part = unique_keys[(counts & 1) == 1] % len(point_owner)
    values = np.zeros(len(point_owner), dtype=np.uint8)
    values[inside_part] = 1
    return values
