"""Helpers for the PointRend-style head tests: golden inputs as RoIMaskTargets, and mask checks."""

from __future__ import annotations

import torch

from pointsup.modeling.roi_targets import RoIMaskTargets


def golden_targets(golden: dict, with_points: bool = False) -> RoIMaskTargets:
    """The golden proposals (matched one-to-one with their GT, in order) as RoIMaskTargets."""
    counts = [len(b) for b in golden["proposal_boxes"]]
    total = sum(counts)
    if with_points:
        coords = torch.cat(golden["gt_point_coords"]).to(torch.float32)
        labels = torch.cat(golden["gt_point_labels"]).to(torch.float32)
    else:
        coords, labels = torch.zeros((total, 0, 2)), torch.zeros((total, 0))
    return RoIMaskTargets(
        boxes=torch.cat(golden["proposal_boxes"]),
        classes=torch.cat(golden["gt_classes"]),
        image_index=torch.cat([torch.full((n,), i, dtype=torch.int64) for i, n in enumerate(counts)]),
        matched_index=torch.cat([torch.arange(n) for n in counts]),
        point_coords=coords,
        point_labels=labels,
        gt_masks=list(golden["gt_masks"]) if "gt_masks" in golden else [None] * len(counts),
    )


# On a CPU with AVX-512 kernels the straightforward path gives the golden masks bit for bit; an
# AVX2 CPU's matrix kernels round differently, 1 float32 ulp (6e-8 near probability 0.5-1) on some
# pixels. Four ulps allow that, and nothing a change of arithmetic makes.
STRAIGHTFORWARD_ATOL = 4 * 2.0**-24
FAST_ATOL = 1e-6


def assert_golden_masks(head: torch.nn.Module, golden: dict, fast: bool) -> None:
    """The head's 224x224 masks of the golden proposals equal the reference's (to a few float32
    ulps on the straightforward path, to 1e-6 on the fast one) and binarise identically."""
    head.eval()
    head.fast_inference = fast
    with torch.no_grad():
        probs = torch.cat(head.predict({"0": golden["features_p2"]}, golden["proposal_boxes"], golden["gt_classes"]))
    expected = golden["pred_masks"][:, 0]
    assert probs.shape == expected.shape == (5, 224, 224)
    torch.testing.assert_close(probs, expected, rtol=0, atol=FAST_ATOL if fast else STRAIGHTFORWARD_ATOL)
    assert torch.equal(probs >= 0.5, expected >= 0.5)


def assert_fast_equals_straightforward(head: torch.nn.Module) -> None:
    """Fast and straightforward inference agree on random features with many classes."""
    head.eval()
    features = {"0": torch.randn(2, 16, 24, 32)}  # heads built with channels=16 and 12 classes
    boxes = [torch.tensor([[4.0, 6.0, 70.0, 50.0], [30.0, 2.0, 120.0, 90.0], [0.0, 0.0, 12.0, 9.0]]),
             torch.tensor([[10.0, 20.0, 90.0, 60.0]])]
    classes = [torch.tensor([3, 11, 3]), torch.tensor([0])]
    with torch.no_grad():
        head.fast_inference = True
        fast = torch.cat(head.predict(features, boxes, classes))
        head.fast_inference = False
        slow = torch.cat(head.predict(features, boxes, classes))
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-5)
    assert torch.equal(fast >= 0.5, slow >= 0.5)
    assert 0.05 < (slow >= 0.5).float().mean() < 0.95  # a non-trivial mask
