"""Training end to end on a GPU: CUDA AMP (float16 autocast with a gradient scaler) for Mask R-CNN
and CondInst, the scaler's state in the checkpoint, and an exact resume. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from pointsup.engine.config import load_config
from pointsup.engine.trainer import train
from tests.engine.test_condinst_training import CONDINST_CPU, condinst_overrides
from tests.engine.test_trainer import CPU_CONFIG, data, final_weights, overrides  # noqa: F401  (data is a fixture)

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("amp", [True, False])
def test_mask_rcnn_trains_and_evaluates_on_cuda(data, tmp_path, amp):  # noqa: F811
    config = load_config(
        CPU_CONFIG,
        overrides(data, "device=cuda", f"solver.amp={str(amp).lower()}", "solver.max_iter=3", "solver.checkpoint_period=2"),
    )
    result = train(config, tmp_path)
    assert set(result.metrics) == {"bbox", "segm"}
    checkpoint = torch.load(tmp_path / "model_0000002.pth", map_location="cpu", weights_only=False)
    assert bool(checkpoint.get("scaler")) == amp  # the gradient scaler's state travels with an AMP run
    assert all(torch.isfinite(t).all() for t in final_weights(tmp_path).values() if t.is_floating_point())


def test_amp_training_resumes_exactly_on_cuda(data, tmp_path):  # noqa: F811
    """Uninterrupted 4 iterations against 2 + resume + 2, under AMP: the same final weights up to
    the run-to-run noise of CUDA's atomic additions (RoIAlign's backward), far below one step's change."""
    settings = ["device=cuda", "solver.amp=true", "solver.checkpoint_period=2", "data.val_json="]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(load_config(CPU_CONFIG, overrides(data, *settings, "solver.max_iter=4")), whole)
    train(load_config(CPU_CONFIG, overrides(data, *settings, "solver.max_iter=2")), split)
    train(load_config(CPU_CONFIG, overrides(data, *settings, "solver.max_iter=4")), split, resume=True)
    expected, resumed = final_weights(whole), final_weights(split)
    assert max((expected[k].float() - resumed[k].float()).abs().max().item() for k in expected) < 1e-3


@pytest.mark.parametrize("supervision", ["points", "boxes"])
def test_condinst_trains_under_amp_on_cuda(data, tmp_path, supervision):  # noqa: F811
    config = load_config(
        CONDINST_CPU, condinst_overrides(data, "device=cuda", "solver.amp=true", "solver.max_iter=2", supervision=supervision)
    )
    result = train(config, tmp_path)
    assert set(result.metrics) == {"bbox", "segm"}
