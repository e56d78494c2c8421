"""Ground truth attached to the foreground RoIs that reach a mask head."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import roi_align

from pointsup.modeling.point_ops import box_points_to_image, ignore_points_outside_box, image_points_to_box, point_sample
from pointsup.structures.instances import InstanceTargets


@dataclass
class RoIMaskTargets:
    """The R foreground RoIs of a batch (all images concatenated) and their matched ground truth.

    Attributes:
        boxes: (R, 4) proposal boxes, xyxy in input-image coordinates.
        classes: (R,) contiguous class of the matched instance.
        image_index: (R,) which image of the batch each RoI belongs to.
        matched_index: (R,) index of the matched instance within its image's targets.
        point_coords: (R, P, 2) the matched instance's points in image coordinates.
        point_labels: (R, P) their labels (-1 = ignored).
        gt_masks: per image, (N_i, H, W) uint8 bitmasks, or None without mask supervision.
    """

    boxes: Tensor
    classes: Tensor
    image_index: Tensor
    matched_index: Tensor
    point_coords: Tensor
    point_labels: Tensor
    gt_masks: list[Tensor | None]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def from_matches(boxes: list[Tensor], matched: list[Tensor], targets: list[InstanceTargets]) -> RoIMaskTargets:
        """Gather the targets of foreground RoIs.

        Args:
            boxes: per image, (R_i, 4) foreground proposal boxes.
            matched: per image, (R_i,) index of the matched instance in ``targets[i]``.
            targets: per image ground truth.
        """
        device = boxes[0].device if boxes else torch.device("cpu")
        num_points = max((t.num_points for t in targets), default=0)
        coords, labels, classes, image_index = [], [], [], []
        for i, (index, target) in enumerate(zip(matched, targets)):
            classes.append(target.classes[index])
            image_index.append(torch.full_like(index, i))
            point_coords, point_labels = target.padded_points(num_points)  # fewer points than others: ignored padding
            coords.append(point_coords[index])
            labels.append(point_labels[index])
        return RoIMaskTargets(
            boxes=torch.cat(boxes) if boxes else torch.zeros((0, 4), device=device),
            classes=torch.cat(classes) if classes else torch.zeros((0,), dtype=torch.int64, device=device),
            image_index=torch.cat(image_index) if image_index else torch.zeros((0,), dtype=torch.int64, device=device),
            matched_index=torch.cat(matched) if matched else torch.zeros((0,), dtype=torch.int64, device=device),
            point_coords=torch.cat(coords).to(torch.float32) if coords else torch.zeros((0, num_points, 2), device=device),
            point_labels=torch.cat(labels).to(torch.float32) if labels else torch.zeros((0, num_points), device=device),
            gt_masks=[t.masks for t in targets],
        )

    def boxes_per_image(self) -> list[Tensor]:
        """``boxes`` split by image (images after the last one with a RoI are left out)."""
        num_images = int(self.image_index.max()) + 1 if len(self) else 0
        return [self.boxes[self.image_index == i] for i in range(num_images)]

    def relative_points(self) -> tuple[Tensor, Tensor]:
        """The annotated points in proposal-box coordinates, with the ignore rule applied.

        Returns:
            (R, P, 2) ``(u, v)`` and (R, P) labels, -1 for points outside the proposal box
            (docs/conventions.md, sections 2 and 3; computed without gradient).
        """
        with torch.no_grad():
            relative = image_points_to_box(self.point_coords, self.boxes.to(torch.float32))
            return relative, ignore_points_outside_box(relative, self.point_labels)

    def _require_masks(self) -> None:
        if any(m is None for m in self.gt_masks):
            raise ValueError("mask supervision needs ground-truth masks; this data has none (use supervision: points)")

    def soft_mask_labels(self, relative_points: Tensor) -> Tensor:
        """The matched GT masks read at box-relative points (PointRend's soft point labels).

        Each mask is sampled bilinearly at the point's image coordinate (pixel centres at
        ``d + 0.5``, zero outside the image), so labels near the boundary lie between 0 and 1.

        Args:
            relative_points: (R, P, 2) ``(u, v)`` in each RoI's box.

        Returns:
            (R, P) float labels in [0, 1], computed without gradient.
        """
        self._require_masks()
        with torch.no_grad():
            image_points = box_points_to_image(relative_points.to(torch.float32), self.boxes.to(torch.float32))
            labels = image_points.new_zeros(image_points.shape[:2])
            for i, masks in enumerate(self.gt_masks):
                assert masks is not None  # _require_masks
                rows = torch.nonzero(self.image_index == i).squeeze(1)
                if len(rows) == 0:
                    continue
                height, width = masks.shape[-2:]
                scale = torch.tensor([width, height], dtype=torch.float32, device=image_points.device)
                matched = masks[self.matched_index[rows]].to(torch.float32).unsqueeze(1)
                labels[rows] = point_sample(matched, image_points[rows] / scale)[:, 0]
            return labels

    def mask_crops(self, side: int) -> Tensor:
        """The matched GT masks resampled into each proposal box (detectron2's crop_and_resize).

        Returns:
            (R, side, side) float masks binarised at 0.5.
        """
        self._require_masks()
        crops = self.boxes.new_zeros((len(self), side, side))
        for i, masks in enumerate(self.gt_masks):
            assert masks is not None  # _require_masks
            rows = torch.nonzero(self.image_index == i).squeeze(1)
            if len(rows) == 0:
                continue
            rois = torch.cat([self.matched_index[rows, None].to(self.boxes.dtype), self.boxes[rows]], dim=1)
            pooled = roi_align(masks[:, None].to(self.boxes.dtype), rois, side, 1.0, 0, aligned=True)
            crops[rows] = (pooled[:, 0] >= 0.5).to(crops.dtype)
        return crops
