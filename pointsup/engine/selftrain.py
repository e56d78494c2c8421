"""``pointsup selftrain``: the whole self-training loop of the paper (§3.3.2) in one command.

1. train the recipe with point supervision            -> ``OUT/points/model_final.pth``
2. pseudo-label its training set with the GT boxes    -> ``OUT/pseudo_masks.json``
3. train the same recipe afresh on the pseudo masks   -> ``OUT/masks/model_final.pth``

Every stage leaves its result on disk and a stage whose result exists is skipped, so a run that
was interrupted continues where it stopped (training stages resume from their last checkpoint).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pointsup.engine.config import Config, ConfigError, load_config
from pointsup.engine.distributed import launch
from pointsup.engine.predictor import load_trained_model
from pointsup.engine.pseudo_label import PseudoLabelReport, pseudo_label
from pointsup.engine.run_folder import FINAL_METRICS_FILE
from pointsup.engine.trainer import train_main

log = logging.getLogger(__name__)

FINAL_WEIGHTS = "model_final.pth"


@dataclass
class SelfTrainingPaths:
    """Where each stage of a self-training run under ``root`` puts its result."""

    root: Path

    @property
    def points_dir(self) -> Path:
        return self.root / "points"

    @property
    def pseudo_json(self) -> Path:
        return self.root / "pseudo_masks.json"

    @property
    def masks_dir(self) -> Path:
        return self.root / "masks"


@dataclass
class SelfTrainingResult:
    """The final metrics of both models (empty without a validation set) and the pseudo masks' report
    (None when the pseudo masks existed already)."""

    paths: SelfTrainingPaths
    points_metrics: dict
    selftrained_metrics: dict
    pseudo_report: PseudoLabelReport | None

    def format(self) -> str:
        lines = []
        if self.pseudo_report is not None:
            lines.append(self.pseudo_report.format())
        rows = [("trained on points", self.points_metrics), ("self-trained on pseudo masks", self.selftrained_metrics)]
        if all(metrics.get("segm") for _, metrics in rows):
            lines.append(f"{'model':<30} {'mask AP':>8} {'box AP':>8}")
            lines.extend(f"{name:<30} {m['segm']['AP']:>8.1f} {m['bbox']['AP']:>8.1f}" for name, m in rows)
        lines.append(f"self-trained weights: {self.paths.masks_dir / FINAL_WEIGHTS}")
        return "\n".join(lines)


def selftrain_configs(config_path: str | Path, overrides: Sequence[str], pseudo_json: Path) -> tuple[Config, Config]:
    """The point-supervised config (the recipe as given) and the mask-supervised one that trains
    on ``pseudo_json`` (same recipe and schedule, all other settings unchanged).

    Raises:
        ConfigError: the recipe is not point-supervised.
    """
    points = load_config(config_path, overrides)
    if points.supervision != "points":
        raise ConfigError(
            f"{config_path}: self-training starts from a point-supervised recipe (supervision: points), "
            f"got supervision: {points.supervision}"
        )
    masks = load_config(config_path, [*overrides, "supervision=masks", f"data.train_json={pseudo_json}", "data.sample_points=0"])
    return points, masks


def _read_metrics(run_dir: Path) -> dict:
    path = run_dir / FINAL_METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _train_stage(config: Config, run_dir: Path, num_gpus: int, name: str) -> None:
    if (run_dir / FINAL_WEIGHTS).is_file():
        log.info("%s: %s exists, stage skipped", name, run_dir / FINAL_WEIGHTS)
        return
    print(f"== {name}: training into {run_dir}")
    launch(train_main, num_gpus, (config, str(run_dir), True))


def run_selftraining(
    config_path: str | Path,
    output_dir: str | Path,
    overrides: Sequence[str] = (),
    num_gpus: int = 1,
    device: str = "auto",
    reference_json: str | Path | None = None,
) -> SelfTrainingResult:
    """Train on points, pseudo-label the training set, train on the pseudo masks.

    Args:
        config_path: a point-supervised recipe (its ``data.train_json`` carries the points).
        output_dir: the run folder (see :class:`SelfTrainingPaths`).
        overrides: ``KEY=VALUE`` config overrides for both training stages.
        num_gpus: processes per training stage (pseudo-labelling runs in this process).
        device: where pseudo-labelling runs.
        reference_json: true masks of the training set, to report the pseudo masks' IoU.
    """
    paths = SelfTrainingPaths(Path(output_dir))
    points_config, masks_config = selftrain_configs(config_path, overrides, paths.pseudo_json)
    _train_stage(points_config, paths.points_dir, num_gpus, "stage 1/3 (points)")
    report = None
    if paths.pseudo_json.is_file():
        log.info("pseudo masks: %s exists, stage skipped", paths.pseudo_json)
    else:
        print(f"== stage 2/3: pseudo masks into {paths.pseudo_json}")
        weights = paths.points_dir / FINAL_WEIGHTS
        trained = load_trained_model(weights, device)
        data = points_config.data
        if not data.train_json or not data.train_images:
            raise ConfigError("data.train_json and data.train_images must be set")
        report = pseudo_label(trained, data.train_json, data.train_images, paths.pseudo_json, reference_json, weights)
        print(report.format())
    _train_stage(masks_config, paths.masks_dir, num_gpus, "stage 3/3 (pseudo masks)")
    return SelfTrainingResult(paths, _read_metrics(paths.points_dir), _read_metrics(paths.masks_dir), report)
