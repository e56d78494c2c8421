"""A COCO instance dataset that yields :class:`~pointsup.structures.Sample` records.

:class:`InstanceDataset` reads a COCO (point) annotation file with
:func:`pointsup.points.format.load_point_dataset`, so a malformed file raises its
:class:`~pointsup.points.format.PointFormatError` naming the file and the annotation ids. Item
``i`` is the image file (RGB, uint8) with the targets of its non-crowd annotations in the
coordinates of the file:

* boxes: the COCO ``[x, y, w, h]`` as ``(x0, y0, x1, y1)`` clipped to the image;
* classes: contiguous labels ``0 .. C-1`` in sorted category-id order;
* points (``supervision="points"``): the stored pixel indices ``d`` at their pixel centres
  ``d + 0.5``;
* masks (``supervision="masks"``): bitmasks decoded with pycocotools at the file's size.

Images are decoded by :func:`pointsup.data.image_io.open_rgb_image`: 8-bit RGB (16-bit files
scaled, alpha dropped), in the stored pixel grid (the COCO convention) unless only the grid
turned by its EXIF orientation has the size the JSON gives.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset

# ImageReadError and ImageSizeError live with the decoder; they stay importable from here.
from pointsup.data.image_io import ImageReadError, ImageSizeError, open_rgb_image  # noqa: F401
from pointsup.errors import PointsupError
from pointsup.points.format import ImageRecord, PointFormatError, PointInstance, load_point_dataset
from pointsup.points.rle import SegmentationError, segmentation_to_rle
from pointsup.structures.instances import IGNORE_LABEL, InstanceTargets, Sample

Supervision = Literal["points", "masks", "none"]
#: A box whose clipped width or height is at most this is degenerate (as detectron2).
MIN_BOX_SIDE = 1e-5


class AnnotationError(PointsupError, ValueError):
    """An annotation that cannot be turned into a training target (e.g. an undecodable mask).

    The message names the annotation file, the image and the annotation id.
    """


def read_image(
    path: str | os.PathLike[str],
    image_id: int | None = None,
    expected_size: tuple[int, int] | None = None,
    source: str = "the annotation file",
) -> Tensor:
    """Decode an image file to a ``(3, H, W)`` uint8 RGB tensor.

    The tensor is a view of an ``(H, W, 3)`` buffer (channels-last strides); the transforms
    return contiguous images, or call ``.contiguous()``.

    Decoding follows :func:`pointsup.data.image_io.open_rgb_image`: grey, palette, RGBA, CMYK
    and 16-bit images become 8-bit RGB; the EXIF orientation is applied only when
    ``expected_size`` (``(width, height)`` from the annotation file) needs it.

    Raises:
        ImageReadError: the file is missing, unreadable or not a decodable image; the
            message names ``path`` (and ``image_id`` when given).
        ImageSizeError: the file does not have ``expected_size`` (message names ``source``).
    """
    rgb = open_rgb_image(path, image_id=image_id, expected_size=expected_size, source=source)
    # A CHW view of the (writable) HWC buffer: channels-last strides, no transposing copy,
    # and the layout PyTorch's uint8 resize kernel is fastest on.
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


@dataclass(frozen=True)
class _ImageAnnotations:
    """The training targets of one image in file coordinates (NumPy, compact)."""

    boxes_xyxy: np.ndarray  # (N, 4) float32, clipped to the image
    classes: np.ndarray  # (N,) int64
    annotation_ids: np.ndarray  # (N,) int64
    point_coords: np.ndarray  # (N, P, 2) float32 pixel centres
    point_labels: np.ndarray  # (N, P) float32 in {0, 1, -1}
    segmentations: tuple[Any, ...] | None  # N COCO segmentations (masks mode only)


class InstanceDataset(Dataset[Sample]):
    """COCO images with their instance targets as :class:`~pointsup.structures.Sample` items.

    Args:
        json_path: a COCO instances file (with ``point_coords``/``point_labels`` on every
            non-crowd annotation when ``supervision="points"``).
        image_root: folder the images' ``file_name`` entries are relative to.
        supervision: what the targets carry besides boxes and classes: ``"points"``
            (``point_coords`` (N, P, 2), ``point_labels`` (N, P)), ``"masks"`` (``masks``
            (N, H, W) uint8) or ``"none"`` (boxes and classes only). Without points P is 0.
        filter_empty: drop images that have no usable non-crowd annotation (training);
            keep every image for evaluation.
        with_targets: False to load images only (``Sample.targets`` is None); see
            :meth:`without_targets`.

    Rules:
        * Crowd annotations (``iscrowd=1``) are never targets.
        * An annotation whose box has no area inside the image (width or height of the
          clipped box <= 1e-5) is left out.
        * Points mode: the image's P is the largest point count of its instances; shorter
          point lists are padded with label -1. An annotation with an *empty* point list is
          kept (its box still trains the detector) with all its P labels -1.
        * Masks mode: every non-crowd annotation must have a ``segmentation`` (polygons,
          compressed or uncompressed RLE); otherwise construction raises
          :class:`PointFormatError` listing the annotation ids.

    Attributes:
        source: the JSON path.
        image_root: the image folder.
        supervision: the mode.
        category_names: names of the contiguous labels ``0 .. C-1``.
        label_to_category_id: COCO category id of each label.
        category_id_to_label: the inverse map.
        num_classes: C.
        images: the image records of the items, in item order.
        image_ids: their ids, in item order.

    Raises:
        PointFormatError: a malformed annotation file (names the file and annotation ids).
        ValueError: an unknown ``supervision``.
    """

    def __init__(
        self,
        json_path: str | os.PathLike[str],
        image_root: str | os.PathLike[str],
        supervision: Supervision = "points",
        filter_empty: bool = True,
        with_targets: bool = True,
    ) -> None:
        if supervision not in get_args(Supervision):
            raise ValueError(f"supervision must be one of {get_args(Supervision)}, got {supervision!r}")
        self.source = str(json_path)
        self.image_root = Path(image_root)
        self.supervision: Supervision = supervision
        self.with_targets = with_targets
        data = load_point_dataset(json_path, require_points=supervision == "points")

        categories = sorted(data.categories, key=lambda c: c.id)
        self.category_names: list[str] = [c.name for c in categories]
        self.label_to_category_id: list[int] = [c.id for c in categories]
        self.category_id_to_label: dict[int, int] = {c.id: k for k, c in enumerate(categories)}

        by_image = data.instances_by_image()
        if supervision == "masks":
            self._check_segmentations(by_image)
        self.images: list[ImageRecord] = []
        self._annotations: list[_ImageAnnotations] = []
        for image_id, record in data.images.items():
            annotations = self._image_annotations(record, by_image[image_id])
            if filter_empty and len(annotations.classes) == 0:
                continue
            self.images.append(record)
            self._annotations.append(annotations)
        self.image_ids: list[int] = [record.id for record in self.images]

    @property
    def num_classes(self) -> int:
        return len(self.category_names)

    def __len__(self) -> int:
        return len(self.images)

    def without_targets(self) -> InstanceDataset:
        """The same items, loading images only (``targets`` None): for inference."""
        images_only = copy.copy(self)
        images_only.with_targets = False
        return images_only

    def image_path(self, index: int) -> Path:
        return self.image_root / self.images[index].file_name

    def __getitem__(self, index: int) -> Sample:
        """Item ``index``: ``image`` (3, H, W) uint8 RGB and targets in file coordinates.

        Raises:
            ImageReadError: the image file is missing or cannot be decoded.
            ImageSizeError: the file's size differs from its JSON entry.
            AnnotationError: a segmentation cannot be decoded (masks mode).
        """
        record = self.images[index]
        path = self.image_path(index)
        image = read_image(path, record.id, (record.width, record.height), self.source)
        height, width = int(image.shape[1]), int(image.shape[2])
        targets = self._targets(index, record) if self.with_targets else None
        return Sample(image=image, image_id=record.id, file_name=str(path), original_size=(height, width), targets=targets)

    def _targets(self, index: int, record: ImageRecord) -> InstanceTargets:
        annotations = self._annotations[index]
        masks = None
        if annotations.segmentations is not None:
            masks = self._decode_masks(record, annotations)
        return InstanceTargets(
            boxes=torch.from_numpy(annotations.boxes_xyxy.copy()),
            classes=torch.from_numpy(annotations.classes.copy()),
            point_coords=torch.from_numpy(annotations.point_coords.copy()),
            point_labels=torch.from_numpy(annotations.point_labels.copy()),
            masks=masks,
            annotation_ids=torch.from_numpy(annotations.annotation_ids.copy()),
        )

    def _decode_masks(self, record: ImageRecord, annotations: _ImageAnnotations) -> Tensor:
        """(N, H, W) uint8 bitmasks of the image's annotations."""
        assert annotations.segmentations is not None
        rles = []
        for annotation_id, segmentation in zip(annotations.annotation_ids.tolist(), annotations.segmentations):
            where = f"{self.source}: annotation id {annotation_id} (image id {record.id}, {record.file_name})"
            try:
                rle = segmentation_to_rle(segmentation, record.height, record.width)
            except SegmentationError as exc:
                raise AnnotationError(f"{where}: {exc}") from None
            if list(rle["size"]) != [record.height, record.width]:
                raise AnnotationError(
                    f"{where}: RLE size {list(rle['size'])} differs from the image size [{record.height}, {record.width}]"
                )
            rles.append(rle)
        if not rles:
            return torch.zeros((0, record.height, record.width), dtype=torch.uint8)
        try:
            decoded = mask_utils.decode(rles)  # (H, W, N), Fortran order
        except Exception as exc:  # pycocotools raises bare Exceptions for corrupt counts
            ids = annotations.annotation_ids.tolist()
            raise AnnotationError(
                f"{self.source}: image id {record.id}: cannot decode the masks of annotations {ids}: {exc}"
            ) from None
        return torch.from_numpy(np.ascontiguousarray(decoded.transpose(2, 0, 1)))

    def _check_segmentations(self, by_image: dict[int, list[PointInstance]]) -> None:
        missing = [
            f"annotation id {inst.annotation_id}: no segmentation (supervision='masks' needs a mask on every non-crowd annotation)"
            for instances in by_image.values()
            for inst in instances
            if not inst.is_crowd and inst.segmentation is None
        ]
        if missing:
            raise PointFormatError(self.source, missing)

    def _image_annotations(self, record: ImageRecord, instances: list[PointInstance]) -> _ImageAnnotations:
        kept = [inst for inst in instances if not inst.is_crowd]
        boxes = np.array([inst.box_xyxy for inst in kept], dtype=np.float64).reshape(-1, 4)
        np.clip(boxes[:, 0::2], 0.0, record.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, record.height, out=boxes[:, 1::2])
        has_area = ((boxes[:, 2] - boxes[:, 0]) > MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > MIN_BOX_SIDE)
        kept = [inst for inst, ok in zip(kept, has_area) if ok]
        boxes = boxes[has_area]

        num_points = max((inst.num_points for inst in kept), default=0) if self.supervision == "points" else 0
        coords = np.zeros((len(kept), num_points, 2), dtype=np.float32)
        labels = np.full((len(kept), num_points), IGNORE_LABEL, dtype=np.float32)
        if num_points:
            for row, inst in enumerate(kept):
                count = inst.num_points
                coords[row, :count] = inst.continuous_point_coords()
                labels[row, :count] = inst.point_labels
        return _ImageAnnotations(
            boxes_xyxy=boxes.astype(np.float32),
            classes=np.array([self.category_id_to_label[inst.category_id] for inst in kept], dtype=np.int64),
            annotation_ids=np.array([inst.annotation_id for inst in kept], dtype=np.int64),
            point_coords=coords,
            point_labels=labels,
            segmentations=tuple(inst.segmentation for inst in kept) if self.supervision == "masks" else None,
        )
