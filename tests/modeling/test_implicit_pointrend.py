"""Implicit PointRend: parity with the reference's golden vectors, the fast inference path, sizes
and edge cases."""

from __future__ import annotations

import json

import pytest
import torch

from pointsup.modeling.mask_heads import implicit_pointrend
from pointsup.modeling.mask_heads.config import ImplicitPointRendConfig, MaskHeadConfig
from pointsup.modeling.mask_heads.convfc import ConvFCHead, FineFeatureSampler
from pointsup.modeling.mask_heads.implicit_pointrend import ImplicitPointHead, ImplicitPointRendMaskHead, Workspace
from tests.conftest import golden_file
from tests.modeling.head_golden import assert_fast_equals_straightforward, assert_golden_masks, golden_targets


def load(name: str) -> dict:
    return torch.load(golden_file(name), weights_only=False)


def build_head(num_classes: int, supervision: str, in_channels: int = 256, conv_dim: int = 256, class_agnostic: bool = False,
               **settings) -> ImplicitPointRendMaskHead:
    """The head of a ``model.mask_head`` section: ``settings`` are its ``implicit_pointrend`` part."""
    config = MaskHeadConfig(conv_dim=conv_dim, class_agnostic=class_agnostic,
                            implicit_pointrend=ImplicitPointRendConfig(**settings))
    return ImplicitPointRendMaskHead.from_config(config, num_classes, supervision, in_channels)


def small_head(supervision: str, num_classes: int = 3) -> ImplicitPointRendMaskHead:
    """The golden vectors' configuration: p2 with 16 channels, conv 16, FC 32, point head 8 wide."""
    point_head = ImplicitPointHead(16, num_classes, hidden_dim=8, num_hidden=3, positional_encoding=True)
    return ImplicitPointRendMaskHead(ConvFCHead(16, 14, 16, [32, 32], (point_head.num_params,)), point_head,
                                     FineFeatureSampler("0", 4), supervision)


def test_dynamic_point_head_matches_the_reference():
    golden = load("implicit_point_head.pt")
    head = ImplicitPointHead(16, 3, hidden_dim=8, num_hidden=3, positional_encoding=True)
    head.positional_encoding_gaussian_matrix.copy_(golden["gaussian_matrix"])
    assert head.num_weight_params == golden["num_weight_params"]
    assert head.num_bias_params == golden["num_bias_params"]
    assert head.num_params == golden["num_params"]
    logits = head(golden["fine_grained_features"], golden["point_coords"], golden["parameters"])
    assert torch.equal(logits, golden["point_logits"])


def test_default_sizes_match_the_reference():
    summary = json.loads(golden_file("summary.json").read_text())
    sizes, counts = summary["implicit_point_head_default_sizes"], summary["implicit_head_default_param_counts"]
    with torch.device("meta"):
        head = build_head(80, "points")
    assert head.point_head.layer_shapes[0][1] == sizes["in_channels"]
    assert head.point_head.num_weight_params == sizes["num_weight_params"]
    assert head.point_head.num_params == sizes["num_params"]
    state = head.state_dict()
    for name, count in counts.items():
        if name.startswith(("parameter_head", "point_head")):
            assert state[name].numel() == count, name
    assert sum(t.numel() for t in state.values()) == counts["total"]


@pytest.mark.parametrize("name, supervision", [("implicit_head_masksup.pt", "masks"), ("implicit_head_pointsup.pt", "points")])
def test_training_losses_match_the_reference(name, supervision):
    golden = load(name)
    head = small_head(supervision)
    head.load_state_dict(golden["state_dict"])
    targets = golden_targets(golden, with_points=supervision == "points")
    features = {"0": golden["features_p2"]}
    grid = head.sampler.grid(features, targets.boxes, targets.image_index, 14)
    torch.testing.assert_close(head.parameter_head(grid), golden["parameters"], rtol=0, atol=1e-7)
    if supervision == "points":  # the annotated points in proposal-box coordinates, outside ones ignored
        points, labels = head.training_points(targets)
        torch.testing.assert_close(points, golden["train_point_coords"], rtol=0, atol=1e-6)
        assert torch.equal(labels, golden["train_point_labels"])
    else:  # uniform random points: inject the reference's, check the soft labels we would give them
        torch.testing.assert_close(targets.soft_mask_labels(golden["train_point_coords"]), golden["train_point_labels"],
                                   rtol=0, atol=1e-6)
    head.training_points = lambda _targets: (golden["train_point_coords"], golden["train_point_labels"])
    losses = head.losses(features, targets)
    torch.testing.assert_close(losses["loss_mask_point"], golden["loss_mask_point"], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(losses["loss_params_l2"], golden["loss_l2"], rtol=1e-5, atol=0)
    assert losses["point_accuracy"].item() == pytest.approx(golden["accuracy"], abs=1e-6)


@pytest.mark.parametrize("name", ["implicit_head_masksup.pt", "implicit_head_pointsup.pt"])
@pytest.mark.parametrize("fast", [False, True])
def test_subdivision_masks_match_the_reference(name, fast):
    golden = load(name)
    head = small_head("masks")
    head.load_state_dict(golden["state_dict"])
    assert_golden_masks(head, golden, fast)


def test_fast_inference_equals_the_straightforward_computation_with_many_classes():
    torch.manual_seed(1)
    head = build_head(12, "masks", in_channels=16, conv_dim=16, fc_dim=32, point_fc_dim=16)
    torch.nn.init.normal_(head.parameter_head.prediction.weight, std=0.05)  # untrained heads predict near-zero logits
    assert_fast_equals_straightforward(head)


@pytest.mark.parametrize("num_hidden", [0, 1, 3])
@pytest.mark.parametrize("positional_encoding", [True, False])
def test_the_workspace_gives_the_same_bits_as_fresh_tensors(positional_encoding, num_hidden):
    torch.manual_seed(0)
    head = ImplicitPointHead(16, 1, hidden_dim=8, num_hidden=num_hidden, positional_encoding=positional_encoding)
    rois = 5
    layer_weights, biases = head.parse_parameters(torch.randn(rois, head.num_params))
    weights = head.split_first_layer(layer_weights)
    workspace = Workspace()
    results = []
    for points_per_roi in (30, 49, 20):  # buffers grown and shrunk across calls, as in subdivision
        points, fine = torch.rand(rois, points_per_roi, 2), torch.randn(rois, 16, points_per_roi)
        fresh = head.run_layers_fused(head.input_parts(fine, points), weights, biases)
        reused = head.run_layers_fused(head.input_parts(fine, points, workspace), weights, biases, workspace)
        assert torch.equal(reused, fresh)
        reference = head.run_layers(head.inputs(fine, points), layer_weights, biases)  # up to rounding
        torch.testing.assert_close(reused, reference, rtol=1e-5, atol=1e-4)
        results.append((reused, fresh.clone()))
    for reused, fresh in results:  # a result is not a workspace buffer that a later call overwrites
        assert torch.equal(reused, fresh)


def test_the_encoding_falls_back_to_a_fresh_tensor_when_the_dtypes_differ():
    head = ImplicitPointHead(16, 1, hidden_dim=8, num_hidden=1, positional_encoding=True)
    points, fine = torch.rand(2, 9, 2), torch.randn(2, 16, 9, dtype=torch.float64)
    parts = head.input_parts(fine, points, Workspace())
    assert [part.dtype for part in parts] == [torch.float64] * 3
    # float32 broadcast products against encode_positions' matrix product: equal up to rounding
    torch.testing.assert_close(torch.cat(parts[:2], dim=1), head.encode_positions(points).double(), rtol=1e-6, atol=1e-5)


def test_cpu_chunks_of_rois_give_the_same_masks_as_all_rois_at_once(monkeypatch):
    torch.manual_seed(0)
    head = small_head("masks").eval()
    torch.nn.init.normal_(head.parameter_head.prediction.weight, std=0.05)
    features = {"0": torch.randn(2, 16, 24, 32)}
    corners = torch.rand(7, 2) * torch.tensor([80.0, 60.0])
    boxes = torch.cat([corners, corners + 8 + torch.rand(7, 2) * 40], dim=1)
    image_boxes, image_classes = [boxes[:4], boxes[4:]], [torch.tensor([0, 2, 1, 2]), torch.tensor([1, 1, 0])]
    chunk_sizes = []
    subdivide_rois = ImplicitPointRendMaskHead.subdivide_rois

    def counted(self, features, boxes, *args):
        chunk_sizes.append(boxes.shape[0])
        return subdivide_rois(self, features, boxes, *args)

    monkeypatch.setattr(ImplicitPointRendMaskHead, "subdivide_rois", counted)
    monkeypatch.setattr(implicit_pointrend, "CPU_SUBDIVISION_CHUNK", 3)  # 7 RoIs: chunks of 3, 3 and 1 across images
    with torch.inference_mode():
        chunked = head.predict(features, image_boxes, image_classes)
        monkeypatch.setattr(implicit_pointrend, "CPU_SUBDIVISION_CHUNK", 100)
        whole = head.predict(features, image_boxes, image_classes)
    assert chunk_sizes == [3, 3, 1, 7]
    assert [m.shape for m in chunked] == [(4, 224, 224), (3, 224, 224)]
    assert all(torch.equal(a, b) for a, b in zip(chunked, whole))


def test_predict_with_gradients_on_still_works_and_matches_inference_mode():
    torch.manual_seed(0)
    head = small_head("masks").eval()
    features = {"0": torch.randn(1, 16, 24, 32)}
    boxes, classes = torch.tensor([[4.0, 6.0, 60.0, 80.0], [30.0, 10.0, 120.0, 90.0]]), torch.tensor([0, 2])
    with_grad = head.predict(features, [boxes], [classes])[0]
    with torch.inference_mode():
        plain = head.predict(features, [boxes], [classes])[0]
    torch.testing.assert_close(with_grad.detach(), plain, rtol=0, atol=1e-6)


def test_workspace_buffers_are_reused_until_a_larger_one_is_needed():
    like = torch.zeros(1)
    workspace = Workspace()
    first = workspace.buffer("a", (4, 8), like)
    smaller = workspace.buffer("a", (3, 5), like)
    assert smaller.data_ptr() == first.data_ptr() and smaller.shape == (3, 5) and smaller.is_contiguous()
    larger = workspace.buffer("a", (5, 8), like)
    assert larger.shape == (5, 8) and larger.data_ptr() != first.data_ptr()
    assert workspace.buffer("a", (4, 8), like).data_ptr() == larger.data_ptr()  # the new storage is kept
    assert workspace.buffer("b", (4, 8), like).data_ptr() != larger.data_ptr()
    assert workspace.buffer("a", (2, 2), like.double()).dtype == torch.float64


def test_zero_rois_train_and_predict():
    head = small_head("points")
    targets = golden_targets(load("implicit_head_pointsup.pt"), with_points=True)
    empty = type(targets)(targets.boxes[:0], targets.classes[:0], targets.image_index[:0], targets.matched_index[:0],
                          targets.point_coords[:0], targets.point_labels[:0], [None, None])
    features = {"0": torch.randn(2, 16, 16, 20, requires_grad=True)}
    losses = head.losses(features, empty)
    assert all(torch.isfinite(v) and v.item() == 0 for v in losses.values())
    sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
    assert all(p.grad is not None for p in head.parameters())  # DDP needs every parameter in the graph
    masks = head.eval().predict(features, [torch.zeros((0, 4)), torch.zeros((0, 4))], [torch.zeros(0, dtype=torch.int64)] * 2)
    assert [m.shape for m in masks] == [(0, 224, 224), (0, 224, 224)]


def test_class_agnostic_head_predicts_one_channel():
    head = build_head(5, "masks", in_channels=16, conv_dim=16, fc_dim=32, point_fc_dim=8, class_agnostic=True).eval()
    assert head.point_head.layer_shapes[-1] == (1, 8)
    with torch.no_grad():
        masks = head.predict({"0": torch.randn(1, 16, 16, 20)}, [torch.tensor([[2.0, 3.0, 40.0, 50.0]])], [torch.tensor([4])])
    assert masks[0].shape == (1, 224, 224)


def test_invalid_subdivision_points_are_rejected():
    point_head = ImplicitPointHead(16, 3, 8, 3, True)
    with pytest.raises(ValueError, match="square"):
        ImplicitPointRendMaskHead(ConvFCHead(16, 14, 16, [32], (point_head.num_params,)), point_head, FineFeatureSampler(),
                                  "masks", ImplicitPointRendConfig(subdivision_num_points=700))


def test_base_init_starts_every_roi_at_a_kaiming_network_that_passes_gradient():
    torch.manual_seed(0)
    head = build_head(3, "points", in_channels=16, conv_dim=16, fc_dim=32, point_fc_dim=8, base_init=True)
    weights, biases = head.point_head.parse_parameters(head.parameter_head.prediction.bias[None])
    for k, (weight, bias) in enumerate(zip(weights, biases)):
        expected_std = 0.001 if k == len(weights) - 1 else (2.0 / weight.shape[2]) ** 0.5
        assert abs(weight.std().item() / expected_std - 1) < 0.35, k
        assert torch.equal(bias, torch.zeros_like(bias))
    targets = golden_targets(load("implicit_head_pointsup.pt"), with_points=True)
    features = {"0": torch.randn(2, 16, 16, 20)}
    reference = build_head(3, "points", in_channels=16, conv_dim=16, fc_dim=32, point_fc_dim=8)
    for model in (head, reference):
        model.losses(features, targets)["loss_mask_point"].backward()
    first_layer = slice(0, head.point_head.num_weight_params[0])
    # with all-zero initial parameters almost nothing reaches the first dynamic layer
    assert (head.parameter_head.prediction.bias.grad[first_layer].abs().mean()
            > 100 * reference.parameter_head.prediction.bias.grad[first_layer].abs().mean())
