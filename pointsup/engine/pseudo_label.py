"""Pseudo masks for self-training (paper §3.3.2): a point-trained model segments every training
instance inside its *ground-truth* box, and the result is a COCO file with a mask on every
instance, ready for an ordinary mask-supervised ``pointsup train``.

No detection step runs: the box branch is skipped and the mask head gets the annotated boxes and
classes directly, so every non-crowd instance receives exactly one mask and keeps its annotation
id, box, category and points. Crowd annotations are copied unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from pointsup.data.dataset import InstanceDataset
from pointsup.data.loader import build_test_loader
from pointsup.data.transforms import build_test_transforms
from pointsup.engine.predictor import TrainedModel
from pointsup.errors import PointsupError
from pointsup.modeling.mask_rcnn import MaskRCNN
from pointsup.modeling.postprocess import masks_to_rles
from pointsup.points.agreement import mask_values_at_points
from pointsup.points.format import PointDataset, PointInstance, load_point_dataset, save_point_dataset
from pointsup.points.rle import segmentation_to_rle
from pointsup.structures.instances import Sample
from pointsup.utils.progress import progress

#: How far (pixels) a box corner of the reference may lie from the dataset's for the same annotation id.
REFERENCE_BOX_TOLERANCE = 1.0


class PseudoLabelError(PointsupError, ValueError):
    """The model, the dataset and the reference do not fit together (categories, missing mask
    head, a reference file of other images or objects)."""


@dataclass
class PseudoLabelReport:
    """What a pseudo-labelling run produced.

    Attributes:
        images: images processed.
        instances: non-crowd instances that received a pseudo mask.
        empty_masks: of those, how many masks have no pixel on.
        point_agreement: share of the annotated points whose label the pseudo mask reproduces
            (None when the file has no points).
        mean_iou: mean IoU of the pseudo masks with reference masks (None without references).
    """

    images: int
    instances: int
    empty_masks: int
    point_agreement: float | None = None
    mean_iou: float | None = None

    def format(self) -> str:
        lines = [f"pseudo masks: {self.instances} instances in {self.images} images ({self.empty_masks} empty)"]
        if self.point_agreement is not None:
            lines.append(f"agreement with the annotated points: {self.point_agreement:.1%}")
        if self.mean_iou is not None:
            lines.append(f"mean IoU with the reference masks: {self.mean_iou:.3f}")
        return "\n".join(lines)


def _check_model_fits(trained: TrainedModel, dataset: InstanceDataset) -> None:
    if not isinstance(trained.model, MaskRCNN):
        raise PseudoLabelError(
            f"pseudo-labelling segments given boxes, which needs a Mask R-CNN-family model "
            f"(PointRend, Implicit PointRend included), not {type(trained.model).__name__}"
        )
    if trained.model.roi_heads.point_mask_head is None:
        raise PseudoLabelError("the model has no mask head: nothing to pseudo-label with")
    if dataset.label_to_category_id != list(trained.label_to_category_id):
        raise PseudoLabelError(
            f"{dataset.source} has category ids {dataset.label_to_category_id[:10]} but the model was trained on "
            f"{list(trained.label_to_category_id)[:10]}: pseudo-label the dataset the model was trained for"
        )


def _to_original(boxes: torch.Tensor, sample: Sample) -> torch.Tensor:
    """(K, 4) boxes of the resized ``sample`` in the coordinates of its image file."""
    height, width = sample.image_size
    original_height, original_width = sample.original_size
    return boxes * boxes.new_tensor([original_width / width, original_height / height] * 2)


def predict_pseudo_masks(
    trained: TrainedModel, dataset_json: str | Path, image_root: str | Path, show_progress: bool = True
) -> dict[int, dict]:
    """A compressed RLE (``{"size": [H, W], "counts": str}``) for every non-crowd instance with a
    usable box, keyed by annotation id.

    Each image is resized to the model's test size; the mask head predicts (K, M, M)
    probabilities for its K ground-truth boxes (scaled alike) and classes, which are pasted into
    the original image at the original boxes with threshold 0.5.

    Raises:
        PseudoLabelError: categories differ from the model's, or the model has no mask head.
    """
    dataset = InstanceDataset(dataset_json, image_root, supervision="none", filter_empty=False)
    _check_model_fits(trained, dataset)
    config = trained.config.data
    loader = build_test_loader(dataset, build_test_transforms(config.min_size_test, config.max_size_test), num_workers=0)
    model = trained.model.eval()
    assert isinstance(model, MaskRCNN)  # _check_model_fits
    masks: dict[int, dict] = {}
    with torch.inference_mode():
        for (sample,) in progress(loader, total=len(loader), desc="pseudo-label", unit="img", enabled=show_progress):
            targets = sample.targets
            assert targets is not None and targets.annotation_ids is not None
            if len(targets) == 0:
                continue
            (mask_probs,) = model.segment_boxes([sample], [targets.boxes], [targets.classes])
            rles = masks_to_rles(mask_probs.float().cpu(), _to_original(targets.boxes, sample), sample.original_size)
            masks.update(zip(targets.annotation_ids.tolist(), rles))
    return masks


def with_pseudo_masks(dataset: PointDataset, masks: dict[int, dict], provenance: dict[str, Any]) -> tuple[PointDataset, int]:
    """A copy of ``dataset`` with ``segmentation`` (and ``area``) replaced on every non-crowd
    instance; ``dataset`` itself is left as it is.

    Instances missing from ``masks`` (no area inside the image) get an empty mask, so the
    result carries exactly one mask per non-crowd instance. The provenance goes into
    ``info.pseudo_labels``.

    Returns:
        the new dataset and the number of empty masks in it.
    """
    empty = 0
    instances = []
    for instance in dataset.instances:
        if instance.is_crowd:
            instances.append(instance)
            continue
        image = dataset.images[instance.image_id]
        rle = masks.get(instance.annotation_id)
        if rle is None:
            zeros = np.zeros((image.height, image.width, 1), dtype=np.uint8, order="F")
            encoded = mask_utils.encode(zeros)[0]
            rle = {"size": [image.height, image.width], "counts": encoded["counts"].decode("ascii")}
        area = int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}))
        empty += area == 0
        instances.append(replace(instance, segmentation=rle, extra={**instance.extra, "area": float(area)}))
    info = dataset.extra.get("info")
    extra = {**dataset.extra, "info": {**(info if isinstance(info, dict) else {}), "pseudo_labels": provenance}}
    return replace(dataset, instances=instances, extra=extra), empty


def point_agreement(points: PointDataset, masks: PointDataset) -> float | None:
    """Share of the annotated points of ``points`` whose label equals the value of the mask of
    the same annotation in ``masks``; None when there are no points."""
    values = mask_values_at_points(points, masks)
    labels = [inst.point_labels for inst in points.instances if not inst.is_crowd]
    total = sum(len(v) for v in values)
    if total == 0:
        return None
    agree = sum(int((v.astype(np.int64) == label.astype(np.int64)).sum()) for v, label in zip(values, labels))
    return agree / total


def mask_ious(masks: PointDataset, reference: PointDataset) -> dict[int, float]:
    """IoU of each non-crowd instance's mask in ``masks`` with the mask of the same annotation id
    in ``reference`` (instances the reference lacks a mask for are skipped)."""
    by_id = {inst.annotation_id: inst for inst in reference.instances if inst.segmentation is not None}
    ious: dict[int, float] = {}
    for instance in masks.instances:
        truth = by_id.get(instance.annotation_id)
        if instance.is_crowd or truth is None or instance.segmentation is None:
            continue
        image = masks.images[instance.image_id]
        ours = segmentation_to_rle(instance.segmentation, image.height, image.width)
        theirs = segmentation_to_rle(truth.segmentation, image.height, image.width)
        union_empty = mask_utils.area(ours) == 0 and mask_utils.area(theirs) == 0
        ious[instance.annotation_id] = 1.0 if union_empty else float(mask_utils.iou([ours], [theirs], [0])[0, 0])
    return ious


def _box_text(instance: PointInstance) -> str:
    return "[" + ", ".join(f"{v:g}" for v in instance.bbox_xywh) + "]"


def reference_mismatch(dataset: PointDataset, reference: PointDataset) -> str | None:
    """The first sign that ``reference`` holds masks of other images or objects than
    ``dataset``, or None when it fits.

    Masks are matched by annotation id, which an unrelated file shares by chance, so the
    reference must hold every image of the dataset under the same id, file name and size
    (it may hold more images: the dataset may be a subset), share at least one annotation id,
    and each shared annotation id must sit on the same image with a box whose corners lie
    within :data:`REFERENCE_BOX_TOLERANCE` pixels of the dataset's.
    """
    ours, theirs = dataset.source, reference.source
    for image_id, image in dataset.images.items():
        other = reference.images.get(image_id)
        if other is None:
            return f"image id {image_id} ({image.file_name}) of {ours} is not in {theirs}"
        if (other.file_name, other.width, other.height) != (image.file_name, image.width, image.height):
            return (
                f"image id {image_id} is {image.file_name} ({image.width}x{image.height}) in {ours} "
                f"but {other.file_name} ({other.width}x{other.height}) in {theirs}"
            )
    by_id = {instance.annotation_id: instance for instance in reference.instances}
    shared = 0
    for instance in dataset.instances:
        other_instance = by_id.get(instance.annotation_id)
        if other_instance is None:
            continue
        shared += 1
        if other_instance.image_id != instance.image_id:
            return (
                f"annotation id {instance.annotation_id} is on image id {instance.image_id} in {ours} "
                f"but on image id {other_instance.image_id} in {theirs}"
            )
        if np.abs(other_instance.box_xyxy - instance.box_xyxy).max() > REFERENCE_BOX_TOLERANCE:
            return (
                f"annotation id {instance.annotation_id} has box {_box_text(instance)} in {ours} but {_box_text(other_instance)} "
                f"in {theirs} (more than {REFERENCE_BOX_TOLERANCE:g} px apart)"
            )
    if shared == 0 and dataset.instances:
        return f"no annotation id of {ours} is in {theirs}"
    return None


def pseudo_label(
    trained: TrainedModel,
    dataset_json: str | Path,
    image_root: str | Path,
    output: str | Path,
    reference_json: str | Path | None = None,
    weights: str | Path | None = None,
    show_progress: bool = True,
) -> PseudoLabelReport:
    """Write ``output``: ``dataset_json`` with a pseudo mask on every non-crowd instance.

    Args:
        trained: the point-supervised model.
        dataset_json: the training annotations (boxes and classes; points are kept if present).
        image_root: folder of the images.
        output: the COCO JSON to write (atomically).
        reference_json: a file with the true masks (same annotation ids) to measure the pseudo
            masks against; masks kept in ``dataset_json`` itself are used when this is None.
        weights: recorded as provenance.

    Raises:
        PseudoLabelError: categories differ from the model's, the model has no mask head, or
            the reference is not a file of the same images and objects
            (:func:`reference_mismatch`); checked before anything is predicted.
    """
    source = load_point_dataset(dataset_json, require_points=False)
    reference = load_point_dataset(reference_json, require_points=False) if reference_json else None
    mismatch = reference_mismatch(source, reference) if reference is not None else None
    if mismatch is not None:
        raise PseudoLabelError(f"the reference masks do not belong to the dataset: {mismatch}")
    if reference is None and any(inst.segmentation is not None for inst in source.instances if not inst.is_crowd):
        reference = source  # its own masks: with_pseudo_masks leaves it unchanged
    masks = predict_pseudo_masks(trained, dataset_json, image_root, show_progress)
    provenance = {
        "source": str(dataset_json),
        "weights": str(weights) if weights else None,
        "mask_head": trained.config.model.mask_head.name,
    }
    result, empty = with_pseudo_masks(source, masks, provenance)
    save_point_dataset(result, output)
    instances = [inst for inst in result.instances if not inst.is_crowd]
    ious = mask_ious(result, reference) if reference is not None else {}
    return PseudoLabelReport(
        images=len(result.images),
        instances=len(instances),
        empty_masks=empty,
        point_agreement=point_agreement(result, result),
        mean_iou=(sum(ious.values()) / len(ious)) if ious else None,
    )
