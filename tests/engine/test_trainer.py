"""End to end on tiny synthetic data: train, checkpoint, kill, resume, evaluate, predict, DDP."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pointsup.cli import main as cli_main
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.engine import trainer as trainer_module
from pointsup.engine.config import load_config
from pointsup.engine.distributed import DistributedContext, launch
from pointsup.engine.trainer import (
    Trainer,
    TrainingDiverged,
    cpu_has_native_bfloat16,
    mixed_precision_dtype,
    train,
    train_main,
)
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.utils.atomic import write_json_atomic
from tests.conftest import REPO_ROOT

CPU_CONFIG = REPO_ROOT / "configs" / "cpu" / "synthetic_R18_points.yaml"

#: A model small enough for a CPU test: a few hundred ms per iteration.
TINY = [
    "seed=3",
    "device=cpu",
    "log_period=1",
    "model.backbone.name=resnet18",
    "model.roi_heads.box_head=2fc",
    "model.backbone.norm=gn",
    "model.fpn.norm=gn",
    "model.backbone.trainable_layers=5",
    "model.fpn.channels=32",
    "model.mask_head.conv_dim=16",
    "model.mask_head.norm=gn",
    "model.rpn.anchor_sizes=[8,16,32,64,128]",
    "model.rpn.pre_nms_top_n_train=200",
    "model.rpn.post_nms_top_n_train=100",
    "model.rpn.pre_nms_top_n_test=100",
    "model.rpn.post_nms_top_n_test=50",
    "model.roi_heads.batch_size_per_image=32",
    "model.detections_per_image=20",
    "data.min_size_train=[96,112]",
    "data.max_size_train=160",
    "data.min_size_test=128",
    "data.max_size_test=160",
    "data.num_workers=0",
    "solver.ims_per_batch=2",
    "solver.base_lr=0.01",
    "solver.warmup_iters=2",
    "solver.steps=[]",
    "solver.clip_gradients=true",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("synthetic")
    dataset = generate_synthetic_dataset(root, num_images=8, image_size=128, val_fraction=0.25, show_progress=False)
    points = simulate(read_coco_json(dataset.train_json), SimulationConfig(num_points=10), source=str(dataset.train_json))
    write_json_atomic(root / "train_p10.json", points.coco)
    return {
        "train_json": str(root / "train_p10.json"),
        "train_masks": str(dataset.train_json),
        "val_json": str(dataset.val_json),
        "images": str(dataset.image_dir),
    }


def overrides(data: dict[str, str], *extra: str, supervision: str = "points") -> list[str]:
    train_json = data["train_json"] if supervision == "points" else data["train_masks"]
    return [
        *TINY,
        f"supervision={supervision}",
        f"data.train_json={train_json}",
        f"data.train_images={data['images']}",
        f"data.val_json={data['val_json']}",
        f"data.val_images={data['images']}",
        *extra,
    ]


def final_weights(output: Path) -> dict[str, torch.Tensor]:
    return torch.load(output / "model_final.pth", map_location="cpu", weights_only=False)["model"]


@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_training_runs_and_evaluates(data, tmp_path, supervision):
    config = load_config(CPU_CONFIG, overrides(data, "solver.max_iter=3", "solver.checkpoint_period=2", supervision=supervision))
    result = train(config, tmp_path)
    assert (tmp_path / "model_final.pth").is_file() and (tmp_path / "model_0000002.pth").is_file()
    assert set(result.metrics) == {"bbox", "segm"}
    for task in ("bbox", "segm"):
        assert 0.0 <= result.metrics[task]["AP"] <= 100.0
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["iteration"] for line in lines if "loss_mask" in line] == [1, 2, 3]
    accuracy_key = "point_accuracy" if supervision == "points" else "mask_accuracy"
    assert all(0.0 <= line[accuracy_key] <= 1.0 for line in lines if "loss_mask" in line)
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    assert json.loads((tmp_path / "final_metrics.json").read_text())["segm"]["AP"] == result.metrics["segm"]["AP"]


def test_killed_training_resumes_exactly(data, tmp_path):
    """SIGKILL a real training process after its first checkpoint, resume, and compare the final
    weights with an uninterrupted run: resuming restores weights, optimiser, schedule, RNG and
    data position exactly."""
    settings = overrides(data, "solver.max_iter=8", "solver.checkpoint_period=2", "data.val_json=null")
    straight = tmp_path / "straight"
    train(load_config(CPU_CONFIG, settings), straight)

    interrupted = tmp_path / "interrupted"
    env = {**os.environ, "POINTSUP_NO_PROGRESS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pointsup", "train", str(CPU_CONFIG), *settings, "--output", str(interrupted)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while not (interrupted / "model_0000002.pth").exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "model_final.pth").exists(), "the run finished before it was killed"

    result = train(load_config(CPU_CONFIG, settings), interrupted, resume=True)
    assert result.iterations == 8
    expected, resumed = final_weights(straight), final_weights(interrupted)
    assert expected.keys() == resumed.keys()
    for key in expected:
        torch.testing.assert_close(resumed[key], expected[key], rtol=0, atol=0, msg=key)
    iterations = [json.loads(line)["iteration"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert iterations == sorted(set(iterations)) and iterations[-1] == 8, "metrics continue without duplicates"


def test_diverging_loss_stops_with_iteration_and_checkpoint(data, tmp_path):
    settings = overrides(
        data,
        "solver.max_iter=30",
        "solver.checkpoint_period=1",
        "solver.base_lr=100000.0",
        "solver.warmup_iters=0",
        "solver.clip_gradients=false",
        "data.val_json=null",
    )
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at iteration \d+.*last good checkpoint is .*model_\d{7}\.pth"):
        train(load_config(CPU_CONFIG, settings), tmp_path)
    assert not (tmp_path / "model_final.pth").exists()
    kept = torch.load(tmp_path / (tmp_path / "last_checkpoint").read_text().strip(), weights_only=False)
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def _ddp_worker(settings: list[str], output: str) -> None:
    train_main(load_config(CPU_CONFIG, settings), output, False)


def test_two_process_ddp_on_cpu(data, tmp_path):
    settings = overrides(data, "solver.max_iter=2", "solver.checkpoint_period=100")
    launch(_ddp_worker, 2, (settings, str(tmp_path)), backend="gloo")
    metrics = json.loads((tmp_path / "final_metrics.json").read_text())
    assert set(metrics) == {"bbox", "segm"}
    config = json.loads(json.dumps(torch.load(tmp_path / "model_final.pth", weights_only=False)["extra"]["config"]))
    assert config["solver"]["ims_per_batch"] == 2


def test_eval_and_predict_commands(data, tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(CPU_CONFIG, overrides(data, "solver.max_iter=2", "data.val_json=null")), run)
    config = tmp_path / "config.yaml"
    config.write_text((run / "config.yaml").read_text())
    assert (
        cli_main(
            [
                "eval",
                str(config),
                f"data.val_json={data['val_json']}",
                f"data.val_images={data['images']}",
                "--weights",
                str(run / "model_final.pth"),
                "--output",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    assert "segm" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["segm"]["AP"] >= 0.0

    images = sorted(Path(data["images"]).glob("*.png"))[:2]
    assert (
        cli_main(
            [
                "predict",
                *map(str, images),
                "--weights",
                str(run / "model_final.pth"),
                "-o",
                str(tmp_path / "pred"),
                "--score-threshold",
                "0.0",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    predictions = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert [image["file_name"] for image in predictions["images"]] == [str(p) for p in images]
    assert all({"bbox", "score", "category_id", "segmentation"} <= set(a) for a in predictions["annotations"])
    assert len(list((tmp_path / "pred").glob("*_pred.png"))) == 2


def test_train_refuses_a_folder_holding_a_run_and_restart_moves_it_aside(data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", str(CPU_CONFIG), *overrides(data, "solver.max_iter=1", "data.val_json=null"), "--output", str(run)]
    assert cli_main(argv) == 0
    capsys.readouterr()
    old = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    assert {"model_final.pth", "metrics.jsonl", "final_metrics.json", "config.yaml"} <= set(old)

    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"pointsup train: error: --output {run} already holds a training run (") and "--resume" in err
    assert (run / "model_final.pth").read_bytes() == old["model_final.pth"]
    assert not any(path.name.startswith("previous-") for path in run.iterdir())

    assert cli_main([*argv, "--restart"]) == 0
    moved = [path for path in run.iterdir() if path.name.startswith("previous-")]
    assert len(moved) == 1 and f"moved the previous run in {run} to {moved[0]}" in capsys.readouterr().out
    assert {name: (moved[0] / name).read_bytes() for name in old} == old
    assert (run / "model_final.pth").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) == 1
    with pytest.raises(SystemExit):  # argparse: not allowed with --resume
        cli_main([*argv, "--resume", "--restart"])


def test_missing_image_is_named(data, tmp_path, capsys):
    coco = read_coco_json(data["train_json"])
    coco["images"][0]["file_name"] = "does_not_exist.png"
    broken = tmp_path / "broken.json"
    write_json_atomic(broken, coco)
    status = cli_main(
        [
            "train",
            str(CPU_CONFIG),
            *overrides(data, "solver.max_iter=2", f"data.train_json={broken}", "data.val_json=null"),
            "--output",
            str(tmp_path / "run"),
        ]
    )
    assert status == 2
    assert "does_not_exist.png" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_corrupt_image_stops_training_before_the_first_iteration(data, tmp_path, capsys, split):
    images = tmp_path / "images"
    images.mkdir()
    for source in Path(data["images"]).iterdir():
        (images / source.name).symlink_to(source)
    coco = read_coco_json(data["train_json"] if split == "train" else data["val_json"])
    victim = coco["images"][-1]["file_name"]
    (images / victim).unlink()
    (images / victim).write_bytes(b"not an image at all")
    status = cli_main(
        [
            "train",
            str(CPU_CONFIG),
            *overrides(data, "solver.max_iter=2", f"data.train_images={images}", f"data.val_images={images}"),
            "--output",
            str(tmp_path / "run"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert victim in err and "not a readable image" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # stopped before any iteration


def test_a_pretrained_lite0_model_predicts_where_its_weights_package_is_absent(data, tmp_path, monkeypatch):
    """The checkpoint holds every weight: predicting must not need the ImageNet weights package."""
    import dataclasses

    from pointsup.engine.predictor import load_trained_model, predict_files
    from pointsup.modeling.efficientnet_lite import VARIANTS

    lite0 = REPO_ROOT / "configs" / "cpu" / "synthetic_lite0_points.yaml"
    run = tmp_path / "run"
    result = train(
        load_config(
            lite0,
            [
                *overrides(data, "solver.max_iter=1", "data.val_json=null"),
                "model.backbone.name=efficientnet_lite0",
                "model.backbone.norm=frozen_bn",
                "model.backbone.trainable_layers=3",
                "model.backbone.weights=imagenet",
            ],
        ),
        run,
    )
    monkeypatch.setitem(
        VARIANTS,
        "efficientnet_lite0",
        dataclasses.replace(VARIANTS["efficientnet_lite0"], weights_package="efficientnet-lite0-absent-package"),
    )
    trained = load_trained_model(result.final_checkpoint, "cpu")
    assert trained.model.pixel_mean.flatten().tolist() == [127.5] * 3
    image = sorted(Path(data["images"]).glob("*.png"))[0]
    [(path, _, detections)] = list(predict_files(trained, [image]))
    assert path == image and detections.boxes.shape[1] == 4


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_lite0"])
def test_unreadable_backbone_weights_are_one_line_and_status_2(data, tmp_path, capsys, backbone):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x80\x02 not a checkpoint" * 10)
    status = cli_main(
        [
            "train",
            str(CPU_CONFIG),
            *overrides(data, f"model.backbone.name={backbone}", f"model.backbone.weights={bad}"),
            "--output",
            str(tmp_path / "run"),
        ]
    )
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1
    assert str(bad) in error and backbone in error


def test_bfloat16_autocast_on_the_cpu_trains(data, tmp_path):
    """solver.amp_cpu: the model computes in bfloat16 (the box head's output is bfloat16 during
    training), the weights stay float32 and finite, and no gradient scaler is saved."""
    config = load_config(CPU_CONFIG, overrides(data, "solver.amp_cpu=true", "solver.max_iter=2", "data.val_json="))
    assert mixed_precision_dtype(config.solver, torch.device("cpu")) == torch.bfloat16
    trainer = Trainer(config, tmp_path, DistributedContext(0, 1, 0, torch.device("cpu")), resume=False)
    seen = []
    trainer.model.roi_heads.box_head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer.run()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    checkpoint = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)
    assert not checkpoint.get("scaler")
    weights = [t for t in checkpoint["model"].values() if t.is_floating_point()]
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights)


def test_mixed_precision_is_off_on_the_cpu_by_default():
    solver = load_config(CPU_CONFIG).solver
    assert mixed_precision_dtype(solver, torch.device("cpu")) is None
    assert mixed_precision_dtype(solver, torch.device("cuda")) == torch.float16


@pytest.mark.parametrize("native", [True, False, None])
def test_bfloat16_autocast_warns_only_on_cpus_that_would_emulate_it(data, tmp_path, caplog, monkeypatch, native):
    """The hardware query is replaced (this machine has AVX-512 BF16); the trainer's reaction is
    real. None (a torch or CPU that cannot tell) gives no warning."""
    monkeypatch.setattr(trainer_module, "cpu_has_native_bfloat16", lambda: native)
    config = load_config(CPU_CONFIG, overrides(data, "solver.amp_cpu=true", "solver.max_iter=1", "data.val_json="))
    with caplog.at_level(logging.WARNING, logger=trainer_module.log.name):
        Trainer(config, tmp_path, DistributedContext(0, 1, 0, torch.device("cpu")), resume=False)
    warned = [r.getMessage() for r in caplog.records if "bfloat16" in r.getMessage()]
    assert (len(warned) == 1 and "solver.amp_cpu" in warned[0]) if native is False else warned == []


def test_the_native_bfloat16_query_matches_the_cpu_flags():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    expected = any(flag in flags.split() for flag in ("avx512_bf16", "amx_tile"))
    answer = cpu_has_native_bfloat16()
    if answer is None:
        pytest.skip("this torch or CPU cannot tell")
    assert answer == expected


def test_the_backbone_trains_channels_last_on_the_cpu(data, tmp_path):
    """Its convolutions then run channels-last (faster on a CPU), and the FPN's outputs are
    channels-last too."""
    config = load_config(CPU_CONFIG, overrides(data, "solver.max_iter=1", "data.val_json="))
    trainer = Trainer(config, tmp_path, DistributedContext(0, 1, 0, torch.device("cpu")), resume=False)
    convolutions = [m.weight for m in trainer.model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    features = trainer.model.backbone(torch.rand(1, 3, 64, 96))
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in features.values())
