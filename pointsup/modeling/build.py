"""Builders: a Mask R-CNN with the chosen backbone, normalisation, mask head and supervision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from pointsup.modeling.backbone import FEATURE_NAMES, FEATURE_STRIDES, build_backbone_fpn, norm_factory, resolve_normalization
from pointsup.modeling.condinst.build import condinst_from_config
from pointsup.modeling.detector import Detector
from pointsup.modeling.mask_heads.base import RoIMaskHead, Supervision
from pointsup.modeling.mask_heads.convfc import ConvFCHead, FineFeatureSampler
from pointsup.modeling.mask_heads.implicit_pointrend import ImplicitPointHead, ImplicitPointRendMaskHead
from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNConvUpsample, MaskRCNNMaskHead
from pointsup.modeling.mask_heads.pointrend import PointRendMaskHead, StandardPointHead
from pointsup.modeling.mask_rcnn import MaskRCNN
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign
from pointsup.modeling.roi_heads import PointSupRoIHeads

MASK_HEADS = ("maskrcnn", "pointrend", "implicit_pointrend")
BOX_HEADS = ("2fc", "4conv1fc")


def build_maskrcnn_mask_head(
    num_classes: int,
    supervision: Supervision,
    channels: int = 256,
    conv_dim: int = 256,
    num_conv: int = 4,
    norm: str | None = None,
    class_agnostic: bool = False,
) -> RoIMaskHead:
    """Mask R-CNN's 4-conv head on aligned 14x14 RoI features from p2-p5."""
    pooler = AlignedMultiScaleRoIAlign(FEATURE_NAMES, FEATURE_STRIDES, output_size=14)
    layers = MaskRCNNConvUpsample(channels, 1 if class_agnostic else num_classes, conv_dim, num_conv, norm_factory(norm))
    return MaskRCNNMaskHead(pooler, layers, supervision)


def build_pointrend_mask_head(
    num_classes: int,
    supervision: Supervision,
    channels: int = 256,
    conv_dim: int = 256,
    fc_dim: int = 1024,
    num_fc: int = 2,
    point_fc_dim: int = 256,
    point_num_fc: int = 3,
    class_agnostic: bool = False,
    train_num_points: int = 196,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    subdivision_steps: int = 5,
    subdivision_num_points: int = 784,
) -> RoIMaskHead:
    """PointRend on p2: a 7x7 coarse conv-FC head and a point head (docs/design.md, "Mask heads")."""
    outputs = 1 if class_agnostic else num_classes
    return PointRendMaskHead(
        ConvFCHead(channels, 14, conv_dim, [fc_dim] * num_fc, (outputs, 7, 7)),
        StandardPointHead(channels, outputs, point_fc_dim, point_num_fc),
        FineFeatureSampler(FEATURE_NAMES[0], FEATURE_STRIDES[0]),
        supervision,
        train_num_points=train_num_points,
        oversample_ratio=oversample_ratio,
        importance_ratio=importance_ratio,
        subdivision_steps=subdivision_steps,
        subdivision_num_points=subdivision_num_points,
    )


def build_implicit_pointrend_mask_head(
    num_classes: int,
    supervision: Supervision,
    channels: int = 256,
    conv_dim: int = 256,
    fc_dim: int = 1024,
    num_fc: int = 2,
    point_fc_dim: int = 256,
    point_num_fc: int = 3,
    class_agnostic: bool = False,
    train_num_points: int = 196,
    subdivision_steps: int = 3,
    subdivision_num_points: int = 784,
    params_l2_weight: float = 1e-5,
    image_features: bool = True,
    positional_encoding: bool = True,
    base_init: bool = False,
) -> RoIMaskHead:
    """Implicit PointRend on p2: a parameter head and a dynamic point head (docs/design.md, "Mask heads")."""
    point_head = ImplicitPointHead(
        channels if image_features else 0, 1 if class_agnostic else num_classes, point_fc_dim, point_num_fc, positional_encoding
    )
    return ImplicitPointRendMaskHead(
        ConvFCHead(channels, 14, conv_dim, [fc_dim] * num_fc, (point_head.num_params,)),
        point_head,
        FineFeatureSampler(FEATURE_NAMES[0], FEATURE_STRIDES[0]),
        supervision,
        train_num_points=train_num_points,
        subdivision_steps=subdivision_steps,
        subdivision_num_points=subdivision_num_points,
        params_l2_weight=params_l2_weight,
        base_init=base_init,
    )


def build_mask_head(
    kind: str,
    num_classes: int,
    supervision: Supervision,
    channels: int,
    conv_dim: int = 256,
    num_conv: int = 4,
    norm: str | None = None,
    fc_dim: int = 1024,
    num_fc: int = 2,
    point_fc_dim: int = 256,
    point_num_fc: int = 3,
    class_agnostic: bool = False,
    train_num_points: int = 196,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    subdivision_steps: int | None = None,
    subdivision_num_points: int = 784,
    params_l2_weight: float = 1e-5,
    image_features: bool = True,
    positional_encoding: bool = True,
    base_init: bool = False,
) -> RoIMaskHead:
    """The mask head named ``kind`` ("maskrcnn", "pointrend" or "implicit_pointrend").

    ``subdivision_steps`` None takes each head's reference value (PointRend 5 from its 7x7
    coarse mask, Implicit PointRend 3 from a 28x28 grid; both end at 224x224).
    """
    if kind == "maskrcnn":
        return build_maskrcnn_mask_head(num_classes, supervision, channels, conv_dim, num_conv, norm, class_agnostic)
    if kind == "pointrend":
        return build_pointrend_mask_head(
            num_classes,
            supervision,
            channels,
            conv_dim,
            fc_dim,
            num_fc,
            point_fc_dim,
            point_num_fc,
            class_agnostic,
            train_num_points,
            oversample_ratio,
            importance_ratio,
            5 if subdivision_steps is None else subdivision_steps,
            subdivision_num_points,
        )
    if kind == "implicit_pointrend":
        return build_implicit_pointrend_mask_head(
            num_classes,
            supervision,
            channels,
            conv_dim,
            fc_dim,
            num_fc,
            point_fc_dim,
            point_num_fc,
            class_agnostic,
            train_num_points,
            3 if subdivision_steps is None else subdivision_steps,
            subdivision_num_points,
            params_l2_weight,
            image_features,
            positional_encoding,
            base_init,
        )
    raise ValueError(f"unknown mask head {kind!r}; choose from {MASK_HEADS}")


def build_box_head(kind: str, channels: int, norm: str | None) -> tuple[nn.Module, int]:
    """The box head and its output width: "2fc" (two FC 1024) or "4conv1fc" (four 3x3 convs,
    optionally normalised, then FC 1024; the usual choice with GroupNorm)."""
    if kind == "2fc":
        return TwoMLPHead(channels * 7 * 7, 1024), 1024
    if kind == "4conv1fc":
        return FastRCNNConvFCHead((channels, 7, 7), [256] * 4, [1024], norm_layer=norm_factory(norm)), 1024
    raise ValueError(f"unknown box head {kind!r}; choose from {BOX_HEADS}")


def build_mask_rcnn(
    num_classes: int,
    supervision: Supervision = "points",
    backbone: str = "resnet50",
    norm: str = "frozen_bn",
    backbone_weights: str | None = None,
    trainable_backbone_layers: int = 3,
    fpn_channels: int = 256,
    fpn_norm: str | None = None,
    anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 2000,
    rpn_pre_nms_top_n_test: int = 1000,
    rpn_post_nms_top_n_train: int = 1000,
    rpn_post_nms_top_n_test: int = 1000,
    rpn_nms_thresh: float = 0.7,
    rpn_batch_size_per_image: int = 256,
    roi_batch_size_per_image: int = 512,
    roi_positive_fraction: float = 0.25,
    box_head: str = "2fc",
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    detections_per_image: int = 100,
    mask_head: str = "maskrcnn",
    mask_head_conv_dim: int = 256,
    mask_head_num_conv: int = 4,
    mask_head_norm: str | None = None,
    class_agnostic_mask: bool = False,
    mask_head_fc_dim: int = 1024,
    mask_head_num_fc: int = 2,
    point_head_fc_dim: int = 256,
    point_head_num_fc: int = 3,
    point_head_train_points: int = 196,
    point_head_oversample_ratio: float = 3.0,
    point_head_importance_ratio: float = 0.75,
    subdivision_steps: int | None = None,
    subdivision_num_points: int = 784,
    implicit_params_l2_weight: float = 1e-5,
    implicit_image_features: bool = True,
    implicit_positional_encoding: bool = True,
    implicit_base_init: bool = False,
    train_mask_on_pred_boxes: bool = False,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
) -> MaskRCNN:
    """A Mask R-CNN whose mask head is trained with ``supervision`` ("points" or "masks").

    Defaults follow detectron2's Base-RCNN-FPN; ``num_classes`` excludes the
    background. ``pixel_mean`` / ``pixel_std`` None take the statistics of the backbone's weights.
    """
    if mask_head not in MASK_HEADS:
        raise ValueError(f"unknown mask head {mask_head!r}; choose from {MASK_HEADS}")
    body = build_backbone_fpn(backbone, norm, trainable_backbone_layers, backbone_weights, fpn_channels, fpn_norm)
    anchors = AnchorGenerator(tuple((size,) for size in anchor_sizes), (tuple(aspect_ratios),) * len(anchor_sizes))
    rpn = RegionProposalNetwork(
        anchors,
        RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh,
    )
    head, representation = build_box_head(box_head, fpn_channels, mask_head_norm if norm == "gn" else None)
    heads = PointSupRoIHeads(
        AlignedMultiScaleRoIAlign(FEATURE_NAMES, FEATURE_STRIDES, output_size=7),
        head,
        FastRCNNPredictor(representation, num_classes + 1),
        build_mask_head(
            mask_head,
            num_classes,
            supervision,
            fpn_channels,
            mask_head_conv_dim,
            mask_head_num_conv,
            mask_head_norm,
            mask_head_fc_dim,
            mask_head_num_fc,
            point_head_fc_dim,
            point_head_num_fc,
            class_agnostic_mask,
            point_head_train_points,
            point_head_oversample_ratio,
            point_head_importance_ratio,
            subdivision_steps,
            subdivision_num_points,
            implicit_params_l2_weight,
            implicit_image_features,
            implicit_positional_encoding,
            implicit_base_init,
        ),
        train_mask_on_pred_boxes=train_mask_on_pred_boxes,
        batch_size_per_image=roi_batch_size_per_image,
        positive_fraction=roi_positive_fraction,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=detections_per_image,
    )
    normalization = resolve_normalization(backbone, pixel_mean, pixel_std)
    return MaskRCNN(body, rpn, heads, normalization.pixel_mean, normalization.pixel_std)


def build_model(model_config: Any, num_classes: int, supervision: str) -> Detector:
    """Build from the ``model`` section of a :class:`pointsup.engine.config.Config`: a Mask R-CNN
    or, with ``architecture: condinst``, a CondInst (BoxInst with ``supervision: boxes``)."""
    if getattr(model_config, "architecture", "mask_rcnn") == "condinst":
        return condinst_from_config(model_config, num_classes, supervision)  # type: ignore[arg-type]
    if supervision not in ("points", "masks"):
        raise ValueError(f"Mask R-CNN trains with points or masks, not {supervision!r} (boxes need architecture: condinst)")
    keys = [
        "backbone",
        "norm",
        "backbone_weights",
        "trainable_backbone_layers",
        "fpn_channels",
        "fpn_norm",
        "anchor_sizes",
        "aspect_ratios",
        "rpn_pre_nms_top_n_train",
        "rpn_pre_nms_top_n_test",
        "rpn_post_nms_top_n_train",
        "rpn_post_nms_top_n_test",
        "rpn_nms_thresh",
        "rpn_batch_size_per_image",
        "roi_batch_size_per_image",
        "roi_positive_fraction",
        "box_head",
        "box_score_thresh",
        "box_nms_thresh",
        "detections_per_image",
        "mask_head",
        "mask_head_conv_dim",
        "mask_head_num_conv",
        "mask_head_norm",
        "class_agnostic_mask",
        "mask_head_fc_dim",
        "mask_head_num_fc",
        "point_head_fc_dim",
        "point_head_num_fc",
        "point_head_train_points",
        "point_head_oversample_ratio",
        "point_head_importance_ratio",
        "subdivision_steps",
        "subdivision_num_points",
        "implicit_params_l2_weight",
        "implicit_image_features",
        "implicit_positional_encoding",
        "implicit_base_init",
        "train_mask_on_pred_boxes",
        "pixel_mean",
        "pixel_std",
    ]
    return build_mask_rcnn(
        num_classes=num_classes, supervision=cast(Supervision, supervision), **{k: getattr(model_config, k) for k in keys}
    )
