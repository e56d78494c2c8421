"""From a :class:`~pointsup.engine.config.Config` to datasets, transforms and a model."""

from __future__ import annotations

import dataclasses

from pointsup.data.dataset import AnnotationError, ImageReadError, ImageSizeError, InstanceDataset
from pointsup.data.image_io import check_image_header
from pointsup.data.transforms import Compose, build_test_transforms, build_train_transforms
from pointsup.engine.config import Config, ConfigError
from pointsup.evaluation.coco_evaluator import check_has_masks
from pointsup.modeling.build import build_model
from pointsup.modeling.detector import Detector
from pointsup.modeling.weights import load_model_weights
from pointsup.points.format import read_coco_json


def _require(value: str | None, key: str) -> str:
    if not value:
        raise ConfigError(f"{key} is not set (give it in the config file or as {key}=...)")
    return value


def check_images_readable(dataset: InstanceDataset) -> None:
    """Fail before training starts, rather than hours in, when image files are missing, are not
    images, are decompression bombs or do not have the size their annotation gives: every
    file's header is read (about a millisecond each; the pixels are decoded later).

    Raises:
        ImageReadError: naming the first problem and how many images have one.
    """
    problems: list[str] = []
    for index, record in enumerate(dataset.images):
        try:
            check_image_header(
                dataset.image_path(index), image_id=record.id, expected_size=(record.width, record.height), source=dataset.source
            )
        except (ImageReadError, ImageSizeError) as exc:
            problems.append(str(exc))
    if problems:
        more = f" (and {len(problems) - 1} more of the {len(dataset)} images)" if len(problems) > 1 else ""
        raise ImageReadError(f"{problems[0]}{more}")


def build_train_dataset(config: Config) -> InstanceDataset:
    """The training set with the targets the supervision needs (all image files checked to exist)."""
    data = config.data
    dataset = InstanceDataset(
        _require(data.train_json, "data.train_json"),
        _require(data.train_images, "data.train_images"),
        supervision="none" if config.supervision == "boxes" else config.supervision,
        filter_empty=data.filter_empty,
    )
    if len(dataset) == 0:
        raise AnnotationError(
            f"{dataset.source}: holds no images"
            if not data.filter_empty
            else f"{dataset.source}: no image has an object to train on (data.filter_empty leaves out images without one)"
        )
    check_images_readable(dataset)
    return dataset


def build_val_dataset(config: Config) -> InstanceDataset | None:
    """The evaluation images (None when no ``data.val_json`` is configured; all image files checked)."""
    data = config.data
    if not data.val_json:
        return None
    dataset = InstanceDataset(
        data.val_json, _require(data.val_images, "data.val_images"), supervision="none", filter_empty=False, with_targets=False
    )
    if len(dataset) == 0:
        raise AnnotationError(f"{dataset.source}: holds no images to evaluate on (data.val_json)")
    check_has_masks(read_coco_json(data.val_json), data.val_json)  # before training, not after it
    check_images_readable(dataset)
    return dataset


def train_transforms(config: Config) -> Compose:
    data = config.data
    return build_train_transforms(
        data.min_size_train,
        data.max_size_train,
        data.min_size_train_sampling,
        data.flip_prob,
        crop={"enabled": data.crop_enabled, "crop_type": data.crop_type, "crop_size": data.crop_size},
        lsj={
            "enabled": data.lsj_enabled,
            "output_size": data.lsj_output_size,
            "min_scale": data.lsj_min_scale,
            "max_scale": data.lsj_max_scale,
        },
        sample_points=data.sample_points,
    )


def test_transforms(config: Config) -> Compose:
    return build_test_transforms(config.data.min_size_test, config.data.max_size_test)


test_transforms.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def num_classes_for(config: Config, dataset: InstanceDataset | None) -> int:
    """``model.num_classes``, or the dataset's category count; they must agree when both exist."""
    if config.model.num_classes is not None:
        if dataset is not None and dataset.num_classes != config.model.num_classes:
            raise ConfigError(
                f"model.num_classes is {config.model.num_classes} but {dataset.source} has {dataset.num_classes} categories"
            )
        return config.model.num_classes
    if dataset is None:
        raise ConfigError("model.num_classes is not set and there is no training set to take it from")
    return dataset.num_classes


def model_from_config(config: Config, num_classes: int, label_to_category_id: list[int] | None = None) -> Detector:
    """The model of ``config.model``, with ``model.weights`` loaded when set."""
    model = build_model(config.model, num_classes, config.supervision)
    if config.model.weights:
        load_model_weights(model, config.model.weights, label_to_category_id)
    return model


def model_for_checkpoint(config: Config, num_classes: int) -> Detector:
    """The model of ``config.model`` with no pretrained weights loaded, for a checkpoint that holds
    all of them: no ImageNet or COCO file is read, so a trained model loads on a machine that has
    neither (the input normalisation is the same, it comes with the backbone)."""
    model = config.model
    without_weights = dataclasses.replace(model, weights=None, backbone=dataclasses.replace(model.backbone, weights=None))
    return build_model(without_weights, num_classes, config.supervision)


def check_same_categories(train: InstanceDataset, val: InstanceDataset | None) -> None:
    """Training and evaluation must share categories (same ids), or labels would be misread."""
    if val is not None and val.label_to_category_id != train.label_to_category_id:
        raise ConfigError(
            f"category ids differ between {train.source} ({train.label_to_category_id[:10]}...) and "
            f"{val.source} ({val.label_to_category_id[:10]}...)"
        )
