"""``pointsup demo`` / ``make demo``: the annotation part of the pipeline, end to end.

synthetic dataset -> P10 simulation (clean, and with 5 % boundary noise) -> statistics ->
a picture of the points. Training and evaluation join this demo once they exist.
"""

from __future__ import annotations

import time
from pathlib import Path

from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.utils.atomic import write_json_atomic
from pointsup.visualize import show_annotations


def run_demo(output_dir: str | Path, num_images: int = 48, seed: int = 0) -> Path:
    """Run the demo into ``output_dir``; returns the path of the picture it draws."""
    output = Path(output_dir)
    start = time.perf_counter()
    print(f"[1/4] writing {num_images} synthetic images to {output / 'synthetic'}")
    dataset = generate_synthetic_dataset(output / "synthetic", num_images=num_images, seed=seed)
    print(f"      {dataset.num_instances} instances of rings, crescents, stars, arcs and crosses")

    print("[2/4] simulating P10 point annotations (10 labelled points per object)")
    coco = read_coco_json(dataset.train_json)
    points_path = output / "instances_train_p10.json"
    clean = simulate(coco, SimulationConfig(num_points=10, seed=seed, keep_masks=True), source=str(dataset.train_json), show_progress=True)
    write_json_atomic(points_path, clean.coco)
    noisy = simulate(coco, SimulationConfig(num_points=10, seed=seed, boundary_noise=0.05), source=str(dataset.train_json))
    write_json_atomic(output / "instances_train_p10_boundary_noise.json", noisy.coco)

    print("[3/4] statistics")
    print("  clean P10:")
    print("    " + clean.statistics.format_table().replace("\n", "\n    "))
    print("  P10 with 5 % of the labels flipped next to the boundary:")
    print(f"    agreement with masks {100 * noisy.statistics.agreement_with_masks:.2f} % "
          f"({noisy.statistics.flipped_by_boundary_noise} labels flipped)")
    write_json_atomic(output / "statistics.json", {"p10": clean.statistics.to_dict(), "p10_boundary_noise": noisy.statistics.to_dict()}, indent=2)

    print("[4/4] drawing boxes, masks and points")
    picture = show_annotations(points_path, dataset.image_dir, output / "points.png", max_images=4)
    print(f"done in {time.perf_counter() - start:.1f} s: {picture}")
    print(f"next: pointsup show {points_path} --images {dataset.image_dir} -o another.png --image-id 5")
    return picture
