"""Process groups and collectives: one process, and two gloo processes on the CPU through launch."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
import torch

from pointsup.engine.distributed import (
    DeviceError,
    LaunchError,
    all_gather_object,
    barrier,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    launch,
    reduce_dict,
    shutdown,
)
from pointsup.utils.atomic import write_json_atomic

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _collectives(result_dir: str) -> None:
    """Run in each launched process: every helper, results written to rank<N>.json."""
    context = init_distributed("cpu")
    assert init_distributed("cpu") == context  # idempotent
    gathered = all_gather_object({"rank": context.rank, "text": "x" * context.rank})
    values = {"loss": torch.tensor(float(context.rank + 1)), "accuracy": torch.tensor(10.0 * context.rank)}
    averaged = reduce_dict(values)
    summed = reduce_dict(values, average=False)
    barrier()
    write_json_atomic(
        Path(result_dir) / f"rank{context.rank}.json",
        {
            "context": [context.rank, context.world_size, context.local_rank, str(context.device), context.is_main_process],
            "helpers": [get_rank(), get_world_size(), is_main_process()],
            "gathered": gathered,
            "averaged": {k: v.item() for k, v in averaged.items()},
            "summed": {k: v.item() for k, v in summed.items()},
            "inputs_unchanged": values["loss"].item() == context.rank + 1,
        },
    )


def _fail_on_rank_one() -> None:
    context = init_distributed("cpu")
    if context.rank == 1:
        raise ValueError("boom from the second process")
    time.sleep(120)  # rank 0 is stopped by launch once rank 1 has failed


def test_two_gloo_processes_gather_and_reduce(tmp_path: Path) -> None:
    launch(_collectives, num_processes=2, args=(str(tmp_path),), backend="gloo")
    results = [msgspec.json.decode((tmp_path / f"rank{rank}.json").read_bytes()) for rank in (0, 1)]
    for rank, result in enumerate(results):
        assert result["context"] == [rank, 2, rank, "cpu", rank == 0]
        assert result["helpers"] == [rank, 2, rank == 0]
        assert result["gathered"] == [{"rank": 0, "text": ""}, {"rank": 1, "text": "x"}]
        assert result["averaged"] == {"loss": 1.5, "accuracy": 5.0}
        assert result["summed"] == {"loss": 3.0, "accuracy": 10.0}
        assert result["inputs_unchanged"]


def test_a_failing_process_raises_in_the_parent_naming_its_rank() -> None:
    started = time.monotonic()
    with pytest.raises(LaunchError, match="rank 1") as info:
        launch(_fail_on_rank_one, num_processes=2, args=())
    assert info.value.rank == 1
    assert "boom from the second process" in str(info.value)
    assert time.monotonic() - started < 60  # the waiting rank was stopped, not waited for


def test_one_process_needs_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    calls: list[tuple[int, str]] = []
    launch(lambda *args: calls.append(args), num_processes=1, args=(1, "a"))  # runs right here
    assert calls == [(1, "a")]

    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.local_rank, context.device) == (0, 1, 0, torch.device("cpu"))
    assert context.is_main_process and is_main_process()
    assert (get_rank(), get_world_size()) == (0, 1)
    assert all_gather_object({"a": 1}) == [{"a": 1}]
    loss = torch.tensor(2.0, requires_grad=True) * 2
    reduced = reduce_dict({"loss": loss})
    assert reduced["loss"].item() == 4.0 and not reduced["loss"].requires_grad
    barrier()
    shutdown()


def test_bad_device_requests() -> None:
    with pytest.raises(ValueError, match="device must be"):
        init_distributed("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            init_distributed("cuda")
    with pytest.raises(ValueError, match="at least 1"):
        launch(print, num_processes=0)
