"""InstanceTargets.padded_points: the one place point targets are padded with ignored points."""

from __future__ import annotations

import pytest
import torch

from pointsup.modeling.losses import point_loss
from pointsup.structures.instances import IGNORE_LABEL, InstanceTargets


def targets_with(num_instances: int, num_points: int) -> InstanceTargets:
    generator = torch.Generator().manual_seed(num_instances * 10 + num_points)
    return InstanceTargets(
        boxes=torch.rand((num_instances, 4), generator=generator),
        classes=torch.zeros(num_instances, dtype=torch.int64),
        point_coords=torch.rand((num_instances, num_points, 2), generator=generator) * 50,
        point_labels=torch.randint(0, 2, (num_instances, num_points), generator=generator).float(),
    )


@pytest.mark.parametrize("num_instances, num_points, width", [(3, 10, 10), (3, 4, 10), (0, 2, 5), (2, 0, 3)])
def test_padding_keeps_the_points_and_ignores_the_rest(num_instances: int, num_points: int, width: int) -> None:
    targets = targets_with(num_instances, num_points)
    coords, labels = targets.padded_points(width)
    assert coords.shape == (num_instances, width, 2) and labels.shape == (num_instances, width)
    assert torch.equal(coords[:, :num_points], targets.point_coords)
    assert torch.equal(labels[:, :num_points], targets.point_labels)
    assert bool((labels[:, num_points:] == IGNORE_LABEL).all()) and not bool(coords[:, num_points:].any())


def test_padding_to_fewer_points_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot pad 4 points to 3"):
        targets_with(1, 4).padded_points(3)


def test_the_two_denominators_differ_only_by_the_ignored_points() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    labels = torch.tensor([[1.0, 0.0, IGNORE_LABEL, IGNORE_LABEL]])
    per_point = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, :2], labels[:, :2], reduction="sum")
    assert point_loss(logits, labels).loss.item() == pytest.approx(per_point.item() / 4)  # R * P
    assert point_loss(logits, labels, denominator="valid_points").loss.item() == pytest.approx(per_point.item() / 2)
    assert point_loss(logits, labels).accuracy.item() == 1.0
    nothing_valid = torch.full((1, 4), IGNORE_LABEL)
    assert point_loss(logits, nothing_valid, denominator="valid_points").loss.item() == 0.0
