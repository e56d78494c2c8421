"""Predicting on image files with a trained checkpoint (``pointsup predict``).

A checkpoint written by the trainer carries its resolved config and category names, so the
weights file alone rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pointsup.data.dataset import read_image
from pointsup.data.transforms import build_test_transforms
from pointsup.engine.builders import model_for_checkpoint
from pointsup.engine.checkpoint import CheckpointError, load_model_state, read_checkpoint
from pointsup.engine.config import Config, config_from_dict
from pointsup.engine.distributed import resolve_device
from pointsup.modeling.detector import Detector
from pointsup.modeling.postprocess import masks_to_rles
from pointsup.structures.instances import Detections, Sample


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with what is needed to read its outputs."""

    model: Detector
    config: Config
    category_names: list[str]
    label_to_category_id: list[int]
    device: torch.device


def load_trained_model(weights: str | Path, device: str = "auto", config: Config | None = None) -> TrainedModel:
    """Rebuild the model saved in ``weights`` (a pointsup checkpoint) in eval mode.

    Args:
        config: overrides the config stored in the checkpoint (e.g. other test sizes).

    Raises:
        CheckpointError: the file is missing, unreadable or not a pointsup checkpoint.
    """
    path = Path(weights)
    payload = read_checkpoint(path)
    extra = payload.get("extra", {})
    if "config" not in extra or "num_classes" not in extra:
        raise CheckpointError(
            f"{path}: not a checkpoint written by `pointsup train` (no config / class names inside); "
            "pass the training config with --config"
        )
    config = config or config_from_dict(extra["config"])
    model = model_for_checkpoint(config, int(extra["num_classes"]))
    load_model_state(model, payload["model"], strict=True, path=path)
    target = resolve_device(device)
    names = list(extra.get("category_names") or [str(k) for k in range(int(extra["num_classes"]))])
    ids = list(extra.get("label_to_category_id") or range(1, len(names) + 1))
    return TrainedModel(model.to(target).eval(), config, names, ids, target)


def predict_files(trained: TrainedModel, paths: Sequence[str | Path]) -> Iterator[tuple[Path, Sample, Detections]]:
    """Detections for each image file, at the config's test size, in original coordinates."""
    transforms = build_test_transforms(trained.config.data.min_size_test, trained.config.data.max_size_test)
    for index, path in enumerate(paths):
        image = read_image(path)
        sample = Sample(
            image=image, image_id=index, file_name=str(path), original_size=(int(image.shape[1]), int(image.shape[2]))
        )
        resized = transforms(sample, np.random.default_rng(0))
        with torch.inference_mode():
            detections = trained.model([resized])[0]
        yield Path(path), sample, detections


def coco_results(
    detections: Detections, image_id: int, label_to_category_id: Sequence[int], score_threshold: float
) -> list[dict]:
    """COCO result entries (bbox xywh, score, category_id, segmentation RLE) above a score."""
    keep = detections.scores >= score_threshold
    boxes, scores, classes = detections.boxes[keep].cpu(), detections.scores[keep].cpu(), detections.classes[keep].cpu()
    rles = (
        masks_to_rles(detections.mask_probs[keep].cpu(), boxes, detections.image_size)
        if detections.mask_probs is not None
        else None
    )
    results = []
    for k in range(len(boxes)):
        x0, y0, x1, y1 = boxes[k].tolist()
        entry = {
            "image_id": image_id,
            "category_id": int(label_to_category_id[int(classes[k])]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(scores[k]),
        }
        if rles is not None:
            entry["segmentation"] = rles[k]
        results.append(entry)
    return results
