"""Training checkpoints that survive a crash at any moment.

A checkpoint ``model_0005000.pth`` (``torch.save`` of a dict) holds the model's state dict, the
optimiser, LR scheduler and gradient scaler states, the random number generator states and a
caller's ``extra`` dict (iteration, config, seed, metrics...). It is written to a temporary file in
the same folder, flushed to disk and renamed over the destination, so a process killed mid-write
leaves the previous checkpoint intact. Then the text file ``last_checkpoint`` is pointed at it
(atomically too) and the oldest numbered checkpoints beyond ``keep`` are deleted.

Checkpoints are read with ``torch.load(weights_only=True)``, so ``extra`` may hold plain Python
values (dict, list, tuple, str, int, float, bool, None) and tensors only; NumPy scalars and arrays
and paths are converted on saving (e.g. COCOeval's float64 numbers), anything else is refused
then rather than when the checkpoint is read back.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from pointsup.errors import PointsupError
from pointsup.utils.atomic import OutputWriteError, atomic_write, write_bytes_atomic

logger = logging.getLogger(__name__)

#: The text file naming the most recent checkpoint of a folder.
LAST_CHECKPOINT_FILE = "last_checkpoint"
#: The name of the checkpoint written at the end of training.
FINAL_CHECKPOINT = "model_final.pth"
_NUMBERED = re.compile(r"model_(\d{7,})\.pth")
_STALE_TEMP = re.compile(r"\.model_.*\.pth\..*\.tmp")


class CheckpointError(PointsupError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the model."""


def torch_save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` that never leaves a half-written ``path`` (see the module docstring).

    The checkpoint is serialised in memory first: a failing write (full disk) then surfaces as
    the system's error (:class:`~pointsup.utils.atomic.OutputWriteError`), not as an error of
    torch's zip writer."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getbuffer())
    _fsync_directory(path.parent)


def checkpoint_name(name_or_iteration: int | str) -> str:
    """``5000`` -> ``"model_0005000.pth"``; ``"model_final"`` -> ``"model_final.pth"``."""
    if isinstance(name_or_iteration, int):
        return f"model_{name_or_iteration:07d}.pth"
    return name_or_iteration if name_or_iteration.endswith(".pth") else f"{name_or_iteration}.pth"


class Checkpointer:
    """Saves checkpoints into ``directory`` and keeps the ``keep`` newest numbered ones.

    Creating it removes temporary files that a killed writer left in ``directory``.
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.iterdir():
            if _STALE_TEMP.fullmatch(stale.name):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def save(
        self,
        name_or_iteration: int | str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        scaler: torch.amp.GradScaler | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write a checkpoint (see :func:`checkpoint_name`), point ``last_checkpoint`` at it and
        delete numbered checkpoints beyond the ``keep`` newest (never the one just written, never
        ``model_final.pth``). A DDP / DataParallel / compiled model is saved unwrapped.

        Returns:
            The path of the checkpoint.
        """
        payload: dict[str, Any] = {"model": unwrap_model(model).state_dict(), "rng": _rng_states()}
        for key, component in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
            if component is not None:
                payload[key] = component.state_dict()
        payload["extra"] = _plain(dict(extra or {}), "extra")
        if isinstance(name_or_iteration, int):
            payload["extra"].setdefault("iteration", name_or_iteration)
        path = self.directory / checkpoint_name(name_or_iteration)
        try:
            torch_save_atomic(payload, path)
            write_bytes_atomic(self.directory / LAST_CHECKPOINT_FILE, path.name.encode())
        except OutputWriteError as exc:
            previous = latest(self.directory)
            kept = f"the previous checkpoint {previous} is intact" if previous is not None else "no earlier checkpoint exists"
            raise CheckpointError(f"{exc}; {kept} (free space and resume with --resume)") from None
        self._delete_old(keep_also=path)
        return path

    def _delete_old(self, keep_also: Path) -> None:
        numbered = sorted((int(match.group(1)), p) for p in self.directory.iterdir() if (match := _NUMBERED.fullmatch(p.name)))
        for _, old in numbered[: max(len(numbered) - self.keep, 0)]:
            if old != keep_also:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()


def load(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint written by :class:`Checkpointer` into the given objects.

    The file is read onto the CPU; ``load_state_dict`` moves the values to the model's and
    optimiser's devices. A file holding a bare state dict is loaded into the model as well.
    Components the checkpoint lacks are skipped with a warning.

    Args:
        strict: when True, missing / unexpected keys and shape mismatches raise; when False,
            tensors whose shape differs are skipped (e.g. a classifier with another number of
            classes) and every skipped key is logged.
        restore_rng: restore the python / numpy / torch (and CUDA) random states.

    Returns:
        The checkpoint's ``extra`` dict (empty for a bare state dict).

    Raises:
        CheckpointError: the file is missing or unreadable, or its weights do not fit ``model``.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    is_bare = "model" not in checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    if is_bare:
        checkpoint = {"model": checkpoint}
    if not isinstance(checkpoint.get("model"), Mapping):
        raise CheckpointError(f"{path}: not a model checkpoint (keys: {sorted(checkpoint)[:10]})")
    load_model_state(unwrap_model(model), checkpoint["model"], strict, path)
    for key, component in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if component is None:
            continue
        state = checkpoint.get(key)
        if not state:  # absent, or an empty GradScaler state saved while AMP was off
            logger.warning("%s has no %s state; %s starts afresh", path, key, key)
            continue
        component.load_state_dict(state)
    if restore_rng and "rng" in checkpoint:
        _restore_rng_states(checkpoint["rng"])
    return dict(checkpoint.get("extra", {}))


def latest(directory: str | os.PathLike[str]) -> Path | None:
    """The checkpoint that ``directory/last_checkpoint`` names; if that file is missing or names
    a file that no longer exists: ``model_final.pth`` if present, else the numbered checkpoint with
    the highest iteration; None when the folder has no checkpoint."""
    directory = Path(directory)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        named = (directory / LAST_CHECKPOINT_FILE).read_text(encoding="utf-8").strip()
        if named and (directory / named).is_file():
            return directory / named
    if (directory / FINAL_CHECKPOINT).is_file():
        return directory / FINAL_CHECKPOINT
    if not directory.is_dir():
        return None
    numbered = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NUMBERED.fullmatch(p.name))]
    return max(numbered)[1] if numbered else None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = cast(nn.Module, model._orig_mod)
        else:
            return model


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint file as a dict, read safely (``weights_only``) onto the CPU.

    Raises:
        CheckpointError: the file is missing, corrupt, truncated or not a dict.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: cannot be read safely (weights_only); it is corrupt or holds objects other "
            f"than tensors and plain Python values: {_first_line(error)}"
        ) from None
    except Exception as error:  # noqa: BLE001 - arbitrary bytes make the unpickler raise anything
        # Garbage bytes reach the weights-only unpickler's internals, which raise whatever the
        # bytes provoke (AssertionError, KeyError, IndexError, UnicodeDecodeError, ...), not only
        # the documented errors; every one of them means the same thing to the caller.
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(error).__name__}: {_first_line(error)})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def _first_line(error: BaseException) -> str:
    """The first line of an error's message (torch's unpickling errors run over many lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool, path: Path) -> None:
    """``model.load_state_dict`` with an error (one line) that counts the keys and shapes that
    do not fit and names the first of each kind; warns when the weights hold NaN or infinity
    (such a model predicts nothing, silently)."""
    expected = model.state_dict()
    mismatched = [
        key
        for key, value in state.items()
        if key in expected and isinstance(value, torch.Tensor) and value.shape != expected[key].shape
    ]
    shapes = [f"{k} (model {tuple(expected[k].shape)}, file {tuple(state[k].shape)})" for k in mismatched]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if strict and (mismatched or missing or unexpected):
        parts = [
            f"{len(lines)} {title} (e.g. {lines[0]})"
            for title, lines in (("of a different shape", shapes), ("missing", missing), ("not in the model", unexpected))
            if lines
        ]
        raise CheckpointError(f"{path}: the weights do not fit the model: " + "; ".join(parts))
    skipped = set(mismatched)
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    for title, lines in (("skipped (shape differs)", shapes), ("missing", missing), ("unexpected", unexpected)):
        if lines:
            logger.warning("%s: %d %s keys: %s", path, len(lines), title, "; ".join(lines))
    non_finite = [
        k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if non_finite:
        logger.warning(
            "warning: %s: %d weight tensors hold NaN or infinite values (e.g. %s): the model's outputs are "
            "meaningless (a diverged training run?)",
            path,
            len(non_finite),
            non_finite[0],
        )


def _plain(value: Any, where: str) -> Any:
    """``value`` with NumPy numbers / arrays and paths turned into Python values; TypeError
    naming the entry for anything ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {_plain(k, f"{where} key {k!r}"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise TypeError(f"checkpoint {where} has type {type(value).__name__}; store plain Python values or tensors")


def _rng_states() -> dict[str, Any]:
    """The random states of python, numpy (global), torch CPU and every CUDA device, in types
    that ``torch.load(weights_only=True)`` accepts."""
    name, keys, position, has_gauss, cached_gaussian = cast(
        "tuple[str, np.ndarray, int, int, float]", np.random.get_state(legacy=True)
    )
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(_as_tuples(states["python"]))
    numpy_state = states["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    cuda_states = states.get("cuda")
    if cuda_states and torch.cuda.is_available():
        count = min(len(cuda_states), torch.cuda.device_count())
        for device, state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(state, device)


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples all the way down; a load may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every platform can open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
