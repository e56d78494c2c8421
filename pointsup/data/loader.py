"""Data loaders: an infinite, resumable, sharded training stream and a sharded test pass.

Training stream. Global stream position ``k = 0, 1, 2, ...`` holds dataset item
``order(k)``: the stream is an endless run of epochs, epoch ``e`` being the permutation drawn
from ``numpy.random.default_rng([seed, e])``. Global batch ``b`` is positions
``[b * G, (b + 1) * G)`` with ``G = images_per_batch * world_size``; rank ``r`` takes every
``world_size``-th of them starting at ``r``. The sample at position ``k`` is augmented with
``numpy.random.default_rng([seed, k])``. So the batches depend only on ``(seed, rank,
world_size, images_per_batch)``, not on the number of workers, and ``start_iter`` resumes
exactly by starting at position ``start_iter * G`` without loading the skipped images.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pointsup.data.transforms import Transform
from pointsup.structures.instances import Sample


def _keep_list(batch: list[Sample]) -> list[Sample]:
    """Collate: a batch is the list of its samples (images differ in size; no stacking)."""
    return batch


def _seed_worker(worker_id: int) -> None:
    """Seed Python's and NumPy's global RNGs from the worker's torch seed (which the
    DataLoader derives from its seeded generator and the worker id). The transforms do not
    use global RNGs; this only makes any other use of them reproducible."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class _StreamPositions(Sampler[int]):
    """This rank's global stream positions ``k = m * world_size + rank`` for ``m >= first``."""

    def __init__(self, rank: int, world_size: int, first: int) -> None:
        self.rank, self.world_size, self.first = rank, world_size, first

    def __iter__(self) -> Iterator[int]:
        m = self.first
        while True:
            yield m * self.world_size + self.rank
            m += 1


class _AugmentedStream(Dataset[Sample]):
    """Item ``k``: the dataset item at stream position ``k``, augmented with rng ``[seed, k]``."""

    def __init__(self, dataset: Dataset[Sample], transforms: Transform, seed: int) -> None:
        self.dataset, self.transforms, self.seed = dataset, transforms, seed
        self.size = len(dataset)  # type: ignore[arg-type]
        self._epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def dataset_index(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._epoch = epoch
        return int(self._order[offset])

    def __getitem__(self, position: int) -> Sample:
        sample = self.dataset[self.dataset_index(position)]
        return self.transforms(sample, np.random.default_rng([self.seed, position]))

    def __len__(self) -> int:
        return self.size


def _check_shard(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")


def build_train_loader(
    dataset: Dataset[Sample],
    transforms: Transform,
    images_per_batch: int,
    num_workers: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    start_iter: int = 0,
) -> Iterator[list[Sample]]:
    """An endless iterator of this rank's training batches (see the module notes).

    Args:
        dataset: items are :class:`~pointsup.structures.Sample` (e.g. an ``InstanceDataset``).
        transforms: called as ``transforms(sample, rng)``.
        images_per_batch: images per batch *on this process*.
        num_workers: DataLoader worker processes (0: load in this process); the batches do
            not depend on it. Workers are persistent.
        seed: non-negative; fixes the order and the augmentations.
        rank, world_size: this process's shard of each global batch.
        start_iter: the first batch to produce (resuming after ``start_iter`` iterations).

    Yields:
        lists of ``images_per_batch`` samples.

    Raises:
        ValueError: an empty dataset or invalid arguments. Errors raised while loading an
            item (e.g. :class:`~pointsup.data.dataset.ImageReadError`) propagate from the
            iterator, from worker processes too.
    """
    _check_shard(rank, world_size)
    if images_per_batch < 1 or num_workers < 0 or seed < 0 or start_iter < 0:
        raise ValueError(
            f"need images_per_batch >= 1, num_workers >= 0, seed >= 0, start_iter >= 0; got "
            f"{images_per_batch}, {num_workers}, {seed}, {start_iter}"
        )
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ValueError("the training dataset is empty")
    stream = _AugmentedStream(dataset, transforms, seed)
    positions = _StreamPositions(rank, world_size, first=start_iter * images_per_batch)
    worker_seed = int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
    loader = DataLoader(
        stream,
        batch_size=images_per_batch,
        sampler=positions,
        num_workers=num_workers,
        collate_fn=_keep_list,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(worker_seed),
        persistent_workers=num_workers > 0,
    )
    return _endless(loader)


def _endless(loader: DataLoader) -> Iterator[list[Sample]]:
    yield from loader  # the sampler never ends; the generator keeps the loader alive


class _TransformedItems(Dataset[Sample]):
    """Items ``indices[i]`` of ``dataset``, transformed with rng ``[0, index]`` (test time)."""

    def __init__(self, dataset: Dataset[Sample], transforms: Transform, indices: Sequence[int]) -> None:
        self.dataset, self.transforms, self.indices = dataset, transforms, list(indices)

    def __getitem__(self, i: int) -> Sample:
        index = self.indices[i]
        return self.transforms(self.dataset[index], np.random.default_rng([0, index]))

    def __len__(self) -> int:
        return len(self.indices)


def shard_range(num_items: int, rank: int, world_size: int) -> range:
    """The contiguous slice of ``range(num_items)`` for ``rank``: the slices of all ranks
    cover every item exactly once and their sizes differ by at most one."""
    _check_shard(rank, world_size)
    base, extra = divmod(num_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def build_test_loader(
    dataset: Dataset[Sample],
    transforms: Transform,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A loader over this rank's contiguous shard (see :func:`shard_range`), in order.

    Yields lists of one :class:`~pointsup.structures.Sample`. Sample ``index`` is
    transformed with ``numpy.random.default_rng([0, index])`` (test transforms are usually
    deterministic anyway).
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    items = _TransformedItems(dataset, transforms, shard_range(len(dataset), rank, world_size))  # type: ignore[arg-type]
    return DataLoader(
        items, batch_size=1, shuffle=False, num_workers=num_workers, collate_fn=_keep_list, worker_init_fn=_seed_worker
    )
