"""Parity of the point loss and the Mask R-CNN head with the reference's golden vectors."""

from __future__ import annotations

import torch

from pointsup.modeling.losses import roi_point_loss
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNConvUpsample, MaskRCNNMaskHead
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign
from pointsup.modeling.roi_targets import RoIMaskTargets
from pointsup.structures import InstanceTargets
from tests.conftest import golden_file


def _load(name: str) -> dict:
    return torch.load(golden_file(name), weights_only=False)


def _roi_targets(golden: dict) -> RoIMaskTargets:
    """Each golden RoI is its own instance, matched to itself."""
    targets, matched = [], []
    for classes, coords, labels in zip(golden["gt_classes"], golden["gt_point_coords"], golden["gt_point_labels"]):
        targets.append(InstanceTargets(
            boxes=torch.zeros((len(classes), 4)), classes=classes.long(),
            point_coords=coords.float(), point_labels=labels.float(),
        ))
        matched.append(torch.arange(len(classes)))
    boxes = [b.float() for b in golden["proposal_boxes"]]
    return RoIMaskTargets.from_matches(boxes, matched, targets)


def test_point_coordinates_and_ignore_rule_match_reference() -> None:
    golden = _load("maskrcnn_point_loss.pt")
    relative, labels = _roi_targets(golden).relative_points()
    torch.testing.assert_close(relative, golden["point_coords_wrt_box"], rtol=0, atol=1e-6)
    assert torch.equal(labels, golden["point_labels_after_ignore"])
    assert (labels == -1).any(), "the golden case exercises the ignore rule"


def test_point_loss_matches_reference_class_specific_and_agnostic() -> None:
    golden = _load("maskrcnn_point_loss.pt")
    targets = _roi_targets(golden)
    relative, labels = targets.relative_points()
    output = roi_point_loss(golden["mask_logits"], targets.classes, relative, labels)
    assert abs(output.loss.item() - golden["loss"].item()) < 1e-6
    assert abs(output.accuracy.item() - golden["accuracy"]) < 1e-6
    agnostic = roi_point_loss(golden["mask_logits"][:, :1], targets.classes, relative, labels)
    assert abs(agnostic.loss.item() - golden["loss_class_agnostic"].item()) < 1e-6
    assert abs(agnostic.accuracy.item() - golden["accuracy_class_agnostic"]) < 1e-6


def test_point_loss_denominator_counts_ignored_points() -> None:
    logits = torch.zeros((1, 1, 4, 4))
    relative = torch.full((1, 4, 2), 0.5)
    labels = torch.tensor([[1.0, -1.0, -1.0, -1.0]])
    output = roi_point_loss(logits, torch.zeros(1, dtype=torch.long), relative, labels)
    # one valid point with BCE(0, 1) = log 2, divided by all 4 points
    assert abs(output.loss.item() - torch.log(torch.tensor(2.0)).item() / 4) < 1e-7


def test_point_loss_without_rois_is_zero_and_differentiable() -> None:
    logits = torch.zeros((0, 3, 28, 28), requires_grad=True)
    output = roi_point_loss(logits, torch.zeros(0, dtype=torch.long), torch.zeros((0, 10, 2)), torch.zeros((0, 10)))
    output.loss.backward()
    assert output.loss.item() == 0.0 and logits.grad is not None


def _golden_head(golden: dict) -> MaskRCNNMaskHead:
    layers = MaskRCNNConvUpsample(in_channels=8, num_classes=5, conv_dim=16, num_conv=4)
    layers.load_state_dict(golden["state_dict"])
    pooler = AlignedMultiScaleRoIAlign(["p2"], [4], output_size=14)
    return MaskRCNNMaskHead(pooler, layers, supervision="points")


def test_mask_head_training_loss_matches_reference() -> None:
    golden = _load("maskrcnn_head_forward.pt")
    head = _golden_head(golden)
    logits = head.layers(golden["roi_features"])
    losses = head.loss_from_logits(logits, _roi_targets(golden))
    assert abs(losses["loss_mask"].item() - golden["loss_mask"].item()) < 1e-6
    assert abs(losses["point_accuracy"].item() - golden["accuracy"]) < 1e-6


def test_mask_head_inference_masks_match_reference() -> None:
    golden = _load("maskrcnn_head_forward.pt")
    head = _golden_head(golden).eval()
    with torch.no_grad():
        logits = head.layers(golden["roi_features"])
    classes = torch.cat(golden["gt_classes"]).long()
    probs = logits[torch.arange(len(classes)), classes].sigmoid()
    torch.testing.assert_close(probs, golden["pred_masks"][:, 0], rtol=0, atol=1e-6)
