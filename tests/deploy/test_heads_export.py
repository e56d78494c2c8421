"""Export of PointRend, Implicit PointRend (adaptive subdivision with its top-k, as it runs) and
CondInst (FCOS decoding, per-level top-k, NMS, dynamic mask head): onnxruntime on the CPU and the
TorchScript export against PyTorch eager on the same images, with the issue's tolerances, each on
a checkpoint trained for 3 iterations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from pointsup.cli import main as cli_main  # noqa: E402
from pointsup.deploy.export import onnx_bytes, torchscript_bytes  # noqa: E402
from pointsup.deploy.onnx_runner import OnnxPredictor  # noqa: E402
from pointsup.deploy.torchscript_runner import TorchScriptPredictor  # noqa: E402
from pointsup.engine.config import load_config  # noqa: E402
from pointsup.engine.predictor import Predictor, TrainedModel, load_trained_model  # noqa: E402
from pointsup.engine.trainer import train  # noqa: E402
from tests.deploy.test_onnx_export import compare, sample_images  # noqa: E402
from tests.engine.test_condinst_training import CONDINST_CPU, condinst_overrides  # noqa: E402
from tests.engine.test_trainer import CPU_CONFIG, data, overrides  # noqa: E402, F401  (data is a fixture)

#: Small point heads; subdivision keeps the reference's 784 points per step (28 → 224).
POINT_HEAD_SIZES = ["fc_dim=32", "point_fc_dim=16"]
HEADS = ["pointrend", "implicit_pointrend", "condinst"]


@pytest.fixture(scope="module", params=HEADS)
def trained_head(request, data, tmp_path_factory) -> tuple[str, Path]:  # noqa: F811
    head = request.param
    run = tmp_path_factory.mktemp(head)
    if head == "condinst":
        config = load_config(CONDINST_CPU, condinst_overrides(data, "solver.max_iter=3", "data.val_json=null"))
    else:
        settings = overrides(data, "solver.max_iter=3", "data.val_json=null", f"model.mask_head.name={head}",
                             *(f"model.mask_head.{head}.{size}" for size in POINT_HEAD_SIZES))
        config = load_config(CPU_CONFIG, settings)
    return head, train(config, run).final_checkpoint


def loaded(weights: Path, head: str) -> TrainedModel:
    """The checkpoint on the CPU; CondInst after 3 iterations scores every location under its 0.05
    threshold, so its threshold goes to 0 (every location and class competes: the most candidates)."""
    trained = load_trained_model(weights, "cpu")
    if head == "condinst":
        trained.model.inference.score_thresh = 0.0
    return trained


def test_onnxruntime_and_torchscript_match_pytorch(trained_head, data, tmp_path):  # noqa: F811
    head, weights = trained_head
    trained = loaded(weights, head)
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(trained))
    (tmp_path / "model.pt").write_bytes(torchscript_bytes(trained))
    images = sample_images(data)
    expected_side = 112 if head == "condinst" else 224
    for name, runner in [
        ("onnx", OnnxPredictor(tmp_path / "model.onnx", 0.0)),
        ("torchscript", TorchScriptPredictor(tmp_path / "model.pt", 0.0)),
    ]:
        worst = compare(Predictor(trained, 0.0), runner, images)
        assert worst["detections"] >= 50
        assert runner(images[0]).mask_probs.shape[1:] == (expected_side, expected_side)
        print(f"{head} {name} parity: {worst}")


def test_parity_with_changing_detection_counts(trained_head, data, tmp_path):  # noqa: F811
    """Thresholds inside the graph that change the number of detections per image (and for
    CondInst a per-level top-k that truncates the candidates), then none at all."""
    head, weights = trained_head
    trained = loaded(weights, head)
    images = sample_images(data)
    scores = np.concatenate([Predictor(trained, 0.0)(image).scores for image in images])
    if head == "condinst":
        trained.model.inference.topk_candidates = 3  # 3 per level: the top-k truncates
        trained.model.inference.nms_thresh = 0.3  # and NMS removes a varying number
    else:
        trained.model.roi_heads.score_thresh = float(np.median(scores))
    path = tmp_path / "strict.onnx"
    path.write_bytes(onnx_bytes(trained))
    counts = [len(Predictor(trained, 0.0)(image)) for image in images]
    assert len(set(counts)) > 1, counts
    compare(Predictor(trained, 0.0), OnnxPredictor(path, 0.0), images)
    if head == "condinst":
        trained.model.inference.score_thresh = 1.0
    else:
        trained.model.roi_heads.score_thresh = 1.0
    path.write_bytes(onnx_bytes(trained))
    nothing = OnnxPredictor(path, 0.0)(images[-2])
    assert len(nothing) == 0 and nothing.masks.shape == (0, 128, 128)


def test_cli_exports_both_formats(trained_head, tmp_path):
    head, weights = trained_head
    for export_format, name in [("onnx", "m.onnx"), ("torchscript", "m.pt")]:
        assert cli_main(["export", "--weights", str(weights), "--format", export_format, "-o", str(tmp_path / name)]) == 0
    assert OnnxPredictor(tmp_path / "m.onnx").metadata["architecture"] == ("condinst" if head == "condinst" else "mask_rcnn")
    assert (
        TorchScriptPredictor(tmp_path / "m.pt").metadata["mask_head"] == OnnxPredictor(tmp_path / "m.onnx").metadata["mask_head"]
    )
