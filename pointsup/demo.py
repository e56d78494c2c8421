"""``pointsup demo`` / ``make demo``: the whole pipeline on synthetic data, on a CPU.

synthetic dataset -> P10 simulation (clean, and with 5 % boundary noise) -> statistics -> a
picture of the points -> point-supervised Mask R-CNN training -> COCO evaluation on the masked
validation split -> a picture of predictions.
"""

from __future__ import annotations

import time
from pathlib import Path

from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.engine.shipped_configs import CONFIGS_DIR
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.utils.atomic import write_bytes_atomic, write_json_atomic
from pointsup.visualize import compose_grid, show_annotations

#: The CPU recipe the demo trains (a shipped config).
DEMO_CONFIG = CONFIGS_DIR / "cpu" / "synthetic_lite0_points.yaml"
DEMO_IMAGE_SIZE = 320


def run_demo(
    output_dir: str | Path, num_images: int = 96, seed: int = 0, iterations: int | None = None, image_size: int = DEMO_IMAGE_SIZE
) -> Path:
    """Run the demo into ``output_dir``; returns the path of the predictions picture.

    Args:
        iterations: training iterations (default: the recipe's ``solver.max_iter``).
    """
    output = Path(output_dir)
    start = time.perf_counter()
    print(f"[1/6] writing {num_images} synthetic images to {output / 'synthetic'}")
    dataset = generate_synthetic_dataset(output / "synthetic", num_images=num_images, seed=seed, image_size=image_size)
    print(f"      {dataset.num_instances} instances of rings, crescents, stars, arcs and crosses")

    print("[2/6] simulating P10 point annotations (10 labelled points per object)")
    coco = read_coco_json(dataset.train_json)
    points_path = output / "instances_train_p10.json"
    clean = simulate(
        coco, SimulationConfig(num_points=10, seed=seed, keep_masks=True), source=str(dataset.train_json), show_progress=True
    )
    write_json_atomic(points_path, clean.coco)
    noisy = simulate(coco, SimulationConfig(num_points=10, seed=seed, boundary_noise=0.05), source=str(dataset.train_json))
    write_json_atomic(output / "instances_train_p10_boundary_noise.json", noisy.coco)

    print("[3/6] statistics")
    print("  clean P10:")
    print("    " + clean.statistics.format_table().replace("\n", "\n    "))
    print("  P10 with 5 % of the labels flipped next to the boundary:")
    assert noisy.statistics.agreement_with_masks is not None  # simulation always compares with the masks
    print(
        f"    agreement with masks {100 * noisy.statistics.agreement_with_masks:.2f} % "
        f"({noisy.statistics.flipped_by_boundary_noise} labels flipped)"
    )
    write_json_atomic(
        output / "statistics.json",
        {"p10": clean.statistics.to_dict(), "p10_boundary_noise": noisy.statistics.to_dict()},
        indent=2,
    )

    print("[4/6] drawing boxes, masks and points")
    picture = show_annotations(points_path, dataset.image_dir, output / "points.png", max_images=4)
    print(f"      {picture}")

    print("[5/6] training Mask R-CNN (EfficientNet-Lite0-FPN, ImageNet weights) on the points only")
    from pointsup.engine.config import load_config
    from pointsup.engine.solver import schedule_overrides
    from pointsup.engine.trainer import train
    from pointsup.evaluation.coco_evaluator import format_ap_table

    overrides = [
        f"seed={seed}",
        "device=cpu",
        f"data.train_json={points_path}",
        f"data.train_images={dataset.image_dir}",
        f"data.val_json={dataset.val_json}",
        f"data.val_images={dataset.image_dir}",
    ]
    if iterations is not None:
        overrides += [*schedule_overrides(iterations), f"solver.checkpoint_period={max(iterations // 2, 1)}"]
    config = load_config(DEMO_CONFIG, overrides)
    result = train(config, output / "training")

    print("[6/6] COCO evaluation on the validation images (real masks)")
    table = format_ap_table(result.metrics, title=f"point-supervised Mask R-CNN, {result.iterations} iterations")
    print(table)
    (output / "ap_table.txt").write_text(table + "\n")
    predictions = draw_predictions(result.final_checkpoint, dataset.val_json, dataset.image_dir, output / "predictions.png")
    print(f"done in {time.perf_counter() - start:.0f} s: {predictions} (points: {picture})")
    print(f"next: pointsup predict --weights {result.final_checkpoint} IMAGE.png -o predictions/")
    return predictions


def draw_predictions(weights: Path, val_json: Path, image_dir: Path, target: Path, count: int = 4) -> Path:
    """A grid of the first ``count`` validation images with the model's detections."""
    import io

    from pointsup.engine.predictor import load_trained_model, predict_files
    from pointsup.evaluation.overlay import draw_detections

    trained = load_trained_model(weights, "cpu")
    files = [image_dir / image["file_name"] for image in read_coco_json(val_json)["images"][:count]]
    tiles = [
        draw_detections(sample.image, detections, trained.category_names, score_threshold=0.5)
        for _, sample, detections in predict_files(trained, files)
    ]
    buffer = io.BytesIO()
    compose_grid(tiles, columns=min(count, 2)).save(buffer, format="PNG")
    write_bytes_atomic(target, buffer.getvalue())
    return target
