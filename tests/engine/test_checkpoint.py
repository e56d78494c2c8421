"""Checkpoints: full round trips, RNG states, retention, the latest pointer, clear errors, and
survival of a writer killed mid-write."""

from __future__ import annotations

import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from pointsup.engine.checkpoint import Checkpointer, CheckpointError, latest, load, torch_save_atomic
from pointsup.engine.solver import WarmupMultiStepLR, build_optimizer

REPO_ROOT = Path(__file__).resolve().parents[2]


class SmallNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def make_training(seed: int) -> tuple[SmallNet, torch.optim.SGD, WarmupMultiStepLR, torch.amp.GradScaler]:
    torch.manual_seed(seed)
    model = SmallNet()
    optimizer = build_optimizer(model, base_lr=0.1, momentum=0.9, weight_decay=1e-4, weight_decay_norm=0.0)
    scheduler = WarmupMultiStepLR(optimizer, steps=[6], max_iter=10, warmup_iters=3)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return model, optimizer, scheduler, scaler


def train_steps(
    model: SmallNet, optimizer: torch.optim.SGD, scheduler: WarmupMultiStepLR, scaler: torch.amp.GradScaler, count: int
) -> list[float]:
    """A few iterations whose data comes from the global torch RNG (so RNG restoring matters)."""
    losses = []
    for _ in range(count):
        images, labels = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        losses.append(loss.item())
    return losses


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    uninterrupted = train_steps(model, optimizer, scheduler, scaler, 8)

    model, optimizer, scheduler, scaler = make_training(seed=0)
    first = train_steps(model, optimizer, scheduler, scaler, 4)
    path = Checkpointer(tmp_path).save(4, model, optimizer, scheduler, scaler, extra={"seed": 0, "config": {"a": [1, 2]}})
    assert path == tmp_path / "model_0000004.pth"
    torch.randn(100)  # disturb the RNG: the checkpoint must restore it

    model, optimizer, scheduler, scaler = make_training(seed=123)
    extra = load(path, model, optimizer, scheduler, scaler)
    assert extra == {"seed": 0, "config": {"a": [1, 2]}, "iteration": 4}
    assert first + train_steps(model, optimizer, scheduler, scaler, 4) == uninterrupted


def test_python_numpy_and_torch_random_states_are_restored(tmp_path: Path) -> None:
    model = SmallNet()
    path = Checkpointer(tmp_path).save(1, model)
    draws = (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn())
    load(path, model)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) == draws
    load(path, model, restore_rng=False)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), np.random.randn()) != draws


def test_extra_is_stored_as_plain_values(tmp_path: Path) -> None:
    extra = {"metrics": {"segm/AP": np.float64(36.1), np.int64(3): np.arange(3)}, "output": tmp_path, "pair": (1, "a")}
    path = Checkpointer(tmp_path).save("model_final", SmallNet(), extra=extra)
    loaded = load(path, SmallNet())
    assert loaded == {"metrics": {"segm/AP": 36.1, 3: [0, 1, 2]}, "output": str(tmp_path), "pair": (1, "a")}
    assert type(loaded["metrics"]["segm/AP"]) is float
    with pytest.raises(TypeError, match=r"extra\['metrics'\]\['bad'\] has type object"):
        Checkpointer(tmp_path).save(1, SmallNet(), extra={"metrics": {"bad": object()}})


def test_only_the_newest_numbered_checkpoints_are_kept(tmp_path: Path) -> None:
    checkpointer = Checkpointer(tmp_path, keep=2)
    model = SmallNet()
    for iteration in (100, 200, 300, 400):
        checkpointer.save(iteration, model)
    checkpointer.save("model_final", model)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["last_checkpoint", "model_0000300.pth", "model_0000400.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert latest(tmp_path) == tmp_path / "model_final.pth"
    # A resumed run that writes an older iteration keeps what it has just written.
    checkpointer = Checkpointer(tmp_path, keep=1)
    assert checkpointer.save(250, model).exists()
    assert latest(tmp_path) == tmp_path / "model_0000250.pth"
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_0000250.pth", "model_0000400.pth", "model_final.pth"]


def test_latest_falls_back_when_the_pointer_is_missing_or_stale(tmp_path: Path) -> None:
    assert latest(tmp_path / "nothing here") is None
    assert latest(tmp_path) is None
    model = SmallNet()
    checkpointer = Checkpointer(tmp_path, keep=5)
    for iteration in (9, 10, 1000):
        checkpointer.save(iteration, model)
    (tmp_path / "last_checkpoint").write_text("model_0000010.pth\n")
    assert latest(tmp_path) == tmp_path / "model_0000010.pth"
    (tmp_path / "last_checkpoint").write_text("model_0999999.pth")  # stale
    assert latest(tmp_path) == tmp_path / "model_0001000.pth"  # by iteration, not by name length
    (tmp_path / "last_checkpoint").unlink()
    assert latest(tmp_path) == tmp_path / "model_0001000.pth"
    checkpointer.save("model_final", model)
    (tmp_path / "last_checkpoint").unlink()
    assert latest(tmp_path) == tmp_path / "model_final.pth"


def test_a_ddp_model_is_saved_without_its_wrapper(tmp_path: Path) -> None:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        model = SmallNet()
        wrapped = nn.parallel.DistributedDataParallel(model)
        path = Checkpointer(tmp_path / "ckpt").save(1, wrapped)
        plain = SmallNet()
        load(path, plain)  # strict: the keys carry no "module." prefix
        load(path, wrapped)
    finally:
        dist.destroy_process_group()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[key], value)


def test_errors_name_the_file(tmp_path: Path) -> None:
    model = SmallNet()
    with pytest.raises(CheckpointError, match="not found.*missing.pth"):
        load(tmp_path / "missing.pth", model)
    good = Checkpointer(tmp_path).save(1, model)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load(truncated, model)
    garbage = tmp_path / "garbage.pth"
    rng = random.Random(0)
    for trial in range(300):
        # Half the files start like a pickle (protocol 2 header) so the bytes reach deep into the
        # unpickler, which then fails in many different ways; each must become a CheckpointError.
        header = b"\x80\x02" if trial % 2 else b""
        garbage.write_bytes(header + rng.randbytes(rng.randint(1, 1000)))
        with pytest.raises(CheckpointError, match="garbage.pth"):
            load(garbage, model)
    listing = tmp_path / "list.pth"
    torch.save([1, 2], listing)
    with pytest.raises(CheckpointError, match="list.pth: not a checkpoint"):
        load(listing, model)


def test_shape_mismatches_are_listed_or_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = Checkpointer(tmp_path).save(1, SmallNet(classes=3))
    other = SmallNet(classes=5)
    with pytest.raises(CheckpointError) as info:
        load(path, other)
    message = str(info.value)
    assert "2 of a different shape (e.g. head.weight (model (5, 8), file (3, 8)))" in message
    assert "conv.weight" not in message and str(path) in message and "\n" not in message

    conv_before = other.conv.weight.detach().clone()
    head_before = other.head.weight.detach().clone()
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.checkpoint"):
        load(path, other, strict=False)
    assert "head.weight" in caplog.text
    assert not torch.equal(other.conv.weight, conv_before)  # the fitting weights are loaded
    torch.testing.assert_close(other.head.weight, head_before)  # the others are left as they were


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "bare.pth"
    state = SmallNet().state_dict()
    state["extra_layer.weight"] = torch.zeros(2)
    del state["bn.running_mean"]
    torch.save(state, path)  # a bare state dict
    with pytest.raises(
        CheckpointError, match=r"1 missing \(e.g. bn.running_mean\); 1 not in the model \(e.g. extra_layer.weight\)"
    ) as error:
        load(path, SmallNet())
    assert "\n" not in str(error.value)
    assert load(path, SmallNet(), strict=False) == {}


def test_absent_components_are_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, optimizer, scheduler, _ = make_training(seed=0)
    path = Checkpointer(tmp_path).save("model_final", model)
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.checkpoint"):
        assert load(path, model, optimizer, scheduler) == {}
    assert "no optimizer state" in caplog.text and "no scheduler state" in caplog.text


def test_stale_temporary_files_are_cleaned_up(tmp_path: Path) -> None:
    stale = tmp_path / ".model_0000005.pth.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    Checkpointer(tmp_path)
    assert not stale.exists() and unrelated.exists()


def test_torch_save_atomic_leaves_the_old_file_when_saving_fails(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    torch_save_atomic({"value": torch.ones(2)}, path)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on where the lambda lives
        torch_save_atomic({"value": lambda: None}, path)  # lambdas cannot be pickled
    torch.testing.assert_close(torch.load(path, weights_only=True)["value"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pth"]


WRITER = textwrap.dedent(
    """
    import sys
    import torch
    from torch import nn
    from pointsup.engine.checkpoint import Checkpointer

    model = nn.Module()
    model.register_buffer("payload", torch.empty(16 * 1024 * 1024))  # 64 MiB
    checkpointer = Checkpointer(sys.argv[1], keep=1)
    version = 1
    while True:
        model.payload.fill_(version)
        checkpointer.save(7, model, extra={"version": version})
        version += 1
    """
)


def test_a_writer_killed_mid_write_never_replaces_the_good_checkpoint(tmp_path: Path) -> None:
    good = nn.Module()
    good.register_buffer("payload", torch.zeros(16 * 1024 * 1024))
    path = Checkpointer(tmp_path, keep=1).save(7, good, extra={"version": 0})
    caught_mid_write = False
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=REPO_ROOT)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and process.poll() is None:
                if any(name.endswith(".tmp") for name in os.listdir(tmp_path)):
                    break
                time.sleep(0.001)
            time.sleep(random.uniform(0.0, 0.05))
            os.kill(process.pid, signal.SIGKILL)
        finally:
            process.wait()
        assert process.returncode == -signal.SIGKILL
        caught_mid_write = any(name.endswith(".tmp") for name in os.listdir(tmp_path))
        # Whatever moment the kill hit, the checkpoint on disk is complete and consistent.
        probe = nn.Module()
        probe.register_buffer("payload", torch.empty(16 * 1024 * 1024))
        extra = load(latest(tmp_path), probe, restore_rng=False)
        assert latest(tmp_path) == path
        assert torch.all(probe.payload == extra["version"])
        if caught_mid_write:
            break
    assert caught_mid_write, "the writer was never killed during a write"
    Checkpointer(tmp_path)
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_non_finite_weights_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "diverged.pth"
    state = SmallNet().state_dict()
    state["conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.checkpoint"):
        load(path, SmallNet())
    assert "NaN or infinite" in caplog.text and "conv.weight" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.checkpoint"):
        load(Checkpointer(tmp_path / "fine").save(1, SmallNet()), SmallNet())
    assert "NaN" not in caplog.text


_FAILING_SAVE = """
import resource, signal, sys
import torch
from torch import nn
from pointsup.engine.checkpoint import Checkpointer, CheckpointError
checkpointer = Checkpointer(sys.argv[1])
checkpointer.save(1, nn.Linear(4, 4))                     # a small checkpoint: fits
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)             # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    checkpointer.save(2, nn.Linear(1000, 1000))           # 4 MB: cannot be written
except CheckpointError as exc:
    print(exc)
"""


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _FAILING_SAVE, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    message = result.stdout.strip()
    assert message.startswith(f"cannot write {tmp_path / 'model_0000002.pth'}: the file size limit is reached")
    assert "model_0000001.pth is intact" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]  # no temporary left
    assert latest(tmp_path) == tmp_path / "model_0000001.pth"
    load(tmp_path / "model_0000001.pth", nn.Linear(4, 4))
