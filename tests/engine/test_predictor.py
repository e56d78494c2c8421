"""The Predictor API and `pointsup predict` on a checkpoint trained for a few iterations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

import pointsup
from pointsup.cli import main as cli_main
from pointsup.engine.config import load_config
from pointsup.engine.predict_main import JOURNAL_FILE, PREDICTIONS_FILE, expand_image_inputs
from pointsup.engine.predictor import Predictor, PredictorInputError, load_trained_model, predict_files
from pointsup.engine.trainer import train
from tests.conftest import REPO_ROOT
from tests.engine.test_trainer import CPU_CONFIG, data, overrides  # noqa: F401  (data is a fixture)

#: Low enough that the barely trained model keeps detections.
THRESHOLD = 0.05


@pytest.fixture(scope="module")
def weights(data, tmp_path_factory) -> Path:  # noqa: F811
    run = tmp_path_factory.mktemp("run")
    return train(load_config(CPU_CONFIG, overrides(data, "solver.max_iter=2", "data.val_json=null")), run).final_checkpoint


@pytest.fixture(scope="module")
def images(data) -> list[Path]:  # noqa: F811
    return sorted(Path(data["images"]).glob("*.png"))


@pytest.fixture(scope="module")
def predictor(weights) -> Predictor:
    return Predictor.from_checkpoint(weights, device="cpu", score_threshold=THRESHOLD)


def test_a_path_a_pil_image_and_an_array_give_the_same_prediction(predictor, images):
    by_path = predictor(images[0])
    array = np.asarray(Image.open(images[0]).convert("RGB"))
    for other in (predictor(Image.open(images[0])), predictor(array)):
        np.testing.assert_array_equal(other.boxes, by_path.boxes)
        np.testing.assert_array_equal(other.scores, by_path.scores)
        np.testing.assert_array_equal(other.masks, by_path.masks)
    height, width = array.shape[:2]
    assert len(by_path) > 0 and by_path.image_size == (height, width)
    assert by_path.boxes.shape == (len(by_path), 4) and by_path.boxes.dtype == np.float32
    assert by_path.masks.shape == (len(by_path), height, width) and by_path.masks.dtype == bool
    assert (by_path.scores >= THRESHOLD).all() and (np.diff(by_path.scores) <= 0).all()
    assert by_path.class_names == [predictor.category_names[k] for k in by_path.labels]
    assert pointsup.Predictor is Predictor


def test_predictions_are_the_models_detections_above_the_threshold(predictor, weights, images):
    [(_, _, detections)] = list(predict_files(load_trained_model(weights, "cpu"), [images[1]]))
    keep = detections.scores >= THRESHOLD
    prediction = predictor(images[1])
    np.testing.assert_array_equal(prediction.boxes, detections.boxes[keep].numpy())
    trained = predictor.trained
    assert prediction.class_ids.tolist() == [trained.label_to_category_id[int(k)] for k in detections.classes[keep]]
    strict = Predictor(trained, score_threshold=float(prediction.scores[0]))
    assert len(strict(images[1])) == int((detections.scores >= prediction.scores[0]).sum()) >= 1


def test_rle_masks_decode_to_the_bitmasks(predictor, images):
    rle = Predictor(predictor.trained, THRESHOLD, mask_format="rle")(images[2])
    bitmask = predictor(images[2])
    assert len(rle.masks) == len(bitmask)
    for encoded, mask in zip(rle.masks, bitmask.masks):
        assert isinstance(encoded["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(encoded).astype(bool), mask)
    assert Predictor(predictor.trained, THRESHOLD, mask_format="none")(images[2]).masks is None


def test_batch_matches_one_image_at_a_time(predictor, images):
    batched = predictor.batch(images[:3], batch_size=2)  # same-size images: no extra padding
    assert len(batched) == 3
    for image, result in zip(images[:3], batched):
        single = predictor(image)
        np.testing.assert_allclose(result.boxes, single.boxes, atol=1e-4)
        np.testing.assert_allclose(result.scores, single.scores, atol=1e-5)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32), dtype=np.uint8), r"\(H, W, 3\) uint8 RGB, got shape \(32, 32\)"),
        (np.zeros((32, 32, 3), dtype=np.float32), "dtype float32"),
        (42, "got int"),
    ],
)
def test_bad_images_are_refused_in_one_line(predictor, image, message):
    with pytest.raises(PredictorInputError, match=message) as error:
        predictor(image)
    assert "\n" not in str(error.value)


def test_bad_settings_are_refused(predictor):
    with pytest.raises(PredictorInputError, match="score_threshold"):
        Predictor(predictor.trained, score_threshold=1.5)
    with pytest.raises(PredictorInputError, match="mask_format"):
        Predictor(predictor.trained, mask_format="polygon")  # type: ignore[arg-type]


def test_inputs_expand_folders_and_globs(data, tmp_path, capsys):  # noqa: F811
    folder = Path(data["images"])
    pngs = sorted(folder.glob("*.png"))
    assert expand_image_inputs([folder]) == pngs
    assert expand_image_inputs([str(folder / "00000[12].png"), pngs[0]]) == [*pngs[:2], pngs[0]]
    for bad, says in [(tmp_path / "absent.png", "no such image file or folder"), (str(tmp_path / "*.jpg"), "no file matches"),
                      (tmp_path, "a folder without image files")]:
        assert cli_main(["predict", str(bad), "--weights", "w.pth", "-o", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and says in error and str(bad) in error, error


def read_results(folder: Path) -> dict:
    return json.loads((folder / PREDICTIONS_FILE).read_text())


def test_predict_folder_in_batches_with_workers_and_no_overlays(data, weights, images, tmp_path, capsys):  # noqa: F811
    one = tmp_path / "one"
    assert cli_main(["predict", data["images"], "--weights", str(weights), "-o", str(one), "--score-threshold", "0.05",
                     "--device", "cpu", "--workers", "0", "--no-overlays"]) == 0
    batched = tmp_path / "batched"
    assert cli_main(["predict", data["images"], "--weights", str(weights), "-o", str(batched), "--score-threshold", "0.05",
                     "--device", "cpu", "--batch-size", "3", "--workers", "1"]) == 0
    first, second = read_results(one), read_results(batched)
    assert [image["file_name"] for image in first["images"]] == [str(p) for p in images]
    assert first["images"] == second["images"] and len(first["annotations"]) == len(second["annotations"]) > 0
    for a, b in zip(first["annotations"], second["annotations"]):
        assert a["image_id"] == b["image_id"] and a["category_id"] == b["category_id"]
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-3)
    assert sorted(p.name for p in one.iterdir()) == [PREDICTIONS_FILE]  # no overlays, no journal left
    assert len(list(batched.glob("*_pred.png"))) == len(images)


def test_an_interrupted_run_resumes_and_never_leaves_a_broken_file(data, weights, tmp_path):  # noqa: F811
    """SIGKILL a real `pointsup predict` process once it has recorded some images, check that no
    broken predictions.json exists, cut the journal's last line in half as a kill during a write
    would, resume, and compare with an uninterrupted run."""
    many = tmp_path / "many"
    many.mkdir()
    sources = sorted(Path(data["images"]).glob("*.png"))
    for k in range(120):  # enough images that the run is still going when it is killed
        (many / f"{k:04d}.png").symlink_to(sources[k % len(sources)])
    argv = [str(many), "--weights", str(weights), "--score-threshold", "0.05", "--device", "cpu", "--workers", "0",
            "--no-overlays"]
    straight = tmp_path / "straight"
    assert cli_main(["predict", *argv, "-o", str(straight)]) == 0

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "pointsup", "predict", *argv, "-o", str(interrupted)], cwd=REPO_ROOT,
                               env={**os.environ, "POINTSUP_NO_PROGRESS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = interrupted / JOURNAL_FILE
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 4):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no image recorded within 300 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / PREDICTIONS_FILE).exists(), "the run finished before it was killed"
    lines = journal.read_bytes().splitlines(keepends=True)
    done = len(lines) - 1
    assert 3 <= done < 120
    journal.write_bytes(b"".join(lines) + lines[-1][: len(lines[-1]) // 2])  # a write cut short

    assert cli_main(["predict", *argv, "-o", str(interrupted)]) == 0
    assert not journal.exists()
    expected, resumed = read_results(straight), read_results(interrupted)
    assert resumed["images"] == expected["images"] and len(resumed["annotations"]) == len(expected["annotations"])
    for a, b in zip(expected["annotations"], resumed["annotations"]):
        assert (a["image_id"], a["category_id"], a["segmentation"]) == (b["image_id"], b["category_id"], b["segmentation"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-4)


def test_a_journal_of_other_settings_is_refused(data, weights, tmp_path, capsys):  # noqa: F811
    output = tmp_path / "out"
    output.mkdir()
    (output / JOURNAL_FILE).write_text(json.dumps({"pointsup_predict_journal": 1, "weights": "other.pth"}) + "\n")
    status = cli_main(["predict", data["images"], "--weights", str(weights), "-o", str(output), "--device", "cpu"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1 and JOURNAL_FILE in error and "delete the file" in error
    assert not (output / PREDICTIONS_FILE).exists()


def test_predict_refuses_to_overwrite_an_input(data, weights, tmp_path, capsys):  # noqa: F811
    victim = tmp_path / PREDICTIONS_FILE
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(victim, format="PNG")
    before = victim.read_bytes()
    assert cli_main(["predict", str(victim), "--weights", str(weights), "-o", str(tmp_path), "--device", "cpu"]) == 2
    assert "would write" in capsys.readouterr().err and victim.read_bytes() == before


def test_checkpoint_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(pointsup.errors.PointsupError):
        Predictor.from_checkpoint(bad, device="cpu")
