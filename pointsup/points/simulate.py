"""Simulate P_N point annotations from a COCO file with masks.

Two modes share one pipeline:

* ``pointsup`` (default): a NumPy ``Generator`` seeded with ``[seed, version]`` draws the points
  of the non-crowd annotations in file order; crowd regions get no points; boxes are clipped to
  the image before sampling. Options add boundary-biased sampling and label noise.
* ``detectron2``: reproduces the authors' script exactly: one legacy ``RandomState(seed)``
  stream (seed 12345 by default) over *all* annotations in file order, crowd ones included
  (they get points, as in the reference's files), later versions continuing the same stream.

Either way a point is uniform in the continuous box, floored to a pixel index, and labelled
with the mask value at that pixel. Masks are never decoded whole: labels are read from the
run-length encoding (:mod:`pointsup.points.rle`), which is what makes this fast.
Label noise draws from its own stream, so it never moves the points.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pointsup.points.format import PointFormatError, check_coco
from pointsup.points.mask_lookup import mask_values_at_pixels, masks_as_runs
from pointsup.points.noise import flip_labels_near_boundary, flip_random_labels
from pointsup.points.sampling import (
    BoundaryBias,
    boundary_biased_pixels,
    clip_boxes_to_images,
    distances_to_boundary,
    pixels_from_unit_draws,
)
from pointsup.points.stats import PointStatistics, compute_statistics
from pointsup.utils.progress import progress

COMPAT_MODES = ("pointsup", "detectron2")
DEFAULT_SEED = 12345
#: peak memory per simulated point, with margin (measured: about 73 bytes per point, sampling
#: to JSON bytes, at 20,000 points on each of 20 objects)
PEAK_BYTES_PER_POINT = 128
#: the stream key that separates label-noise draws from point draws
_NOISE_STREAM = 1


@dataclass(frozen=True)
class SimulationConfig:
    """Options of :func:`simulate_versions` (the ``pointsup simulate`` flags)."""

    num_points: int = 10
    seed: int = DEFAULT_SEED
    compat: str = "pointsup"
    keep_masks: bool = False
    label_noise: float = 0.0
    boundary_noise: float = 0.0
    boundary_bias: BoundaryBias | None = None
    chunk_size: int = 2048

    def __post_init__(self) -> None:
        if self.num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {self.num_points}")
        if self.compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {COMPAT_MODES}, got {self.compat!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        for name in ("label_noise", "boundary_noise"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {value}")
        if self.label_noise + self.boundary_noise > 1.0:
            raise ValueError("label_noise + boundary_noise may not exceed 1")
        if self.compat == "detectron2" and self.boundary_bias is not None:
            raise ValueError("boundary-biased sampling is not part of the reference sampler; use compat 'pointsup'")
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")

    @property
    def needs_distances(self) -> bool:
        return self.boundary_bias is not None or self.boundary_noise > 0


@dataclass
class SimulationResult:
    """One simulated version: the output COCO dict and its statistics."""

    version: int
    coco: dict[str, Any]
    statistics: PointStatistics


def estimated_peak_bytes(num_annotations: int, num_points: int) -> int:
    """Memory a simulation of ``num_points`` on each of ``num_annotations`` objects needs at
    its peak (per version: versions are simulated one at a time), for refusing one that cannot fit."""
    return num_annotations * num_points * PEAK_BYTES_PER_POINT


def sampled_annotation_indices(annotations: list[dict], compat: str) -> np.ndarray:
    """Indices of the annotations that get points: all in ``detectron2`` mode, else non-crowd."""
    if compat == "detectron2":
        return np.arange(len(annotations))
    return np.array([i for i, a in enumerate(annotations) if not a.get("iscrowd", 0)], dtype=np.int64)


def _boxes_and_sizes(coco: dict, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = {image["id"]: (image["height"], image["width"]) for image in coco["images"]}
    annotations = coco["annotations"]
    boxes = np.array([annotations[i]["bbox"] for i in indices], dtype=np.float64).reshape(-1, 4)
    sizes = np.array([images[annotations[i]["image_id"]] for i in indices], dtype=np.int64).reshape(-1, 2)
    return boxes, sizes


def sample_uniform_pixels(coco: dict, num_points: int, seed: int = DEFAULT_SEED, version: int = 1) -> dict[Any, np.ndarray]:
    """Point positions of the default mode without labels (what the labelling tool shows).

    Returns:
        annotation id to ``(num_points, 2)`` int64 ``[x, y]`` pixels, for every non-crowd
        annotation; the same positions ``pointsup simulate`` gives with these arguments.
    """
    indices = sampled_annotation_indices(coco["annotations"], "pointsup")
    boxes, sizes = _boxes_and_sizes(coco, indices)
    rng = np.random.default_rng([seed, version])
    unit = rng.random((len(indices), num_points, 2))
    pixels = pixels_from_unit_draws(unit, clip_boxes_to_images(boxes, sizes), sizes)
    return {coco["annotations"][i]["id"]: pixels[k] for k, i in enumerate(indices)}


def _check_inside_images(
    pixels: np.ndarray, sizes: np.ndarray, annotations: list[dict], indices: np.ndarray, source: str
) -> None:
    outside = (pixels < 0).any(axis=2) | (pixels[..., 0] >= sizes[:, None, 1]) | (pixels[..., 1] >= sizes[:, None, 0])
    bad = np.flatnonzero(outside.any(axis=1))
    if len(bad):
        raise PointFormatError(
            source,
            [
                f"annotation id {annotations[indices[k]].get('id')!r}: box {annotations[indices[k]]['bbox']} reaches outside "
                f"its image, so a point fell outside it (the reference asserts here)"
                for k in bad
            ],
        )


def _simulate_one(
    coco: dict,
    config: SimulationConfig,
    version: int,
    legacy_rng: np.random.RandomState | None,
    source: str,
    show_progress: bool,
    consume_input: bool = False,
) -> SimulationResult:
    annotations = coco["annotations"]
    indices = sampled_annotation_indices(annotations, config.compat)
    boxes, sizes = _boxes_and_sizes(coco, indices)
    count, n = len(indices), config.num_points
    bias = config.boundary_bias
    if legacy_rng is not None:
        # The reference: px = u * w + x, py = u * h + y, floored; no clipping.
        pixels = np.floor(legacy_rng.random_sample((count, n, 2)) * boxes[:, None, 2:] + boxes[:, None, :2]).astype(np.int64)
        _check_inside_images(pixels, sizes, annotations, indices, source)
        boxes_xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    else:
        rng = np.random.default_rng([config.seed, version])
        boxes_xyxy = clip_boxes_to_images(boxes, sizes)
        pixels = pixels_from_unit_draws(rng.random((count, n, 2)), boxes_xyxy, sizes)
        if bias is not None:
            num_fresh = n - int(bias.importance * n)
            candidates = np.concatenate(
                [
                    pixels_from_unit_draws(rng.random((count, bias.oversample * n, 2)), boxes_xyxy, sizes),
                    pixels_from_unit_draws(rng.random((count, num_fresh, 2)), boxes_xyxy, sizes),
                ],
                axis=1,
            )
            orders = rng.permuted(np.tile(np.arange(n), (count, 1)), axis=1)

    if config.needs_distances:
        labels, distances = _labels_and_distances(
            coco,
            indices,
            sizes,
            boxes_xyxy,
            pixels,
            config,
            version,
            source,
            show_progress,
            candidates if bias is not None else None,
            orders if bias is not None else None,
        )
    else:
        labels, distances = _labels_only(coco, indices, sizes, pixels, config, version, source, show_progress), None

    crowd = np.array([bool(annotations[i].get("iscrowd", 0)) for i in indices], dtype=bool).reshape(-1)
    true_labels = labels[~crowd].ravel()
    labels, boundary_flips, random_flips = _apply_label_noise(labels, distances, crowd, config, version)
    output = _build_output(coco, indices, pixels, labels, config.keep_masks, consume_input)
    statistics = compute_statistics(
        num_images=len(coco["images"]),
        labels=labels[~crowd].ravel(),
        points_per_instance=np.full(int((~crowd).sum()), n),
        num_crowd=sum(1 for a in annotations if a.get("iscrowd", 0)),
        true_labels=true_labels,
        flipped_by_boundary_noise=boundary_flips,
        flipped_by_label_noise=random_flips,
    )
    return SimulationResult(version, output, statistics)


def _apply_label_noise(
    labels: np.ndarray, distances: np.ndarray | None, crowd: np.ndarray, config: SimulationConfig, version: int
) -> tuple[np.ndarray, int, int]:
    """Flip labels of non-crowd points per the noise options (own random stream).

    Returns the new ``(A, N)`` labels and how many were flipped by boundary and random noise."""
    if config.boundary_noise == 0 and config.label_noise == 0:
        return labels, 0, 0
    rows = np.flatnonzero(~crowd)
    eligible = labels[rows].ravel()
    noise_rng = np.random.default_rng([config.seed, version, _NOISE_STREAM])
    boundary = np.zeros(eligible.size, dtype=bool)
    if config.boundary_noise > 0:
        assert distances is not None  # boundary noise needs distances (config.needs_distances)
        boundary = flip_labels_near_boundary(eligible, distances[rows].ravel(), config.boundary_noise, noise_rng)
    random = np.zeros(eligible.size, dtype=bool)
    if config.label_noise > 0:
        random = flip_random_labels(eligible, config.label_noise, noise_rng, exclude=boundary)
    flipped = labels.copy()
    flipped[rows] = np.where((boundary | random).reshape(len(rows), -1), 1 - labels[rows], labels[rows])
    return flipped, int(boundary.sum()), int(random.sum())


def _labels_only(
    coco: dict,
    indices: np.ndarray,
    sizes: np.ndarray,
    pixels: np.ndarray,
    config: SimulationConfig,
    version: int,
    source: str,
    show_progress: bool,
) -> np.ndarray:
    """``(A, N)`` mask values at the pixels, read without decoding any mask."""
    annotations = coco["annotations"]
    labels = np.zeros(pixels.shape[:2], dtype=np.int64)
    problems: list[str] = []
    chunks = range(0, len(indices), config.chunk_size)
    for start in progress(chunks, total=len(chunks), desc=f"simulate v{version}", unit="chunk", enabled=show_progress):
        stop = min(start + config.chunk_size, len(indices))
        segmentations = [annotations[i].get("segmentation") for i in indices[start:stop]]
        values, bad = mask_values_at_pixels(segmentations, sizes[start:stop], pixels[start:stop])
        labels[start:stop] = values
        problems.extend(
            f"annotation id {annotations[indices[start + k]].get('id')!r}: {message}" for k, message in sorted(bad.items())
        )
    if problems:
        raise PointFormatError(source, problems)
    return labels


def _labels_and_distances(
    coco: dict,
    indices: np.ndarray,
    sizes: np.ndarray,
    boxes_xyxy: np.ndarray,
    pixels: np.ndarray,
    config: SimulationConfig,
    version: int,
    source: str,
    show_progress: bool,
    candidates: np.ndarray | None,
    orders: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and boundary distances (slower: rasterises each box). With boundary bias, first
    replaces ``pixels`` (in place) by the boundary-biased choice from ``candidates``."""
    annotations = coco["annotations"]
    bias = config.boundary_bias
    n = pixels.shape[1]
    labels = np.zeros(pixels.shape[:2], dtype=np.int64)
    distances = np.zeros(pixels.shape[:2])
    chunks = range(0, len(indices), config.chunk_size)
    for start in progress(chunks, total=len(chunks), desc=f"simulate v{version}", unit="chunk", enabled=show_progress):
        stop = min(start + config.chunk_size, len(indices))
        segmentations = [annotations[i].get("segmentation") for i in indices[start:stop]]
        _, masks, bad = masks_as_runs(segmentations, sizes[start:stop])
        if bad:
            raise PointFormatError(
                source,
                [f"annotation id {annotations[indices[start + k]].get('id')!r}: {message}" for k, message in sorted(bad.items())],
            )
        assert masks is not None  # every segmentation of the chunk converted
        for k in range(start, stop):
            if bias is not None:
                assert candidates is not None and orders is not None  # given whenever there is a boundary bias
                num_candidates = bias.oversample * n
                near = distances_to_boundary(masks, k - start, boxes_xyxy[k], candidates[k][:num_candidates])
                pixels[k] = boundary_biased_pixels(
                    candidates[k][:num_candidates], candidates[k][num_candidates:], near, bias, orders[k]
                )
            distances[k] = distances_to_boundary(masks, k - start, boxes_xyxy[k], pixels[k])
        local = np.repeat(np.arange(stop - start), n)
        labels[start:stop] = masks.values_at(local, pixels[start:stop, :, 0].ravel(), pixels[start:stop, :, 1].ravel()).reshape(
            -1, n
        )
    return labels, distances


def _build_output(
    coco: dict, indices: np.ndarray, pixels: np.ndarray, labels: np.ndarray, keep_masks: bool, consume_input: bool
) -> dict:
    """The reference's layout: annotation keys in input order minus ``segmentation`` (unless
    kept), then ``point_coords`` and ``point_labels``; top-level ``annotations`` last.

    The point fields are NumPy arrays (``(N, 2)`` and ``(N,)`` int64 views) so that writing
    a large file costs no Python lists; :func:`pointsup.utils.atomic.write_json_atomic`
    writes them as JSON lists. Use :func:`as_json_lists` for a plain-Python copy.
    With ``consume_input`` the input's annotation dicts are changed in place and reused (no
    copy; their masks are freed as soon as they are dropped).
    """
    position = {int(i): k for k, i in enumerate(indices)}
    new_annotations = []
    for i, ann in enumerate(coco["annotations"]):
        new = ann if consume_input else dict(ann)
        new.pop("point_coords", None)
        new.pop("point_labels", None)
        if not keep_masks:
            new.pop("segmentation", None)
        k = position.get(i)
        if k is not None:
            new["point_coords"] = pixels[k]
            new["point_labels"] = labels[k]
        new_annotations.append(new)
    output = {key: value for key, value in coco.items() if key != "annotations"}
    output["annotations"] = new_annotations
    return output


def as_json_lists(coco: dict[str, Any]) -> dict[str, Any]:
    """A copy of a simulation output with the point fields as plain lists (for :mod:`json`)."""
    annotations = []
    for ann in coco["annotations"]:
        ann = dict(ann)
        for key in ("point_coords", "point_labels"):
            if isinstance(ann.get(key), np.ndarray):
                ann[key] = ann[key].tolist()
        annotations.append(ann)
    return {**coco, "annotations": annotations}


def simulate_versions(
    coco: dict[str, Any],
    config: SimulationConfig,
    versions: int = 1,
    source: str = "<memory>",
    show_progress: bool = True,
    consume_input: bool = False,
) -> Iterator[SimulationResult]:
    """Simulate ``versions`` point sets from one masked COCO dict, lazily, one at a time.

    Args:
        coco: a COCO instances dict with masks (it is not modified).
        config: the options.
        versions: how many versions (1, 2, ...); they differ in their random draws.
        source: the file name used in error messages.
        show_progress: show a progress bar over chunks of annotations.
        consume_input: let the last version reuse (and change) ``coco``'s annotation dicts
            instead of copying them: less memory for large files; ``coco`` is spent after.

    Raises:
        PointFormatError: for invalid input, naming the file and annotation ids.
    """
    if versions < 1:
        raise ValueError(f"versions must be >= 1, got {versions}")
    check_coco(coco, source, require_points=False)
    legacy_rng = np.random.RandomState(config.seed) if config.compat == "detectron2" else None
    for version in range(1, versions + 1):
        yield _simulate_one(coco, config, version, legacy_rng, source, show_progress, consume_input and version == versions)


def simulate(
    coco: dict[str, Any], config: SimulationConfig = SimulationConfig(), source: str = "<memory>", show_progress: bool = False
) -> SimulationResult:
    """Simulate version 1 (see :func:`simulate_versions`)."""
    return next(simulate_versions(coco, config, 1, source, show_progress))
