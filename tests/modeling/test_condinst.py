"""CondInst / BoxInst: locations, FCOS assignment, the dynamic mask head, and the whole model on
tiny inputs (every supervision, empty images, zero detections, gradients to the controller)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from pointsup.modeling.build import build_model
from pointsup.modeling.condinst.config import DynamicMaskHeadConfig, FCOSConfig
from pointsup.modeling.condinst.dynamic_head import DynamicMaskHead
from pointsup.modeling.condinst.fcos import CondInstHead, Locations, match_locations
from pointsup.structures.instances import InstanceTargets, Sample
from tests.modeling.model_settings import model_config

STRIDES = [8, 16, 32, 64, 128]
#: FCOS's published assignment radius (the config's default)
RADIUS = FCOSConfig().center_sampling_radius


def dynamic_head(**settings) -> DynamicMaskHead:
    """A dynamic head on 8 mask feature channels at stride 4 (the published sizes, changed by ``settings``)."""
    return DynamicMaskHead.from_config(DynamicMaskHeadConfig(**settings), in_channels=8, output_stride=4)


def test_locations_are_cell_centres_in_continuous_coordinates():
    locations = Locations.of([(2, 3), (1, 2)], [8, 16], torch.device("cpu"))
    assert locations.num_per_level == [6, 2]
    assert locations.centres[:6].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert locations.centres[6:].tolist() == [[8, 8], [24, 8]]
    assert locations.levels.tolist() == [0] * 6 + [1] * 2
    assert locations.anchors[6].tolist() == [0, 0, 16, 16]


def _pyramid(height: int, width: int) -> Locations:
    sizes = [(-(-height // s), -(-width // s)) for s in STRIDES]
    return Locations.of(sizes, STRIDES, torch.device("cpu"))


def test_assignment_picks_the_level_by_object_size_and_the_smaller_of_two_boxes():
    locations = _pyramid(256, 256)
    small = torch.tensor([[96.0, 96.0, 136.0, 136.0]])  # 40 px: reach <= 36 from its centre -> p3 (0, 64)
    matched = match_locations(locations, small, RADIUS)
    assert (matched == 0).any() and set(locations.levels[matched == 0].tolist()) == {0}
    large = torch.tensor([[0.0, 0.0, 200.0, 200.0]])  # reach 100 at the centre -> p4 (64, 128); up to 148 -> p5
    assert set(locations.levels[match_locations(locations, large, RADIUS) == 0].tolist()) == {1, 2}
    both = match_locations(locations, torch.cat([large, small]), RADIUS)
    centre = int(torch.nonzero((locations.centres == torch.tensor([116.0, 116.0])).all(1)).item())
    assert both[centre] == 1  # inside both, p3 in range only for the small one
    assert (match_locations(locations, torch.zeros((0, 4)), RADIUS) == -1).all()


@settings(max_examples=30, deadline=None)
@given(x0=st.floats(0, 200), y0=st.floats(0, 200), w=st.floats(4, 250), h=st.floats(4, 250), radius=st.floats(0.5, 3))
def test_every_assigned_location_obeys_the_fcos_rule(x0, y0, w, h, radius):
    locations = _pyramid(512, 512)
    box = torch.tensor([[x0, y0, x0 + w, y0 + h]])
    matched = match_locations(locations, box, radius)
    chosen = matched == 0
    centres, strides = locations.centres[chosen], locations.strides[chosen]
    distances = torch.stack([centres[:, 0] - x0, centres[:, 1] - y0, x0 + w - centres[:, 0], y0 + h - centres[:, 1]], 1)
    assert (distances.amin(1) > 0).all()
    box_centre = torch.tensor([x0 + w / 2, y0 + h / 2])
    assert ((centres - box_centre).abs().amax(1) < radius * strides).all()
    levels = locations.levels[chosen]
    reach = distances.amax(1)
    assert ((levels == 0) | (reach > 4 * strides)).all() and ((levels == 4) | (reach < 8 * strides)).all()


@pytest.mark.parametrize("negative_slope", [0.0, 0.1])
def test_dynamic_head_equals_explicit_per_instance_convolutions(negative_slope):
    head = dynamic_head(channels=8, num_layers=3, negative_slope=negative_slope)
    assert head.num_params == 169
    features = torch.randn(2, 8, 5, 7)
    params = torch.randn(3, 169)
    image_index = torch.tensor([1, 0, 1])
    centres = torch.tensor([[20.0, 12.0], [3.0, 30.0], [50.0, 33.0]])
    levels = torch.tensor([0, 2, 4])
    logits, activity = head.logits_and_activity(features, 8, image_index, centres, levels, params)
    assert logits.shape == (3, 10, 14)
    torch.testing.assert_close(head(features, 8, image_index, centres, levels, params), logits)
    soi = [64.0, 128.0, 256.0, 512.0, 1024.0]
    last_hidden = []
    for n in range(3):
        ys, xs = torch.meshgrid((torch.arange(5) + 0.5) * 8, (torch.arange(7) + 0.5) * 8, indexing="ij")
        relative = torch.stack([centres[n, 0] - xs, centres[n, 1] - ys]) / soi[int(levels[n])]
        x = torch.cat([relative, features[image_index[n]]])[None]
        weights, biases = params[n, :152].split([80, 64, 8]), params[n, 152:].split([8, 8, 1])
        for layer, (shape, w, b) in enumerate(zip([(8, 10), (8, 8), (1, 8)], weights, biases)):
            x = F.conv2d(x, w.reshape(*shape, 1, 1), b)
            if layer < 2:
                if layer == 1:
                    last_hidden.append(x)
                x = torch.where(x > 0, x, negative_slope * x)
        expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)[0, 0]
        torch.testing.assert_close(logits[n], expected, rtol=1e-5, atol=1e-5)
    assert activity.item() == pytest.approx((torch.cat(last_hidden) > 0).float().mean().item())


def test_dynamic_head_activity_reports_a_collapsed_head():
    head = dynamic_head(channels=8, num_layers=3)
    params = torch.randn(2, 169)
    params[:, 152 + 8 : 152 + 16] = -1e4  # second hidden layer's biases: every unit dead
    args = (torch.randn(1, 8, 4, 4), 8, torch.tensor([0, 0]), torch.tensor([[8.0, 8.0], [20.0, 4.0]]), torch.tensor([0, 1]))
    logits, activity = head.logits_and_activity(*args, params)
    assert activity.item() == 0.0
    torch.testing.assert_close(logits, params[:, -1, None, None].expand(2, 8, 8))  # constant: the final bias
    assert head.logits_and_activity(*args, params[:0])[1].item() == 0.0
    with pytest.raises(ValueError, match="negative_slope"):
        dynamic_head(negative_slope=1.0)


def tiny_condinst(supervision: str, settings: dict | None = None):
    """A small CondInst; ``settings`` (dotted keys below ``model``) change it."""
    tiny = {
        "architecture": "condinst",
        "backbone.name": "resnet18",
        "backbone.norm": "gn",
        "backbone.trainable_layers": 5,
        "fpn.channels": 64,
        "fpn.norm": "gn",
        "condinst.fcos.num_convs": 1,
        "condinst.mask_branch.channels": 16,
        "condinst.mask_branch.num_convs": 1,
        "condinst.mask_branch.norm": "gn",
    }
    return build_model(model_config({**tiny, **(settings or {})}), 2, supervision)


def sample(num: int, height: int = 96, width: int = 128, seed: int = 0) -> Sample:
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[8.0, 10.0, 50.0, 80.0], [60.0, 20.0, 120.0, 90.0]])[:num]
    masks = torch.zeros((num, height, width), dtype=torch.uint8)
    for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        masks[k, y0:y1, x0:x1] = 1
    coords = torch.rand(num, 10, 2, generator=generator) * (boxes[:, None, 2:] - boxes[:, None, :2]) + boxes[:, None, :2]
    labels = (torch.rand(num, 10, generator=generator) > 0.5).float()
    targets = InstanceTargets(boxes, torch.tensor([0, 1])[:num], coords, labels, masks, torch.arange(num))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    return Sample(image, seed, "x.png", (height, width), targets)


MASK_LOSS_KEYS = {"masks": {"loss_mask"}, "points": {"loss_mask_point"}, "boxes": {"loss_projection", "loss_pairwise"}}


@pytest.mark.parametrize("supervision", ["masks", "points", "boxes"])
def test_losses_are_finite_and_reach_the_controller(supervision):
    torch.manual_seed(0)
    model = tiny_condinst(supervision, {"condinst.boxinst.pairwise_warmup_iters": 0}).train()
    outputs = model([sample(2), sample(0, seed=1)])  # the second image has no instance
    losses = {k: v for k, v in outputs.items() if k.startswith("loss")}
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_ctrness"} | MASK_LOSS_KEYS[supervision]
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.head.controller.weight.grad.abs().sum() > 0
    assert model.mask_branch.output.weight.grad.abs().sum() > 0
    assert int(model.iteration) == 1


def test_points_add_the_weighted_outside_box_term_and_keep_the_point_term():
    torch.manual_seed(0)
    models = {weight: tiny_condinst("points", {"condinst.outside_box_weight": weight}).train() for weight in (0.0, 1.0, 2.0)}
    for model in models.values():
        model.load_state_dict(models[0.0].state_dict())
    batch = [sample(2)]
    outputs = {}
    for weight, model in models.items():
        torch.manual_seed(1)  # the same positives for every model
        outputs[weight] = model(batch)
    assert "loss_mask_outside_box" not in outputs[0.0]
    for weight in (1.0, 2.0):  # the point term is unchanged
        assert torch.equal(outputs[weight]["loss_mask_point"], outputs[0.0]["loss_mask_point"])
    term = outputs[1.0]["loss_mask_outside_box"]
    assert torch.isfinite(term) and term.item() > 0
    torch.testing.assert_close(outputs[2.0]["loss_mask_outside_box"], 2 * term)  # the weight scales it
    term.backward()
    assert models[1.0].head.controller.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("negative_slope", [0.0, 0.1])
def test_a_collapsed_relu_head_is_reported_once(negative_slope, caplog):
    torch.manual_seed(0)
    model = tiny_condinst("points", {"condinst.dynamic_head.negative_slope": negative_slope}).train()
    with torch.no_grad():  # kill every unit of the second hidden layer, for every location
        model.head.controller.weight[160:168] = 0.0
        model.head.controller.bias[160:168] = -1e4
    batch = [sample(2)]
    with caplog.at_level(logging.WARNING, logger="pointsup.modeling.condinst.model"), torch.no_grad():
        for step in range(model.collapse_watch.patience + 1):
            outputs = model(batch)
            assert outputs["mask_head_active"].item() == 0.0
            if step == model.collapse_watch.patience - 2:
                assert not caplog.records
    reported = [r for r in caplog.records if "has collapsed" in r.getMessage()]
    assert len(reported) == (1 if negative_slope == 0 else 0)


@pytest.mark.parametrize("supervision", ["masks", "points", "boxes"])
def test_a_batch_without_instances_trains_with_zero_mask_loss(supervision):
    model = tiny_condinst(supervision).train()
    outputs = model([sample(0), sample(0, seed=1)])
    for key in MASK_LOSS_KEYS[supervision]:
        assert float(outputs[key].detach()) == 0.0 and outputs[key].requires_grad
    sum(v for k, v in outputs.items() if k.startswith("loss")).backward()


def test_pairwise_loss_is_warmed_up():
    model = tiny_condinst("boxes", {"condinst.boxinst.pairwise_warmup_iters": 4}).train()
    first = model([sample(2)])["loss_pairwise"].detach()
    assert float(first) == 0.0  # iteration 0 of 4
    model.iteration.fill_(2)
    assert float(model([sample(2)])["loss_pairwise"].detach()) > 0.0


def test_inference_with_zero_and_with_many_detections():
    torch.manual_seed(0)
    model = tiny_condinst("points", {"condinst.mask_resolution": 28}).eval()
    resized = sample(2)
    resized.original_size = (192, 256)  # the model saw the image at half size
    with torch.no_grad():
        model.inference.score_thresh = 1.0
        (none,) = model([resized])
        model.inference.score_thresh = 0.0
        (many,) = model([resized])
    assert len(none) == 0 and none.mask_probs.shape == (0, 28, 28)
    assert 0 < len(many) <= 100 and many.mask_probs.shape == (len(many), 28, 28)
    assert ((many.mask_probs >= 0) & (many.mask_probs <= 1)).all()
    assert many.image_size == (192, 256)
    assert (many.boxes[:, 2] <= 256).all() and (many.boxes[:, 3] <= 192).all()


def test_box_relative_masks_cut_the_image_mask_to_the_box():
    model = tiny_condinst("points", {"condinst.mask_resolution": 8})
    image_probs = torch.zeros((2, 24, 32))
    image_probs[:, 4:12, 8:20] = 1.0  # stride 4: input pixels x 32..80, y 16..48
    boxes = torch.tensor([[32.0, 16.0, 80.0, 48.0], [0.0, 0.0, 128.0, 96.0]])
    grid = model.box_relative_masks(image_probs, boxes)
    assert grid.shape == (2, 8, 8)
    assert torch.all(grid[0, 1:-1, 1:-1] == 1.0)  # the box is the object: all inside
    whole = grid[1] > 0.5  # the whole image: the object fills x 1/4..5/8, y 1/6..1/2 of the grid
    assert whole[2, 3] and not whole[0, 0] and not whole[7, 7]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_location_starts_with_a_box_that_receives_gradient(seed):
    """The side distances pass through a ReLU: at initialisation all four must be positive nearly
    everywhere, or the GIoU loss of a degenerate box (1.0) sends no gradient back and FCOS never
    learns to regress (seed 0 of the balloon recipe detected nothing before the bias init)."""
    torch.manual_seed(seed)
    head = CondInstHead(64, num_classes=2, num_params=169, num_convs=2)
    features = [torch.randn(2, 64, side, side) * 3 for side in (32, 16, 8, 4, 2)]
    with torch.no_grad():
        distances = head(features)["bbox_regression"]  # (B, L, 4)
    assert (distances > 0).all(dim=2).float().mean() > 0.99
