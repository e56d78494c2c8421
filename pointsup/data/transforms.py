"""Point-aware augmentations of :class:`~pointsup.structures.Sample` records.

All geometry is in continuous image coordinates (docs/conventions.md, section 1): pixel ``(i, j)``
covers ``[j, j + 1) x [i, i + 1)``. A resize multiplies x by ``new_w / w`` and y by
``new_h / h``; a horizontal flip maps ``x -> W - x``; a crop subtracts its integer offset.
Images are resized bilinearly with antialiasing (half-pixel centres), masks with
nearest-exact (the source pixel whose centre is nearest), so image, masks, boxes and points
move by the same affine map. Resize and flip return contiguous images; a crop keeps its
input's layout (channels-last strides, as :func:`~pointsup.data.dataset.read_image` gives,
are the fast input of the resize kernel).

After every geometric step (see :func:`finish_geometry`):

* a point is inside iff ``0 <= x <= W`` and ``0 <= y <= H`` (borders inclusive); a point
  outside gets label -1 and keeps its coordinates (never clamped);
* boxes are clipped to the image and instances whose box width or height is at most 1e-5
  are dropped, with their points and masks.

Every transform is called as ``transform(sample, rng)`` and draws its randomness from ``rng``
only (a ``numpy.random.Generator`` or a legacy ``numpy.random.RandomState``), so a pipeline is
deterministic per sample given the rng. The draws mirror detectron2's augmentations (same
calls, same order), so a ``RandomState`` seeded like the reference's global NumPy RNG
reproduces its choices (``tests/data/test_transforms.py`` checks this against the golden
vectors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pointsup.data.dataset import MIN_BOX_SIDE
from pointsup.data.sizes import shortest_edge_size
from pointsup.structures.instances import IGNORE_LABEL, InstanceTargets, Sample

RandomSource = np.random.Generator | np.random.RandomState
CropType = Literal["relative", "relative_range", "absolute", "absolute_range"]


class Transform(Protocol):
    def __call__(self, sample: Sample, rng: RandomSource) -> Sample: ...


def _random_integer(rng: RandomSource, low: int, high: int) -> int:
    """A uniform integer in ``[low, high)``."""
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high))
    return int(rng.randint(low, high))


# ----------------------------------------------------------------------------------------
# Deterministic geometry on samples


def finish_geometry(targets: InstanceTargets | None, image_size: tuple[int, int]) -> InstanceTargets | None:
    """Apply the rules that follow every geometric step, for an image of ``(H, W)``.

    Points outside ``[0, W] x [0, H]`` (inclusive) get label -1, coordinates unchanged;
    boxes are clipped to the image; instances with a box side <= 1e-5 are dropped.
    """
    if targets is None:
        return None
    height, width = image_size
    coords = targets.point_coords
    inside = (coords[..., 0] >= 0) & (coords[..., 0] <= width) & (coords[..., 1] >= 0) & (coords[..., 1] <= height)
    labels = torch.where(inside, targets.point_labels, torch.full_like(targets.point_labels, IGNORE_LABEL))
    boxes = torch.stack(
        (
            targets.boxes[:, 0].clamp(0, width),
            targets.boxes[:, 1].clamp(0, height),
            targets.boxes[:, 2].clamp(0, width),
            targets.boxes[:, 3].clamp(0, height),
        ),
        dim=1,
    )
    targets = replace(targets, boxes=boxes, point_labels=labels)
    keep = ((boxes[:, 2] - boxes[:, 0]) > MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) > MIN_BOX_SIDE)
    return targets if bool(keep.all()) else targets.select(keep)


def _as_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """A C-contiguous version (NumPy copies strided uint8 CPU arrays several times faster)."""
    if tensor.is_contiguous():
        return tensor
    if tensor.device.type == "cpu":
        return torch.from_numpy(np.ascontiguousarray(tensor.numpy()))
    return tensor.contiguous()


def _flip_width(tensor: torch.Tensor) -> torch.Tensor:
    """Mirror the last axis, contiguous result (``torch.flip``, which beat a NumPy reversed copy:
    docs/results_speed.md, training data path)."""
    return _as_contiguous(tensor.flip(-1))


def nearest_exact_source_indices(input_size: int, output_size: int) -> torch.Tensor:
    """(output_size,) int64: the input index that ``F.interpolate(mode="nearest-exact")`` reads
    for each output index, about ``floor((i + 0.5) * input_size / output_size)``. Read off
    PyTorch's own kernel (a 1-D interpolation of the index ramp), whose rounding a float32 or
    float64 evaluation of that formula does not always reproduce; a test checks the 2-D result."""
    ramp = torch.arange(input_size, dtype=torch.float32).view(1, 1, input_size)
    return F.interpolate(ramp, size=output_size, mode="nearest-exact").view(-1).long()


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(N, H, W)`` masks (uint8 or float, ``H, W > 0``) resized to ``(N, height, width)`` by
    nearest-exact sampling, contiguous: the values of ``F.interpolate(mode="nearest-exact")``,
    computed on the CPU as two NumPy gathers, which are faster (docs/results_speed.md, training
    data path)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, height, width))
    if masks.device.type != "cpu":
        return F.interpolate(masks[None], size=(height, width), mode="nearest-exact")[0]
    rows = nearest_exact_source_indices(masks.shape[1], height).numpy()
    columns = nearest_exact_source_indices(masks.shape[2], width).numpy()
    return torch.from_numpy(np.take(np.take(masks.numpy(), columns, axis=2), rows, axis=1))


def _crop_copy(tensor: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """A compact copy of ``tensor[..., top:top + height, left:left + width]`` (``(C, H, W)``),
    keeping channels-last strides when the input has them (the fast layout for a later resize)."""
    window = tensor[..., top : top + height, left : left + width]
    if tensor.device.type != "cpu":
        return window.contiguous()
    if tensor.dim() == 3 and not tensor.is_contiguous() and tensor.permute(1, 2, 0).is_contiguous():
        return torch.from_numpy(np.ascontiguousarray(window.permute(1, 2, 0).numpy())).permute(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(window.numpy()))


def resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``(3, H, W)`` uint8 image bilinearly with antialiasing (``align_corners=False``).

    PyTorch's uint8 kernel is fastest on channels-last strides, which is what
    :func:`pointsup.data.dataset.read_image` returns. The result is contiguous.
    """
    resized = F.interpolate(image[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return _as_contiguous(resized[0])


def resize_sample(sample: Sample, height: int, width: int) -> Sample:
    """Resize to ``(height, width)``: x scales by ``width / W``, y by ``height / H``."""
    old_height, old_width = sample.image_size
    if (height, width) == (old_height, old_width):
        return replace(sample, image=_as_contiguous(sample.image), targets=finish_geometry(sample.targets, (height, width)))
    image = resize_image(sample.image, height, width)
    targets = sample.targets
    if targets is not None:
        scale = torch.tensor([width / old_width, height / old_height], dtype=torch.float32)
        masks = targets.masks
        if masks is not None:
            masks = resize_masks(masks, height, width)
        targets = replace(
            targets,
            boxes=targets.boxes * scale.repeat(2),
            point_coords=targets.point_coords * scale,
            masks=masks,
        )
    return replace(sample, image=image, targets=finish_geometry(targets, (height, width)))


def hflip_sample(sample: Sample) -> Sample:
    """Mirror horizontally: ``x -> W - x`` for points, ``(x0, x1) -> (W - x1, W - x0)`` for boxes."""
    height, width = sample.image_size
    image = _flip_width(sample.image)
    targets = sample.targets
    if targets is not None:
        boxes = targets.boxes.clone()
        boxes[:, 0] = width - targets.boxes[:, 2]
        boxes[:, 2] = width - targets.boxes[:, 0]
        coords = targets.point_coords.clone()
        coords[..., 0] = width - coords[..., 0]
        masks = None if targets.masks is None else _flip_width(targets.masks)
        targets = replace(targets, boxes=boxes, point_coords=coords, masks=masks)
    return replace(sample, image=image, targets=finish_geometry(targets, (height, width)))


def crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Keep the image window of ``height x width`` pixels whose top-left pixel is ``(top, left)``.

    Coordinates shift by ``(-left, -top)``; points that leave the window get label -1.
    """
    image_height, image_width = sample.image_size
    if not (0 <= top and 0 <= left and 0 < height and 0 < width and top + height <= image_height and left + width <= image_width):
        raise ValueError(
            f"crop {height}x{width} at (top={top}, left={left}) does not fit an image of {image_height}x{image_width}"
        )
    image = _crop_copy(sample.image, top, left, height, width)
    targets = sample.targets
    if targets is not None:
        offset = torch.tensor([left, top], dtype=torch.float32)
        masks = None if targets.masks is None else _crop_copy(targets.masks, top, left, height, width)
        targets = replace(
            targets,
            boxes=targets.boxes - offset.repeat(2),
            point_coords=targets.point_coords - offset,
            masks=masks,
        )
    return replace(sample, image=image, targets=finish_geometry(targets, (height, width)))


# ----------------------------------------------------------------------------------------
# Augmentations


class Compose:
    """Apply transforms in order, all drawing from the same rng."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class ResizeShortestEdge:
    """Resize so the short side is one of ``short_edge_lengths`` and the long side <= ``max_size``.

    Args:
        short_edge_lengths: with ``sampling="choice"`` the candidates (one is drawn with
            ``rng.choice``); with ``"range"`` a ``(min, max)`` pair, inclusive.
        max_size: the longest side allowed.
        sampling: ``"choice"`` or ``"range"``.
    """

    def __init__(
        self, short_edge_lengths: Sequence[int] | int, max_size: int, sampling: Literal["choice", "range"] = "choice"
    ) -> None:
        lengths = (short_edge_lengths,) if isinstance(short_edge_lengths, int) else tuple(int(s) for s in short_edge_lengths)
        if sampling not in ("choice", "range"):
            raise ValueError(f"sampling must be 'choice' or 'range', got {sampling!r}")
        if not lengths or min(lengths) <= 0 or max_size <= 0:
            raise ValueError(f"short edge lengths and max_size must be positive, got {lengths} and {max_size}")
        if sampling == "range" and (len(lengths) != 2 or lengths[0] > lengths[1]):
            raise ValueError(f"sampling='range' needs (min, max) short edge lengths, got {lengths}")
        self.short_edge_lengths = lengths
        self.max_size = int(max_size)
        self.sampling = sampling

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        if self.sampling == "choice":
            short_edge = int(rng.choice(self.short_edge_lengths))
        else:
            short_edge = _random_integer(rng, self.short_edge_lengths[0], self.short_edge_lengths[1] + 1)
        height, width = sample.image_size
        return resize_sample(sample, *shortest_edge_size(height, width, short_edge, self.max_size))

    def __repr__(self) -> str:
        return f"ResizeShortestEdge(short_edge_lengths={self.short_edge_lengths}, max_size={self.max_size}, sampling={self.sampling!r})"


class RandomHorizontalFlip:
    """Flip with probability ``prob``; one ``rng.random()`` draw per call, whatever ``prob``."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = float(prob)

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        return hflip_sample(sample) if float(rng.random()) < self.prob else sample

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


class RandomCrop:
    """Crop a random window (detectron2's ``RandomCrop`` semantics; sizes are ``(h, w)``).

    * ``"relative"``: the window is ``crop_size = (fh, fw)`` times the image size;
    * ``"relative_range"``: each factor uniform in ``[crop_size[k], 1]``;
    * ``"absolute"``: ``crop_size = (h, w)`` pixels (at most the image size);
    * ``"absolute_range"``: ``crop_size = (min, max)``, height and width each a uniform
      integer in ``[min, max]`` (at most the image size).

    Relative sizes round as ``int(x + 0.5)``. The offset is a uniform integer (top first,
    then left). Instances whose clipped box vanishes are dropped; points outside get -1.
    """

    def __init__(self, crop_type: CropType, crop_size: Sequence[float]) -> None:
        if crop_type not in ("relative", "relative_range", "absolute", "absolute_range"):
            raise ValueError(f"unknown crop_type {crop_type!r}")
        size = tuple(crop_size)
        if len(size) != 2:
            raise ValueError(f"crop_size must have 2 values, got {crop_size!r}")
        if crop_type.startswith("relative") and not all(0.0 < s <= 1.0 for s in size):
            raise ValueError(f"relative crop sizes must be in (0, 1], got {size}")
        if crop_type.startswith("absolute") and not all(int(s) == s and s > 0 for s in size):
            raise ValueError(f"absolute crop sizes must be positive integers, got {size}")
        if crop_type == "absolute_range" and size[0] > size[1]:
            raise ValueError(f"absolute_range needs min <= max, got {size}")
        self.crop_type: CropType = crop_type
        self.crop_size = size

    def crop_shape(self, height: int, width: int, rng: RandomSource) -> tuple[int, int]:
        """The window ``(h, w)`` for an image of ``height x width``."""
        if self.crop_type == "relative":
            fh, fw = self.crop_size
            return int(height * fh + 0.5), int(width * fw + 0.5)
        if self.crop_type == "relative_range":
            low_fraction = np.asarray(self.crop_size, dtype=np.float64)
            fh, fw = low_fraction + rng.random(2) * (1.0 - low_fraction)
            return int(height * fh + 0.5), int(width * fw + 0.5)
        if self.crop_type == "absolute":
            return min(int(self.crop_size[0]), height), min(int(self.crop_size[1]), width)
        low, high = int(self.crop_size[0]), int(self.crop_size[1])
        crop_height = _random_integer(rng, min(height, low), min(height, high) + 1)
        crop_width = _random_integer(rng, min(width, low), min(width, high) + 1)
        return crop_height, crop_width

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        height, width = sample.image_size
        crop_height, crop_width = self.crop_shape(height, width, rng)
        crop_height, crop_width = max(crop_height, 1), max(crop_width, 1)
        top = _random_integer(rng, 0, height - crop_height + 1)
        left = _random_integer(rng, 0, width - crop_width + 1)
        return crop_sample(sample, top, left, crop_height, crop_width)

    def __repr__(self) -> str:
        return f"RandomCrop(crop_type={self.crop_type!r}, crop_size={self.crop_size})"


class LargeScaleJitter:
    """Large-scale jitter (detectron2's ``ResizeScale`` + ``FixedSizeCrop`` without padding).

    Draws ``s ~ U(min_scale, max_scale)`` and resizes, keeping the aspect ratio, to the largest
    size that fits an ``s * output_size`` square (sides rounded half to even, as ``np.round``).
    A side longer than ``output_size`` is then cropped to it at offset
    ``round((side - output_size) * u)`` with one ``u ~ U(0, 1)`` for both axes. Smaller
    images are not padded here (the model's batching pads).
    """

    def __init__(self, output_size: int, min_scale: float = 0.1, max_scale: float = 2.0) -> None:
        if output_size <= 0 or not 0.0 < min_scale <= max_scale:
            raise ValueError(f"need output_size > 0 and 0 < min_scale <= max_scale, got {output_size}, {min_scale}, {max_scale}")
        self.output_size = int(output_size)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        height, width = sample.image_size
        target = self.output_size * float(rng.uniform(self.min_scale, self.max_scale))
        scale = min(target / height, target / width)
        new_height = max(int(np.round(height * scale)), 1)
        new_width = max(int(np.round(width * scale)), 1)
        sample = resize_sample(sample, new_height, new_width)
        crop_height, crop_width = min(new_height, self.output_size), min(new_width, self.output_size)
        if (crop_height, crop_width) == (new_height, new_width):
            return sample
        fraction = float(rng.uniform(0.0, 1.0))
        top = int(np.round((new_height - crop_height) * fraction))
        left = int(np.round((new_width - crop_width) * fraction))
        return crop_sample(sample, top, left, crop_height, crop_width)

    def __repr__(self) -> str:
        return f"LargeScaleJitter(output_size={self.output_size}, min_scale={self.min_scale}, max_scale={self.max_scale})"


class PointSubsample:
    """Keep ``num_points`` random points per instance, redrawn at every call (0 keeps all).

    Per instance, ``rng.choice(P, num_points, replace=(P < num_points))`` in instance order, as
    the reference; ignored points (label -1, including padding) can be drawn. Samples without
    points (P = 0) pass unchanged.
    """

    def __init__(self, num_points: int) -> None:
        if num_points < 0:
            raise ValueError(f"num_points must be >= 0, got {num_points}")
        self.num_points = int(num_points)

    def __call__(self, sample: Sample, rng: RandomSource) -> Sample:
        targets = sample.targets
        if self.num_points == 0 or targets is None or targets.num_points == 0:
            return sample
        total = targets.num_points
        rows = [rng.choice(total, self.num_points, replace=total < self.num_points) for _ in range(len(targets))]
        index = torch.from_numpy(np.array(rows, dtype=np.int64).reshape(len(targets), self.num_points))
        coords = torch.gather(targets.point_coords, 1, index[..., None].expand(-1, -1, 2))
        labels = torch.gather(targets.point_labels, 1, index)
        return sample.with_targets(replace(targets, point_coords=coords, point_labels=labels))

    def __repr__(self) -> str:
        return f"PointSubsample(num_points={self.num_points})"


# ----------------------------------------------------------------------------------------
# Builders


def _enabled_options(options: Mapping[str, object] | None) -> dict[str, object] | None:
    """Keyword arguments from a config section, None when absent or ``enabled: false``."""
    if options is None:
        return None
    options = dict(options)
    if not options.pop("enabled", True):
        return None
    return options


def build_train_transforms(
    min_size_train: Sequence[int] | int,
    max_size_train: int,
    sampling: Literal["choice", "range"] = "choice",
    flip_prob: float = 0.5,
    crop: Mapping[str, object] | None = None,
    lsj: Mapping[str, object] | None = None,
    sample_points: int = 0,
) -> Compose:
    """The training pipeline: [crop] -> resize (shortest edge, or LSJ) -> flip -> [point subsample].

    Args:
        min_size_train, max_size_train, sampling: the :class:`ResizeShortestEdge` arguments
            (unused when ``lsj`` is given).
        flip_prob: horizontal flip probability.
        crop: :class:`RandomCrop` keyword arguments (``crop_type``, ``crop_size``), applied
            first as in detectron2; None (or ``enabled: false``) for no crop.
        lsj: :class:`LargeScaleJitter` keyword arguments (``output_size``, ``min_scale``,
            ``max_scale``); replaces the shortest-edge resize.
        sample_points: points kept per instance per iteration (0 keeps all).
    """
    transforms: list[Transform] = []
    crop_options, lsj_options = _enabled_options(crop), _enabled_options(lsj)
    if crop_options is not None:
        transforms.append(RandomCrop(**crop_options))  # type: ignore[arg-type]
    if lsj_options is not None:
        transforms.append(LargeScaleJitter(**lsj_options))  # type: ignore[arg-type]
    else:
        transforms.append(ResizeShortestEdge(min_size_train, max_size_train, sampling))
    transforms.append(RandomHorizontalFlip(flip_prob))
    if sample_points > 0:
        transforms.append(PointSubsample(sample_points))
    return Compose(transforms)


def build_test_transforms(min_size_test: int, max_size_test: int) -> Compose:
    """The evaluation pipeline: a fixed shortest-edge resize."""
    return Compose([ResizeShortestEdge((int(min_size_test),), max_size_test, "choice")])
