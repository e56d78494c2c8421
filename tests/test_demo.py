"""The demo runs end to end on a few images and leaves every promised file."""

from __future__ import annotations

import json

from PIL import Image

from pointsup.demo import run_demo
from pointsup.points.format import load_point_dataset


def test_demo_writes_points_statistics_and_a_picture(tmp_path):
    picture = run_demo(tmp_path, num_images=6, seed=1)
    with Image.open(picture) as image:
        assert image.width > 500 and image.height > 300
    statistics = json.loads((tmp_path / "statistics.json").read_text())
    assert statistics["p10"]["agreement_with_masks"] == 1.0
    assert 0.94 <= statistics["p10_boundary_noise"]["agreement_with_masks"] <= 0.96
    points = load_point_dataset(tmp_path / "instances_train_p10.json")
    assert points.instances and all(inst.num_points == 10 for inst in points.instances)
