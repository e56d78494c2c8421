"""Multi-process training with torch.distributed: set-up from torchrun's environment, a local
launcher (``--num-gpus N``), and the few collectives the trainer needs.

Every helper also works without a process group (one process): rank 0 of a world of size 1.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pointsup.engine.config import DEVICE_PATTERN
from pointsup.errors import PointsupError

#: Overrides the backend :func:`init_distributed` picks (``nccl`` on CUDA, ``gloo`` otherwise).
BACKEND_ENV = "POINTSUP_DIST_BACKEND"


class DeviceError(PointsupError, ValueError):
    """The device asked for does not exist on this machine (or the name is not a device)."""


class LaunchError(PointsupError, RuntimeError):
    """A process started by :func:`launch` failed; the message names its rank."""

    def __init__(self, rank: int, message: str):
        self.rank = rank
        super().__init__(message)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes, its rank on this
    machine, and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0


def init_distributed(device_preference: str = "auto", backend: str | None = None) -> DistributedContext:
    """Join the process group that torchrun (or :func:`launch`) describes in the environment.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``
    through ``env://``). Without them, or with ``WORLD_SIZE=1``, no process group is created.
    Calling it again returns the same context.

    Args:
        device_preference: "auto" (CUDA when available), "cpu", "cuda", "cuda:N" or "mps". With
            several processes, CUDA processes use device ``LOCAL_RANK``.
        backend: the process-group backend; default ``$POINTSUP_DIST_BACKEND``, else "nccl" on
            CUDA and "gloo" otherwise.

    Raises:
        RuntimeError: CUDA asked for but unavailable, or fewer GPUs than local processes.
    """
    rank = launched_rank()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_preference, local_rank if world_size > 1 else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        chosen = backend or os.environ.get(BACKEND_ENV) or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=chosen, init_method="env://", rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def launched_rank() -> int:
    """This process's rank as torchrun (or :func:`launch`) set it in ``RANK``; 0 without one.
    Readable before the process group exists."""
    return int(os.environ.get("RANK", 0))


def resolve_device(preference: str, local_rank: int | None = None) -> torch.device:
    """The device a preference names; with several processes, "cuda" means ``cuda:local_rank``."""
    if not re.fullmatch(DEVICE_PATTERN, preference):
        raise DeviceError(f"device must be auto, cpu, cuda, cuda:N or mps, not {preference!r}")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "mps" and not (torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' was asked for, but this machine has no Apple GPU")
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {preference!r} was asked for, but CUDA is not available on this machine "
                "(use device cpu, or auto to take a GPU when there is one)"
            )
        if local_rank is not None:
            if local_rank >= torch.cuda.device_count():
                raise DeviceError(f"local rank {local_rank} has no GPU: only {torch.cuda.device_count()} visible")
            return torch.device("cuda", local_rank)
        if ":" in preference and int(preference.split(":")[1]) >= torch.cuda.device_count():
            raise DeviceError(f"device {preference!r} was asked for, but only {torch.cuda.device_count()} GPUs are visible")
        return torch.device(preference if ":" in preference else f"cuda:{torch.cuda.current_device()}")
    return torch.device(preference)


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0: the process that writes checkpoints, logs and metrics."""
    return get_rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op with one process)."""
    if get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """The ``obj`` of every process (picklable), in rank order; ``[obj]`` with one process."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_dict(values: dict[str, torch.Tensor], average: bool = True) -> dict[str, torch.Tensor]:
    """Sum (or average) 0-d tensors over all processes, e.g. losses for logging.

    Every process must pass the same keys, its tensors on the process group's device (the CUDA
    device with nccl, the CPU with gloo). Every process receives the result; the inputs are not
    changed and no gradient flows through it.
    """
    world_size = get_world_size()
    if world_size == 1 or not values:
        return {key: value.detach() for key, value in values.items()}
    keys = sorted(values)
    stacked = torch.stack([values[key].detach().reshape(()) for key in keys])
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    if average:
        stacked = stacked / world_size
    return dict(zip(keys, stacked.unbind(0)))


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(main_fn: Callable[..., Any], num_processes: int, args: tuple = (), backend: str | None = None) -> None:
    """Run ``main_fn(*args)`` in ``num_processes`` local processes, as torchrun would.

    Each process gets ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``, ``RANK`` = ``LOCAL_RANK``
    and ``WORLD_SIZE`` in its environment (and ``$POINTSUP_DIST_BACKEND`` when ``backend`` is
    given); ``main_fn`` calls :func:`init_distributed`. The processes are started with "spawn", so
    ``main_fn`` and ``args`` must be picklable (``main_fn`` defined at module level). With one
    process, ``main_fn`` runs in this one.

    Raises:
        LaunchError: a process raised or died; it names the rank, and the others are stopped.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if num_processes == 1:
        main_fn(*args)
        return
    port = _free_port()
    try:
        mp.start_processes(
            _worker, args=(main_fn, num_processes, port, backend, args), nprocs=num_processes, join=True, start_method="spawn"
        )
    except mp.ProcessRaisedException as error:
        raise LaunchError(error.error_index, f"rank {error.error_index} failed:\n{str(error).strip()}") from error
    except mp.ProcessExitedException as error:
        raise LaunchError(error.error_index, f"rank {error.error_index} died: {error}") from error


def _worker(local_rank: int, main_fn: Callable[..., Any], world_size: int, port: int, backend: str | None, args: tuple) -> None:
    """One process of :func:`launch`: the torchrun environment, then ``main_fn``."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    if backend is not None:
        os.environ[BACKEND_ENV] = backend
    try:
        main_fn(*args)
    finally:
        shutdown()


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
