"""The demo runs end to end on a few images and leaves every promised file."""

from __future__ import annotations

import json

from PIL import Image

from pointsup.demo import run_demo
from pointsup.points.format import load_point_dataset


def test_demo_writes_points_statistics_training_and_pictures(tmp_path):
    predictions = run_demo(tmp_path, num_images=8, seed=1, iterations=2, image_size=128)
    with Image.open(tmp_path / "points.png") as image:
        assert image.width >= 128 and image.height >= 128
    with Image.open(predictions) as image:
        assert image.width >= 256 and image.height >= 128
    assert (tmp_path / "training" / "model_final.pth").is_file()
    metrics = json.loads((tmp_path / "training" / "final_metrics.json").read_text())
    assert 0.0 <= metrics["segm"]["AP"] <= 100.0
    assert "segm" in (tmp_path / "ap_table.txt").read_text()
    statistics = json.loads((tmp_path / "statistics.json").read_text())
    assert statistics["p10"]["agreement_with_masks"] == 1.0
    assert 0.94 <= statistics["p10_boundary_noise"]["agreement_with_masks"] <= 0.96
    points = load_point_dataset(tmp_path / "instances_train_p10.json")
    assert points.instances and all(inst.num_points == 10 for inst in points.instances)
