"""The point annotation form: format, simulation from masks, noise models, statistics."""

from pointsup.points.format import (
    Category,
    ImageRecord,
    PointDataset,
    PointFormatError,
    PointInstance,
    load_point_dataset,
    save_point_dataset,
    validate_coco,
)
from pointsup.points.sampling import BOUNDARY_BIAS_PRESETS, BoundaryBias
from pointsup.points.simulate import SimulationConfig, SimulationResult, simulate, simulate_versions
from pointsup.points.stats import PointStatistics

__all__ = [
    "BOUNDARY_BIAS_PRESETS",
    "BoundaryBias",
    "Category",
    "ImageRecord",
    "PointDataset",
    "PointFormatError",
    "PointInstance",
    "PointStatistics",
    "SimulationConfig",
    "SimulationResult",
    "load_point_dataset",
    "save_point_dataset",
    "simulate",
    "simulate_versions",
    "validate_coco",
]
