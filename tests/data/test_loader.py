"""Tests of the training and test loaders (pointsup.data.loader)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from pointsup.data.dataset import ImageReadError, InstanceDataset
from pointsup.data.loader import build_test_loader, build_train_loader, shard_range
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.data.transforms import build_test_transforms, build_train_transforms
from pointsup.points.simulate import SimulationConfig, as_json_lists, simulate
from pointsup.structures.instances import Sample

NUM_IMAGES = 6
TRANSFORMS = build_train_transforms(
    [40, 48, 56], 64, "choice", 0.5, crop={"crop_type": "relative_range", "crop_size": (0.6, 0.6)}, sample_points=3
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> InstanceDataset:
    root = tmp_path_factory.mktemp("loader")
    data = generate_synthetic_dataset(root, num_images=NUM_IMAGES, image_size=64, val_fraction=0.0, show_progress=False)
    coco = json.loads(Path(data.train_json).read_text())
    path = root / "points.json"
    path.write_text(json.dumps(as_json_lists(simulate(coco, SimulationConfig(num_points=6, seed=1)).coco)))
    return InstanceDataset(path, data.image_dir, supervision="points", filter_empty=True)


class CountingDataset(torch.utils.data.Dataset):
    """Wraps a dataset and records which items were loaded (in this process)."""

    def __init__(self, inner: InstanceDataset) -> None:
        self.inner = inner
        self.loaded: list[int] = []

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Sample:
        self.loaded.append(index)
        return self.inner[index]


def take(loader, count: int) -> list[list[Sample]]:
    return list(itertools.islice(loader, count))


def assert_same_samples(first: list[Sample], second: list[Sample]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert a.image_id == b.image_id
        assert torch.equal(a.image, b.image)
        assert torch.equal(a.targets.boxes, b.targets.boxes)
        assert torch.equal(a.targets.point_coords, b.targets.point_coords)
        assert torch.equal(a.targets.point_labels, b.targets.point_labels)


def test_same_seed_same_batches_whatever_the_workers(dataset: InstanceDataset) -> None:
    serial = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=5), 5)
    again = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=5), 5)
    parallel = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=2, seed=5), 5)
    assert all(len(batch) == 2 for batch in serial)
    for a, b, c in zip(serial, again, parallel):
        assert_same_samples(a, b)
        assert_same_samples(a, c)
    other = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=6), 5)
    flat = lambda batches: [s.image_id for batch in batches for s in batch]  # noqa: E731
    assert flat(other) != flat(serial)


def test_each_epoch_is_a_permutation(dataset: InstanceDataset) -> None:
    batches = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=3, num_workers=0, seed=0), 6)
    ids = [s.image_id for batch in batches for s in batch]
    epochs = [ids[k : k + NUM_IMAGES] for k in range(0, len(ids), NUM_IMAGES)]
    assert all(sorted(epoch) == sorted(dataset.image_ids) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) > 1  # reshuffled every epoch


def test_resume_skips_without_loading(dataset: InstanceDataset) -> None:
    fresh = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=3), 7)
    counting = CountingDataset(dataset)
    resumed = take(build_train_loader(counting, TRANSFORMS, images_per_batch=2, num_workers=0, seed=3, start_iter=4), 3)
    for a, b in zip(fresh[4:], resumed):
        assert_same_samples(a, b)
    assert len(counting.loaded) == 6  # only the 3 batches taken, none of the 4 skipped
    far = CountingDataset(dataset)
    take(build_train_loader(far, TRANSFORMS, images_per_batch=2, num_workers=0, seed=3, start_iter=10**9), 1)
    assert len(far.loaded) == 2


def test_ranks_split_each_global_batch(dataset: InstanceDataset) -> None:
    """Rank r of 2 gets global positions r, r + 2, ... of the single-process stream."""
    single = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=4, num_workers=0, seed=9), 3)
    ranks = [take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=9, rank=r, world_size=2), 3) for r in range(2)]
    for step, global_batch in enumerate(single):
        assert_same_samples(global_batch[0::2], ranks[0][step])
        assert_same_samples(global_batch[1::2], ranks[1][step])
    resumed = take(build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=9, rank=1, world_size=2, start_iter=2), 1)
    assert_same_samples(resumed[0], ranks[1][2])


@pytest.mark.parametrize("num_items", [0, 1, 7, 9])
def test_shard_range_covers_everything_once(num_items: int) -> None:
    shards = [shard_range(num_items, rank, 3) for rank in range(3)]
    assert [i for shard in shards for i in shard] == list(range(num_items))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_test_loader_visits_every_image_once_across_ranks(dataset: InstanceDataset) -> None:
    images_only = dataset.without_targets()
    transforms = build_test_transforms(32, 64)
    seen = []
    for rank in range(4):
        loader = build_test_loader(images_only, transforms, num_workers=1 if rank == 0 else 0, rank=rank, world_size=4)
        for batch in loader:
            assert len(batch) == 1 and batch[0].targets is None and min(batch[0].image_size) == 32
            seen.append(batch[0].image_id)
    assert seen == dataset.image_ids


def test_worker_errors_name_the_missing_file(dataset: InstanceDataset, tmp_path: Path) -> None:
    broken = InstanceDataset(dataset.source, tmp_path, supervision="points")  # no images there
    loader = build_train_loader(broken, TRANSFORMS, images_per_batch=2, num_workers=1, seed=0)
    with pytest.raises(ImageReadError, match=rf"{tmp_path}/\d+\.png \(image id \d+\): file not found"):
        next(loader)
    # (A DataLoader whose worker raised takes 5 s to shut down: one worker test is enough.)
    test_loader = build_test_loader(broken, build_test_transforms(32, 64), num_workers=0)
    with pytest.raises(ImageReadError, match="file not found"):
        next(iter(test_loader))


def test_rejects_bad_arguments(dataset: InstanceDataset) -> None:
    with pytest.raises(ValueError, match="rank"):
        build_train_loader(dataset, TRANSFORMS, images_per_batch=2, num_workers=0, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="images_per_batch"):
        build_train_loader(dataset, TRANSFORMS, images_per_batch=0, num_workers=0, seed=0)
