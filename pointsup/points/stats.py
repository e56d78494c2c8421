"""Statistics of a point annotation set: how many points, how many positive, how right."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PointStatistics:
    """Summary of the points of a dataset (crowd regions excluded).

    ``agreement_with_masks`` is the share of points whose label equals the mask value at the
    point (None when no masks are known): 100 % for simulated points without noise.
    """

    images: int
    instances: int
    crowd_instances: int
    points: int
    min_points_per_instance: int
    mean_points_per_instance: float
    max_points_per_instance: int
    positive_fraction: float
    instances_without_positive: int
    instances_without_negative: int
    agreement_with_masks: float | None = None
    flipped_by_boundary_noise: int = 0
    flipped_by_label_noise: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        """A two-column, human-readable table."""

        def pct(numerator: float, denominator: float) -> str:
            return f"{100.0 * numerator / denominator:.1f} %" if denominator else "n/a"

        rows = [
            ("images", f"{self.images}"),
            ("instances (non-crowd)", f"{self.instances}"),
            ("crowd regions (no points)", f"{self.crowd_instances}"),
            ("points", f"{self.points}"),
            (
                "points per instance",
                f"min {self.min_points_per_instance} / mean {self.mean_points_per_instance:.2f} / max {self.max_points_per_instance}",
            ),
            ("positive (object) points", f"{100.0 * self.positive_fraction:.1f} %"),
            (
                "instances without a positive point",
                f"{self.instances_without_positive} ({pct(self.instances_without_positive, self.instances)})",
            ),
            (
                "instances without a negative point",
                f"{self.instances_without_negative} ({pct(self.instances_without_negative, self.instances)})",
            ),
            (
                "agreement with masks",
                "n/a (no masks)" if self.agreement_with_masks is None else f"{100.0 * self.agreement_with_masks:.2f} %",
            ),
        ]
        if self.flipped_by_boundary_noise or self.flipped_by_label_noise:
            rows.append(("flipped: boundary noise", f"{self.flipped_by_boundary_noise}"))
            rows.append(("flipped: random noise", f"{self.flipped_by_label_noise}"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def compute_statistics(
    num_images: int,
    labels: np.ndarray,
    points_per_instance: np.ndarray,
    num_crowd: int,
    true_labels: np.ndarray | None = None,
    flipped_by_boundary_noise: int = 0,
    flipped_by_label_noise: int = 0,
) -> PointStatistics:
    """Statistics from the labels of all non-crowd instances, concatenated.

    Args:
        num_images: images in the dataset.
        labels: ``(P,)`` 0/1 labels of all points, instance after instance.
        points_per_instance: ``(I,)`` how many of ``labels`` belong to each instance.
        num_crowd: crowd annotations in the dataset.
        true_labels: ``(P,)`` the mask values at the same points, when known.
        flipped_by_boundary_noise, flipped_by_label_noise: counts reported by simulation.
    """
    counts = np.asarray(points_per_instance, dtype=np.int64)
    flat = np.asarray(labels, dtype=np.int64).ravel()
    if counts.sum() != len(flat):
        raise ValueError(f"points_per_instance adds up to {counts.sum()} but there are {len(flat)} labels")
    owner = np.repeat(np.arange(len(counts)), counts)
    positives = np.bincount(owner, weights=flat, minlength=len(counts)).astype(np.int64)
    agreement = None
    if true_labels is not None:
        truth = np.asarray(true_labels).ravel()
        agreement = float(np.mean(truth == flat)) if len(flat) else 1.0
    return PointStatistics(
        images=num_images,
        instances=len(counts),
        crowd_instances=num_crowd,
        points=int(counts.sum()),
        min_points_per_instance=int(counts.min()) if len(counts) else 0,
        mean_points_per_instance=float(counts.mean()) if len(counts) else 0.0,
        max_points_per_instance=int(counts.max()) if len(counts) else 0,
        positive_fraction=float(flat.mean()) if len(flat) else 0.0,
        instances_without_positive=int(np.sum(positives == 0)),
        instances_without_negative=int(np.sum(positives == counts)),
        agreement_with_masks=agreement,
        flipped_by_boundary_noise=flipped_by_boundary_noise,
        flipped_by_label_noise=flipped_by_label_noise,
    )
