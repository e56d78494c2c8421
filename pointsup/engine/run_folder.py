"""The files a training run keeps in its output folder, and what ``pointsup train`` checks there.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, TensorBoard event
files, checkpoints (``model_0005000.pth`` ..., ``last_checkpoint``, ``model_final.pth``),
``eval/`` (each evaluation's results) and ``final_metrics.json``. Other files in the folder are
not the run's: they are never written, moved or deleted by it.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from pointsup.engine.checkpoint import LAST_CHECKPOINT_FILE
from pointsup.engine.config import Config
from pointsup.engine.metrics import METRICS_FILE
from pointsup.utils.paths import OutputOverInputError

#: The resolved config a run writes before its first iteration.
CONFIG_FILE = "config.yaml"
#: The final evaluation's metrics (``{}`` without a validation set).
FINAL_METRICS_FILE = "final_metrics.json"
#: The folder of the evaluations during and after training (one subfolder per iteration).
EVAL_FOLDER = "eval"
#: Checkpoints: ``model_final.pth`` and the numbered ``model_0005000.pth``.
CHECKPOINT_PATTERN = "model_*.pth"
_TENSORBOARD_PATTERN = "events.out.tfevents.*"
#: Files whose presence means a run has trained in the folder (config.yaml alone does not).
_RUN_MARKERS = (CHECKPOINT_PATTERN, METRICS_FILE, FINAL_METRICS_FILE)
_RUN_FILES = (*_RUN_MARKERS, CONFIG_FILE, LAST_CHECKPOINT_FILE, EVAL_FOLDER, _TENSORBOARD_PATTERN)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def run_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The files and folders of a run directly in ``folder``, by name (none when it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if _matches(path.name, _RUN_FILES))


def run_markers(folder: str | os.PathLike[str]) -> list[str]:
    """Names of the files in ``folder`` that show a run has trained there (checkpoints, metrics)."""
    return [path.name for path in run_files(folder) if _matches(path.name, _RUN_MARKERS)]


def move_run_aside(folder: str | os.PathLike[str]) -> Path:
    """Move the run files of ``folder`` (see :func:`run_files`) into a new subfolder
    ``previous-YYYYmmdd-HHMMSS`` of it (``-2``, ``-3``... when that exists); nothing is deleted.

    Returns:
        The subfolder that now holds the previous run.
    """
    folder = Path(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    destination, count = folder / f"previous-{stamp}", 1
    while destination.exists():
        count += 1
        destination = folder / f"previous-{stamp}-{count}"
    files = run_files(folder)
    destination.mkdir()
    for path in files:
        path.rename(destination / path.name)
    return destination


def training_inputs(config: Config) -> list[Path]:
    """The files a run of ``config`` reads: datasets and weight files (keywords such as
    ``coco`` / ``imagenet`` are included as paths; they name no run file)."""
    values = (config.data.train_json, config.data.val_json, config.model.weights, config.model.backbone.weights)
    return [Path(value) for value in values if value]


def refuse_inputs_in_run(
    folder: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    option: str,
    named: str | os.PathLike[str] | None = None,
) -> None:
    """Raise :class:`OutputOverInputError` when one of ``inputs`` is a file that a run in ``folder``
    writes, moves aside or deletes (a checkpoint, ``config.yaml``, ``eval/...``).

    Args:
        folder: the run folder.
        inputs: the files the command reads; None entries are skipped.
        option: the option that named the folder, as the user typed it.
        named: the folder ``option`` named, when the run folder is inside it (default ``folder``).
    """
    root = Path(folder).expanduser().resolve()
    for input_file in inputs:
        if input_file is None:
            continue
        try:
            relative = Path(input_file).expanduser().resolve().relative_to(root)
        except ValueError:  # not inside the folder
            continue
        if relative.parts and _matches(relative.parts[0], _RUN_FILES):
            raise OutputOverInputError(option, Path(folder) / relative, input_file, folder=folder if named is None else named)
