"""A new mask head is its module plus one line in the registry: a toy head defined here, registered
with one line (and removed after), is accepted by the config as ``model.mask_head.name`` and trains
and predicts inside a small Mask R-CNN."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from pointsup.engine.config import ConfigError, load_config
from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES
from pointsup.modeling.build import build_model
from pointsup.modeling.detector import total_loss
from pointsup.modeling.losses import roi_mask_loss, roi_point_loss, select_class_channel
from pointsup.modeling.mask_heads import MASK_HEADS, mask_head_class, register_mask_head
from pointsup.modeling.mask_heads.base import RoIMaskHead, Supervision
from pointsup.modeling.mask_heads.config import MaskHeadConfig
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign
from pointsup.modeling.roi_targets import RoIMaskTargets
from tests.modeling.test_mask_rcnn import TINY, sample


class ToyMaskHead(RoIMaskHead):
    """7x7 mask logits from one 1x1 convolution on aligned 7x7 RoI features of p2-p5."""

    def __init__(self, pooler: AlignedMultiScaleRoIAlign, predictor: nn.Conv2d, supervision: Supervision):
        super().__init__(supervision)
        self.pooler = pooler
        self.predictor = predictor

    @classmethod
    def from_config(cls, config: MaskHeadConfig, num_classes: int, supervision: Supervision, in_channels: int) -> ToyMaskHead:
        outputs = 1 if config.class_agnostic else num_classes
        return cls(
            AlignedMultiScaleRoIAlign(FEATURE_NAMES, FEATURE_STRIDES, output_size=7),
            nn.Conv2d(in_channels, outputs, 1),
            supervision,
        )

    def losses(self, features: dict[str, Tensor], targets: RoIMaskTargets) -> dict[str, Tensor]:
        logits = self.predictor(self.pooler(features, targets.boxes_per_image()))
        if self.supervision == "points":
            output = roi_point_loss(logits, targets.classes, *targets.relative_points())
        else:
            output = roi_mask_loss(logits, targets.classes, targets.mask_crops(logits.shape[-1]))
        return {"loss_mask": output.loss}

    def predict(self, features: dict[str, Tensor], boxes: list[Tensor], classes: list[Tensor]) -> list[Tensor]:
        if sum(len(b) for b in boxes) == 0:
            return [b.new_zeros((0, 7, 7)) for b in boxes]
        logits = self.predictor(self.pooler(features, boxes))
        probs = select_class_channel(logits, torch.cat(classes)).squeeze(1).sigmoid()
        return list(probs.split([len(b) for b in boxes]))


@pytest.fixture()
def toy_registered() -> Iterator[None]:
    register_mask_head("toy", ToyMaskHead)  # the one line a new head adds to the registry
    yield
    MASK_HEADS.pop("toy", None)


def tiny_overrides() -> list[str]:
    return [f"model.{key}={value}" for key, value in TINY.items()]


@pytest.mark.parametrize("supervision", ["points", "masks"])
def test_a_registered_toy_head_trains_and_predicts_in_mask_rcnn(toy_registered: None, supervision: str) -> None:
    config = load_config(None, [*tiny_overrides(), "model.mask_head.name=toy", f"supervision={supervision}"])
    assert config.model.mask_head.name == "toy"
    torch.manual_seed(0)
    model = build_model(config.model, 3, config.supervision)
    head = model.roi_heads.point_mask_head
    assert isinstance(head, ToyMaskHead) and head.predictor.out_channels == 3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = head.predictor.weight.detach().clone()
    model.train()
    outputs = model([sample(96, 128, [[10, 10, 60, 50], [40, 30, 120, 90]]), sample(80, 96, [[5, 5, 50, 40]])])
    loss = total_loss(outputs)
    assert torch.isfinite(loss) and outputs["loss_mask"] > 0
    loss.backward()
    assert head.predictor.weight.grad is not None and head.predictor.weight.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(head.predictor.weight, before)
    model.eval()
    with torch.no_grad():
        (detections,) = model([sample(64, 96, [])])
    assert detections.mask_probs.shape[1:] == (7, 7)


def test_an_unregistered_head_is_refused_with_the_registered_names(toy_registered: None) -> None:
    assert load_config(None, ["model.mask_head.name=toy"]).model.mask_head.name == "toy"
    del MASK_HEADS["toy"]
    try:
        with pytest.raises(
            ConfigError,
            match=r"'model.mask_head.name' must be one of 'maskrcnn', 'pointrend', "
            r"'implicit_pointrend', not 'toy'",
        ):
            load_config(None, ["model.mask_head.name=toy"])
    finally:
        register_mask_head("toy", ToyMaskHead)  # the fixture removes it


def test_a_name_is_registered_once_unless_replaced(toy_registered: None) -> None:
    with pytest.raises(ValueError, match=r"a mask head named 'toy' is registered already .*replace=True"):
        register_mask_head("toy", ToyMaskHead)
    with pytest.raises(ValueError, match=r"a mask head named 'maskrcnn' is registered already"):
        register_mask_head("maskrcnn", ToyMaskHead)
    assert mask_head_class("maskrcnn").__name__ == "MaskRCNNMaskHead"  # untouched
    register_mask_head("toy", "tests.modeling.test_toy_mask_head:ToyMaskHead", replace=True)
    assert mask_head_class("toy").__name__ == "ToyMaskHead"  # imported on use (pytest may name the module apart)


class NotAHead(nn.Module):
    pass


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "tests.modeling.no_such_module:ToyMaskHead",
            r"mask head 'toy': cannot import its entry 'tests\.modeling\.no_such_module:ToyMaskHead'",
        ),
        ("tests.modeling.test_toy_mask_head:NoSuchHead", r"mask head 'toy': cannot import its entry '.*:NoSuchHead'"),
        (
            "tests.modeling.test_toy_mask_head:NotAHead",
            r"mask head 'toy': its entry '.*:NotAHead' is not a subclass of RoIMaskHead",
        ),
        (NotAHead, r"mask head 'toy': its entry .*NotAHead.* is not a subclass of RoIMaskHead"),
        ("tests.modeling.test_toy_mask_head:sample", r"is not a subclass of RoIMaskHead"),  # a function
    ],
)
def test_a_bad_entry_is_refused_naming_it(toy_registered: None, entry: object, message: str) -> None:
    register_mask_head("toy", entry, replace=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        mask_head_class("toy")
    with pytest.raises(ValueError, match=message):
        build_model(load_config(None, [*tiny_overrides(), "model.mask_head.name=toy"]).model, 3, "points")


def test_an_entry_string_must_name_module_and_class() -> None:
    with pytest.raises(ValueError, match=r"entry 'tests.modeling.test_toy_mask_head' is not of the form 'module:Class'"):
        register_mask_head("toy", "tests.modeling.test_toy_mask_head")
    assert "toy" not in MASK_HEADS
