"""Pseudo masks from a point-trained model and the GT boxes (self-training, paper §3.3.2)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pointsup.cli import main as cli_main
from pointsup.data.dataset import InstanceDataset
from pointsup.engine.config import load_config
from pointsup.engine.predictor import load_trained_model
from pointsup.engine.pseudo_label import PseudoLabelError, pseudo_label
from pointsup.engine.trainer import train
from pointsup.points.format import read_coco_json
from pointsup.points.rle import segmentation_to_rle
from pointsup.utils.atomic import write_json_atomic
from tests.engine.test_trainer import CPU_CONFIG, data, overrides  # noqa: F401  (data is a fixture)


@pytest.fixture(scope="module")
def weights(data, tmp_path_factory) -> Path:  # noqa: F811
    output = tmp_path_factory.mktemp("points_model")
    config = load_config(CPU_CONFIG, overrides(data, "solver.max_iter=4", "data.val_json="))
    return train(config, output).final_checkpoint


@pytest.fixture()
def dataset_with_crowd_and_empty_image(data, tmp_path) -> Path:  # noqa: F811
    """The P10 training file plus a crowd annotation and an image without annotations."""
    coco = read_coco_json(data["train_json"])
    crowd = {key: value for key, value in coco["annotations"][0].items() if key not in ("point_coords", "point_labels")}
    masks = {a["id"]: a for a in read_coco_json(data["train_masks"])["annotations"]}
    crowd.update(id=max(a["id"] for a in coco["annotations"]) + 1, iscrowd=1, segmentation=masks[crowd["id"]]["segmentation"])
    coco["annotations"].append(crowd)
    coco["images"].append({**coco["images"][0], "id": max(i["id"] for i in coco["images"]) + 1})
    path = tmp_path / "train_p10_extra.json"
    write_json_atomic(path, coco)
    return path


def _decode(segmentation: dict) -> np.ndarray:
    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")})


def test_one_mask_per_instance_inside_its_box_with_everything_else_kept(data, weights, dataset_with_crowd_and_empty_image, tmp_path):  # noqa: F811
    # a test size unlike the images' 128 px, so boxes are scaled to the model's input and back
    trained = load_trained_model(weights, "cpu", load_config(CPU_CONFIG, overrides(data, "data.min_size_test=96", "data.max_size_test=120")))
    output = tmp_path / "pseudo.json"
    report = pseudo_label(trained, dataset_with_crowd_and_empty_image, data["images"], output, weights=weights)

    source, result = read_coco_json(dataset_with_crowd_and_empty_image), read_coco_json(output)
    assert [a["id"] for a in result["annotations"]] == [a["id"] for a in source["annotations"]]
    assert result["images"] == source["images"] and result["categories"] == source["categories"]
    assert result["info"]["pseudo_labels"]["weights"] == str(weights)
    sizes = {i["id"]: (i["height"], i["width"]) for i in result["images"]}
    non_crowd = 0
    for before, after in zip(source["annotations"], result["annotations"]):
        if before["iscrowd"]:
            assert after == before
            continue
        non_crowd += 1
        for key in ("bbox", "category_id", "image_id", "point_coords", "point_labels"):
            assert after[key] == before[key]
        assert after["segmentation"]["size"] == list(sizes[after["image_id"]])
        mask = _decode(after["segmentation"])
        assert after["area"] == mask.sum()
        x, y, w, h = after["bbox"]
        outside = mask.copy()
        outside[max(0, math.floor(y)):math.ceil(y + h), max(0, math.floor(x)):math.ceil(x + w)] = 0
        assert outside.sum() == 0, f"annotation {after['id']}: pseudo mask leaves its box"
    assert report.instances == non_crowd and report.images == len(source["images"])
    assert report.empty_masks == sum(a["area"] == 0 for a in result["annotations"] if not a["iscrowd"])
    # the result is a valid mask-supervised training file
    masks_dataset = InstanceDataset(output, data["images"], supervision="masks")
    assert sum(len(masks_dataset[i].targets) for i in range(len(masks_dataset))) == non_crowd


def test_reported_agreement_and_iou_match_an_independent_count(data, weights, tmp_path):  # noqa: F811
    output = tmp_path / "pseudo.json"
    report = pseudo_label(load_trained_model(weights, "cpu"), data["train_json"], data["images"], output,
                          reference_json=data["train_masks"])
    result = read_coco_json(output)["annotations"]
    sizes = {i["id"]: (i["height"], i["width"]) for i in read_coco_json(output)["images"]}
    truth = {a["id"]: a["segmentation"] for a in read_coco_json(data["train_masks"])["annotations"]}
    agree = total = 0
    ious = []
    for ann in result:
        mask = _decode(ann["segmentation"]).astype(bool)
        coords, labels = np.array(ann["point_coords"]), np.array(ann["point_labels"])
        agree += int((mask[coords[:, 1], coords[:, 0]] == labels.astype(bool)).sum())
        total += len(labels)
        true = mask_utils.decode(segmentation_to_rle(truth[ann["id"]], *sizes[ann["image_id"]])).astype(bool)
        union = (mask | true).sum()
        ious.append((mask & true).sum() / union if union else 1.0)
    assert report.point_agreement == pytest.approx(agree / total)
    assert report.mean_iou == pytest.approx(float(np.mean(ious)))


def test_categories_of_another_dataset_are_refused(data, weights, tmp_path):  # noqa: F811
    coco = read_coco_json(data["train_json"])
    for category in coco["categories"]:
        category["id"] += 100
    for annotation in coco["annotations"]:
        annotation["category_id"] += 100
    other = tmp_path / "other.json"
    write_json_atomic(other, coco)
    with pytest.raises(PseudoLabelError, match="other.json"):
        pseudo_label(load_trained_model(weights, "cpu"), other, data["images"], tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_command_line(data, weights, tmp_path, capsys):  # noqa: F811
    output = tmp_path / "pseudo.json"
    status = cli_main(["pseudo-label", "--weights", str(weights), "--dataset", data["train_json"], "-o", str(output),
                       "--images", data["images"], "--reference", data["train_masks"], "--device", "cpu"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "mean IoU with the reference masks" in printed and str(output) in printed
    assert len(json.loads(output.read_text())["annotations"]) == len(read_coco_json(data["train_json"])["annotations"])

    missing = cli_main(["pseudo-label", "--weights", str(weights), "--dataset", data["train_json"], "-o", str(tmp_path / "x.json"),
                        "--images", str(tmp_path / "nowhere")])
    assert missing == 2 and "images folder not found" in capsys.readouterr().err


def test_model_without_mask_head_is_refused(data, weights, tmp_path):  # noqa: F811
    trained = load_trained_model(weights, "cpu")
    trained = copy.copy(trained)
    trained.model.roi_heads.point_mask_head, head = None, trained.model.roi_heads.point_mask_head
    try:
        with pytest.raises(PseudoLabelError, match="no mask head"):
            pseudo_label(trained, data["train_json"], data["images"], tmp_path / "out.json")
    finally:
        trained.model.roi_heads.point_mask_head = head
