"""CondInst / BoxInst losses: dice, the point loss on image-level masks, projection and pairwise terms."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.modeling.condinst.color import color_similarity
from pointsup.modeling.condinst.losses import (
    box_masks_on_grid,
    dice_loss,
    image_point_loss,
    outside_box_loss,
    pairwise_loss,
    pairwise_warmup_factor,
    projection_loss,
)


def _bce(logit: float, label: float) -> float:
    return -(label * math.log(1.0 / (1.0 + math.exp(-logit))) + (1.0 - label) * math.log(1.0 / (1.0 + math.exp(logit))))


def _bilinear_corners(x: float, y: float, height: int, width: int, stride: int) -> list[tuple[int, int, float]]:
    """The (row, col, weight) cells a point reads: cell (r, c) is centred at ((c + .5) s, (r + .5) s),
    coordinates clamped to the outermost centres."""
    px = min(max(x / stride - 0.5, 0.0), width - 1.0)
    py = min(max(y / stride - 0.5, 0.0), height - 1.0)
    c0, r0 = math.floor(px), math.floor(py)
    c1, r1 = min(c0 + 1, width - 1), min(r0 + 1, height - 1)
    fx, fy = px - c0, py - r0
    return [(r0, c0, (1 - fy) * (1 - fx)), (r0, c1, (1 - fy) * fx), (r1, c0, fy * (1 - fx)), (r1, c1, fy * fx)]


def _point_loss_by_loop(logits: torch.Tensor, stride: int, coords: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    height, width = logits.shape[-2:]
    total, count, correct = 0.0, 0, 0
    for n in range(logits.shape[0]):
        for p in range(coords.shape[1]):
            label = float(labels[n, p])
            if label == -1:
                continue
            corners = _bilinear_corners(float(coords[n, p, 0]), float(coords[n, p, 1]), height, width, stride)
            logit = sum(weight * float(logits[n, r, c]) for r, c, weight in corners)
            total += _bce(logit, label)
            count += 1
            correct += int((logit > 0) == (label == 1))
    return total / count, correct / count


def _random_point_case(seed: int, dtype: torch.dtype, num_instances: int = 3, num_points: int = 10, height: int = 5,
                       width: int = 7, stride: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((num_instances, height, width), generator=generator, dtype=dtype) * 3
    coords = torch.rand((num_instances, num_points, 2), generator=generator, dtype=dtype)
    coords = coords * torch.tensor([width * stride, height * stride], dtype=dtype)
    # the image's corners and edges, and points between the outermost cell centres and the edge
    coords[0, :4] = torch.tensor([[0.0, 0.0], [width * stride, height * stride], [0.5, 1.0], [width * stride - 1.0, 0.5]],
                                 dtype=dtype)
    labels = torch.randint(-1, 2, (num_instances, num_points), generator=generator).to(dtype)
    labels[0, :4] = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)
    return logits, coords, labels


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-9), (torch.float32, 1e-6)])
@pytest.mark.parametrize("seed", range(6))
def test_image_point_loss_matches_a_per_point_loop(seed, dtype, tolerance) -> None:
    logits, coords, labels = _random_point_case(seed, dtype)
    output = image_point_loss(logits, 4, coords, labels)
    expected_loss, expected_accuracy = _point_loss_by_loop(logits, 4, coords, labels)
    assert output.loss.dtype == dtype
    assert abs(float(output.loss) - expected_loss) < tolerance
    assert abs(float(output.accuracy) - expected_accuracy) < 1e-6


def test_image_point_loss_stored_points_at_cell_centres_read_the_cell() -> None:
    """With stride 1, stored pixel d sits at d + 0.5, the centre of cell d."""
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((1, 6, 6), generator=generator, dtype=torch.float64)
    pixels = torch.tensor([[[0, 0], [5, 5], [2, 4], [3, 1]]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    output = image_point_loss(logits, 1, pixels.to(torch.float64) + 0.5, labels)
    values = logits[0, pixels[0, :, 1], pixels[0, :, 0]]
    expected = sum(_bce(float(v), float(t)) for v, t in zip(values, labels[0])) / 4
    assert abs(float(output.loss) - expected) < 1e-12


def test_image_point_loss_gradient_reaches_only_cells_next_to_valid_points() -> None:
    logits, coords, labels = _random_point_case(7, torch.float64)
    logits.requires_grad_(True)
    image_point_loss(logits, 4, coords, labels).loss.backward()
    near = torch.zeros_like(logits, dtype=torch.bool)
    for n in range(logits.shape[0]):
        for p in range(coords.shape[1]):
            if labels[n, p] == -1:
                continue
            corners = _bilinear_corners(float(coords[n, p, 0]), float(coords[n, p, 1]), 5, 7, 4)
            for r, c, _ in corners:
                near[n, r, c] = True
            r, c, _ = max(corners, key=lambda corner: corner[2])
            assert logits.grad[n, r, c] != 0
    assert logits.grad[~near].eq(0).all()
    assert near.sum() < near.numel()  # the case leaves some cells unreached


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), extra=st.integers(1, 6))
def test_image_point_loss_ignores_ignored_points(seed, extra) -> None:
    logits, coords, labels = _random_point_case(seed, torch.float64)
    generator = torch.Generator().manual_seed(seed + 1)
    more_coords = torch.rand((3, extra, 2), generator=generator, dtype=torch.float64) * 20
    padded_coords = torch.cat((coords, more_coords), dim=1)
    padded_labels = torch.cat((labels, torch.full((3, extra), -1.0, dtype=torch.float64)), dim=1)
    base = image_point_loss(logits, 4, coords, labels)
    padded = image_point_loss(logits, 4, padded_coords, padded_labels)
    torch.testing.assert_close(padded.loss, base.loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(padded.accuracy, base.accuracy, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(constant=st.floats(-8, 8, allow_nan=False), seed=st.integers(0, 10_000), stride=st.sampled_from([1, 4, 8]),
       labels=st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=1, max_size=12))
def test_constant_logits_give_the_closed_form_bce(constant, seed, stride, labels) -> None:
    label_tensor = torch.tensor([labels], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    coords = torch.rand((1, len(labels), 2), generator=generator, dtype=torch.float64) * torch.tensor([6.0, 4.0]) * stride
    logits = torch.full((1, 4, 6), constant, dtype=torch.float64, requires_grad=True)
    output = image_point_loss(logits, stride, coords, label_tensor)
    positives, negatives = labels.count(1.0), labels.count(0.0)
    if positives + negatives == 0:
        assert output.loss.item() == 0.0 and output.loss.requires_grad
        return
    expected = (positives * math.log1p(math.exp(-constant)) + negatives * math.log1p(math.exp(constant))) \
        / (positives + negatives)
    assert abs(output.loss.item() - expected) < 1e-9
    expected_accuracy = (positives if constant > 0 else negatives) / (positives + negatives)
    assert abs(float(output.accuracy) - expected_accuracy) < 1e-6


@pytest.mark.parametrize("shape", [(0, 5, 7), (2, 5, 7)])
def test_image_point_loss_without_valid_points_is_a_zero_with_a_graph(shape) -> None:
    logits = torch.randn(shape, requires_grad=True)
    for num_points in (0, 3):
        coords = torch.rand((shape[0], num_points, 2)) * 20
        labels = torch.full((shape[0], num_points), -1.0)
        output = image_point_loss(logits, 4, coords, labels)
        assert output.loss.item() == 0.0 and float(output.accuracy) == 0.0
        output.loss.backward()
        assert logits.grad is not None and logits.grad.eq(0).all()


def test_image_point_loss_passes_gradcheck() -> None:
    logits, coords, labels = _random_point_case(11, torch.float64, num_instances=2, num_points=5, height=3, width=4)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: image_point_loss(x, 4, coords, labels).loss, (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dice_loss_matches_its_formula_and_ignores_a_channel_axis(dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    probs = torch.rand((3, 4, 5), generator=generator, dtype=dtype)
    targets = (torch.rand((3, 4, 5), generator=generator, dtype=dtype) > 0.5).to(dtype)
    loss = dice_loss(probs, targets)
    assert loss.shape == (3,) and loss.dtype == dtype
    for n in range(3):
        p, t = probs[n].flatten().tolist(), targets[n].flatten().tolist()
        expected = 1 - 2 * sum(a * b for a, b in zip(p, t)) / (sum(a * a for a in p) + sum(b * b for b in t) + 1e-5)
        assert abs(float(loss[n]) - expected) < 1e-6
    torch.testing.assert_close(dice_loss(probs[:, None], targets[:, None]), loss)
    assert dice_loss(targets, targets).abs().max() < 1e-6


@pytest.mark.parametrize(("box", "expected_rows", "expected_cols"), [
    ((0.0, 0.0, 16.0, 16.0), range(4), range(4)),
    ((2.5, 6.5, 10.5, 14.6), range(1, 4), range(2)),  # x1 = 10.5 excludes the centre 10.5
    ((3.0, 3.0, 6.0, 6.0), range(0), range(0)),  # between the sampled pixels 2 and 6
    ((5.0, 0.0, 7.0, 3.0), range(1), range(1, 2)),
])
def test_box_masks_on_grid_hand_cases(box, expected_rows, expected_cols) -> None:
    masks = box_masks_on_grid(torch.tensor([box]), height=16, width=16, stride=4)
    expected = torch.zeros((1, 4, 4))
    expected[0, expected_rows.start:expected_rows.stop, expected_cols.start:expected_cols.stop] = 1.0
    assert masks.dtype == torch.float32
    assert torch.equal(masks, expected)


def test_box_masks_on_grid_samples_pixel_s_half_of_each_cell() -> None:
    """At stride 8 the cells read pixels x in {4, 12, 20}, y in {4, 12}."""
    pixel_boxes = [(4, 12), (20, 4), (3, 12), (4, 11)]  # single-pixel boxes (x, y) .. (x + 1, y + 1)
    boxes = torch.tensor([[x, y, x + 1, y + 1] for x, y in pixel_boxes], dtype=torch.float64)
    masks = box_masks_on_grid(boxes, height=16, width=24, stride=8)
    assert masks.shape == (4, 2, 3) and masks.dtype == torch.float64
    assert masks[0, 1, 0] == 1 and masks[1, 0, 2] == 1
    assert masks.flatten(1).sum(dim=1).tolist() == [1.0, 1.0, 0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(x0=st.integers(0, 31), y0=st.integers(0, 23), w=st.integers(1, 32), h=st.integers(1, 24),
       stride=st.sampled_from([1, 2, 4, 8]))
def test_box_masks_on_grid_equal_the_full_resolution_bitmask_sampled_at_s_half(x0, y0, w, h, stride) -> None:
    full = torch.zeros((24, 32))
    full[y0:y0 + h, x0:x0 + w] = 1.0  # whole-pixel box: pixels x0 .. x0 + w - 1
    masks = box_masks_on_grid(torch.tensor([[x0, y0, x0 + w, y0 + h]]), height=24, width=32, stride=stride)
    assert torch.equal(masks[0], full[stride // 2::stride, stride // 2::stride])


def test_box_masks_on_grid_rejects_sizes_off_the_stride_and_accepts_no_boxes() -> None:
    with pytest.raises(ValueError, match="multiple of the stride"):
        box_masks_on_grid(torch.zeros((1, 4)), height=18, width=16, stride=4)
    assert box_masks_on_grid(torch.zeros((0, 4)), height=16, width=8, stride=4).shape == (0, 4, 2)


def test_projection_loss_is_zero_when_the_projections_fill_the_box() -> None:
    box = box_masks_on_grid(torch.tensor([[4.0, 4.0, 20.0, 16.0]]), height=24, width=24, stride=4)
    cross = torch.zeros_like(box)
    cross[0, 2, 1:5] = 1.0  # one row across the box and one column down it: same projections as the box
    cross[0, 1:4, 3] = 1.0
    assert float(projection_loss(cross, box)[0]) < 1e-5
    shrunk = cross.clone()
    shrunk[0, :, 1] = 0.0  # leaves one column of the box uncovered
    assert float(projection_loss(shrunk, box)[0]) > 0.05


def test_projection_loss_matches_dice_of_the_projections() -> None:
    generator = torch.Generator().manual_seed(2)
    probs = torch.rand((2, 5, 6), generator=generator, dtype=torch.float64)
    boxes = box_masks_on_grid(torch.tensor([[4.0, 0.0, 16.0, 12.0], [0.0, 8.0, 24.0, 20.0]], dtype=torch.float64),
                              height=20, width=24, stride=4)
    loss = projection_loss(probs, boxes)
    assert loss.shape == (2,)
    for n in range(2):
        columns = [max(float(probs[n, r, c]) for r in range(5)) for c in range(6)]
        rows = [max(float(probs[n, r, c]) for c in range(6)) for r in range(5)]
        box_columns = [max(float(boxes[n, r, c]) for r in range(5)) for c in range(6)]
        box_rows = [max(float(boxes[n, r, c]) for c in range(6)) for r in range(5)]
        expected = sum(1 - 2 * sum(a * b for a, b in zip(p, t)) / (sum(a * a for a in p) + sum(b * b for b in t) + 1e-5)
                       for p, t in ((columns, box_columns), (rows, box_rows)))
        assert abs(float(loss[n]) - expected) < 1e-12


def _offsets(kernel_size: int, dilation: int) -> list[tuple[int, int]]:
    half = kernel_size // 2
    return [(dy * dilation, dx * dilation) for dy in range(-half, half + 1) for dx in range(-half, half + 1)
            if (dy, dx) != (0, 0)]


def _pairwise_by_loop(logits: torch.Tensor, similarity: torch.Tensor, boxes: torch.Tensor, threshold: float,
                      kernel_size: int, dilation: int) -> float:
    def log_sigmoid(v: float) -> float:
        return -math.log1p(math.exp(-v)) if v >= 0 else v - math.log1p(math.exp(v))

    total, weight_sum = 0.0, 0.0
    num, height, width = logits.shape
    for n in range(num):
        for k, (dy, dx) in enumerate(_offsets(kernel_size, dilation)):
            for i in range(height):
                for j in range(width):
                    weight = float(similarity[n, k, i, j] >= threshold) * float(boxes[n, i, j])
                    if weight == 0:
                        continue
                    centre = float(logits[n, i, j])
                    if 0 <= i + dy < height and 0 <= j + dx < width:
                        neighbour = float(logits[n, i + dy, j + dx])
                        same_fg = log_sigmoid(centre) + log_sigmoid(neighbour)
                        same_bg = log_sigmoid(-centre) + log_sigmoid(-neighbour)
                    else:  # zero-padded log-probabilities
                        same_fg, same_bg = log_sigmoid(centre), log_sigmoid(-centre)
                    top = max(same_fg, same_bg)
                    total -= weight * (top + math.log(math.exp(same_fg - top) + math.exp(same_bg - top)))
                    weight_sum += weight
    return total / max(weight_sum, 1.0)


@pytest.mark.parametrize(("kernel_size", "dilation", "threshold"), [(3, 2, 0.3), (3, 1, 0.5), (5, 1, 0.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pairwise_loss_matches_a_loop_over_cells_and_neighbours(kernel_size, dilation, threshold, dtype) -> None:
    generator = torch.Generator().manual_seed(kernel_size * 10 + dilation)
    logits = torch.randn((2, 5, 6), generator=generator, dtype=dtype) * 4
    similarity = torch.rand((2, kernel_size ** 2 - 1, 5, 6), generator=generator, dtype=dtype)
    boxes = box_masks_on_grid(torch.tensor([[0.0, 4.0, 16.0, 20.0], [8.0, 0.0, 24.0, 12.0]], dtype=dtype),
                              height=20, width=24, stride=4)
    loss = pairwise_loss(logits, similarity, boxes, threshold, kernel_size, dilation)
    assert loss.shape == () and loss.dtype == dtype
    expected = _pairwise_by_loop(logits, similarity, boxes, threshold, kernel_size, dilation)
    assert abs(float(loss) - expected) < 1e-5


def _two_colour_scene() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 6x8 grid, one box over cells rows 1-3, cols 2-5, filled with a colour unlike the background."""
    boxes = box_masks_on_grid(torch.tensor([[8.0, 4.0, 24.0, 16.0]], dtype=torch.float64), height=24, width=32, stride=4)
    lab = torch.tensor([20.0, 10.0, -10.0], dtype=torch.float64).view(1, 3, 1, 1).repeat(1, 1, 6, 8)
    lab[:, :, boxes[0].bool()] = torch.tensor([70.0, -30.0, 40.0], dtype=torch.float64)[:, None]
    similarity = color_similarity(lab, torch.ones((1, 6, 8), dtype=torch.float64))
    return boxes, similarity, lab


def test_pairwise_loss_vanishes_for_one_saturated_label_per_colour_region() -> None:
    boxes, similarity, _ = _two_colour_scene()
    saturated = torch.where(boxes.bool(), 20.0, -20.0).to(torch.float64)
    assert float(pairwise_loss(saturated, similarity, boxes)) < 1e-7
    striped = saturated.clone()
    striped[0, :, 3] *= -1  # column 3 disagrees with column 5, its same-coloured neighbour at dilation 2
    assert float(pairwise_loss(striped, similarity, boxes)) > 1.0


def test_pairwise_loss_gradient_reaches_the_logits_and_passes_gradcheck() -> None:
    boxes, similarity, _ = _two_colour_scene()
    logits = torch.randn((1, 6, 8), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    logits.requires_grad_(True)
    pairwise_loss(logits, similarity, boxes).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[boxes.bool()].abs().min() > 0
    assert torch.autograd.gradcheck(lambda x: pairwise_loss(x, similarity, boxes), (logits.detach().requires_grad_(),),
                                    fast_mode=True)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), x0=st.integers(0, 40), y0=st.integers(0, 30), w=st.integers(1, 24), h=st.integers(1, 24))
def test_outside_box_loss_is_the_mean_background_bce_of_the_cells_outside(seed, x0, y0, w, h) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn((2, 12, 16), generator=generator, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[x0, y0, x0 + w, y0 + h], [4.0, 4.0, 60.0, 44.0]], dtype=torch.float64)
    inside = box_masks_on_grid(boxes, 48, 64, 4)
    loss = outside_box_loss(logits, inside)
    outside_logits = logits[inside == 0]
    expected = torch.log1p(torch.exp(outside_logits)).mean()  # the second box always leaves cells outside
    torch.testing.assert_close(loss, expected.float())
    loss.backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[inside == 1] == 0)  # the box's inside is left to the points
    assert torch.all(logits.grad[inside == 0] > 0)  # every outside cell is pushed towards background


def test_outside_box_loss_is_zero_when_every_box_covers_the_map() -> None:
    logits = torch.randn((3, 4, 5), requires_grad=True)
    loss = outside_box_loss(logits, torch.ones((3, 4, 5)))
    assert loss.item() == 0.0 and loss.requires_grad


def test_every_loss_of_no_instances_is_a_zero_with_a_graph() -> None:
    logits = torch.randn((0, 5, 6), requires_grad=True)
    boxes = torch.zeros((0, 5, 6))
    losses = [
        dice_loss(logits.sigmoid(), boxes).sum(),
        projection_loss(logits.sigmoid(), boxes).sum(),
        pairwise_loss(logits, torch.zeros((0, 8, 5, 6)), boxes),
        image_point_loss(logits, 4, torch.zeros((0, 3, 2)), torch.zeros((0, 3))).loss,
        outside_box_loss(logits, boxes),
    ]
    for loss in losses:
        assert loss.shape == () and loss.item() == 0.0 and loss.requires_grad
    sum(losses).backward()
    assert logits.grad is not None and logits.grad.shape == (0, 5, 6)


def test_pairwise_warmup_factor() -> None:
    assert pairwise_warmup_factor(0, 10_000) == 0.0
    assert pairwise_warmup_factor(2_500, 10_000) == 0.25
    assert pairwise_warmup_factor(20_000, 10_000) == 1.0
    assert pairwise_warmup_factor(0, 0) == 1.0
    with pytest.raises(ValueError):
        pairwise_warmup_factor(0, -1)
