"""Evaluation: COCO box and mask AP of detections, and pictures of them."""

from pointsup.evaluation.coco_evaluator import COCOEvaluator, format_ap_table, format_per_category_table
from pointsup.evaluation.overlay import draw_detections, save_overlay

__all__ = ["COCOEvaluator", "draw_detections", "format_ap_table", "format_per_category_table", "save_overlay"]
