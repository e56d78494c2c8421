"""Label noise models of the paper's ablations.

Both flip an exact fraction of all points of a dataset (rounded to the nearest whole point):

* :func:`flip_random_labels`: points chosen uniformly at random.
* :func:`flip_labels_near_boundary`: the points closest to the mask boundary (distance as
  defined in :mod:`pointsup.points.sampling`); ties are broken at random.

A point is flipped at most once: when both are applied, the random flips are drawn from the
points the boundary flips left alone.
"""

from __future__ import annotations

import numpy as np


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a noise fraction must lie in [0, 1], got {fraction}")


def flip_labels_near_boundary(labels: np.ndarray, distances: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which points to flip: the ``round(fraction * P)`` nearest the boundary.

    Args:
        labels: ``(P,)`` labels (only their count matters).
        distances: ``(P,)`` distance of each point to its mask's boundary.
        fraction: share of all points to flip.
        rng: breaks ties between equal distances.

    Returns:
        ``(P,)`` bool, True for the points to flip.
    """
    _check_fraction(fraction)
    count = int(round(fraction * len(labels)))
    shuffle = rng.permutation(len(labels))
    ranked = shuffle[np.argsort(distances[shuffle], kind="stable")]
    flip = np.zeros(len(labels), dtype=bool)
    flip[ranked[:count]] = True
    return flip


def flip_random_labels(
    labels: np.ndarray, fraction: float, rng: np.random.Generator, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Which points to flip: ``round(fraction * P)`` chosen uniformly at random.

    Args:
        labels: ``(P,)`` labels (only their count matters).
        fraction: share of all points to flip.
        rng: the random stream.
        exclude: ``(P,)`` bool, points that may not be chosen (already flipped).

    Returns:
        ``(P,)`` bool, True for the points to flip.
    """
    _check_fraction(fraction)
    count = int(round(fraction * len(labels)))
    allowed = np.flatnonzero(~exclude) if exclude is not None else np.arange(len(labels))
    if count > len(allowed):
        raise ValueError(f"cannot flip {count} of {len(labels)} points: only {len(allowed)} remain unflipped")
    flip = np.zeros(len(labels), dtype=bool)
    flip[rng.choice(allowed, size=count, replace=False)] = True
    return flip
