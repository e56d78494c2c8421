"""Dataset statistics a training recipe depends on (see :mod:`pointsup.engine.recipe`).

:func:`dataset_statistics` reads a COCO instances file (points optional) and keeps, per image,
its size and object count and, per non-crowd object, ``sqrt(box area)``; the percentiles are
computed from those arrays. :func:`resized_object_sizes` gives the object sizes after the data
pipeline's test resize, through the pipeline's own size rule
(:func:`~pointsup.data.transforms.shortest_edge_size`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pointsup.data.transforms import shortest_edge_size
from pointsup.points.format import PointFormatError, load_point_dataset


@dataclass(frozen=True)
class Percentiles:
    """The 10th, 50th (median), 90th and 99th percentiles of a sample (NaN when empty)."""

    p10: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return cls(math.nan, math.nan, math.nan, math.nan)
        return cls(*(float(v) for v in np.percentile(values, [10, 50, 90, 99])))

    def format(self, unit: str = "px") -> str:
        """``"p10 / p50 / p90 unit"``, rounded to whole numbers."""
        return f"{self.p10:.0f} / {self.p50:.0f} / {self.p90:.0f} {unit}".rstrip()


@dataclass(frozen=True, eq=False)
class DatasetStatistics:
    """What a recipe depends on, measured on a COCO file (crowd regions left out).

    Attributes:
        source: the file.
        num_images, num_instances, num_crowd: image, non-crowd and crowd annotation counts.
        num_categories: categories with at least one non-crowd instance.
        num_declared_categories: entries of the file's ``categories``.
        num_instances_with_points: non-crowd instances carrying ``point_coords``.
        file_names: (I,) each image's ``file_name``.
        image_shapes: (I, 2) int64 ``(height, width)`` per image.
        instance_counts: (I,) int64 non-crowd instances per image.
        object_sizes: (N,) float64 ``sqrt(box area)`` of each instance, in file pixels.
        object_image_index: (N,) int64 row of ``image_shapes`` each instance belongs to.
    """

    source: str
    num_images: int
    num_instances: int
    num_crowd: int
    num_categories: int
    num_declared_categories: int
    num_instances_with_points: int
    file_names: list[str] = field(repr=False)
    image_shapes: np.ndarray = field(repr=False)
    instance_counts: np.ndarray = field(repr=False)
    object_sizes: np.ndarray = field(repr=False)
    object_image_index: np.ndarray = field(repr=False)

    @property
    def num_train_images(self) -> int:
        """Images with at least one non-crowd instance (what training iterates over)."""
        return int((self.instance_counts > 0).sum())

    @property
    def short_side(self) -> Percentiles:
        return Percentiles.of(self.image_shapes.min(axis=1))

    @property
    def long_side(self) -> Percentiles:
        return Percentiles.of(self.image_shapes.max(axis=1))

    @property
    def aspect_ratio(self) -> Percentiles:
        """Long side over short side (orientation-free)."""
        return Percentiles.of(self.image_shapes.max(axis=1) / self.image_shapes.min(axis=1))

    @property
    def object_size(self) -> Percentiles:
        return Percentiles.of(self.object_sizes)

    @property
    def instances_per_image(self) -> Percentiles:
        return Percentiles.of(self.instance_counts)


def dataset_statistics(coco_json_path: str | os.PathLike[str]) -> DatasetStatistics:
    """Measure a COCO instances file (points optional).

    Raises:
        PointFormatError: naming the file: missing, not JSON, malformed, or without any
            non-crowd annotation.
    """
    dataset = load_point_dataset(coco_json_path, require_points=False)
    row_of = {image_id: row for row, image_id in enumerate(dataset.images)}
    objects = [inst for inst in dataset.instances if not inst.is_crowd]
    if not objects:
        raise PointFormatError(str(coco_json_path), ["no (non-crowd) annotations: nothing to fit a recipe to"])
    boxes = np.array([inst.bbox_xywh for inst in objects], dtype=np.float64).reshape(-1, 4)
    index = np.array([row_of[inst.image_id] for inst in objects], dtype=np.int64)
    return DatasetStatistics(
        source=str(coco_json_path),
        num_images=len(dataset.images),
        num_instances=len(objects),
        num_crowd=len(dataset.instances) - len(objects),
        num_categories=len({inst.category_id for inst in objects}),
        num_declared_categories=len(dataset.categories),
        num_instances_with_points=sum(inst.num_points > 0 for inst in objects),
        file_names=[record.file_name for record in dataset.images.values()],
        image_shapes=np.array([(r.height, r.width) for r in dataset.images.values()], dtype=np.int64).reshape(-1, 2),
        instance_counts=np.bincount(index, minlength=len(dataset.images)).astype(np.int64),
        object_sizes=np.sqrt(boxes[:, 2] * boxes[:, 3]),
        object_image_index=index,
    )


def missing_image_files(stats: DatasetStatistics, images_dir: str | os.PathLike[str]) -> list[str]:
    """The ``file_name`` entries with no file under ``images_dir``."""
    root = Path(images_dir)
    return [name for name in stats.file_names if not (root / name).is_file()]


def resize_scales(image_shapes: np.ndarray, short_side: int, max_size: int) -> np.ndarray:
    """(I,) the factor ``sqrt(sx * sy)`` by which the test resize (short side ``short_side``,
    long side at most ``max_size``, as the data pipeline does it) scales each image's objects."""
    unique, inverse = np.unique(np.asarray(image_shapes).reshape(-1, 2), axis=0, return_inverse=True)
    scales = np.empty(len(unique), dtype=np.float64)
    for k, (height, width) in enumerate(unique.tolist()):
        new_height, new_width = shortest_edge_size(height, width, short_side, max_size)
        scales[k] = math.sqrt(new_height / height * new_width / width)
    return scales[inverse.reshape(-1)]


def resized_object_sizes(stats: DatasetStatistics, short_side: int, max_size: int) -> Percentiles:
    """Percentiles of the objects' ``sqrt(box area)`` after the test resize."""
    scales = resize_scales(stats.image_shapes, short_side, max_size)
    return Percentiles.of(stats.object_sizes * scales[stats.object_image_index])


def format_statistics(stats: DatasetStatistics) -> str:
    """The statistics as three lines of text."""
    categories = "category" if stats.num_categories == 1 else "categories"
    return "\n".join(
        [
            f"dataset {stats.source}: {stats.num_images} images ({stats.num_train_images} with objects), "
            f"{stats.num_instances} objects of {stats.num_categories} {categories} "
            f"({stats.num_declared_categories} declared), {stats.num_crowd} crowd regions",
            f"  percentiles 10 / 50 / 90: image short side {stats.short_side.format()}, long side "
            f"{stats.long_side.format()} (median aspect ratio {stats.aspect_ratio.p50:.2f})",
            f"  object size sqrt(box area) {stats.object_size.format()}; objects per image "
            f"{stats.instances_per_image.format('')} (99th percentile {stats.instances_per_image.p99:.0f})",
        ]
    )
