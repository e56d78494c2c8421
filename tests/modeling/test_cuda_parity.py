"""The mask heads compute the same masks on a GPU as on the CPU, and a training step under CUDA
AMP (float16 autocast) gives finite losses and gradients. Skipped without CUDA (run by
benchmarks/gpu_check.sh when a GPU is at hand)."""

from __future__ import annotations

import copy

import pytest
import torch

from pointsup.modeling.detector import total_loss
from tests.modeling.test_mask_rcnn import sample, tiny_model

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

HEADS = ["maskrcnn", "pointrend", "implicit_pointrend"]
#: small point heads, as in tests/modeling/test_point_heads_in_model.py
HEAD_SIZES = {
    "maskrcnn": {},
    "pointrend": {"mask_head.pointrend.fc_dim": 32, "mask_head.pointrend.point_fc_dim": 16},
    "implicit_pointrend": {"mask_head.implicit_pointrend.fc_dim": 32, "mask_head.implicit_pointrend.point_fc_dim": 16},
}


@pytest.fixture(autouse=True)
def exact_float32_matmuls():
    """TF32 would round CUDA matmuls and convolutions to 10-bit mantissas: compare in true float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("head", HEADS)
def test_mask_head_probabilities_match_the_cpu(head):
    model = tiny_model("points", {"mask_head.name": head, **HEAD_SIZES[head]}).eval()
    image = sample(96, 128, []).image.float()[None] / 255
    boxes = [torch.tensor([[10.0, 8.0, 70.0, 60.0], [40.0, 30.0, 120.0, 90.0], [0.0, 0.0, 128.0, 96.0]])]
    classes = [torch.tensor([0, 2, 1])]
    with torch.inference_mode():
        features = model.backbone(image)
        on_cpu = model.roi_heads.point_mask_head.predict(features, boxes, classes)[0]
        gpu_head = copy.deepcopy(model.roi_heads.point_mask_head).cuda()
        on_gpu = gpu_head.predict(
            {k: v.cuda() for k, v in features.items()}, [b.cuda() for b in boxes], [c.cuda() for c in classes]
        )[0]
    assert on_gpu.is_cuda and on_gpu.shape == on_cpu.shape
    assert (on_gpu.cpu() - on_cpu).abs().max() < 1e-4
    # binary masks differ at most where a probability sits at 0.5 within rounding
    flipped = (on_gpu.cpu() > 0.5) != (on_cpu > 0.5)
    assert flipped.sum() <= ((on_cpu - 0.5).abs() < 1e-4).sum()


@pytest.mark.parametrize("head", HEADS)
def test_amp_training_step_gives_finite_losses_and_gradients(head):
    model = tiny_model("points", {"mask_head.name": head, **HEAD_SIZES[head]}).cuda().train()
    batch = [sample(96, 128, [[10, 10, 60, 50], [40, 30, 120, 90]], [[1, 0, -1, 1], [1, 1, 0, 0]]), sample(80, 96, [])]
    scaler = torch.amp.GradScaler("cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        outputs = model(batch)  # the detector moves images and targets to its device
        loss = total_loss(outputs)
    assert loss.is_cuda and torch.isfinite(loss)
    scaler.scale(loss).backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(torch.isfinite(g).all() for g in gradients)
