"""Evaluation: COCO box and mask AP of detections, the mask IoU of matched detections, and pictures of them."""

from pointsup.evaluation.coco_evaluator import COCOEvaluator, format_ap_table, format_per_category_table
from pointsup.evaluation.mask_quality import MatchedMaskQuality, matched_mask_iou
from pointsup.evaluation.overlay import draw_detections, save_overlay

__all__ = [
    "COCOEvaluator",
    "MatchedMaskQuality",
    "draw_detections",
    "format_ap_table",
    "format_per_category_table",
    "matched_mask_iou",
    "save_overlay",
]
