"""Running a model over a dataset: evaluation with COCO AP, sharded over processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from pointsup.data.dataset import InstanceDataset
from pointsup.data.loader import build_test_loader
from pointsup.data.transforms import Compose
from pointsup.engine.checkpoint import unwrap_model
from pointsup.engine.distributed import DistributedContext
from pointsup.evaluation.coco_evaluator import COCOEvaluator
from pointsup.structures.instances import Detections, Sample
from pointsup.utils.progress import progress


class _FirstItems(torch.utils.data.Dataset):
    """The first ``count`` items of a dataset (for ``test.max_eval_images``)."""

    def __init__(self, dataset: InstanceDataset, count: int):
        self.dataset = dataset
        self.count = min(count, len(dataset))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        return self.dataset[index]


def run_inference(
    model: nn.Module,
    dataset: torch.utils.data.Dataset,
    transforms: Compose,
    context: DistributedContext,
    on_detections: Callable[[Sample, Detections], None],
    num_workers: int = 0,
    desc: str = "inference",
) -> None:
    """Predict every image of this process's shard and hand each result to ``on_detections``.

    The model is put in eval mode for the duration and restored afterwards.
    """
    module = unwrap_model(model)
    was_training = module.training
    module.eval()
    loader = build_test_loader(dataset, transforms, num_workers, context.rank, context.world_size)
    try:
        with torch.inference_mode():
            for batch in progress(loader, total=len(loader), desc=desc, unit="img", enabled=context.is_main_process):
                for sample, detections in zip(batch, module(batch)):
                    on_detections(sample, _to_cpu(detections))
    finally:
        module.train(was_training)


def _to_cpu(detections: Detections) -> Detections:
    return Detections(
        boxes=detections.boxes.float().cpu(),
        scores=detections.scores.float().cpu(),
        classes=detections.classes.cpu(),
        mask_probs=None if detections.mask_probs is None else detections.mask_probs.float().cpu(),
        image_size=detections.image_size,
    )


def evaluate(
    model: nn.Module,
    dataset: InstanceDataset,
    transforms: Compose,
    context: DistributedContext,
    output_dir: Path | None,
    max_images: int | None = None,
    num_workers: int = 0,
) -> dict:
    """COCO box and mask AP of ``model`` on ``dataset`` (whose JSON must carry real masks).

    Returns:
        the evaluator's results on the main process (``{"bbox": {...}, "segm": {...}}``), {} elsewhere.
    """
    evaluator = COCOEvaluator(Path(dataset.source), dataset.label_to_category_id, output_dir)
    items = dataset if max_images is None else _FirstItems(dataset, max_images)
    run_inference(model, items, transforms, context, lambda s, d: evaluator.process(s.image_id, d), num_workers, desc="evaluate")
    return evaluator.evaluate()
