"""Plain containers passed between the data pipeline, the models and evaluation."""

from pointsup.structures.instances import Detections, InstanceTargets, Sample

__all__ = ["Detections", "InstanceTargets", "Sample"]
