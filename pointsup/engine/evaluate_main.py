"""``pointsup eval``: COCO AP of a checkpoint on the configured validation set."""

from __future__ import annotations

from pathlib import Path

from pointsup.engine.builders import build_val_dataset, model_for_checkpoint, num_classes_for, test_transforms
from pointsup.engine.checkpoint import load
from pointsup.engine.config import Config, ConfigError
from pointsup.engine.distributed import init_distributed
from pointsup.engine.inference import evaluate


def evaluation_output_dir(weights: str | Path, output_dir: str | Path | None = None) -> Path:
    """Where :func:`evaluate_checkpoint` writes: ``output_dir``, by default ``<weights folder>/eval``."""
    return Path(output_dir) if output_dir else Path(weights).parent / "eval"


def evaluate_checkpoint(config: Config, weights: str | Path, output_dir: str | Path | None = None) -> dict:
    """Load ``weights`` into the model of ``config`` and evaluate it on ``data.val_json``.

    Returns:
        ``{"bbox": {...}, "segm": {...}}`` on the main process (``{}`` on the others); results
        and metrics JSON are written to ``output_dir`` (default: ``<weights folder>/eval``).
    """
    context = init_distributed(config.device)
    dataset = build_val_dataset(config)
    if dataset is None:
        raise ConfigError("data.val_json is not set: nothing to evaluate on")
    model = model_for_checkpoint(config, num_classes_for(config, dataset))
    load(weights, model, restore_rng=False)
    model.to(context.device)
    return evaluate(
        model,
        dataset,
        test_transforms(config),
        context,
        evaluation_output_dir(weights, output_dir),
        config.test.max_eval_images,
        num_workers=min(config.data.num_workers, 2),
    )
