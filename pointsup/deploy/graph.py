"""The exportable core of a trained Mask R-CNN: one image in, detections with box-relative masks out.

:class:`MaskRCNNGraph` re-composes :class:`~pointsup.modeling.mask_rcnn.MaskRCNN`'s inference from
its own modules, for one image whose size is known only when the graph runs:

* in: ``image`` (1, 3, H, W) float32 RGB on the 0-255 scale, already resized to the model's test
  size (any H, W);
* inside: normalisation, zero padding to a multiple of ``size_divisibility`` (after
  normalisation, as :meth:`~pointsup.modeling.detector.Detector.preprocess`), backbone, RPN, box
  branch with its box decoding, score threshold and per-class NMS, and the mask head on the kept
  boxes (:mod:`pointsup.deploy.mask_graphs`: Mask R-CNN's conv head, PointRend or Implicit
  PointRend with its adaptive subdivision);
* out: ``boxes`` (K, 4) xyxy in the coordinates of ``image``, ``scores`` (K,), ``classes`` (K,)
  int64 contiguous labels and ``mask_probs`` (K, M, M) on each box's grid (M = 28 for the conv
  head, 224 for the point heads with the reference settings).

Mapping the boxes to the original image and pasting the masks happen beside the graph
(:mod:`pointsup.deploy.onnx_runner`): they need the original size, and pasting ``K`` full-size
masks inside the graph would cost ``K x H x W`` memory for masks that are mostly empty.

Nothing here changes the modules. Where they use the number of boxes as a Python integer (the
pooler's ``len(boxes)``, its early return for zero boxes, the mask heads' per-image split), a
traced graph would freeze that number, so the wrapper pools with
:func:`~pointsup.deploy.pooling.pool_one_image` and runs the mask heads through
:mod:`pointsup.deploy.mask_graphs`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList

from pointsup.deploy.mask_graphs import mask_graph
from pointsup.deploy.pooling import padded_image, pool_one_image
from pointsup.modeling.mask_rcnn import MaskRCNN
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign

__all__ = ["MaskRCNNGraph", "padded_image", "pool_one_image"]


class MaskRCNNGraph(nn.Module):
    """Mask R-CNN inference on one image as a traceable module (see the module docstring).

    Args:
        model: a trained :class:`MaskRCNN` in eval mode with any of the three mask heads.
    """

    def __init__(self, model: MaskRCNN):
        super().__init__()
        head = model.roi_heads.point_mask_head
        if head is None:
            raise TypeError("MaskRCNNGraph needs a model with a mask head")
        box_pooler = model.roi_heads.box_roi_pool
        if not isinstance(box_pooler, AlignedMultiScaleRoIAlign):
            raise TypeError(f"MaskRCNNGraph needs the aligned box pooler, got {type(box_pooler).__name__}")
        self.model = model
        self.masks = mask_graph(head)
        self.box_pooler = box_pooler

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(1, 3, H, W) float32 0-255 RGB → boxes (K, 4), scores (K,), classes (K,), mask_probs (K, M, M)."""
        model = self.model
        height, width = image.shape[-2], image.shape[-1]
        normalised = (image - model.pixel_mean[None]) / model.pixel_std[None]
        padded = padded_image(normalised, model.size_divisibility)
        sizes = [(height, width)]
        features = model.backbone(padded)
        proposals, _ = model.rpn(ImageList(padded, sizes), features)
        roi_heads = model.roi_heads
        pooled = pool_one_image(self.box_pooler, features, proposals[0])
        class_logits, box_regression = roi_heads.box_predictor(roi_heads.box_head(pooled))
        boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, proposals, sizes)
        classes = labels[0] - 1
        # one extra box keeps the head's batch non-empty (onnxruntime cannot reshape an empty batch
        # for GroupNorm or a per-box MLP); the heads treat boxes independently, so the others are unchanged
        spare_boxes = torch.cat([boxes[0], boxes[0].new_tensor([[0.0, 0.0, 1.0, 1.0]])])
        spare_classes = torch.cat([classes, classes.new_zeros((1,))])
        probs = self.masks(features, spare_boxes, spare_classes)[:-1]
        return boxes[0], scores[0], classes, probs
