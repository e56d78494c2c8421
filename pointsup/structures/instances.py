"""The three records that cross module boundaries.

* :class:`Sample`: one image and its training targets, as the data pipeline yields them.
* :class:`InstanceTargets`: the ground truth of one image in the coordinates of the image the
  model sees (after augmentation).
* :class:`Detections`: what a model predicts for one image.

Coordinates are continuous image coordinates (docs/conventions.md, section 1): pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``, and the centre of a stored integer point ``d`` is ``d + 0.5``.
Boxes are ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

IGNORE_LABEL = -1.0
"""Point label meaning "not supervised" (outside the image, outside the crop, or padding)."""


@dataclass
class InstanceTargets:
    """Ground truth of the N instances of one image.

    Attributes:
        boxes: (N, 4) float32, xyxy, continuous coordinates of the current image.
        classes: (N,) int64 contiguous class indices in ``[0, num_classes)``.
        point_coords: (N, P, 2) float32 continuous ``(x, y)``; P is 0 when the data has no points.
            Instances with fewer than P points are padded with label ``IGNORE_LABEL``.
        point_labels: (N, P) float32 with values 1 (object), 0 (background) or -1 (ignored).
        masks: (N, H, W) uint8 bitmasks at the current image size, or None without mask data.
        annotation_ids: (N,) int64 ids of the source annotations (for error messages and
            self-training); -1 when unknown.
    """

    boxes: Tensor
    classes: Tensor
    point_coords: Tensor
    point_labels: Tensor
    masks: Tensor | None = None
    annotation_ids: Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.point_coords.shape[1])

    def padded_points(self, num_points: int) -> tuple[Tensor, Tensor]:
        """The points padded to ``num_points`` per instance (a batch's largest count), the
        padding being ignored points at ``(0, 0)`` with label :data:`IGNORE_LABEL`.

        Returns:
            (N, num_points, 2) coordinates and (N, num_points) labels.
        """
        missing = num_points - self.num_points
        if missing < 0:
            raise ValueError(f"cannot pad {self.num_points} points to {num_points}")
        if missing == 0:
            return self.point_coords, self.point_labels
        coords = torch.cat([self.point_coords, self.point_coords.new_zeros((len(self), missing, 2))], dim=1)
        labels = torch.cat([self.point_labels, self.point_labels.new_full((len(self), missing), IGNORE_LABEL)], dim=1)
        return coords, labels

    def select(self, keep: Tensor) -> InstanceTargets:
        """The instances at ``keep`` (a bool mask or an index tensor)."""
        return InstanceTargets(
            boxes=self.boxes[keep],
            classes=self.classes[keep],
            point_coords=self.point_coords[keep],
            point_labels=self.point_labels[keep],
            masks=None if self.masks is None else self.masks[keep],
            annotation_ids=None if self.annotation_ids is None else self.annotation_ids[keep],
        )

    def to(self, device: torch.device | str) -> InstanceTargets:
        return InstanceTargets(
            boxes=self.boxes.to(device),
            classes=self.classes.to(device),
            point_coords=self.point_coords.to(device),
            point_labels=self.point_labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
            annotation_ids=None if self.annotation_ids is None else self.annotation_ids.to(device),
        )

    @staticmethod
    def empty(num_points: int = 0, with_masks: bool = False, image_size: tuple[int, int] = (0, 0)) -> InstanceTargets:
        """Targets with zero instances (for images whose instances were all cropped away)."""
        height, width = image_size
        return InstanceTargets(
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            classes=torch.zeros((0,), dtype=torch.int64),
            point_coords=torch.zeros((0, num_points, 2), dtype=torch.float32),
            point_labels=torch.zeros((0, num_points), dtype=torch.float32),
            masks=torch.zeros((0, height, width), dtype=torch.uint8) if with_masks else None,
            annotation_ids=torch.zeros((0,), dtype=torch.int64),
        )


@dataclass
class Sample:
    """One image as the model consumes it.

    Attributes:
        image: (3, H, W) uint8 RGB, after augmentation.
        image_id: the COCO image id.
        file_name: path of the image file (for messages and overlays).
        original_size: (height, width) of the image file, before augmentation.
        targets: ground truth in the coordinates of ``image``; None at test time.
    """

    image: Tensor
    image_id: int
    file_name: str
    original_size: tuple[int, int]
    targets: InstanceTargets | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of ``image``."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def with_targets(self, targets: InstanceTargets | None) -> Sample:
        return replace(self, targets=targets)


@dataclass
class Detections:
    """The K detections of one image, in the coordinates of the *original* image file.

    Attributes:
        boxes: (K, 4) float32 xyxy.
        scores: (K,) float32 in [0, 1].
        classes: (K,) int64 contiguous class indices.
        mask_probs: (K, M, M) float32 mask probabilities on the box-relative grid (M = 28 for
            Mask R-CNN, 224 for the PointRend heads, 112 for CondInst); pasted into the image by
            ``pointsup.modeling.postprocess.paste_masks``. None for a box-only model.
        image_size: (height, width) of the original image.
    """

    boxes: Tensor
    scores: Tensor
    classes: Tensor
    mask_probs: Tensor | None
    image_size: tuple[int, int]
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
