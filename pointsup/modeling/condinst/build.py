"""Building a CondInst / BoxInst model from settings (see :class:`pointsup.engine.config.ModelConfig`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pointsup.modeling.backbone import P3_P7_STRIDES, build_backbone_fpn, norm_factory, resolve_normalization
from pointsup.modeling.condinst.dynamic_head import DynamicMaskHead
from pointsup.modeling.condinst.fcos import CondInstHead
from pointsup.modeling.condinst.mask_branch import MaskBranch
from pointsup.modeling.condinst.model import CondInst, CondInstSupervision, InferenceSettings, PairwiseSettings


def build_condinst(
    num_classes: int,
    supervision: CondInstSupervision = "points",
    backbone: str = "resnet50",
    norm: str = "frozen_bn",
    backbone_weights: str | None = None,
    trainable_backbone_layers: int = 3,
    fpn_channels: int = 256,
    fpn_norm: str | None = None,
    fcos_num_convs: int = 4,
    fcos_center_sampling_radius: float = 1.5,
    fcos_score_thresh: float = 0.05,
    fcos_topk_candidates: int = 1000,
    fcos_nms_thresh: float = 0.6,
    detections_per_image: int = 100,
    condinst_mask_branch_channels: int = 128,
    condinst_mask_branch_out_channels: int = 8,
    condinst_mask_branch_num_convs: int = 4,
    condinst_mask_branch_norm: str | None = "bn",
    condinst_mask_head_channels: int = 8,
    condinst_mask_head_num_layers: int = 3,
    condinst_mask_head_negative_slope: float = 0.0,
    condinst_sizes_of_interest: Sequence[float] = (64, 128, 256, 512, 1024),
    condinst_max_proposals: int = 500,
    condinst_mask_resolution: int = 112,
    boxinst_pairwise_size: int = 3,
    boxinst_pairwise_dilation: int = 2,
    boxinst_pairwise_color_thresh: float = 0.3,
    boxinst_pairwise_warmup_iters: int = 10000,
    pixel_mean: Sequence[float] | None = None,
    pixel_std: Sequence[float] | None = None,
) -> CondInst:
    """CondInst on a backbone-FPN p3-p7; defaults are the published R50 settings (AdelaiDet's
    CondInst_MS_R_50_1x); ``num_classes`` excludes the background; ``pixel_mean`` / ``pixel_std``
    None take the statistics of the backbone's weights."""
    body = build_backbone_fpn(backbone, norm, trainable_backbone_layers, backbone_weights, fpn_channels, fpn_norm, levels="p3-p7")
    dynamic_head = DynamicMaskHead(
        condinst_mask_branch_out_channels,
        condinst_mask_head_channels,
        condinst_mask_head_num_layers,
        tuple(condinst_sizes_of_interest),
        output_stride=P3_P7_STRIDES[0] // 2,
        negative_slope=condinst_mask_head_negative_slope,
    )
    normalization = resolve_normalization(backbone, pixel_mean, pixel_std)
    return CondInst(
        body,
        P3_P7_STRIDES,
        CondInstHead(fpn_channels, num_classes, dynamic_head.num_params, fcos_num_convs),
        MaskBranch(
            fpn_channels,
            condinst_mask_branch_channels,
            condinst_mask_branch_out_channels,
            condinst_mask_branch_num_convs,
            num_levels=3,
            norm=norm_factory(condinst_mask_branch_norm),
        ),
        dynamic_head,
        supervision,
        normalization.pixel_mean,
        normalization.pixel_std,
        center_sampling_radius=fcos_center_sampling_radius,
        max_proposals=condinst_max_proposals,
        pairwise=PairwiseSettings(
            boxinst_pairwise_size, boxinst_pairwise_dilation, boxinst_pairwise_color_thresh, boxinst_pairwise_warmup_iters
        ),
        inference=InferenceSettings(
            fcos_score_thresh, fcos_topk_candidates, fcos_nms_thresh, detections_per_image, condinst_mask_resolution
        ),
    )


#: the ``model`` config keys :func:`build_condinst` reads
CONDINST_KEYS = [
    "backbone",
    "norm",
    "backbone_weights",
    "trainable_backbone_layers",
    "fpn_channels",
    "fpn_norm",
    "fcos_num_convs",
    "fcos_center_sampling_radius",
    "fcos_score_thresh",
    "fcos_topk_candidates",
    "fcos_nms_thresh",
    "detections_per_image",
    "condinst_mask_branch_channels",
    "condinst_mask_branch_out_channels",
    "condinst_mask_branch_num_convs",
    "condinst_mask_branch_norm",
    "condinst_mask_head_channels",
    "condinst_mask_head_num_layers",
    "condinst_mask_head_negative_slope",
    "condinst_sizes_of_interest",
    "condinst_max_proposals",
    "condinst_mask_resolution",
    "boxinst_pairwise_size",
    "boxinst_pairwise_dilation",
    "boxinst_pairwise_color_thresh",
    "boxinst_pairwise_warmup_iters",
    "pixel_mean",
    "pixel_std",
]


def condinst_from_config(model_config: Any, num_classes: int, supervision: CondInstSupervision) -> CondInst:
    """Build from the ``model`` section of a :class:`pointsup.engine.config.Config`."""
    return build_condinst(
        num_classes=num_classes, supervision=supervision, **{k: getattr(model_config, k) for k in CONDINST_KEYS}
    )
