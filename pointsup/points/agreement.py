"""Agreement of point labels with masks, and statistics of a loaded point dataset."""

from __future__ import annotations

import numpy as np

from pointsup.points.format import PointDataset, PointFormatError
from pointsup.points.rle import RunLengthMasks, SegmentationError, segmentation_to_rle
from pointsup.points.stats import PointStatistics, compute_statistics


def mask_values_at_points(points: PointDataset, masks: PointDataset) -> list[np.ndarray]:
    """The true mask value at every point of every non-crowd instance of ``points``.

    Args:
        points: the dataset whose points are checked.
        masks: a dataset with ``segmentation`` on the same annotation ids (may be ``points``
            itself when its file kept the masks).

    Returns:
        One ``(N_i,)`` uint8 array per non-crowd instance of ``points``, in order.

    Raises:
        PointFormatError: when an instance has no mask in ``masks``, naming its id.
    """
    by_id = {inst.annotation_id: inst for inst in masks.instances}
    instances = [inst for inst in points.instances if not inst.is_crowd]
    rles, problems = [], []
    for inst in instances:
        source = by_id.get(inst.annotation_id)
        if source is None or source.segmentation is None:
            problems.append(f"annotation id {inst.annotation_id!r}: no mask in {masks.source}")
            continue
        image = points.images[inst.image_id]
        try:
            rles.append(segmentation_to_rle(source.segmentation, image.height, image.width))
        except SegmentationError as exc:
            problems.append(f"annotation id {inst.annotation_id!r}: {exc}")
    if problems:
        raise PointFormatError(masks.source, problems)
    batch = RunLengthMasks.from_rles(rles)
    counts = [inst.num_points for inst in instances]
    if not instances:
        return []
    owner = np.repeat(np.arange(len(instances)), counts)
    coords = np.concatenate([inst.point_coords for inst in instances]).reshape(-1, 2)
    values = batch.values_at(owner, coords[:, 0], coords[:, 1])
    return np.split(values, np.cumsum(counts)[:-1])


def dataset_statistics(points: PointDataset, masks: PointDataset | None = None) -> PointStatistics:
    """Statistics of a point dataset; agreement is computed when masks are available.

    Masks come from ``masks`` when given, else from ``points`` itself if every instance kept
    its ``segmentation``.
    """
    instances = [inst for inst in points.instances if not inst.is_crowd]
    if masks is None and instances and all(inst.segmentation is not None for inst in instances):
        masks = points
    truth = mask_values_at_points(points, masks) if masks is not None else None
    return compute_statistics(
        num_images=len(points.images),
        labels=np.concatenate([inst.point_labels for inst in instances]) if instances else np.zeros(0, np.int64),
        points_per_instance=np.array([inst.num_points for inst in instances], dtype=np.int64),
        num_crowd=sum(inst.is_crowd for inst in points.instances),
        true_labels=np.concatenate(truth) if truth else None,
    )
