"""Point simulation: reference parity, the sampling rule, noise models, determinism."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from pointsup.points.format import PointFormatError
from pointsup.points.rle import segmentation_to_rle
from pointsup.points.sampling import BOUNDARY_BIAS_PRESETS, BoundaryBias
from pointsup.points.simulate import (
    SimulationConfig,
    as_json_lists,
    sample_uniform_pixels,
    simulate,
    simulate_versions,
)
from pointsup.utils.atomic import encode_json
from tests.conftest import DATASETS, golden_file, require


def load(path):
    return json.loads(require(path).read_text())


def decoded_masks(coco: dict) -> dict:
    images = {image["id"]: image for image in coco["images"]}
    masks = {}
    for ann in coco["annotations"]:
        image = images[ann["image_id"]]
        masks[ann["id"]] = mask_utils.decode(segmentation_to_rle(ann["segmentation"], image["height"], image["width"]))
    return masks


# -- parity with the reference -------------------------------------------------------------


def test_compat_mode_reproduces_the_reference_file_exactly():
    source = load(golden_file("sim_input_instances_train2017.json"))
    expected = load(golden_file("sim_points_n10_v1.json"))
    result = as_json_lists(simulate(source, SimulationConfig(compat="detectron2")).coco)
    assert result == expected
    assert list(result) == list(expected)  # top-level key order: annotations last
    for ours, theirs in zip(result["annotations"], expected["annotations"]):
        assert list(ours) == list(theirs)


def test_compat_mode_first_draws_match_the_reference_raw_draws():
    torch = pytest.importorskip("torch")
    raw = torch.load(golden_file("sim_first_ann_raw.pt"), weights_only=False)
    source = load(golden_file("sim_input_instances_train2017.json"))
    first = simulate(source, SimulationConfig(compat="detectron2")).coco["annotations"][0]
    floored = [k for k in raw if "floor" in k or "coords" in k]
    assert floored, f"unexpected golden keys {list(raw)}"
    expected = np.asarray(raw[floored[0]]).reshape(-1, 2)
    np.testing.assert_array_equal(first["point_coords"], expected)


def test_compat_versions_continue_one_stream():
    source = load(golden_file("sim_input_instances_train2017.json"))
    expected = load(golden_file("sim_points_n10_v1.json"))
    versions = [as_json_lists(r.coco) for r in simulate_versions(source, SimulationConfig(compat="detectron2"), versions=2)]
    assert versions[0] == expected
    assert versions[1]["annotations"][0]["point_coords"] != versions[0]["annotations"][0]["point_coords"]
    # v2 is what the reference's second call produces: the draws right after v1's
    rng = np.random.RandomState(12345)
    rng.random_sample((len(source["annotations"]), 10, 2))
    u = rng.random_sample((10, 2))
    x, y, w, h = source["annotations"][0]["bbox"]
    assert versions[1]["annotations"][0]["point_coords"] == np.floor(u * [w, h] + [x, y]).astype(int).tolist()


def test_compat_mode_does_not_modify_its_input():
    source = load(golden_file("sim_input_instances_train2017.json"))
    before = copy.deepcopy(source)
    simulate(source, SimulationConfig(compat="detectron2"))
    assert source == before


# -- the default mode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "coco_mini/annotations/instances_train2017.json",
        "coco_mini/annotations/instances_val2017.json",
        "balloon/instances_train.json",
        "balloon/instances_val.json",
        "fruits_nuts/data/trainval.json",
    ],
)
def test_every_shared_dataset_simulates_with_full_agreement(relative):
    coco = load(DATASETS / relative)
    result = simulate(coco, SimulationConfig())
    statistics = result.statistics
    assert statistics.agreement_with_masks == 1.0
    assert statistics.instances == sum(1 for a in coco["annotations"] if not a.get("iscrowd", 0))
    masks = decoded_masks(coco)
    for ann in as_json_lists(result.coco)["annotations"]:
        if ann.get("iscrowd", 0):
            assert "point_coords" not in ann and "point_labels" not in ann
            continue
        xy = np.array(ann["point_coords"])
        assert xy.shape == (10, 2)
        assert ann["point_labels"] == masks[ann["id"]][xy[:, 1], xy[:, 0]].tolist()
        assert "segmentation" not in ann


def square_dataset(box, image_size, mask_box=None):
    """One image with one rectangular-mask annotation; ``box`` is COCO [x, y, w, h]."""
    height, width = image_size
    mask = np.zeros((height, width), np.uint8)
    mx, my, mw, mh = [int(v) for v in (mask_box or box)]
    mask[my : my + mh, mx : mx + mw] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": height, "width": width}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": list(box), "area": 1.0, "iscrowd": 0, "segmentation": rle}],
    }, mask


@settings(max_examples=80, deadline=None)
@given(
    height=st.integers(2, 60),
    width=st.integers(2, 60),
    fractions=st.tuples(*[st.floats(0, 1, allow_nan=False)] * 4),
    num_points=st.integers(1, 30),
    seed=st.integers(0, 2**31),
)
def test_points_lie_in_box_and_image_and_carry_the_mask_value(height, width, fractions, num_points, seed):
    fx, fy, fw, fh = fractions
    x, y = fx * (width - 1), fy * (height - 1)
    w, h = max(fw * (width - x), 0.01), max(fh * (height - y), 0.01)
    coco, _ = square_dataset([x, y, w, h], (height, width), mask_box=[0, 0, width // 2 + 1, height // 2 + 1])
    mask = mask_utils.decode(coco["annotations"][0]["segmentation"])
    result = simulate(coco, SimulationConfig(num_points=num_points, seed=seed))
    ann = result.coco["annotations"][0]
    xy = np.asarray(ann["point_coords"])
    assert xy.shape == (num_points, 2)
    assert (xy[:, 0] >= 0).all() and (xy[:, 0] < width).all() and (xy[:, 1] >= 0).all() and (xy[:, 1] < height).all()
    # the pixel holds part of the box: its square [d, d + 1) meets [x, x + w)
    assert (xy[:, 0] + 1 > x).all() and (xy[:, 0] < x + w).all()
    assert (xy[:, 1] + 1 > y).all() and (xy[:, 1] < y + h).all()
    np.testing.assert_array_equal(ann["point_labels"], mask[xy[:, 1], xy[:, 0]])


def test_same_input_and_options_give_byte_identical_output():
    coco = load(DATASETS / "fruits_nuts/data/trainval.json")
    config = SimulationConfig(label_noise=0.05, boundary_noise=0.05, boundary_bias=BOUNDARY_BIAS_PRESETS["mild"])
    first = encode_json(simulate(coco, config).coco)
    second = encode_json(simulate(coco, config).coco)
    assert first == second
    other_seed = encode_json(simulate(coco, SimulationConfig(seed=1)).coco)
    assert other_seed != encode_json(simulate(coco, SimulationConfig()).coco)


def test_versions_differ_and_the_labelling_tool_sees_the_same_points():
    coco = load(DATASETS / "fruits_nuts/data/trainval.json")
    v1, v2 = simulate_versions(coco, SimulationConfig(seed=3), versions=2)
    a1 = {a["id"]: np.asarray(a["point_coords"]) for a in v1.coco["annotations"]}
    a2 = {a["id"]: np.asarray(a["point_coords"]) for a in v2.coco["annotations"]}
    assert any(not np.array_equal(a1[k], a2[k]) for k in a1)
    for version, points in ((1, a1), (2, a2)):
        shown = sample_uniform_pixels(coco, 10, seed=3, version=version)
        assert set(shown) == set(points)
        for key in shown:
            np.testing.assert_array_equal(shown[key], points[key])


# -- noise models ----------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_random_label_noise_flips_exactly_that_fraction(fraction):
    coco = load(DATASETS / "coco_mini/annotations/instances_val2017.json")
    clean = simulate(coco, SimulationConfig())
    noisy = simulate(coco, SimulationConfig(label_noise=fraction))
    flipped = noisy.statistics.flipped_by_label_noise
    assert flipped == round(fraction * clean.statistics.points)
    assert noisy.statistics.agreement_with_masks == pytest.approx(1 - flipped / clean.statistics.points)
    # noise never moves the points
    for a, b in zip(clean.coco["annotations"], noisy.coco["annotations"]):
        np.testing.assert_array_equal(a.get("point_coords", []), b.get("point_coords", []))


def test_boundary_noise_flips_the_points_closest_to_the_boundary():
    # A 20x20 square mask in a 40x40 box: the distance to its boundary is known in closed form.
    coco, mask = square_dataset([0, 0, 40, 40], (40, 40), mask_box=[10, 10, 20, 20])
    config = SimulationConfig(num_points=400, boundary_noise=0.1)
    clean = simulate(coco, SimulationConfig(num_points=400)).coco["annotations"][0]
    noisy = simulate(coco, config).coco["annotations"][0]
    xy = np.asarray(clean["point_coords"])
    flipped = np.asarray(clean["point_labels"]) != np.asarray(noisy["point_labels"])
    assert flipped.sum() == 40
    # Chebyshev-free check: distance of a pixel to the nearest pixel of the other value.
    inside = mask[xy[:, 1], xy[:, 0]] == 1
    to_edge = np.minimum.reduce([xy[:, 0] - 10, 29 - xy[:, 0], xy[:, 1] - 10, 29 - xy[:, 1]]) + 1
    outside_distance = np.hypot(np.clip(10 - xy[:, 0], 0, None) + np.clip(xy[:, 0] - 29, 0, None),
                                np.clip(10 - xy[:, 1], 0, None) + np.clip(xy[:, 1] - 29, 0, None))
    distance = np.where(inside, to_edge, np.maximum(outside_distance, 1))
    assert distance[flipped].max() <= distance[~flipped].min()


def test_boundary_bias_moves_points_toward_the_boundary():
    coco = load(DATASETS / "fruits_nuts/data/trainval.json")
    masks = decoded_masks(coco)
    from scipy.ndimage import distance_transform_edt

    def mean_distance(result):
        distances = []
        for ann in as_json_lists(result.coco)["annotations"][:60]:
            x, y, w, h = ann["bbox"]
            x0, y0 = max(int(x) - 2, 0), max(int(y) - 2, 0)
            mask = masks[ann["id"]][y0 : int(y + h) + 3, x0 : int(x + w) + 3]
            edt = np.where(mask == 1, distance_transform_edt(mask), distance_transform_edt(1 - mask))
            xy = np.array(ann["point_coords"]) - [x0, y0]
            distances.append(edt[xy[:, 1], xy[:, 0]])
        return float(np.mean(np.concatenate(distances)))

    uniform = mean_distance(simulate(coco, SimulationConfig()))
    mild = mean_distance(simulate(coco, SimulationConfig(boundary_bias=BOUNDARY_BIAS_PRESETS["mild"])))
    heavy = mean_distance(simulate(coco, SimulationConfig(boundary_bias=BOUNDARY_BIAS_PRESETS["heavy"])))
    assert heavy < mild < uniform
    assert simulate(coco, SimulationConfig(boundary_bias=BoundaryBias(10, 1.0))).statistics.agreement_with_masks == 1.0


# -- configuration and bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_points": 0}, "num_points"),
        ({"compat": "mmdet"}, "compat"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"label_noise": 0.6, "boundary_noise": 0.6}, "may not exceed"),
        ({"compat": "detectron2", "boundary_bias": BoundaryBias(3, 0.75)}, "not part of the reference"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**kwargs)


def test_missing_or_broken_masks_name_the_annotation():
    coco, _ = square_dataset([2, 2, 10, 10], (20, 20))
    broken = copy.deepcopy(coco)
    del broken["annotations"][0]["segmentation"]
    with pytest.raises(PointFormatError, match=r"(?s)in\.json.*annotation id 7: has no segmentation"):
        simulate(broken, source="in.json")
    broken = copy.deepcopy(coco)
    broken["annotations"][0]["segmentation"] = {"size": [20, 20], "counts": [5, 5]}
    with pytest.raises(PointFormatError, match="annotation id 7: malformed uncompressed RLE"):
        simulate(broken)
    broken = copy.deepcopy(coco)
    broken["annotations"][0]["segmentation"] = {"size": [10, 10], "counts": [100]}
    with pytest.raises(PointFormatError, match=r"annotation id 7: mask size \[10, 10\] differs"):
        simulate(broken)


@pytest.mark.parametrize("compat", ["pointsup", "detectron2"])
@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("iscrowd", "no", "iscrowd must be 0 or 1"),
        ("iscrowd", 2, "iscrowd must be 0 or 1"),
        ("iscrowd", None, "iscrowd must be 0 or 1"),
        ("segmentation", [[2, 2, 12, "2", 12, 12, 2, 12]], "segmentation polygon 0 holds '2'"),
        ("segmentation", [[2, 2, 12, True, 12, 12, 2, 12]], "segmentation polygon 0 holds True"),
        ("segmentation", [[2, 2, 12, None, 12, 12, 2, 12]], "segmentation polygon 0 holds None"),
        ("segmentation", [[2, 2, 12, float("nan"), 12, 12, 2, 12]], "segmentation polygon 0 holds nan"),
        ("segmentation", [[2, 2, 12, float("inf"), 12, 12, 2, 12]], "segmentation polygon 0 holds inf"),
        ("segmentation", [[2, 2, 12, 2]], "segmentation polygon 0 must hold an even count"),
        ("segmentation", {"size": [20, 20], "counts": [100, -5, 305]}, "segmentation RLE counts must be non-negative"),
        ("segmentation", {"size": [20.0, 20], "counts": [400]}, "segmentation RLE size must be"),
    ],
    ids=["crowd-no", "crowd-2", "crowd-null", "poly-string", "poly-bool", "poly-null", "poly-nan", "poly-inf", "poly-short",
         "rle-negative", "rle-float-size"],
)
def test_ill_typed_annotations_are_refused_before_sampling(field, value, fragment, compat):
    coco, _ = square_dataset([2, 2, 10, 10], (20, 20))
    coco["annotations"][0][field] = value
    with pytest.raises(PointFormatError, match=r"(?s)^in\.json: .*annotation id 7: ") as error:
        simulate(coco, SimulationConfig(compat=compat), source="in.json")
    assert len(error.value.problems) == 1 and error.value.problems[0].startswith(f"annotation id 7: {fragment}")


def test_compat_mode_reports_a_box_reaching_outside_its_image():
    coco, _ = square_dataset([10, 10, 10.9, 10], (20, 20))  # x1 = 20.9: within tolerance, past the border
    with pytest.raises(PointFormatError, match="annotation id 7: box .* reaches outside"):
        simulate(coco, SimulationConfig(compat="detectron2", num_points=200))
    # the default mode clips the box to the image instead
    ann = simulate(coco, SimulationConfig(num_points=200)).coco["annotations"][0]
    assert np.asarray(ann["point_coords"])[:, 0].max() <= 19


def test_one_broken_rle_among_valid_ones_is_the_only_one_reported():
    coco, _ = square_dataset([2, 2, 10, 10], (20, 20))
    good = {"size": [20, 20], "counts": [100, 300]}
    coco["annotations"][0]["segmentation"] = good
    for k in range(3):
        coco["annotations"].append({**coco["annotations"][0], "id": 100 + k, "segmentation": dict(good)})
    coco["annotations"][2]["segmentation"] = {"size": [20, 20], "counts": [100, 5, 305]}  # sums to 410, not 400
    with pytest.raises(PointFormatError) as error:
        simulate(coco)
    assert error.value.problems == ["annotation id 101: malformed uncompressed RLE (negative counts, or counts not summing to height*width)"]


def test_boundary_options_report_broken_masks_too():
    coco, _ = square_dataset([2, 2, 10, 10], (20, 20))
    del coco["annotations"][0]["segmentation"]
    with pytest.raises(PointFormatError, match="annotation id 7: has no segmentation"):
        simulate(coco, SimulationConfig(boundary_noise=0.1))
