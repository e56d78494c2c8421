"""Fixtures of the format tests: the ground truth written to disk with its images."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.formats.helpers import ground_truth, write_images


@dataclass(frozen=True)
class Truth:
    """The ground truth as a dict and on disk, with its image folder."""

    coco: dict[str, Any]
    path: Path
    images: Path


@pytest.fixture
def truth(tmp_path: Path) -> Truth:
    coco = ground_truth()
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(coco))
    return Truth(coco, path, write_images(tmp_path / "images", coco))


@pytest.fixture
def points_file(tmp_path: Path, truth: Truth) -> Path:
    """A P10 file simulated from the ground truth (masks kept), one object marked crowd."""
    from pointsup.points.simulate import SimulationConfig, simulate
    from pointsup.utils.atomic import write_json_atomic

    coco = ground_truth()
    coco["annotations"][1]["iscrowd"] = 1
    result = simulate(coco, SimulationConfig(num_points=10, keep_masks=True), source="truth")
    path = tmp_path / "p10.json"
    write_json_atomic(path, result.coco)
    return path
