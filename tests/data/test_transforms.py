"""Tests of the point-aware augmentations (pointsup.data.transforms)."""

from __future__ import annotations

import enum
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from pointsup.data.dataset import InstanceDataset
from pointsup.data.transforms import (
    Compose,
    LargeScaleJitter,
    PointSubsample,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    build_test_transforms,
    build_train_transforms,
    crop_sample,
    finish_geometry,
    hflip_sample,
    resize_masks,
    resize_sample,
    shortest_edge_size,
)
from pointsup.structures.instances import InstanceTargets, Sample
from tests.conftest import golden_file


def make_sample(
    height: int,
    width: int,
    boxes: list[list[float]],
    points: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> Sample:
    """A sample with N instances; ``points`` (N, P, 2) continuous, ``labels`` (N, P)."""
    num = len(boxes)
    pixels = np.zeros((3, height, width), np.uint8) if image is None else image
    targets = InstanceTargets(
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(num, 4),
        classes=torch.arange(num, dtype=torch.int64),
        point_coords=torch.as_tensor(points, dtype=torch.float32).reshape(num, -1, 2),
        point_labels=torch.as_tensor(labels, dtype=torch.float32).reshape(num, -1),
        masks=None if masks is None else torch.as_tensor(masks, dtype=torch.uint8),
        annotation_ids=torch.arange(num, dtype=torch.int64) + 100,
    )
    return Sample(image=torch.from_numpy(pixels), image_id=1, file_name="x.png", original_size=(height, width), targets=targets)


# ---------------------------------------------------------------------------------------
# Parity with the reference mapper


@pytest.fixture()
def golden_mapper(monkeypatch: pytest.MonkeyPatch) -> dict:
    """mapper.pt, whose pickled dataset dicts name detectron2's BoxMode enum: stub it."""
    path = golden_file("mapper.pt")
    boxes = types.ModuleType("detectron2.structures.boxes")
    boxes.BoxMode = enum.IntEnum("BoxMode", {"XYXY_ABS": 0, "XYWH_ABS": 1, "XYXY_REL": 2, "XYWH_REL": 3, "XYWHA_ABS": 4})  # type: ignore[attr-defined]
    for name in ("detectron2", "detectron2.structures"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "detectron2.structures.boxes", boxes)
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("sample_points", [0, 5])
def test_matches_reference_mapper(golden_mapper: dict, tmp_path: Path, sample_points: int) -> None:
    """Resize to short side 200 + forced flip (+ 5 sampled points) on the files the golden
    vectors were made from; a RandomState(0) shared by the 4 images, as np.random.seed(0)."""
    source = golden_file("sim_points_n10_v1.json")
    for image in json.loads(source.read_text())["images"]:
        Image.new("RGB", (image["width"], image["height"])).save(tmp_path / image["file_name"])
    dataset = InstanceDataset(source, tmp_path, supervision="points", filter_empty=True)
    transforms = Compose([ResizeShortestEdge((200,), 1333, "choice"), RandomHorizontalFlip(1.0), PointSubsample(sample_points)])
    rng = np.random.RandomState(0)
    expected = golden_mapper["results"][f"sample_points_{sample_points}"]
    assert len(expected) == 4
    for index, reference in enumerate(expected):
        sample = transforms(dataset[index], rng)
        assert Path(sample.file_name).name == reference["file_name"]
        assert tuple(sample.original_size) == tuple(reference["orig_hw"])
        assert tuple(sample.image_size) == tuple(reference["image_hw"])
        targets = sample.targets
        torch.testing.assert_close(targets.boxes, reference["gt_boxes"], rtol=0, atol=1e-4)
        assert torch.equal(targets.classes, reference["gt_classes"])
        torch.testing.assert_close(targets.point_coords.double(), reference["gt_point_coords"], rtol=0, atol=1e-4)
        assert torch.equal(targets.point_labels.double(), reference["gt_point_labels"])


def test_inclusive_border_rule_and_flip_match_reference() -> None:
    golden = torch.load(golden_file("mapper_crafted_bounds.pt"), weights_only=False)
    coords, labels = golden["in_coords"].numpy(), golden["in_labels"].numpy()
    sample = make_sample(20, 20, [[0, 0, 20, 20]], coords[None], labels[None])
    noop = sample.with_targets(finish_geometry(sample.targets, (20, 20)))
    assert torch.equal(noop.targets.point_coords[0].double(), golden["noop_coords"])
    assert torch.equal(noop.targets.point_labels[0].double(), golden["noop_labels"])
    flipped = hflip_sample(sample)
    assert torch.equal(flipped.targets.point_coords[0].double(), golden["hflip_coords"])
    assert torch.equal(flipped.targets.point_labels[0].double(), golden["hflip_labels"])


def test_points_exactly_on_the_border_are_inside() -> None:
    points = np.array([[[0.0, 0.0], [20.0, 10.0], [10.0, 20.0], [20.0, 20.0], [-1e-3, 5.0], [20.001, 5.0]]])
    sample = make_sample(20, 20, [[0, 0, 20, 20]], points, np.ones((1, 6)))
    labels = finish_geometry(sample.targets, (20, 20)).point_labels
    assert labels.tolist() == [[1, 1, 1, 1, -1, -1]]


# ---------------------------------------------------------------------------------------
# Resize, flip, crop, LSJ, point subsampling


@pytest.mark.parametrize(
    ("height", "width", "short", "max_size", "expected"),
    [
        (150, 170, 200, 1333, (200, 227)),
        (141, 139, 200, 1333, (203, 200)),
        (1536, 2048, 800, 1333, (800, 1067)),
        (480, 2000, 800, 1333, (320, 1333)),  # long side capped
        (100, 100, 64, 1333, (64, 64)),
    ],
)
def test_shortest_edge_size(height: int, width: int, short: int, max_size: int, expected: tuple[int, int]) -> None:
    assert shortest_edge_size(height, width, short, max_size) == expected


def test_resize_scales_boxes_points_and_masks() -> None:
    masks = np.zeros((1, 10, 20), np.uint8)
    masks[0, 2:5, 4:9] = 1
    sample = make_sample(10, 20, [[4, 2, 9, 5]], np.array([[[4.5, 2.5], [19.5, 9.5]]]), np.array([[1, 0]]), masks)
    out = resize_sample(sample, 30, 40)
    assert out.image.shape == (3, 30, 40) and out.image.dtype == torch.uint8
    assert out.targets.boxes.tolist() == [[8, 6, 18, 15]]
    assert out.targets.point_coords.tolist() == [[[9, 7.5], [39, 28.5]]]
    expected = np.zeros((30, 40), np.uint8)
    expected[6:15, 8:18] = 1
    assert np.array_equal(out.targets.masks[0].numpy(), expected)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 1400),
    st.integers(1, 1400),
    st.integers(0, 2**32 - 1),
)
@example(1, 2, 1, 787, 1, 0)  # 393.5 * 2 / 787 is 1 exactly, but 0.99999994 in float32
def test_mask_resize_gives_the_bits_of_nearest_exact_interpolation(
    count: int, height: int, width: int, new_height: int, new_width: int, seed: int
) -> None:
    masks = torch.from_numpy(np.random.default_rng(seed).integers(0, 2, (count, height, width), dtype=np.uint8))
    resized = resize_masks(masks, new_height, new_width)
    expected = torch.nn.functional.interpolate(masks[None], size=(new_height, new_width), mode="nearest-exact")[0]
    assert resized.is_contiguous() and torch.equal(resized, expected)


def test_mask_resize_of_strided_float_and_empty_masks() -> None:
    masks = torch.rand(2, 9, 13)
    strided = masks.transpose(1, 2)  # (2, 13, 9), not contiguous
    expected = torch.nn.functional.interpolate(strided[None], size=(20, 7), mode="nearest-exact")[0]
    assert torch.equal(resize_masks(strided, 20, 7), expected)
    empty = resize_masks(torch.zeros((0, 5, 6), dtype=torch.uint8), 10, 12)
    assert empty.shape == (0, 10, 12) and empty.dtype == torch.uint8


def test_flip_of_a_channels_last_image_is_contiguous() -> None:
    image = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).view(2, 3, 4, 5)[0]
    channels_last = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)  # (3, H, W) with channels-last strides
    sample = Sample(image=channels_last, image_id=1, file_name="image.jpg", original_size=(4, 5))
    flipped = hflip_sample(sample).image
    assert flipped.is_contiguous() and torch.equal(flipped, image.flip(-1))


def test_flip_twice_is_identity_and_mirrors_boxes() -> None:
    image = np.random.default_rng(0).integers(0, 256, (3, 6, 9), dtype=np.uint8)
    sample = make_sample(6, 9, [[1, 0.5, 3.25, 6]], np.array([[[1.5, 2.5], [0.0, 6.0]]]), np.array([[1, 0]]), image=image)
    flipped = hflip_sample(sample)
    assert flipped.targets.boxes.tolist() == [[5.75, 0.5, 8, 6]]
    assert flipped.targets.point_coords.tolist() == [[[7.5, 2.5], [9.0, 6.0]]]
    assert torch.equal(flipped.image, torch.from_numpy(image[:, :, ::-1].copy()))
    back = hflip_sample(flipped)
    assert torch.equal(back.image, sample.image)
    assert torch.equal(back.targets.point_coords, sample.targets.point_coords)
    assert torch.equal(back.targets.boxes, sample.targets.boxes)


def test_crop_shifts_marks_outside_points_and_drops_emptied_instances() -> None:
    boxes = [[2, 2, 12, 12], [0, 0, 3, 3], [5, 5, 6, 16]]
    points = np.array([[[2.5, 2.5], [11.5, 11.5]], [[1.5, 1.5], [2.5, 2.5]], [[5.5, 5.5], [5.5, 15.5]]])
    masks = np.zeros((3, 16, 16), np.uint8)
    masks[0, 2:12, 2:12] = 1
    sample = make_sample(16, 16, boxes, points, np.ones((3, 2)), masks)
    out = crop_sample(sample, top=4, left=4, height=8, width=10)
    targets = out.targets
    assert out.image.shape == (3, 8, 10)
    assert targets.annotation_ids.tolist() == [100, 102]  # the second box lies outside the window
    assert targets.boxes.tolist() == [[0, 0, 8, 8], [1, 1, 2, 8]]
    assert targets.point_coords.tolist() == [[[-1.5, -1.5], [7.5, 7.5]], [[1.5, 1.5], [1.5, 11.5]]]  # not clamped
    assert targets.point_labels.tolist() == [[-1, 1], [1, -1]]
    assert torch.equal(targets.masks, sample.targets.masks[[0, 2], 4:12, 4:14])


def test_crop_that_empties_every_instance() -> None:
    sample = make_sample(16, 16, [[0, 0, 3, 3]], np.array([[[1.5, 1.5]]]), np.array([[1]]), np.ones((1, 16, 16)))
    targets = crop_sample(sample, 8, 8, 8, 8).targets
    assert len(targets) == 0 and targets.point_coords.shape == (0, 1, 2) and targets.masks.shape == (0, 8, 8)
    assert resize_sample(crop_sample(sample, 8, 8, 8, 8), 16, 16).targets.masks.shape == (0, 16, 16)


@pytest.mark.parametrize(
    ("crop_type", "crop_size"),
    [("relative", (0.5, 0.75)), ("relative_range", (0.3, 0.6)), ("absolute", (12, 50)), ("absolute_range", (5, 15))],
)
def test_random_crop_windows(crop_type: str, crop_size: tuple[float, float]) -> None:
    height, width = 20, 30
    crop = RandomCrop(crop_type, crop_size)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    shapes = set()
    for _ in range(50):
        sample = make_sample(height, width, [[0, 0, width, height]], np.zeros((1, 0, 2)), np.zeros((1, 0)))
        out = crop(sample, rng)
        crop_height, crop_width = out.image_size
        shapes.add((crop_height, crop_width))
        # The whole-image box becomes the whole window.
        assert out.targets.boxes.tolist() == [[0, 0, crop_width, crop_height]]
        if crop_type == "relative":
            assert (crop_height, crop_width) == (10, 23)
        elif crop_type == "relative_range":
            assert 6 <= crop_height <= 20 and 9 <= crop_width <= 30
        elif crop_type == "absolute":
            assert (crop_height, crop_width) == (12, 30)
        else:
            assert 5 <= crop_height <= 15 and 5 <= crop_width <= 15
    assert (len(shapes) > 1) == crop_type.endswith("range")


def test_random_crop_is_deterministic_per_rng_and_works_with_random_state() -> None:
    sample = make_sample(20, 30, [[0, 0, 30, 20]], np.array([[[3.5, 4.5]]]), np.array([[1]]))
    crop = RandomCrop("absolute_range", (5, 15))
    for make_rng in (np.random.default_rng, np.random.RandomState):
        first = crop(sample, make_rng(7))
        again = crop(sample, make_rng(7))
        assert torch.equal(first.targets.point_coords, again.targets.point_coords) and first.image_size == again.image_size


def test_large_scale_jitter() -> None:
    lsj = LargeScaleJitter(output_size=64, min_scale=0.1, max_scale=2.0)
    rng = np.random.default_rng(0)
    sizes = set()
    for _ in range(40):
        sample = make_sample(48, 80, [[0, 0, 80, 48]], np.array([[[40.0, 24.0]]]), np.array([[1]]))
        out = lsj(sample, rng)
        height, width = out.image_size
        sizes.add((height, width))
        assert 1 <= height <= 64 and 1 <= width <= 64
        box = out.targets.boxes[0].tolist()
        assert box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height
    assert any(h < 64 and w < 64 for h, w in sizes) and any(w == 64 for _, w in sizes)


def test_point_subsample() -> None:
    points = np.stack([np.stack([np.arange(10) + 0.5, np.full(10, k + 0.5)], 1) for k in range(3)])
    labels = np.tile(np.arange(10) % 2, (3, 1))
    sample = make_sample(20, 20, [[0, 0, 20, 20]] * 3, points, labels)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(200):
        targets = PointSubsample(5)(sample, rng).targets
        assert targets.point_coords.shape == (3, 5, 2)
        index = targets.point_coords[..., 0].floor().long()
        for row in range(3):
            assert len(set(index[row].tolist())) == 5  # without replacement: 10 >= 5
            assert torch.equal(targets.point_coords[row, :, 1], torch.full((5,), row + 0.5))
            assert torch.equal(targets.point_labels[row], (index[row] % 2).float())  # labels follow
        draws.append(index.flatten())
    counts = torch.bincount(torch.cat(draws), minlength=10)
    assert counts.min() > 0.7 * counts.float().mean()  # each point equally likely (200*3*5/10 = 300)
    assert PointSubsample(0)(sample, rng) is sample
    many = PointSubsample(25)(sample, rng).targets  # more than stored: with replacement
    assert many.point_coords.shape == (3, 25, 2)


def test_builders() -> None:
    train = build_train_transforms([32, 48], 64, "choice", 0.5, crop={"crop_type": "relative", "crop_size": (0.5, 0.5)}, sample_points=3)
    kinds = [type(t).__name__ for t in train.transforms]
    assert kinds == ["RandomCrop", "ResizeShortestEdge", "RandomHorizontalFlip", "PointSubsample"]
    lsj = build_train_transforms(800, 1333, lsj={"output_size": 64}, crop={"enabled": False, "crop_type": "relative", "crop_size": (1, 1)})
    assert [type(t).__name__ for t in lsj.transforms] == ["LargeScaleJitter", "RandomHorizontalFlip"]
    sample = make_sample(40, 60, [[0, 0, 60, 40]], np.array([[[1.5, 2.5]] * 5]), np.ones((1, 5)))
    out = train(sample, np.random.default_rng(3))
    assert min(out.image_size) in (32, 48) and out.targets.point_coords.shape[1] == 3
    test = build_test_transforms(32, 64)
    image_only = Sample(image=torch.zeros((3, 40, 60), dtype=torch.uint8), image_id=1, file_name="x", original_size=(40, 60))
    assert test(image_only, np.random.default_rng(0)).image_size == (32, 48)


# ---------------------------------------------------------------------------------------
# Properties


@st.composite
def masked_points(draw: st.DrawFn) -> tuple[Sample, np.ndarray]:
    """A random bitmask with points labelled by the mask at their pixel, plus a small second
    instance; returns the sample and the (P, 2) original points."""
    height, width = draw(st.integers(2, 20)), draw(st.integers(2, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    mask = (rng.random((height, width)) < 0.5).astype(np.uint8)
    num_points = draw(st.integers(1, 12))
    pixels = np.stack([rng.integers(0, width, num_points), rng.integers(0, height, num_points)], 1)
    points = pixels + rng.uniform(0.05, 0.95, (num_points, 2))  # strictly inside a pixel
    labels = mask[pixels[:, 1], pixels[:, 0]]
    small = [width / 3, height / 3, width / 2, height / 2]
    sample = make_sample(
        height,
        width,
        [[0, 0, width, height], small],
        np.stack([points, points]),
        np.stack([labels, labels]),
        np.stack([mask, mask]),
        image=np.broadcast_to(mask * 255, (3, height, width)).copy(),
    )
    return sample, points


exact_steps = st.lists(
    st.one_of(
        st.tuples(st.just("flip"), st.just(0.0), st.just(0.0), st.just(0.0), st.just(0.0)),
        st.tuples(st.just("crop"), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
        st.tuples(st.just("upscale"), st.sampled_from([2.0, 3.0]), st.just(0.0), st.just(0.0), st.just(0.0)),
    ),
    max_size=4,
)


def _apply_step(sample: Sample, step: tuple, affine: np.ndarray) -> tuple[Sample, np.ndarray]:
    """Apply one step and update ``affine`` = (ax, bx, ay, by) with x' = ax x + bx."""
    name, a, b, c, d = step
    height, width = sample.image_size
    ax, bx, ay, by = affine
    if name == "flip":
        return hflip_sample(sample), np.array([-ax, width - bx, ay, by])
    if name == "upscale":
        if max(height, width) * a > 120:
            return sample, affine
        return resize_sample(sample, int(height * a), int(width * a)), affine * a
    crop_height, crop_width = 1 + int(a * (height - 1)), 1 + int(b * (width - 1))
    top, left = int(c * (height - crop_height)), int(d * (width - crop_width))
    return crop_sample(sample, top, left, crop_height, crop_width), np.array([ax, bx - left, ay, by - top])


def _check_invariants(sample: Sample, points: np.ndarray, affine: np.ndarray) -> None:
    """Points moved by the affine map (never clamped), -1 outside, boxes inside the image."""
    height, width = sample.image_size
    targets = sample.targets
    ax, bx, ay, by = affine
    expected = np.stack([ax * points[:, 0] + bx, ay * points[:, 1] + by], 1)
    for row in range(len(targets)):
        np.testing.assert_allclose(targets.point_coords[row].numpy(), expected, rtol=0, atol=1e-3)
    xs, ys = expected[:, 0], expected[:, 1]
    outside = (xs < 0) | (xs > width) | (ys < 0) | (ys > height)
    assert (targets.point_labels[:, outside] == -1).all()
    boxes = targets.boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()
    assert ((boxes[:, 2] - boxes[:, 0]) > 1e-5).all() and ((boxes[:, 3] - boxes[:, 1]) > 1e-5).all()


@settings(max_examples=150, deadline=None)
@given(data=masked_points(), steps=exact_steps)
def test_labels_follow_the_mask_through_flip_crop_and_integer_upscale(data: tuple[Sample, np.ndarray], steps: list[tuple]) -> None:
    sample, points = data
    affine = np.array([1.0, 0.0, 1.0, 0.0])
    small_box = sample.targets.boxes[1].numpy().astype(np.float64)
    for step in steps:
        sample, affine = _apply_step(sample, step, affine)
    _check_invariants(sample, points, affine)
    targets = sample.targets
    height, width = sample.image_size
    assert targets.annotation_ids[0] == 100  # the whole-image instance always survives
    # The small instance survives iff its mapped box overlaps the final window.
    xs, ys = affine[0] * small_box[0::2] + affine[1], affine[2] * small_box[1::2] + affine[3]
    overlap_w = min(xs.max(), width) - max(xs.min(), 0)
    overlap_h = min(ys.max(), height) - max(ys.min(), 0)
    assert (101 in targets.annotation_ids.tolist()) == (overlap_w > 1e-5 and overlap_h > 1e-5)
    mask = targets.masks[0]
    if all(step[0] != "upscale" for step in steps):  # bilinear upscaling blurs the image
        assert torch.equal(sample.image[0], mask * 255)  # image and mask move together
    pixels = targets.point_coords[0].floor().long()
    for k in torch.nonzero(targets.point_labels[0] != -1).flatten().tolist():
        x, y = pixels[k].tolist()
        assert targets.point_labels[0, k] == mask[y, x]


@settings(max_examples=150, deadline=None)
@given(
    height=st.integers(4, 40),
    width=st.integers(4, 40),
    new_height=st.integers(4, 90),
    new_width=st.integers(4, 90),
    marker=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
    flip=st.booleans(),
)
def test_arbitrary_resize_moves_points_with_the_image(
    height: int, width: int, new_height: int, new_width: int, marker: tuple[float, float], flip: bool
) -> None:
    """A one-pixel marker and the point at its centre end up in the same place (markers off
    the border, where the interpolation kernel is clamped and the blur is lopsided)."""
    column, row = 1 + int(marker[0] * (width - 2)), 1 + int(marker[1] * (height - 2))
    image = np.zeros((3, height, width), np.uint8)
    image[:, row, column] = 255
    point = np.array([[[column + 0.5, row + 0.5]]])
    sample = make_sample(height, width, [[0, 0, width, height]], point, np.ones((1, 1)), image=image)
    out = resize_sample(sample, new_height, new_width)
    if flip:
        out = hflip_sample(out)
    moved = out.targets.point_coords[0, 0].double()
    # Continuous consistency: mapping back lands in the original pixel.
    back_x = (new_width - moved[0] if flip else moved[0]) * width / new_width
    back_y = moved[1] * height / new_height
    assert int(back_x) == column and int(back_y) == row
    # The intensity centroid of the resized marker sits at the moved point (antialiased
    # bilinear keeps it within half an output pixel, even at the border).
    intensity = out.image[0].double()
    assert intensity.sum() > 0
    centre_x = (intensity.sum(0) * (torch.arange(new_width) + 0.5)).sum() / intensity.sum()
    centre_y = (intensity.sum(1) * (torch.arange(new_height) + 0.5)).sum() / intensity.sum()
    assert abs(centre_x - moved[0]) <= 0.5 and abs(centre_y - moved[1]) <= 0.5
