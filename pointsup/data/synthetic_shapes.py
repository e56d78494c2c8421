"""Analytic rasterisation of the synthetic shapes, backgrounds and clutter.

Every shape is defined in normalised local coordinates ``(u, v)``: a pixel centre
``(x + 0.5, y + 0.5)`` is translated to the shape centre, rotated by the shape angle and
divided by the radius (``u``) and by radius times aspect (``v``), so that the unit shape
lies within ``u**2 + v**2 <= SHAPE_EXTENT**2``. All work is vectorised NumPy on the pixel
window around the shape (never the whole image), and every random draw comes from the
``np.random.Generator`` passed in, so rendering is deterministic.

All categories are non-convex, so their boxes are poor masks:

* ``ring``: an elliptical annulus with an enclosed hole;
* ``crescent``: a disc minus an offset disc;
* ``star``: a straight-edged star polygon with 5 to 7 spikes;
* ``arc``: a thin partial ring (100 to 270 degrees) with rounded ends;
* ``cross``: a plus sign with thin arms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

SHAPE_NAMES: tuple[str, ...] = ("ring", "crescent", "star", "arc", "cross")
"""Shape category names; the COCO category id of ``SHAPE_NAMES[i]`` is ``i + 1``."""

MIN_DIAMETER_PX = 16.0
"""Smallest shape diameter in pixels."""

MAX_DIAMETER_FRACTION = 0.45
"""Largest shape diameter as a fraction of the image size."""

SHAPE_EXTENT = 1.1
"""Every unit shape lies inside the disc of this radius in normalised coordinates."""

MIN_THICKNESS_PX = 2.5
"""Thin parts (ring band, arc band, cross arms) are at least about this many pixels thick."""


@dataclass(frozen=True)
class ShapeRaster:
    """A rasterised shape: a boolean mask crop placed at ``(top, left)`` in the image.

    Attributes:
        category_index: 0-based index into :data:`SHAPE_NAMES`.
        top: image row of ``mask[0, 0]``.
        left: image column of ``mask[0, 0]``.
        mask: ``(h, w)`` bool, the full (unoccluded) shape, cropped to its tight box.
    """

    category_index: int
    top: int
    left: int
    mask: np.ndarray

    @property
    def area(self) -> int:
        """Number of shape pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def window(self) -> tuple[slice, slice]:
        """``(rows, cols)`` slices of the crop in the image."""
        h, w = self.mask.shape
        return slice(self.top, self.top + h), slice(self.left, self.left + w)


def pixel_window(cx: float, cy: float, half: float, image_size: int) -> tuple[int, int, int, int]:
    """Integer window ``(top, left, bottom, right)`` (exclusive ends) covering the square of
    half-side ``half`` around ``(cx, cy)``, clipped to the image."""
    top = max(0, int(math.floor(cy - half)))
    left = max(0, int(math.floor(cx - half)))
    bottom = min(image_size, int(math.ceil(cy + half)) + 1)
    right = min(image_size, int(math.ceil(cx + half)) + 1)
    return top, left, bottom, right


def local_coords(
    cx: float, cy: float, radius: float, angle: float, aspect: float, window: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised rotated coordinates of the pixel centres in ``window``.

    Returns:
        ``(u, v)``, each ``(h, w)`` float32 with ``h = bottom - top``, ``w = right - left``.
    """
    top, left, bottom, right = window
    dy = (np.arange(top, bottom, dtype=np.float32) + np.float32(0.5 - cy))[:, None]
    dx = (np.arange(left, right, dtype=np.float32) + np.float32(0.5 - cx))[None, :]
    c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    u = (c * dx + s * dy) * np.float32(1.0 / radius)
    v = (c * dy - s * dx) * np.float32(1.0 / (radius * aspect))
    return u, v


# --- unit shapes: (rng, u, v, min_semi_axis_px) -> (h, w) bool -------------------------------


def _ring(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, semi_px: float) -> np.ndarray:
    inner = min(rng.uniform(0.45, 0.72), 1.0 - MIN_THICKNESS_PX / semi_px)
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= inner * inner)


def _crescent(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, semi_px: float) -> np.ndarray:
    offset = rng.uniform(0.3, 0.6)
    cut = rng.uniform(0.8, 1.0)
    cut = min(cut, offset + 1.0 - MIN_THICKNESS_PX / semi_px)  # keep the thickest part visible
    du = u - np.float32(offset)
    return (u * u + v * v <= 1.0) & (du * du + v * v > cut * cut)


def _star(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, semi_px: float) -> np.ndarray:
    spikes = int(rng.integers(5, 8))
    inner = rng.uniform(0.35, 0.55)
    sector = 2.0 * math.pi / spikes
    # Fold the angle into [0, pi/spikes]: tip at 0 (radius 1), valley at pi/spikes (radius inner).
    alpha = np.mod(np.arctan2(v, u), np.float32(sector))
    alpha = np.minimum(alpha, np.float32(sector) - alpha)
    # Edge line through P1 = (1, 0) and P2 = inner * (cos(pi/n), sin(pi/n)): n . x = c.
    p2x, p2y = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
    nx, ny = p2y, 1.0 - p2x
    c = nx  # n . P1
    # Inside iff r * (n . dir(alpha)) <= c.
    r = np.sqrt(u * u + v * v)
    return r * (np.float32(nx) * np.cos(alpha) + np.float32(ny) * np.sin(alpha)) <= np.float32(c)


def _arc(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, semi_px: float) -> np.ndarray:
    thickness = min(max(rng.uniform(0.12, 0.25), MIN_THICKNESS_PX / semi_px), 0.5)
    half_span = 0.5 * rng.uniform(100.0, 270.0) * math.pi / 180.0
    r2 = u * u + v * v
    band = (r2 <= 1.0) & (r2 >= (1.0 - thickness) ** 2)
    mask = band & (np.abs(np.arctan2(v, u)) <= np.float32(half_span))
    mid = 1.0 - thickness / 2
    cap2 = np.float32((thickness / 2) ** 2)
    for sign in (1.0, -1.0):  # rounded ends
        eu = np.float32(mid * math.cos(half_span))
        ev = np.float32(sign * mid * math.sin(half_span))
        mask |= (u - eu) ** 2 + (v - ev) ** 2 <= cap2
    return mask


def _cross(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, semi_px: float) -> np.ndarray:
    arm = min(max(rng.uniform(0.2, 0.42), 0.5 * MIN_THICKNESS_PX / semi_px), 0.45)
    au, av = np.abs(u), np.abs(v)
    return ((au <= 1.0) & (av <= arm)) | ((av <= 1.0) & (au <= arm))


_SHAPE_FUNCTIONS: tuple[Callable[[np.random.Generator, np.ndarray, np.ndarray, float], np.ndarray], ...] = (
    _ring,
    _crescent,
    _star,
    _arc,
    _cross,
)


def sample_shape(rng: np.random.Generator, image_size: int) -> ShapeRaster | None:
    """Draw a random shape (category, size, position, rotation, aspect) and rasterise it.

    The diameter is log-uniform between :data:`MIN_DIAMETER_PX` and
    ``MAX_DIAMETER_FRACTION * image_size``; the shape lies entirely inside the image.

    Returns:
        the raster cropped to its tight box, or None if it has no pixel.
    """
    category = int(rng.integers(len(SHAPE_NAMES)))
    max_diameter = max(MIN_DIAMETER_PX, MAX_DIAMETER_FRACTION * image_size)
    diameter = math.exp(rng.uniform(math.log(MIN_DIAMETER_PX), math.log(max_diameter)))
    radius = diameter / 2.0
    angle = rng.uniform(0.0, 2.0 * math.pi)
    aspect = rng.uniform(0.65, 1.0)
    half = radius * SHAPE_EXTENT
    cx = rng.uniform(half, image_size - half)
    cy = rng.uniform(half, image_size - half)
    window = pixel_window(cx, cy, half, image_size)
    u, v = local_coords(cx, cy, radius, angle, aspect, window)
    mask = _SHAPE_FUNCTIONS[category](rng, u, v, radius * aspect)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return ShapeRaster(category, window[0] + r0, window[1] + c0, np.ascontiguousarray(mask[r0:r1, c0:c1]))


# --- backgrounds and unannotated clutter -------------------------------------------------------


def render_background(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """Low-frequency colour noise plus stripes or a gradient.

    Returns:
        ``(S, S, 3)`` float32 canvas with values roughly in ``[0, 255]``.
    """
    grid = int(rng.integers(3, 8))
    base = rng.uniform(40.0, 215.0, size=3)
    spread = rng.uniform(40.0, 110.0)
    coarse = np.clip(base + rng.uniform(-spread, spread, size=(grid, grid, 3)), 0.0, 255.0).astype(np.uint8)
    canvas = np.asarray(Image.fromarray(coarse).resize((image_size, image_size), Image.Resampling.BICUBIC), dtype=np.float32)
    kind = int(rng.integers(3))  # 0: plain, 1: stripes, 2: gradient
    if kind == 0:
        return canvas
    angle = rng.uniform(0.0, math.pi)
    coords = np.arange(image_size, dtype=np.float32) + np.float32(0.5)
    proj = coords[None, :] * np.float32(math.cos(angle)) + coords[:, None] * np.float32(math.sin(angle))
    colour = rng.uniform(-1.0, 1.0, size=3).astype(np.float32)
    if kind == 1:
        period = rng.uniform(8.0, 48.0)
        amplitude = rng.uniform(10.0, 40.0)
        wave = np.sin(proj * np.float32(2.0 * math.pi / period)) * np.float32(amplitude)
    else:
        amplitude = rng.uniform(30.0, 80.0)
        wave = (proj * np.float32(1.0 / (image_size * 1.42)) - np.float32(0.5)) * np.float32(amplitude)
    canvas += wave[:, :, None] * colour[None, None, :]
    return canvas


def _blend(canvas: np.ndarray, window: tuple[int, int, int, int], mask: np.ndarray, colour: np.ndarray, alpha: float) -> None:
    """Alpha-blend ``colour`` (3,) into ``canvas`` (S, S, 3) where ``mask`` (h, w) is set."""
    top, left, bottom, right = window
    region = canvas[top:bottom, left:right]
    region[mask] = region[mask] * np.float32(1.0 - alpha) + colour * np.float32(alpha)


def draw_clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Draw 3 to 14 unannotated distractors (ellipses, thick lines, rectangles) in place.

    Args:
        canvas: ``(S, S, 3)`` float32 image, modified in place.
    """
    size = canvas.shape[0]
    for _ in range(int(rng.integers(3, 15))):
        kind = int(rng.integers(3))
        colour = rng.uniform(0.0, 255.0, size=3).astype(np.float32)
        alpha = rng.uniform(0.35, 1.0)
        cx, cy = rng.uniform(0.0, size, size=2)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        if kind == 0:  # ellipse blob
            radius = rng.uniform(3.0, 0.12 * size)
            aspect = rng.uniform(0.3, 1.0)
            window = pixel_window(cx, cy, radius, size)
            u, v = local_coords(cx, cy, radius, angle, aspect, window)
            mask = u * u + v * v <= 1.0
        elif kind == 1:  # thick straight line (a segment of half-length `length`)
            length = rng.uniform(10.0, 0.3 * size)
            width = rng.uniform(0.6, 2.5)
            window = pixel_window(cx, cy, length + width, size)
            u, v = local_coords(cx, cy, 1.0, angle, 1.0, window)
            mask = (np.abs(u) <= length) & (np.abs(v) <= width)
        else:  # rectangle
            half_w, half_h = rng.uniform(3.0, 0.08 * size, size=2)
            window = pixel_window(cx, cy, math.hypot(half_w, half_h), size)
            u, v = local_coords(cx, cy, 1.0, angle, 1.0, window)
            mask = (np.abs(u) <= half_w) & (np.abs(v) <= half_h)
        if mask.size:
            _blend(canvas, window, mask, colour, alpha)


def object_texture(rng: np.random.Generator, colour: np.ndarray, height: int, width: int) -> np.ndarray:
    """Shaded (linear gradient) and optionally striped fill for one object's crop.

    Args:
        colour: ``(3,)`` float32 base colour.

    Returns:
        ``(height, width, 3)`` float32 fill values.
    """
    gy = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    gx = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    direction = rng.uniform(0.0, 2.0 * math.pi)
    strength = rng.uniform(0.0, 0.35)
    shade = np.float32(1.0) + np.float32(strength) * (np.float32(math.cos(direction)) * gx + np.float32(math.sin(direction)) * gy)
    if rng.uniform() < 0.3:  # stripes
        period = rng.uniform(0.15, 0.6)
        phi = rng.uniform(0.0, math.pi)
        proj = np.float32(math.cos(phi)) * gx + np.float32(math.sin(phi)) * gy
        shade = shade + np.float32(rng.uniform(0.08, 0.2)) * np.sin(proj * np.float32(2.0 * math.pi / period))
    return shade[:, :, None] * colour[None, None, :]
