"""Mask R-CNN's region proposal network: torchvision's, built from the ``model.rpn`` config section."""

from __future__ import annotations

from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from pointsup.modeling.config import RPNConfig


def rpn_from_config(config: RPNConfig, in_channels: int) -> RegionProposalNetwork:
    """The RPN on ``in_channels``-wide FPN maps: one anchor size per level (p2..p6) at each of the
    aspect ratios, detectron2's matching (IoU 0.7 / 0.3) and a balanced sample of anchors."""
    sizes = config.anchor_sizes
    anchors = AnchorGenerator(tuple((size,) for size in sizes), (tuple(config.aspect_ratios),) * len(sizes))
    return RegionProposalNetwork(
        anchors,
        RPNHead(in_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=config.batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n={"training": config.pre_nms_top_n_train, "testing": config.pre_nms_top_n_test},
        post_nms_top_n={"training": config.post_nms_top_n_train, "testing": config.post_nms_top_n_test},
        nms_thresh=config.nms_thresh,
    )
