"""The exportable core of a trained Mask R-CNN: one image in, detections with box-relative masks out.

:class:`MaskRCNNGraph` re-composes :class:`~pointsup.modeling.mask_rcnn.MaskRCNN`'s inference from
its own modules, for one image whose size is known only when the graph runs:

* in: ``image`` (1, 3, H, W) float32 RGB on the 0-255 scale, already resized to the model's test
  size (any H, W);
* inside: normalisation, zero padding to a multiple of ``size_divisibility`` (after
  normalisation, as :meth:`~pointsup.modeling.detector.Detector.preprocess`), backbone, RPN, box
  branch with its box decoding, score threshold and per-class NMS, and the mask head on the kept
  boxes;
* out: ``boxes`` (K, 4) xyxy in the coordinates of ``image``, ``scores`` (K,), ``classes`` (K,)
  int64 contiguous labels and ``mask_probs`` (K, M, M) on each box's grid.

Mapping the boxes to the original image and pasting the masks happen beside the graph
(:mod:`pointsup.deploy.onnx_runner`): they need the original size, and pasting ``K`` full-size
masks inside the graph would cost ``K x H x W`` memory for masks that are mostly empty.

Nothing here changes the modules. Where they use the number of boxes as a Python integer (the
pooler's ``len(boxes)``, its early return for zero boxes, the mask head's per-image split), a
traced graph would freeze that number, so the wrapper pools with :func:`pool_one_image` and calls
the mask head's layers itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import roi_align

from pointsup.modeling.mask_heads.maskrcnn import MaskRCNNMaskHead
from pointsup.modeling.mask_rcnn import MaskRCNN
from pointsup.modeling.poolers import AlignedMultiScaleRoIAlign, assign_fpn_levels


def _padded_image(image: Tensor, divisor: int) -> Tensor:
    """(1, 3, H, W) → (1, 3, H_pad, W_pad), zeros at the bottom and right; sides multiples of ``divisor``."""
    height, width = image.shape[-2], image.shape[-1]
    pad_height = (divisor - height % divisor) % divisor
    pad_width = (divisor - width % divisor) % divisor
    return F.pad(image, (0, pad_width, 0, pad_height))


def pool_one_image(pooler: AlignedMultiScaleRoIAlign, features: dict[str, Tensor], boxes: Tensor) -> Tensor:
    """What ``pooler(features, [boxes])`` computes for one image, with the number of boxes
    (possibly 0) a dimension of the graph rather than a Python integer.

    Args:
        features: FPN maps, each (1, C, H_l, W_l).
        boxes: (K, 4) xyxy boxes in input-image coordinates.

    Returns:
        (K, C, S, S) aligned RoIAlign features, each box from its FPN level.
    """
    maps = [features[name] for name in pooler.feature_names]
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1).to(maps[0].dtype)
    size, ratio = pooler.output_size, pooler.sampling_ratio
    if len(maps) == 1:
        return roi_align(maps[0], rois, size, 1.0 / pooler.strides[0], ratio, aligned=True)
    levels = assign_fpn_levels(boxes, pooler.min_level, pooler.max_level)
    output = maps[0].new_zeros((boxes.shape[0], maps[0].shape[1], size, size))
    for level, (feature_map, stride) in enumerate(zip(maps, pooler.strides)):
        index = torch.nonzero(levels == level).squeeze(1)
        pooled = roi_align(feature_map, rois[index], size, 1.0 / stride, ratio, aligned=True)
        output = output.index_put((index,), pooled)
    return output


class MaskRCNNGraph(nn.Module):
    """Mask R-CNN inference on one image as a traceable module (see the module docstring).

    Args:
        model: a trained :class:`MaskRCNN` in eval mode with the ``maskrcnn`` mask head.
    """

    def __init__(self, model: MaskRCNN):
        super().__init__()
        head = model.roi_heads.point_mask_head
        if not isinstance(head, MaskRCNNMaskHead):
            raise TypeError(f"MaskRCNNGraph needs the maskrcnn mask head, got {type(head).__name__}")
        box_pooler = model.roi_heads.box_roi_pool
        if not isinstance(box_pooler, AlignedMultiScaleRoIAlign):
            raise TypeError(f"MaskRCNNGraph needs the aligned box pooler, got {type(box_pooler).__name__}")
        self.model = model
        self.head = head
        self.box_pooler = box_pooler

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(1, 3, H, W) float32 0-255 RGB → boxes (K, 4), scores (K,), classes (K,), mask_probs (K, M, M)."""
        model = self.model
        height, width = image.shape[-2], image.shape[-1]
        normalised = (image - model.pixel_mean[None]) / model.pixel_std[None]
        padded = _padded_image(normalised, model.size_divisibility)
        sizes = [(height, width)]
        features = model.backbone(padded)
        proposals, _ = model.rpn(ImageList(padded, sizes), features)
        roi_heads = model.roi_heads
        pooled = pool_one_image(self.box_pooler, features, proposals[0])
        class_logits, box_regression = roi_heads.box_predictor(roi_heads.box_head(pooled))
        boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, proposals, sizes)
        # one extra box keeps the head's batch non-empty (onnxruntime cannot reshape an empty batch
        # for GroupNorm); the head treats RoIs independently, so the others are unchanged
        padded_boxes = torch.cat([boxes[0], boxes[0].new_tensor([[0.0, 0.0, 1.0, 1.0]])])
        logits = self.head.layers(pool_one_image(self.head.pooler, features, padded_boxes))[:-1]  # (K, C, M, M)
        classes = labels[0] - 1
        if logits.shape[1] == 1:
            chosen = logits[:, 0]
        else:
            chosen = logits[torch.arange(logits.shape[0]), classes]
        return boxes[0], scores[0], classes, chosen.sigmoid()
