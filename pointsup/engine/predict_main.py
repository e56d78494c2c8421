"""``pointsup predict``: COCO results JSON and PNG overlays for image files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pointsup.engine.config import load_config
from pointsup.engine.predictor import coco_results, load_trained_model, predict_files
from pointsup.evaluation.overlay import save_overlay
from pointsup.utils.atomic import write_json_atomic
from pointsup.utils.progress import progress

#: The COCO results file :func:`predict_to_folder` writes into its output folder.
PREDICTIONS_FILE = "predictions.json"


def output_files(images: Sequence[str | Path], output_dir: str | Path) -> list[Path]:
    """The files :func:`predict_to_folder` writes: one ``NNNN_<stem>_pred.png`` overlay per image
    (``NNNN`` its position in ``images``), then ``predictions.json``."""
    output = Path(output_dir)
    return [
        *(output / f"{index:04d}_{Path(image).stem}_pred.png" for index, image in enumerate(images)),
        output / PREDICTIONS_FILE,
    ]


def predict_to_folder(
    weights: str | Path,
    images: Sequence[str | Path],
    output_dir: str | Path,
    score_threshold: float = 0.5,
    device: str = "auto",
    config_path: str | Path | None = None,
) -> Path:
    """Predict every image; write ``predictions.json`` (COCO results, ``image_id`` = position in
    ``images``, plus an ``images`` list naming the files) and the overlays of :func:`output_files`.

    Returns:
        the path of ``predictions.json``.
    """
    trained = load_trained_model(weights, device, load_config(config_path) if config_path else None)
    targets = output_files(images, output_dir)
    targets[-1].parent.mkdir(parents=True, exist_ok=True)
    results, files = [], []
    for index, (path, sample, detections) in enumerate(
        progress(predict_files(trained, images), total=len(images), desc="predict", unit="img")
    ):
        results.extend(coco_results(detections, index, trained.label_to_category_id, score_threshold))
        files.append({"id": index, "file_name": str(path), "height": detections.image_size[0], "width": detections.image_size[1]})
        save_overlay(targets[index], sample.image, detections, trained.category_names, score_threshold)
    categories = [{"id": c, "name": n} for c, n in zip(trained.label_to_category_id, trained.category_names)]
    target = targets[-1]
    write_json_atomic(target, {"images": files, "categories": categories, "annotations": results}, indent=None)
    print(f"wrote {len(results)} detections for {len(files)} images to {target}")
    return target
