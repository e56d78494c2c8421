"""RoI heads: torchvision's box branch (matching, sampling, box loss, post-processing) plus a
pluggable :class:`~pointsup.modeling.mask_heads.base.RoIMaskHead`.

torchvision's ``RoIHeads`` only passes masks and keypoints on to its heads; the point
annotations of each matched instance have to reach the mask head too, so the forward pass is
re-composed here from its public pieces.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import boxes as box_ops

from pointsup.modeling.mask_heads.base import RoIMaskHead
from pointsup.modeling.roi_targets import RoIMaskTargets
from pointsup.structures.instances import InstanceTargets


class PointSupRoIHeads(RoIHeads):
    """Box branch + mask head.

    Class labels inside torchvision's box branch are shifted by one (0 = background); everything
    this class takes or returns uses contiguous labels ``0..C-1``.

    Args:
        box_pooler, box_head, box_predictor: as for torchvision's ``RoIHeads``.
        mask_head: the mask head (None for a box-only detector).
        train_mask_on_pred_boxes: train the mask head on the box branch's refined boxes of the
            foreground RoIs (detached, clipped; PointRend's recipe) instead of the proposals.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction, bbox_reg_weights,
        score_thresh, nms_thresh, detections_per_img: torchvision's ``RoIHeads`` settings.
    """

    def __init__(
        self,
        box_pooler: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_head: RoIMaskHead | None,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        train_mask_on_pred_boxes: bool = False,
    ):
        super().__init__(
            box_pooler,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
        )
        self.point_mask_head = mask_head
        self.train_mask_on_pred_boxes = train_mask_on_pred_boxes

    def refined_boxes(
        self, box_regression: Tensor, proposals: list[Tensor], labels: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[Tensor]:
        """Per image, each proposal decoded with its label's regression, clipped to the image,
        without gradient; a proposal whose refined box is degenerate is kept as it is."""
        with torch.no_grad():
            decoded = self.box_coder.decode(box_regression.detach(), proposals)  # (sum R_i, C + 1, 4)
            rows = torch.arange(decoded.shape[0], device=decoded.device)
            chosen = decoded[rows, torch.cat(labels)].split([len(p) for p in proposals])
            refined = []
            for boxes, proposal, shape in zip(chosen, proposals, image_shapes):
                boxes = box_ops.clip_boxes_to_image(boxes, shape)
                degenerate = ((boxes[:, 2] - boxes[:, 0]) < 1e-2) | ((boxes[:, 3] - boxes[:, 1]) < 1e-2)
                refined.append(torch.where(degenerate[:, None], proposal, boxes))
            return refined

    def box_outputs(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor]:
        """(sum R_i, C + 1) class logits and (sum R_i, 4 (C + 1)) box deltas of the proposals."""
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        return self.box_predictor(box_features)

    def forward_train(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[InstanceTargets],
    ) -> dict[str, Tensor]:
        """Losses (``loss_classifier``, ``loss_box_reg``, the mask head's) and metrics."""
        box_targets = [{"boxes": t.boxes, "labels": t.classes + 1} for t in targets]
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, box_targets)
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        with torch.no_grad():
            all_labels = torch.cat(labels)
            outputs: dict[str, Tensor] = {
                "loss_classifier": loss_classifier,
                "loss_box_reg": loss_box_reg,
                "box_accuracy": (class_logits.argmax(1) == all_labels).float().mean(),
                "num_fg_rois": (all_labels > 0).sum().float() / len(labels),
            }
        if self.point_mask_head is not None:
            foreground = [torch.nonzero(image_labels > 0).squeeze(1) for image_labels in labels]
            if self.train_mask_on_pred_boxes:
                proposals = self.refined_boxes(box_regression, proposals, labels, image_shapes)
            roi_targets = RoIMaskTargets.from_matches(
                [p[keep] for p, keep in zip(proposals, foreground)],
                [m[keep] for m, keep in zip(matched_idxs, foreground)],
                targets,
            )
            outputs.update(self.point_mask_head.losses(features, roi_targets))
        return outputs

    def forward_test(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Per image: boxes (K, 4), scores (K,), classes (K,) and, with a mask head,
        mask_probs (K, M, M); coordinates of the input image."""
        class_logits, box_regression = self.box_outputs(features, proposals, image_shapes)
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        results = [{"boxes": b, "scores": s, "classes": c - 1} for b, s, c in zip(boxes, scores, labels)]
        if self.point_mask_head is not None:
            mask_probs = self.point_mask_head.predict(features, boxes, [r["classes"] for r in results])
            for result, probs in zip(results, mask_probs):
                result["mask_probs"] = probs
        return results
