"""The training data path (decode, augment, build targets): pointsup's against OpenCV/NumPy and torchvision.

Usage: python benchmarks/data_path.py [--coco TRAIN_JSON:IMAGES] [--images N] [--repeats 5]
                                      [--min-size 800] [--max-size 1333] [--supervision masks|points]
                                      [--seed 0]

Answers "is pointsup's data path as fast as the ones users know?" on real photos (default:
../shared/datasets/coco_mini's train2017, or ``$POINTSUP_SHARED``; P10 points are simulated from
the masks with pointsup's ``simulate``, seed 0, for ``--supervision points``). Everything runs on
one thread (``torch.set_num_threads(1)``, OpenCV's threading off), as a data-loader worker does.
Timed, per image of the dataset (the training items: images with a non-crowd object):

* **decode only**, file to RGB pixels: pointsup's ``read_image`` (``open_rgb_image``, PIL, then the
  array the dataset hands on); OpenCV ``cv2.imread`` + ``cv2.cvtColor(BGR2RGB)``;
  ``torchvision.io.decode_image`` of the file's bytes (``read_file``; torchvision 0.29 deprecates
  its decoders in favour of TorchCodec, but they are what torchvision users have).
* **whole sample**, file to the augmented training sample (image, boxes, classes, and masks or
  points), in two parts: *load* (decode + targets) and *augment* (resize of the shortest edge to
  ``--min-size`` with the long side at most ``--max-size``, then a horizontal flip with
  probability 0.5):

  - pointsup: ``InstanceDataset`` and the train transforms built by the trainer's own builders
    (``build_train_dataset``, ``train_transforms``), called as its loader calls them:
    ``transforms(dataset[i], numpy.random.default_rng([seed, i]))``; masks decoded by pycocotools.
  - reference-style: an OpenCV + NumPy mapper written here, which *imitates* detectron2's
    ``DatasetMapper`` (it is not detectron2's code): OpenCV decode, COCO xywh boxes to xyxy in
    NumPy, polygons to bitmasks at the file's size with pycocotools (``frPyObjects``, ``merge``,
    ``decode``), ``cv2.resize`` (bilinear image, nearest masks), NumPy flip, ``torch.as_tensor``
    at the end. Its random draws are pointsup's (same generator, same calls), so it flips the same
    images and its outputs can be compared with pointsup's. ``cv2.INTER_LINEAR`` does not
    antialias (pointsup's and torchvision's resizes do), which matters only when shrinking: COCO's
    photos (about 640 px) are enlarged to 800. detectron2 itself decodes and resizes
    uint8 images with PIL and, with its default polygon mask format, moves polygon coordinates
    rather than resizing bitmasks; this row is the OpenCV-based mapper that the question names.
  - torchvision v2: PIL decode (``Image.open(...).convert("RGB")``), targets as ``tv_tensors``
    (``BoundingBoxes``, ``Mask`` decoded by pycocotools, ``KeyPoints`` for points), then
    ``v2.Compose([ToImage(), Resize(min_size, max_size=max_size), RandomHorizontalFlip()])``: what
    a torchvision user writes. Its flips come from torch's generator, seeded at every repeat.

Crowd regions are no targets in any path. Before timing, one untimed pass runs every row on every
image and counts the images on which the other paths' outputs have the shapes of pointsup's
(image, boxes, masks or points), with the largest difference of the reference-style boxes from
pointsup's (same geometry, same flips: float rounding only). torchvision's ``Resize`` rounds the
long side down where detectron2 and pointsup round to nearest, so its image may be a pixel shorter
there: reported, not an error.

Each row's time is the median over ``--repeats`` of the mean per image, in ms/image; the rows take
turns image by image, so a change in machine load affects each alike. Printed: a table of
ms/image and the ratio to pointsup's comparable row (decode rows to pointsup's decode, whole-sample
rows and their parts to pointsup's), the number of images, the like-for-like check and a verdict
("as fast" when pointsup's whole sample takes at most 1.1x the fastest alternative's time); the
last line is a JSON summary. Without OpenCV (not a pointsup dependency) its rows are skipped with
a note on how to install it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, Protocol

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._datasets import SHARED_DATASETS  # noqa: E402
from pointsup.data.dataset import InstanceDataset, read_image  # noqa: E402
from pointsup.engine.builders import build_train_dataset, train_transforms  # noqa: E402
from pointsup.engine.config import ConfigError, config_from_dict  # noqa: E402
from pointsup.errors import PointsupError  # noqa: E402
from pointsup.points.format import read_coco_json  # noqa: E402
from pointsup.points.simulate import SimulationConfig, simulate  # noqa: E402
from pointsup.structures.instances import Sample  # noqa: E402
from pointsup.utils.atomic import write_json_atomic  # noqa: E402

DEFAULT_COCO = SHARED_DATASETS / "coco_mini"
DEFAULT_JSON = DEFAULT_COCO / "annotations" / "instances_train2017.json"
DEFAULT_IMAGES = DEFAULT_COCO / "train2017"
OPENCV_HINT = "pip install opencv-python-headless"
FLIP_PROB = 0.5
#: pointsup's whole sample within this factor of the fastest alternative counts as "as fast"
AS_FAST_FACTOR = 1.10
#: reference-style boxes may differ from pointsup's by this many pixels (float rounding)
BOX_TOLERANCE_PX = 1e-2
MIN_BOX_SIDE = 1e-5  # as pointsup and detectron2: a box side at most this is empty


def fail(message: str) -> NoReturn:
    """Stop the benchmark: ``message`` as one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# --- the images ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEntry:
    """One training image: its dataset index, file, size and raw COCO annotations (crowd included)."""

    index: int
    image_id: int
    path: Path
    height: int
    width: int
    annotations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Shapes:
    """What the like-for-like check compares between paths."""

    image: tuple[int, ...]
    boxes: tuple[int, ...]
    masks: tuple[int, ...] | None
    points: tuple[int, ...] | None


def image_entries(dataset: InstanceDataset, coco: dict[str, Any], limit: int | None) -> list[ImageEntry]:
    """The dataset's first ``limit`` items (all when None) with their annotations from ``coco``."""
    by_image: dict[int, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return [
        ImageEntry(
            index=index,
            image_id=record.id,
            path=dataset.image_path(index),
            height=record.height,
            width=record.width,
            annotations=tuple(by_image.get(record.id, ())),
        )
        for index, record in enumerate(dataset.images[:count])
    ]


def contiguous_labels(coco: dict[str, Any]) -> dict[int, int]:
    """Category id to label ``0 .. C-1`` in sorted id order (pointsup's and detectron2's rule)."""
    return {category_id: label for label, category_id in enumerate(sorted(c["id"] for c in coco["categories"]))}


def non_crowd(entry: ImageEntry) -> list[dict[str, Any]]:
    return [annotation for annotation in entry.annotations if not annotation.get("iscrowd", 0)]


def bitmask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask of a COCO segmentation (polygons, or compressed / uncompressed RLE)."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle)


def point_arrays(annotations: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, P, 2) pixel-centre coordinates (stored index + 0.5) and (N, P) labels, padded with -1."""
    num_points = max((len(a.get("point_coords", ())) for a in annotations), default=0)
    coords = np.zeros((len(annotations), num_points, 2), dtype=np.float32)
    labels = np.full((len(annotations), num_points), -1.0, dtype=np.float32)
    for row, annotation in enumerate(annotations):
        count = len(annotation.get("point_coords", ()))
        if count:
            coords[row, :count] = np.asarray(annotation["point_coords"], dtype=np.float32) + 0.5
            labels[row, :count] = annotation["point_labels"]
    return coords, labels


def xyxy_boxes(annotations: list[dict[str, Any]]) -> np.ndarray:
    """(N, 4) float32 ``(x0, y0, x1, y1)`` from the COCO ``[x, y, w, h]`` boxes."""
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def detectron2_output_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """(new_height, new_width): short side ``short_edge``, long side at most ``max_size``, rounded
    to nearest (detectron2's ``ResizeShortestEdge`` rule, written out independently of pointsup)."""
    scale = short_edge / min(height, width)
    new_height, new_width = height * scale, width * scale
    longest = max(new_height, new_width)
    if longest > max_size:
        new_height, new_width = new_height * max_size / longest, new_width * max_size / longest
    return int(new_height + 0.5), int(new_width + 0.5)


# --- decoders --------------------------------------------------------------------------------


def load_opencv() -> ModuleType | None:
    """OpenCV, single-threaded, or None when it is not installed."""
    try:
        cv2 = importlib.import_module("cv2")
    except ImportError:
        return None
    cv2.setNumThreads(0)  # 0: no thread pool, every function runs on the calling thread
    return cv2


def opencv_decoder(cv2: ModuleType) -> Callable[[Path], np.ndarray]:
    """(H, W, 3) uint8 RGB with OpenCV, in the stored pixel grid (COCO's convention, as pointsup)."""
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION

    def decode(path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path), flags), cv2.COLOR_BGR2RGB)

    return decode


def torchvision_decode(path: Path) -> Tensor:
    """(3, H, W) uint8 RGB with ``torchvision.io`` from the file's bytes."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)


def pointsup_decode(entry: ImageEntry) -> Tensor:
    """pointsup's decoder as its dataset calls it (``open_rgb_image``, then the pixel array)."""
    return read_image(entry.path, entry.image_id, (entry.width, entry.height))


def decode_rows(cv2: ModuleType | None) -> dict[str, tuple[str, Callable[[ImageEntry], Any]]]:
    """Row name to (label, call) of the decode-only rows; pointsup's first."""
    rows: dict[str, tuple[str, Callable[[ImageEntry], Any]]] = {
        "decode/pointsup": ("pointsup read_image (PIL open_rgb_image)", pointsup_decode),
    }
    if cv2 is not None:
        decode = opencv_decoder(cv2)
        rows["decode/opencv"] = ("OpenCV imread + cvtColor", lambda entry: decode(entry.path))
    rows["decode/torchvision"] = ("torchvision.io decode_image", lambda entry: torchvision_decode(entry.path))
    return rows


# --- whole-sample paths ----------------------------------------------------------------------


class SamplePath(Protocol):
    """A way of making a training sample: ``augment(load(entry), entry)``; ``shapes`` and ``boxes``
    ((N, 4) xyxy) of the result."""

    label: str

    def load(self, entry: ImageEntry) -> Any: ...

    def augment(self, loaded: Any, entry: ImageEntry) -> Any: ...

    def shapes(self, output: Any) -> Shapes: ...

    def boxes(self, output: Any) -> Tensor: ...


class PointsupPath:
    """pointsup's dataset and train transforms, as the trainer builds and its loader calls them."""

    label = "pointsup (InstanceDataset + train transforms)"

    def __init__(self, dataset: InstanceDataset, transforms: Callable[..., Sample], seed: int) -> None:
        self.dataset, self.transforms, self.seed = dataset, transforms, seed

    def load(self, entry: ImageEntry) -> Sample:
        return self.dataset[entry.index]

    def augment(self, loaded: Sample, entry: ImageEntry) -> Sample:
        return self.transforms(loaded, np.random.default_rng([self.seed, entry.index]))

    def shapes(self, output: Sample) -> Shapes:
        targets = output.targets
        assert targets is not None
        masks = None if targets.masks is None else tuple(targets.masks.shape)
        points = tuple(targets.point_coords.shape) if self.dataset.supervision == "points" else None
        return Shapes(tuple(output.image.shape), tuple(targets.boxes.shape), masks, points)

    def boxes(self, output: Sample) -> Tensor:
        assert output.targets is not None
        return output.targets.boxes


@dataclass
class MapperSample:
    """The reference-style mapper's sample: an (H, W, 3) image and NumPy targets, then tensors."""

    image: Any
    boxes: Any
    classes: Any
    masks: Any = None
    point_coords: Any = None
    point_labels: Any = None


class ReferenceStylePath:
    """An OpenCV + NumPy mapper imitating detectron2's ``DatasetMapper`` (see the module notes)."""

    label = "reference-style (OpenCV + NumPy)"

    def __init__(self, cv2: ModuleType, labels: dict[int, int], supervision: str, min_size: int, max_size: int, seed: int):
        self.cv2, self.decode = cv2, opencv_decoder(cv2)
        self.labels, self.supervision = labels, supervision
        self.short_edges, self.max_size, self.seed = (min_size,), max_size, seed

    def load(self, entry: ImageEntry) -> MapperSample:
        image = self.decode(entry.path)
        annotations = non_crowd(entry)
        sample = MapperSample(
            image=image,
            boxes=xyxy_boxes(annotations),
            classes=np.array([self.labels[a["category_id"]] for a in annotations], dtype=np.int64),
        )
        if self.supervision == "masks":
            sample.masks = [bitmask(a["segmentation"], entry.height, entry.width) for a in annotations]
        else:
            sample.point_coords, sample.point_labels = point_arrays(annotations)
        return sample

    def augment(self, loaded: MapperSample, entry: ImageEntry) -> MapperSample:
        rng = np.random.default_rng([self.seed, entry.index])  # pointsup's draws: size, then flip
        short_edge = int(rng.choice(self.short_edges))
        flip = float(rng.random()) < FLIP_PROB
        height, width = loaded.image.shape[:2]
        new_height, new_width = detectron2_output_size(height, width, short_edge, self.max_size)
        scale = np.array([new_width / width, new_height / height], dtype=np.float32)
        image = self.cv2.resize(loaded.image, (new_width, new_height), interpolation=self.cv2.INTER_LINEAR)
        boxes = loaded.boxes * np.tile(scale, 2)
        masks = [self.cv2.resize(m, (new_width, new_height), interpolation=self.cv2.INTER_NEAREST) for m in loaded.masks or ()]
        coords = None if loaded.point_coords is None else loaded.point_coords * scale
        if flip:
            image = image[:, ::-1]
            boxes = np.stack([new_width - boxes[:, 2], boxes[:, 1], new_width - boxes[:, 0], boxes[:, 3]], axis=1)
            masks = [m[:, ::-1] for m in masks]
            if coords is not None:
                coords[..., 0] = new_width - coords[..., 0]
        return self._to_tensors(loaded, image, boxes, masks, coords, (new_height, new_width))

    def _to_tensors(
        self,
        loaded: MapperSample,
        image: np.ndarray,
        boxes: np.ndarray,
        masks: list[np.ndarray],
        coords: np.ndarray | None,
        size: tuple[int, int],
    ) -> MapperSample:
        """Clip boxes, drop empty ones, mark points outside the image, and convert to tensors."""
        height, width = size
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) > MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > MIN_BOX_SIDE)
        sample = MapperSample(
            image=torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
            boxes=torch.as_tensor(boxes[keep]),
            classes=torch.as_tensor(loaded.classes[keep]),
        )
        if self.supervision == "masks":
            kept = [np.ascontiguousarray(m) for m, k in zip(masks, keep) if k]
            stacked = np.stack(kept) if kept else np.zeros((0, height, width), dtype=np.uint8)
            sample.masks = torch.as_tensor(stacked)
        else:
            assert coords is not None
            inside = (coords[..., 0] >= 0) & (coords[..., 0] <= width) & (coords[..., 1] >= 0) & (coords[..., 1] <= height)
            sample.point_coords = torch.as_tensor(coords[keep])
            sample.point_labels = torch.as_tensor(np.where(inside, loaded.point_labels, -1.0)[keep])
        return sample

    def shapes(self, output: MapperSample) -> Shapes:
        masks = None if output.masks is None else tuple(output.masks.shape)
        points = None if output.point_coords is None else tuple(output.point_coords.shape)
        return Shapes(tuple(output.image.shape), tuple(output.boxes.shape), masks, points)

    def boxes(self, output: MapperSample) -> Tensor:
        return output.boxes


class TorchvisionPath:
    """PIL decode, ``tv_tensors`` targets and ``transforms.v2``: the torchvision user's path."""

    label = "torchvision v2 (PIL + tv_tensors)"

    def __init__(self, labels: dict[int, int], supervision: str, min_size: int, max_size: int) -> None:
        from torchvision.transforms import v2

        self.labels, self.supervision = labels, supervision
        self.transforms = v2.Compose([v2.ToImage(), v2.Resize(min_size, max_size=max_size), v2.RandomHorizontalFlip(FLIP_PROB)])

    def load(self, entry: ImageEntry) -> dict[str, Any]:
        from PIL import Image
        from torchvision import tv_tensors

        image = Image.open(entry.path).convert("RGB")
        canvas = (entry.height, entry.width)
        annotations = non_crowd(entry)
        sample: dict[str, Any] = {
            "image": image,
            "boxes": tv_tensors.BoundingBoxes(torch.from_numpy(xyxy_boxes(annotations)), format="XYXY", canvas_size=canvas),
            "labels": torch.tensor([self.labels[a["category_id"]] for a in annotations], dtype=torch.int64),
        }
        if self.supervision == "masks":
            masks = [bitmask(a["segmentation"], entry.height, entry.width) for a in annotations]
            stacked = np.stack(masks) if masks else np.zeros((0, *canvas), dtype=np.uint8)
            sample["masks"] = tv_tensors.Mask(torch.from_numpy(stacked))
        else:
            coords, labels = point_arrays(annotations)
            sample["points"] = tv_tensors.KeyPoints(torch.from_numpy(coords), canvas_size=canvas)
            sample["point_labels"] = torch.from_numpy(labels)
        return sample

    def augment(self, loaded: dict[str, Any], entry: ImageEntry) -> dict[str, Any]:
        return self.transforms(loaded)

    def shapes(self, output: dict[str, Any]) -> Shapes:
        masks = tuple(output["masks"].shape) if "masks" in output else None
        points = tuple(output["points"].shape) if "points" in output else None
        return Shapes(tuple(output["image"].shape), tuple(output["boxes"].shape), masks, points)

    def boxes(self, output: dict[str, Any]) -> Tensor:
        return output["boxes"].as_subclass(Tensor)


# --- set-up ----------------------------------------------------------------------------------


@dataclass
class Setup:
    """What the timed rows run on."""

    entries: list[ImageEntry]
    decoders: dict[str, tuple[str, Callable[[ImageEntry], Any]]]
    paths: dict[str, SamplePath]
    notes: list[str]


def parse_coco(spec: str | None) -> tuple[Path, Path]:
    """(JSON, image folder) from ``--coco JSON:IMAGES`` or the default coco_mini."""
    if spec is None:
        json_path, images = DEFAULT_JSON, DEFAULT_IMAGES
        if not json_path.is_file() or not images.is_dir():
            fail(f"the default dataset is missing ({json_path}, {images}): pass --coco TRAIN_JSON:IMAGES")
        return json_path, images
    json_name, _, images_name = spec.partition(":")
    json_path, images = Path(json_name), Path(images_name)
    if not json_path.is_file() or not images_name or not images.is_dir():
        fail(f"--coco {spec}: expected TRAIN_JSON:IMAGE_FOLDER, both existing")
    return json_path, images


def training_json(args: argparse.Namespace, masks_json: Path, scratch: Path) -> Path:
    """The JSON the trainer would read: the masks file, or P10 points simulated from it (seed 0)."""
    if args.supervision == "masks":
        return masks_json
    points = simulate(read_coco_json(masks_json), SimulationConfig(num_points=10, seed=0), source=str(masks_json))
    write_json_atomic(scratch / "train_p10.json", points.coco)
    return scratch / "train_p10.json"


def build_setup(args: argparse.Namespace, scratch: Path) -> Setup:
    """The dataset, its images, the decoders and the three whole-sample paths."""
    masks_json, images = parse_coco(args.coco)
    train_json = training_json(args, masks_json, scratch)
    try:
        config = config_from_dict(
            {
                "supervision": args.supervision,
                "seed": args.seed,
                "data": {
                    "train_json": str(train_json),
                    "train_images": str(images),
                    "min_size_train": [args.min_size],
                    "max_size_train": args.max_size,
                },
            }
        )
        dataset = build_train_dataset(config)
    except (ConfigError, PointsupError) as error:
        fail(str(error))
    coco = read_coco_json(train_json)
    labels = contiguous_labels(coco)
    cv2 = load_opencv()
    paths: dict[str, SamplePath] = {"sample/pointsup": PointsupPath(dataset, train_transforms(config), args.seed)}
    notes = []
    if cv2 is None:
        notes.append(f"OpenCV is not installed: its rows are skipped (install it with `{OPENCV_HINT}`)")
    else:
        paths["sample/reference"] = ReferenceStylePath(cv2, labels, args.supervision, args.min_size, args.max_size, args.seed)
    paths["sample/torchvision"] = TorchvisionPath(labels, args.supervision, args.min_size, args.max_size)
    return Setup(image_entries(dataset, coco, args.images), decode_rows(cv2), paths, notes)


# --- checking and timing ---------------------------------------------------------------------


def largest_difference(a: Tensor, b: Tensor) -> float:
    """The largest absolute difference of two same-shaped tensors (0 for empty ones)."""
    return float((a - b).abs().max()) if a.numel() else 0.0


def compare_with_pointsup(setup: Setup) -> dict[str, dict[str, Any]]:
    """One untimed pass of every row over every image (also the warm-up): per other path, on how
    many images its output has pointsup's shapes, the first differences, and (reference-style)
    the largest box difference."""
    reference = setup.paths["sample/pointsup"]
    report = {name: {"images": 0, "same_shapes": 0, "differences": [], "max_box_difference_px": 0.0} for name in setup.paths}
    for entry in setup.entries:
        for _, decode in setup.decoders.values():
            decode(entry)
        expected = reference.augment(reference.load(entry), entry)
        for name, path in setup.paths.items():
            output = path.augment(path.load(entry), entry)
            record = report[name]
            record["images"] += 1
            shapes, expected_shapes = path.shapes(output), reference.shapes(expected)
            if shapes == expected_shapes:
                record["same_shapes"] += 1
                difference = largest_difference(path.boxes(output), reference.boxes(expected))
                record["max_box_difference_px"] = max(record["max_box_difference_px"], difference)
            elif len(record["differences"]) < 3:
                record["differences"].append(
                    {"image_id": entry.image_id, "shapes": vars(shapes), "pointsup": vars(expected_shapes)}
                )
    del report["sample/pointsup"]
    if "sample/torchvision" in report:
        del report["sample/torchvision"]["max_box_difference_px"]  # its flips are its own: values differ
    return report


def timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``call(*args)`` took, and what it returned."""
    started = time.perf_counter()
    result = call(*args)
    return time.perf_counter() - started, result


def one_repeat(setup: Setup, seed: int) -> dict[str, float]:
    """Mean seconds per image of every row and part over all images; rows take turns per image."""
    torch.manual_seed(seed)  # torchvision's flips: the same in every repeat
    totals: dict[str, float] = {}

    def add(name: str, seconds: float) -> None:
        totals[name] = totals.get(name, 0.0) + seconds

    for entry in setup.entries:
        for name, (_, decode) in setup.decoders.items():
            add(name, timed(decode, entry)[0])
        for name, path in setup.paths.items():
            load_seconds, loaded = timed(path.load, entry)
            augment_seconds, _ = timed(path.augment, loaded, entry)
            add(f"{name}/load", load_seconds)
            add(f"{name}/augment", augment_seconds)
            add(name, load_seconds + augment_seconds)
    return {name: total / len(setup.entries) for name, total in totals.items()}


def measure(setup: Setup, repeats: int, seed: int) -> dict[str, list[float]]:
    """Per row and part, the ms/image of every repeat."""
    per_repeat = [one_repeat(setup, seed) for _ in range(repeats)]
    return {name: [1000.0 * repeat[name] for repeat in per_repeat] for name in per_repeat[0]}


# --- report ----------------------------------------------------------------------------------


def pointsup_counterpart(name: str, kind: str) -> str:
    """The pointsup row that row ``name`` of ``kind`` is compared with."""
    if kind == "decode":
        return "decode/pointsup"
    if kind == "sample":
        return "sample/pointsup"
    return "sample/pointsup/" + name.rsplit("/", 1)[1]  # a part: pointsup's same part


def result_rows(setup: Setup, times: dict[str, list[float]]) -> list[dict[str, Any]]:
    """The summary rows: decode rows, whole-sample rows and their parts, each with its ratio to
    pointsup's comparable row (row ms / pointsup ms: above 1 is slower than pointsup)."""
    rows = []
    entries = [(name, label, "decode") for name, (label, _) in setup.decoders.items()]
    for name, path in setup.paths.items():
        entries += [(name, path.label, "sample"), (f"{name}/load", "load: decode + targets", "part")]
        entries.append((f"{name}/augment", "augment: resize + flip", "part"))
    for name, label, kind in entries:
        baseline = pointsup_counterpart(name, kind)
        median = statistics.median(times[name])
        rows.append(
            {
                "name": name,
                "label": label,
                "kind": kind,
                "ms_per_image": median,
                "ms_per_repeat": times[name],
                "vs_pointsup": median / statistics.median(times[baseline]),
            }
        )
    return rows


def verdict(rows: list[dict[str, Any]]) -> str:
    """One line: is pointsup's whole sample as fast as the fastest alternative?"""
    samples = {row["name"]: row for row in rows if row["kind"] == "sample"}
    ours = samples.pop("sample/pointsup")
    fastest = min(samples.values(), key=lambda row: row["ms_per_image"])
    ratio = ours["ms_per_image"] / fastest["ms_per_image"]
    if ratio <= AS_FAST_FACTOR:
        return f"as fast: pointsup's whole sample takes {ratio:.2f}x the time of the fastest alternative ({fastest['label']})"
    return f"slower: pointsup's whole sample takes {ratio:.2f}x the time of the fastest alternative ({fastest['label']})"


def table(rows: list[dict[str, Any]]) -> str:
    """The rows under their two headings; parts indented under their path."""
    lines = [f"{'row':<50} {'ms/image':>9} {'vs pointsup':>12}"]
    for kind, heading in (("decode", "decode only (file to RGB pixels)"), ("sample", "whole sample (load + augment)")):
        lines.append(heading)
        for row in rows:
            if row["kind"] != kind and not (kind == "sample" and row["kind"] == "part"):
                continue
            indent = "      " if row["kind"] == "part" else "  "
            lines.append(f"{indent + row['label']:<50} {row['ms_per_image']:>9.2f} {row['vs_pointsup']:>11.2f}x")
    return "\n".join(lines)


def like_for_like_lines(check: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, record in check.items():
        line = f"like for like, {name.split('/')[1]}: pointsup's shapes on {record['same_shapes']}/{record['images']} images"
        if "max_box_difference_px" in record:
            line += f", boxes within {record['max_box_difference_px']:.4f} px"
        lines.append(line)
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--coco", default=None, metavar="TRAIN_JSON:IMAGES", help="COCO data with masks (default coco_mini train2017)"
    )
    parser.add_argument("--images", type=int, default=None, help="use the first N training images (default all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the images (default 5)")
    parser.add_argument("--min-size", type=int, default=800, help="short edge after the resize (default 800)")
    parser.add_argument("--max-size", type=int, default=1333, help="longest side after the resize (default 1333)")
    parser.add_argument("--supervision", choices=("masks", "points"), default="masks")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flips (default 0)")
    args = parser.parse_args(argv)
    positive = [args.repeats, args.min_size, args.max_size] + ([] if args.images is None else [args.images])
    if min(positive) < 1 or args.seed < 0:
        fail("--repeats, --images, --min-size and --max-size must be >= 1, --seed >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as scratch_name:
            setup = build_setup(args, Path(scratch_name))
            check = compare_with_pointsup(setup)
            times = measure(setup, args.repeats, args.seed)
    finally:  # a caller in the same process (the tests) keeps its threads
        torch.set_num_threads(threads_before)
    rows = result_rows(setup, times)
    summary = {
        "dataset": args.coco or f"{DEFAULT_JSON}:{DEFAULT_IMAGES}",
        "images": len(setup.entries),
        "supervision": args.supervision,
        "min_size": args.min_size,
        "max_size": args.max_size,
        "repeats": args.repeats,
        "threads": 1,
        "rows": rows,
        "like_for_like": check,
        "notes": setup.notes,
        "verdict": verdict(rows),
    }
    print(
        f"{len(setup.entries)} images, {args.supervision} supervision, short edge {args.min_size} "
        f"(long side <= {args.max_size}), median of {args.repeats} repeats, 1 thread"
    )
    for note in setup.notes:
        print(f"note: {note}")
    print(table(rows))
    print("\n".join(like_for_like_lines(check)))
    print(f"verdict: {summary['verdict']}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
