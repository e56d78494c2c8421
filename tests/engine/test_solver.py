"""Optimiser parameter groups, the warmup + multi-step LR schedule, gradient clipping."""

from __future__ import annotations

import io
import logging
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from pointsup.engine.config import load_config
from pointsup.engine.solver import WarmupMultiStepLR, build_optimizer, clip_gradients, rescaled_schedule, schedule_overrides


class TinyNet(nn.Module):
    """Conv + every kind of norm layer + a frozen layer + a weight shared by two layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.frozen_bn = FrozenBatchNorm2d(4)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.encoder = nn.Linear(4, 4, bias=False)
        self.decoder = nn.Linear(4, 4, bias=False)
        self.decoder.weight = self.encoder.weight  # tied


def test_norm_parameters_get_their_own_weight_decay_and_each_parameter_appears_once() -> None:
    model = TinyNet()
    optimizer = build_optimizer(model, base_lr=0.5, momentum=0.9, weight_decay=0.1, weight_decay_norm=0.0)
    groups = {group["name"]: group for group in optimizer.param_groups}
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    norm_params = [model.bn.weight, model.bn.bias, model.gn.weight, model.gn.bias, model.ln.weight, model.ln.bias]
    assert ids(groups["norm"]["params"]) == ids(norm_params)
    assert ids(groups["default"]["params"]) == ids([model.conv.weight, model.conv.bias, model.encoder.weight])
    all_params = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(all_params) == len(ids(all_params)) == 9  # frozen layer left out, tied weight once
    assert (groups["default"]["weight_decay"], groups["norm"]["weight_decay"]) == (0.1, 0.0)
    assert all(g["lr"] == 0.5 and g["momentum"] == 0.9 for g in optimizer.param_groups)

    # The decay acts: with zero gradients, one step shrinks the decayed weights only.
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in all_params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    torch.testing.assert_close(model.conv.weight, before["conv.weight"] * (1 - 0.5 * 0.1))
    torch.testing.assert_close(model.gn.weight, before["gn.weight"])
    torch.testing.assert_close(model.frozen.weight, before["frozen.weight"])


def test_a_model_without_trainable_parameters_is_an_error() -> None:
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), 0.1, 0.9, 1e-4, 0.0)


def make_scheduler(**kwargs: object) -> tuple[torch.optim.SGD, WarmupMultiStepLR]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    return optimizer, WarmupMultiStepLR(optimizer, **kwargs)  # type: ignore[arg-type]


def lrs_over(optimizer: torch.optim.Optimizer, scheduler: WarmupMultiStepLR, iterations: int) -> list[float]:
    """The learning rate used at each iteration of a training loop."""
    lrs = []
    for _ in range(iterations):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_linear_warmup_then_steps() -> None:
    optimizer, scheduler = make_scheduler(steps=[20, 30], max_iter=40, gamma=0.1, warmup_factor=0.001, warmup_iters=10)
    lrs = lrs_over(optimizer, scheduler, 45)
    expected_factor = {
        0: 0.001,
        5: 0.001 * 0.5 + 0.5,  # mid-warmup: warmup_factor * (1 - a) + a
        9: 0.001 * 0.1 + 0.9,
        10: 1.0,
        19: 1.0,
        20: 0.1,  # a step applies at its own iteration
        29: 0.1,
        30: 0.01,
        39: 0.01,
        44: 0.01,  # past max_iter the last factor stays
    }
    for iteration, factor in expected_factor.items():
        assert lrs[iteration] == pytest.approx(2.0 * factor, rel=1e-12), iteration
        assert scheduler.lr_factor(iteration) == pytest.approx(factor, rel=1e-12)


def test_constant_warmup() -> None:
    optimizer, scheduler = make_scheduler(steps=[8], max_iter=10, warmup_factor=0.25, warmup_iters=4, warmup_method="constant")
    assert lrs_over(optimizer, scheduler, 10) == pytest.approx([0.5] * 4 + [2.0] * 4 + [0.2] * 2)


def test_warmup_shrinks_to_the_schedule_and_late_steps_are_dropped() -> None:
    # detectron2 uses min(warmup_iters / max_iter, 1) of the schedule for the warmup.
    with pytest.warns(UserWarning, match=r"\[150\].*max_iter=100"):
        optimizer, scheduler = make_scheduler(steps=[60, 150], max_iter=100, warmup_factor=0.001, warmup_iters=1000)
    assert scheduler.steps == [60]
    lrs = lrs_over(optimizer, scheduler, 100)
    assert lrs[0] == pytest.approx(2.0 * 0.001)
    # The warmup target is the schedule's factor where the warmup ends (0.1 after the step at 60).
    assert lrs[50] == pytest.approx(2.0 * (0.001 * 0.5 + 0.1 * 0.5))
    assert lrs[99] == pytest.approx(2.0 * (0.001 * 0.01 + 0.1 * 0.99))


def test_no_warmup() -> None:
    optimizer, scheduler = make_scheduler(steps=[2], max_iter=4, warmup_iters=0)
    assert lrs_over(optimizer, scheduler, 4) == pytest.approx([2.0, 2.0, 0.2, 0.2])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="increasing"):
        make_scheduler(steps=[5, 3], max_iter=10)
    with pytest.raises(ValueError, match="warmup_method"):
        make_scheduler(steps=[5], max_iter=10, warmup_method="cosine")


def test_from_config_follows_the_solver_section() -> None:
    solver = load_config(None, ["solver.steps=[3]", "solver.max_iter=6", "solver.warmup_iters=2", "solver.gamma=0.5"]).solver
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    lrs = lrs_over(optimizer, WarmupMultiStepLR.from_config(optimizer, solver), 6)
    assert lrs == pytest.approx([0.001, 0.0005 + 0.5, 1.0, 0.5, 0.5, 0.5])


@settings(max_examples=25, deadline=None)
@given(
    stop_at=st.integers(0, 60),
    warmup_iters=st.integers(0, 30),
    steps=st.lists(st.integers(1, 50), max_size=3, unique=True).map(sorted),
)
def test_resuming_from_a_state_dict_continues_identically(stop_at: int, warmup_iters: int, steps: list[int]) -> None:
    kwargs = dict(steps=steps, max_iter=50, gamma=0.3, warmup_factor=0.01, warmup_iters=warmup_iters)
    optimizer, scheduler = make_scheduler(**kwargs)
    uninterrupted = lrs_over(optimizer, scheduler, 70)

    optimizer, scheduler = make_scheduler(**kwargs)
    first_part = lrs_over(optimizer, scheduler, stop_at)
    # Through a buffer, the way checkpoints are read (weights_only).
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    optimizer, scheduler = make_scheduler(**kwargs)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert first_part + lrs_over(optimizer, scheduler, 70 - stop_at) == uninterrupted


def test_clip_gradients_returns_the_norm_before_clipping() -> None:
    a, b = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0])
    total = clip_gradients([a, b], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    clipped = torch.cat([a.grad, b.grad]).norm()
    assert clipped.item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.0, 0.0]), rtol=1e-4, atol=0)
    # Under the limit, nothing changes.
    a.grad = torch.tensor([0.1, 0.0, 0.0])
    b.grad = torch.zeros(2)
    assert clip_gradients([a, b], max_norm=1.0).item() == pytest.approx(0.1)
    torch.testing.assert_close(a.grad, torch.tensor([0.1, 0.0, 0.0]))


def test_clip_gradients_reports_a_non_finite_norm(caplog: pytest.LogCaptureFixture) -> None:
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([math.inf, 1.0])
    with caplog.at_level(logging.WARNING, logger="pointsup.engine.solver"):
        total = clip_gradients([p], max_norm=1.0)
    assert not math.isfinite(total.item())
    assert "not finite" in caplog.text


@given(max_iter=st.integers(1, 200_000))
def test_a_rescaled_schedule_is_a_valid_config(max_iter):
    schedule = rescaled_schedule(max_iter)
    config = load_config(None, schedule_overrides(max_iter))
    assert config.solver.max_iter == max_iter and config.solver.steps == schedule["solver.steps"]
    assert all(0 < step < max_iter for step in config.solver.steps)
    assert config.solver.warmup_iters == min(100, round(0.1 * max_iter))
    if max_iter >= 100:
        assert config.solver.steps == [int(0.75 * max_iter), int(0.92 * max_iter)]
