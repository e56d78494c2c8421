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
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.engine.config import load_config
from pointsup.engine.predictor import load_trained_model
from pointsup.engine.pseudo_label import PseudoLabelError, pseudo_label, reference_mismatch
from pointsup.engine.trainer import train
from pointsup.points.format import read_coco_json, validate_coco
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


# -- the reference must be a file of the same images and objects -----------------------------


def _coco() -> dict:
    """Two images, three annotations (a small dataset with masks)."""
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "b.png", "width": 20, "height": 50}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2.0, 2.0, 10.0, 10.0], "iscrowd": 0, "segmentation": square},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [20.0, 5.0, 15.0, 20.0], "iscrowd": 0, "segmentation": square},
            {"id": 12, "image_id": 2, "category_id": 1, "bbox": [1.0, 30.0, 8.0, 12.0], "iscrowd": 0, "segmentation": square},
        ],
    }


def _mismatch(change) -> str | None:
    reference = _coco()
    change(reference)
    return reference_mismatch(validate_coco(_coco(), "data.json", require_points=False),
                              validate_coco(reference, "ref.json", require_points=False))


def _shuffle_ids(coco: dict) -> None:
    for ann, new_id in zip(coco["annotations"], (11, 12, 10)):
        ann["id"] = new_id


def _set(index: int, **fields):
    return lambda coco: coco["annotations"][index].update(fields)


def test_the_right_reference_fits() -> None:
    assert _mismatch(lambda coco: None) is None
    assert _mismatch(lambda coco: coco["images"].append({"id": 3, "file_name": "c.png", "width": 9, "height": 9})) is None  # superset
    assert _mismatch(_set(1, bbox=[20.9, 4.1, 15.0, 20.0])) is None  # within 1 px
    assert _mismatch(lambda coco: coco["annotations"].pop(2)) is None  # masks for some objects only


@pytest.mark.parametrize(
    "change, fragments",
    [
        (_shuffle_ids, ["annotation id 10 is on image id 1 in data.json but on image id 2 in ref.json"]),
        (_set(1, bbox=[21.5, 5.0, 15.0, 20.0]), ["annotation id 11 has box [20, 5, 15, 20] in data.json but [21.5, 5, 15, 20] in ref.json"]),
        (_set(1, bbox=[20.0, 5.0, 15.0, 18.5]), ["annotation id 11", "more than 1 px apart"]),
        (_set(2, image_id=1, bbox=[1.0, 10.0, 8.0, 12.0]), ["annotation id 12 is on image id 2 in data.json but on image id 1 in ref.json"]),
        (lambda coco: coco["images"][1].update(file_name="other.png"), ["image id 2 is b.png (20x50) in data.json but other.png (20x50) in ref.json"]),
        (lambda coco: coco["images"][0].update(width=41), ["image id 1 is a.png (40x30) in data.json but a.png (41x30) in ref.json"]),
        (lambda coco: coco.update(images=coco["images"][:1], annotations=coco["annotations"][:2]), ["image id 2 (b.png) of data.json is not in ref.json"]),
        (lambda coco: [a.update(id=a["id"] + 100) for a in coco["annotations"]], ["no annotation id of data.json is in ref.json"]),
    ],
    ids=["shuffled-ids", "box-x", "box-height", "other-image", "file-name", "size", "missing-image", "no-shared-id"],
)
def test_a_reference_of_other_objects_is_named(change, fragments) -> None:
    message = _mismatch(change)
    assert message is not None and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def _unrelated_reference(data, tmp_path: Path) -> Path:  # noqa: F811
    """Masks of another synthetic dataset: the same file names, sizes and annotation ids."""
    other = generate_synthetic_dataset(tmp_path / "other", num_images=8, seed=7, image_size=128, val_fraction=0.25, show_progress=False)
    ours, theirs = read_coco_json(data["train_masks"]), read_coco_json(other.train_json)
    assert ours["images"] == theirs["images"] and {a["id"] for a in theirs["annotations"]} & {a["id"] for a in ours["annotations"]}
    return Path(other.train_json)


def _shuffled_reference(data, tmp_path: Path) -> Path:  # noqa: F811
    """The true masks with their annotation ids permuted."""
    coco = read_coco_json(data["train_masks"])
    ids = [a["id"] for a in coco["annotations"]]
    for ann, new_id in zip(coco["annotations"], np.random.default_rng(0).permutation(ids).tolist()):
        ann["id"] = new_id
    path = tmp_path / "shuffled.json"
    write_json_atomic(path, coco)
    return path


@pytest.mark.parametrize("make_reference", [_unrelated_reference, _shuffled_reference], ids=["unrelated", "shuffled"])
def test_pseudo_label_refuses_a_foreign_reference_before_predicting(data, tmp_path, make_reference):  # noqa: F811
    reference = make_reference(data, tmp_path)
    # the refusal comes before the model is used, so none is needed here
    with pytest.raises(PseudoLabelError, match=rf"reference masks do not belong .*{data['train_json']}.*{reference}"):
        pseudo_label(None, data["train_json"], data["images"], tmp_path / "out.json", reference_json=reference)  # type: ignore[arg-type]
    assert not (tmp_path / "out.json").exists()


def test_command_line_refuses_a_foreign_reference_in_one_line(data, weights, tmp_path, capsys):  # noqa: F811
    reference = _shuffled_reference(data, tmp_path)
    output = tmp_path / "pseudo.json"
    status = cli_main(["pseudo-label", "--weights", str(weights), "--dataset", data["train_json"], "-o", str(output),
                       "--images", data["images"], "--reference", str(reference), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("pointsup pseudo-label: error: the reference masks do not belong to the dataset: annotation id")
    assert data["train_json"] in err and str(reference) in err
    assert not output.exists()
