"""Predicting with a trained checkpoint: the :class:`Predictor` API and ``pointsup predict``'s engine.

A checkpoint written by the trainer carries its resolved config and category names, so the
weights file alone rebuilds the model::

    from pointsup import Predictor

    predictor = Predictor.from_checkpoint("runs/x/model_final.pth", device="cpu", score_threshold=0.5)
    result = predictor("photo.jpg")                 # a path, a PIL image or an (H, W, 3) uint8 array
    result.boxes, result.scores, result.class_names, result.masks   # (N, 4) xyxy, (N,), N names, (N, H, W) bool
    results = predictor.batch(["a.jpg", "b.jpg"], batch_size=2)

Images are resized to the config's test size (shortest edge, as in evaluation), and detections
are mapped back to the input image's pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pointsup.data.dataset import read_image
from pointsup.data.image_io import to_rgb8
from pointsup.data.transforms import Transform, build_test_transforms
from pointsup.engine.builders import model_for_checkpoint
from pointsup.engine.checkpoint import CheckpointError, load_model_state, read_checkpoint
from pointsup.engine.config import Config, config_from_dict
from pointsup.engine.distributed import resolve_device
from pointsup.errors import PointsupError
from pointsup.modeling.detector import Detector
from pointsup.modeling.postprocess import masks_to_rles, paste_masks
from pointsup.structures.instances import Detections, Sample
from pointsup.utils.heap import keep_freed_memory_in_heap

#: What :class:`Predictor` accepts as an image: a file path, a PIL image or an (H, W, 3) uint8 RGB array.
ImageInput = str | os.PathLike | Image.Image | np.ndarray
#: How :class:`Prediction` carries masks: full-size boolean arrays, COCO RLEs, or none.
MaskFormat = Literal["bitmask", "rle", "none"]
MASK_FORMATS = ("bitmask", "rle", "none")
#: Default score below which detections are dropped (``pointsup predict --score-threshold``).
DEFAULT_SCORE_THRESHOLD = 0.5
#: Mask probability at or above which a pasted pixel is on (detectron2's rule, as in evaluation).
MASK_THRESHOLD = 0.5


class PredictorInputError(PointsupError, ValueError):
    """An image the predictor cannot take (wrong array shape or type, unknown object), or a bad setting."""


@dataclass
class TrainedModel:
    """A model restored from a checkpoint, with what is needed to read its outputs."""

    model: Detector
    config: Config
    category_names: list[str]
    label_to_category_id: list[int]
    device: torch.device


def load_trained_model(weights: str | Path, device: str = "auto", config: Config | None = None) -> TrainedModel:
    """Rebuild the model saved in ``weights`` (a pointsup checkpoint) in eval mode.

    Args:
        config: overrides the config stored in the checkpoint (e.g. other test sizes).

    Raises:
        CheckpointError: the file is missing, unreadable or not a pointsup checkpoint.
    """
    path = Path(weights)
    payload = read_checkpoint(path)
    extra = payload.get("extra", {})
    if "config" not in extra or "num_classes" not in extra:
        raise CheckpointError(
            f"{path}: not a checkpoint written by `pointsup train` (no config / class names inside); "
            "pass the training config with --config"
        )
    config = config or config_from_dict(extra["config"])
    model = model_for_checkpoint(config, int(extra["num_classes"]))
    load_model_state(model, payload["model"], strict=True, path=path)
    target = resolve_device(device)
    if target.type == "cpu":
        keep_freed_memory_in_heap()  # when POINTSUP_GLIBC_HEAP_DEFAULTS=0: fewer page faults per image
    names = list(extra.get("category_names") or [str(k) for k in range(int(extra["num_classes"]))])
    ids = list(extra.get("label_to_category_id") or range(1, len(names) + 1))
    return TrainedModel(model.to(target).eval(), config, names, ids, target)


def inference_transforms(trained: TrainedModel) -> Transform:
    """The config's test-time resize (shortest edge to ``data.min_size_test``, long side capped)."""
    return build_test_transforms(trained.config.data.min_size_test, trained.config.data.max_size_test)


def image_tensor(image: ImageInput) -> torch.Tensor:
    """(3, H, W) uint8 RGB of a path, a PIL image (any mode Pillow converts to RGB) or an
    (H, W, 3) uint8 RGB array.

    Raises:
        ImageReadError: a path that is missing or not a decodable image.
        PredictorInputError: an array of another shape or type, or an object of another kind.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.array(to_rgb8(image))).permute(2, 0, 1)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise PredictorInputError(
                f"an image array must be (H, W, 3) uint8 RGB, got shape {tuple(image.shape)} and dtype {image.dtype}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise PredictorInputError(f"an image array must not be empty, got shape {tuple(image.shape)}")
        pixels = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        return torch.from_numpy(pixels).permute(2, 0, 1)
    raise PredictorInputError(
        f"an image must be a file path, a PIL image or an (H, W, 3) uint8 array, got {type(image).__name__}"
    )


def make_sample(image: torch.Tensor, index: int, name: str) -> Sample:
    """A test :class:`Sample` of a (3, H, W) uint8 image (its own size as the original size)."""
    return Sample(image=image, image_id=index, file_name=name, original_size=(int(image.shape[1]), int(image.shape[2])))


def detect(trained: TrainedModel, samples: Sequence[Sample], transforms: Transform) -> list[Detections]:
    """Detections of a batch of original-size samples, resized by ``transforms`` and batched in one
    forward pass; boxes in the original images' coordinates."""
    resized = [transforms(sample, np.random.default_rng(0)) for sample in samples]
    with torch.inference_mode():
        return cast(list[Detections], trained.model(resized))


class _ImageFiles(Dataset["Sample | PointsupError"]):
    """Image files decoded into test samples (in DataLoader workers when there are any).

    A file that cannot be read comes back as its error, raised by the consumer: an error raised
    inside a worker would reach the main process rewrapped, its one-line message lost."""

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Sample | PointsupError:
        try:
            return make_sample(read_image(self.paths[index]), index, str(self.paths[index]))
        except PointsupError as error:
            return error


def _keep_list(batch: list[Sample | PointsupError]) -> list[Sample | PointsupError]:
    return batch


def _samples_or_raise(batch: list[Sample | PointsupError]) -> list[Sample]:
    """The batch's samples; the first unreadable file's error is raised here, in this process."""
    for item in batch:
        if isinstance(item, PointsupError):
            raise item
    return [item for item in batch if isinstance(item, Sample)]


def predict_files(
    trained: TrainedModel, paths: Sequence[str | Path], batch_size: int = 1, num_workers: int = 0
) -> Iterator[tuple[Path, Sample, Detections]]:
    """Detections for each image file, in order, at the config's test size, in original coordinates.

    Args:
        batch_size: images per forward pass (images of different sizes are zero-padded to the
            largest, which can shift scores near the padded border slightly).
        num_workers: DataLoader processes decoding the next images while the model runs (0:
            decode in this process, between batches).

    Raises:
        ImageReadError: a file is missing or not a decodable image (names the file).
    """
    if batch_size < 1 or num_workers < 0:
        raise PredictorInputError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
    transforms = inference_transforms(trained)
    loader = DataLoader(
        _ImageFiles(paths),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_keep_list,
        prefetch_factor=2 if num_workers else None,
        persistent_workers=False,
    )
    for batch in loader:
        samples = _samples_or_raise(batch)
        for sample, detections in zip(samples, detect(trained, samples, transforms)):
            yield Path(sample.file_name), sample, detections


def coco_results(
    detections: Detections, image_id: int, label_to_category_id: Sequence[int], score_threshold: float
) -> list[dict]:
    """COCO result entries (bbox xywh, score, category_id, segmentation RLE) above a score."""
    keep = detections.scores >= score_threshold
    boxes, scores, classes = detections.boxes[keep].cpu(), detections.scores[keep].cpu(), detections.classes[keep].cpu()
    rles = (
        masks_to_rles(detections.mask_probs[keep].cpu(), boxes, detections.image_size)
        if detections.mask_probs is not None
        else None
    )
    results = []
    for k in range(len(boxes)):
        x0, y0, x1, y1 = boxes[k].tolist()
        entry = {
            "image_id": image_id,
            "category_id": int(label_to_category_id[int(classes[k])]),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "score": float(scores[k]),
        }
        if rles is not None:
            entry["segmentation"] = rles[k]
        results.append(entry)
    return results


@dataclass
class Prediction:
    """The N detections of one image above the predictor's score threshold, best first.

    Attributes:
        boxes: (N, 4) float32 xyxy in the input image's pixels (continuous coordinates,
            docs/conventions.md section 1).
        scores: (N,) float32 in [0, 1].
        labels: (N,) int64 contiguous class indices of the model.
        class_ids: (N,) int64 category ids of the training file.
        class_names: N category names.
        masks: (N, H, W) bool arrays (``mask_format="bitmask"``), N COCO RLE dicts
            (``"rle"``, ``{"size": [H, W], "counts": str}``), or None (``"none"``, or a
            box-only model).
        image_size: (H, W) of the input image.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    masks: np.ndarray | list[dict[str, Any]] | None
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def to_prediction(
    detections: Detections,
    category_names: Sequence[str],
    label_to_category_id: Sequence[int],
    score_threshold: float,
    mask_format: MaskFormat,
) -> Prediction:
    """The detections at or above ``score_threshold`` as a :class:`Prediction`, masks pasted."""
    keep = detections.scores >= score_threshold
    boxes, labels = detections.boxes[keep].detach().cpu(), detections.classes[keep].cpu()
    masks: np.ndarray | list[dict[str, Any]] | None = None
    if detections.mask_probs is not None and mask_format != "none":
        probs = detections.mask_probs[keep].detach().cpu()
        if mask_format == "rle":
            masks = masks_to_rles(probs, boxes, detections.image_size, MASK_THRESHOLD)
        else:
            masks = paste_masks(probs, boxes, detections.image_size, MASK_THRESHOLD).numpy()
    label_list = labels.tolist()
    return Prediction(
        boxes=boxes.numpy().astype(np.float32),
        scores=detections.scores[keep].detach().cpu().numpy().astype(np.float32),
        labels=labels.numpy().astype(np.int64),
        class_ids=np.array([label_to_category_id[k] for k in label_list], dtype=np.int64),
        class_names=[category_names[k] for k in label_list],
        masks=masks,
        image_size=detections.image_size,
    )


class Predictor:
    """A trained model ready to segment images (see the module docstring for an example).

    Args:
        trained: the model and its category names, from :func:`load_trained_model`.
        score_threshold: detections below this score are dropped, in [0, 1].
        mask_format: ``"bitmask"`` (full-size bool arrays), ``"rle"`` (COCO RLE) or ``"none"``.
    """

    def __init__(
        self, trained: TrainedModel, score_threshold: float = DEFAULT_SCORE_THRESHOLD, mask_format: MaskFormat = "bitmask"
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise PredictorInputError(f"score_threshold must be in [0, 1], got {score_threshold}")
        if mask_format not in MASK_FORMATS:
            raise PredictorInputError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
        self.trained = trained
        self.score_threshold = score_threshold
        self.mask_format: MaskFormat = mask_format
        self.transforms = inference_transforms(trained)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        device: str = "auto",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        mask_format: MaskFormat = "bitmask",
        config: Config | None = None,
    ) -> Predictor:
        """Load a checkpoint written by ``pointsup train`` (its config travels in it).

        Args:
            device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
            config: replaces the checkpoint's config (e.g. another test size).

        Raises:
            CheckpointError: the file is missing, unreadable or not a pointsup checkpoint.
        """
        return cls(load_trained_model(Path(path), device, config), score_threshold, mask_format)

    @property
    def category_names(self) -> list[str]:
        """The model's category names, by contiguous label."""
        return self.trained.category_names

    def __call__(self, image: ImageInput) -> Prediction:
        """The detections of one image (a path, a PIL image or an (H, W, 3) uint8 RGB array)."""
        return self.batch([image], batch_size=1)[0]

    def batch(self, images: Iterable[ImageInput], batch_size: int = 4) -> list[Prediction]:
        """The detections of several images, ``batch_size`` per forward pass, in input order."""
        if batch_size < 1:
            raise PredictorInputError(f"batch_size must be >= 1, got {batch_size}")
        predictions: list[Prediction] = []
        pending: list[Sample] = []
        for index, image in enumerate(images):
            name = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<image {index}>"
            pending.append(make_sample(image_tensor(image), index, name))
            if len(pending) == batch_size:
                predictions.extend(self._predict_samples(pending))
                pending = []
        if pending:
            predictions.extend(self._predict_samples(pending))
        return predictions

    def _predict_samples(self, samples: Sequence[Sample]) -> list[Prediction]:
        trained = self.trained
        return [
            to_prediction(d, trained.category_names, trained.label_to_category_id, self.score_threshold, self.mask_format)
            for d in detect(trained, samples, self.transforms)
        ]
