"""Tests of InstanceDataset and read_image (pointsup.data.dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from pointsup.data.dataset import AnnotationError, ImageReadError, ImageSizeError, InstanceDataset, read_image
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.points.format import PointFormatError
from pointsup.points.simulate import SimulationConfig, as_json_lists, simulate

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """A synthetic dataset with simulated points *and* masks: (json path, image root, coco dict)."""
    root = tmp_path_factory.mktemp("synthetic")
    data = generate_synthetic_dataset(root, num_images=4, image_size=64, val_fraction=0.0, show_progress=False)
    coco = json.loads(Path(data.train_json).read_text())
    points = as_json_lists(simulate(coco, SimulationConfig(num_points=10, seed=3, keep_masks=True)).coco)
    path = root / "points_and_masks.json"
    path.write_text(json.dumps(points))
    return path, Path(data.image_dir), points


def _write_images(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    """Random RGB images; ``sizes`` maps file names to (height, width)."""
    rng = np.random.default_rng(0)
    for name, (height, width) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / name)


def _crafted(tmp_path: Path, annotations: list[dict], images: list[dict] | None = None) -> Path:
    """A COCO file with sparse category ids 3, 7, 12 (labels 0, 1, 2) and its images."""
    images = images or [{"id": 10, "file_name": "a.png", "height": 30, "width": 40}]
    _write_images(tmp_path, {im["file_name"]: (im["height"], im["width"]) for im in images})
    categories = [{"id": 12, "name": "twelve"}, {"id": 3, "name": "three"}, {"id": 7, "name": "seven"}]
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def _annotation(ann_id: int, category_id: int, bbox: list[float], points: list[list[int]] | None = None, **fields) -> dict:
    ann = {"id": ann_id, "image_id": 10, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **fields}
    if points is not None:
        ann["point_coords"] = points
        ann["point_labels"] = [k % 2 for k in range(len(points))]
    return ann


def test_points_items_follow_the_json(synthetic: tuple[Path, Path, dict]) -> None:
    path, image_root, coco = synthetic
    dataset = InstanceDataset(path, image_root, supervision="points", filter_empty=True)
    assert dataset.image_ids == [im["id"] for im in coco["images"]]
    assert dataset.num_classes == len(coco["categories"])
    by_id = {ann["id"]: ann for ann in coco["annotations"]}
    for index in range(len(dataset)):
        sample = dataset[index]
        record = coco["images"][index]
        assert sample.image.dtype == torch.uint8 and sample.image.shape == (3, record["height"], record["width"])
        assert sample.original_size == (record["height"], record["width"])
        expected_pixels = np.asarray(Image.open(image_root / record["file_name"]).convert("RGB")).transpose(2, 0, 1)
        assert torch.equal(sample.image, torch.from_numpy(expected_pixels.copy()))
        targets = sample.targets
        assert targets is not None and len(targets) == sum(a["image_id"] == record["id"] for a in coco["annotations"])
        for row, ann_id in enumerate(targets.annotation_ids.tolist()):
            ann = by_id[ann_id]
            x, y, w, h = ann["bbox"]
            assert targets.boxes[row].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-4)
            assert dataset.label_to_category_id[int(targets.classes[row])] == ann["category_id"]
            assert targets.point_coords.dtype == torch.float32 and targets.point_labels.dtype == torch.float32
            assert targets.point_coords[row].tolist() == (np.array(ann["point_coords"]) + 0.5).tolist()
            assert targets.point_labels[row].tolist() == ann["point_labels"]
        assert targets.masks is None


def test_mask_mode_decodes_masks_that_agree_with_the_points(synthetic: tuple[Path, Path, dict]) -> None:
    path, image_root, coco = synthetic
    masks_dataset = InstanceDataset(path, image_root, supervision="masks", filter_empty=True)
    points_dataset = InstanceDataset(path, image_root, supervision="points", filter_empty=True)
    by_id = {ann["id"]: ann for ann in coco["annotations"]}
    for index in range(len(masks_dataset)):
        targets = masks_dataset[index].targets
        point_targets = points_dataset[index].targets
        assert targets is not None and point_targets is not None and targets.masks is not None
        assert targets.num_points == 0 and targets.masks.dtype == torch.uint8
        for row, ann_id in enumerate(targets.annotation_ids.tolist()):
            expected = mask_utils.decode(by_id[ann_id]["segmentation"])
            assert np.array_equal(targets.masks[row].numpy(), expected)
            # The simulated label of each point is the mask at the pixel holding the point.
            pixels = point_targets.point_coords[row].floor().long()
            read = targets.masks[row][pixels[:, 1], pixels[:, 0]].float()
            assert torch.equal(read, point_targets.point_labels[row])


def test_category_ids_map_to_sorted_contiguous_labels(tmp_path: Path) -> None:
    anns = [_annotation(1, 12, [0, 0, 10, 10], [[1, 1]]), _annotation(2, 3, [5, 5, 10, 10], [[6, 6]])]
    dataset = InstanceDataset(_crafted(tmp_path, anns), tmp_path, supervision="points")
    assert dataset.label_to_category_id == [3, 7, 12]
    assert dataset.category_names == ["three", "seven", "twelve"]
    assert dataset.category_id_to_label == {3: 0, 7: 1, 12: 2}
    assert dataset[0].targets.classes.tolist() == [2, 0]
    assert dataset.source == str(tmp_path / "crafted.json")


def test_boxes_are_clipped_and_crowds_excluded(tmp_path: Path) -> None:
    anns = [
        _annotation(1, 3, [-0.5, 2.0, 10.0, 28.75], [[0, 3]]),  # overshoots left and bottom (within tolerance)
        _annotation(2, 3, [1, 1, 5, 5], None, iscrowd=1),
    ]
    dataset = InstanceDataset(_crafted(tmp_path, anns), tmp_path, supervision="points")
    targets = dataset[0].targets
    assert targets.annotation_ids.tolist() == [1]
    assert targets.boxes.tolist() == [[0.0, 2.0, 9.5, 30.0]]


def test_filter_empty_drops_images_with_only_crowds(tmp_path: Path) -> None:
    images = [
        {"id": 10, "file_name": "a.png", "height": 30, "width": 40},
        {"id": 11, "file_name": "b.png", "height": 20, "width": 20},
        {"id": 12, "file_name": "c.png", "height": 20, "width": 25},
    ]
    anns = [_annotation(1, 3, [0, 0, 10, 10], [[1, 1]]), {**_annotation(2, 7, [0, 0, 5, 5], None, iscrowd=1), "image_id": 11}]
    path = _crafted(tmp_path, anns, images)
    assert InstanceDataset(path, tmp_path, "points", filter_empty=True).image_ids == [10]
    everything = InstanceDataset(path, tmp_path, "points", filter_empty=False)
    assert everything.image_ids == [10, 11, 12]
    assert [im.file_name for im in everything.images] == ["a.png", "b.png", "c.png"]
    empty = everything[1].targets
    assert len(empty) == 0 and empty.boxes.shape == (0, 4) and empty.point_coords.shape == (0, 0, 2)


def test_short_and_empty_point_lists_are_padded_with_ignore(tmp_path: Path) -> None:
    anns = [
        _annotation(1, 3, [0, 0, 20, 20], [[1, 1], [2, 2], [3, 3]]),
        _annotation(2, 7, [0, 0, 20, 20], [[4, 5]]),
        _annotation(3, 12, [5, 5, 20, 20], []),
    ]
    targets = InstanceDataset(_crafted(tmp_path, anns), tmp_path, "points")[0].targets
    assert targets.annotation_ids.tolist() == [1, 2, 3]
    assert targets.point_coords.shape == (3, 3, 2)
    assert targets.point_labels.tolist() == [[0, 1, 0], [0, -1, -1], [-1, -1, -1]]
    assert targets.point_coords[1, 0].tolist() == [4.5, 5.5]


def test_supervision_none_and_without_targets(synthetic: tuple[Path, Path, dict]) -> None:
    path, image_root, _ = synthetic
    dataset = InstanceDataset(path, image_root, supervision="none", filter_empty=False)
    targets = dataset[0].targets
    assert targets.num_points == 0 and targets.masks is None and len(targets) > 0
    images_only = dataset.without_targets()
    assert images_only[0].targets is None and torch.equal(images_only[0].image, dataset[0].image)
    assert dataset[0].targets is not None  # the original is unchanged


def test_mask_mode_requires_segmentations(synthetic: tuple[Path, Path, dict], tmp_path: Path) -> None:
    path, image_root, coco = synthetic
    stripped = json.loads(json.dumps(coco))
    victim = stripped["annotations"][1]
    del victim["segmentation"]
    broken = tmp_path / "no_masks.json"
    broken.write_text(json.dumps(stripped))
    with pytest.raises(PointFormatError, match=rf"annotation id {victim['id']}: no segmentation") as info:
        InstanceDataset(broken, image_root, supervision="masks")
    assert str(broken) in str(info.value)
    InstanceDataset(broken, image_root, supervision="points")  # points do not need masks


def test_polygon_and_uncompressed_rle_masks(tmp_path: Path) -> None:
    height, width = 30, 40
    reference = np.zeros((height, width), dtype=np.uint8, order="F")
    reference[3:9, 5:20] = 1
    counts = _uncompressed_counts(reference)
    anns = [
        _annotation(1, 3, [2, 2, 10, 10], None, segmentation=[[2, 2, 12, 2, 12, 12, 2, 12]]),
        _annotation(2, 7, [5, 3, 15, 6], None, segmentation={"size": [height, width], "counts": counts}),
    ]
    targets = InstanceDataset(_crafted(tmp_path, anns), tmp_path, "masks")[0].targets
    polygon = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([[2, 2, 12, 2, 12, 12, 2, 12]], height, width)))
    assert np.array_equal(targets.masks[0].numpy(), polygon)
    assert np.array_equal(targets.masks[1].numpy(), reference)


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a mask (column-major runs starting with zeros)."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] == 1 else runs


def test_undecodable_mask_names_the_annotation(tmp_path: Path) -> None:
    anns = [_annotation(5, 3, [2, 2, 10, 10], None, segmentation={"size": [30, 40], "counts": [7, 3]})]
    dataset = InstanceDataset(_crafted(tmp_path, anns), tmp_path, "masks")
    with pytest.raises(AnnotationError, match="annotation id 5"):
        dataset[0]


def test_points_mode_rejects_annotations_without_points(tmp_path: Path) -> None:
    anns = [_annotation(1, 3, [0, 0, 10, 10], [[1, 1]]), _annotation(42, 3, [0, 0, 10, 10], None)]
    path = _crafted(tmp_path, anns)
    with pytest.raises(PointFormatError, match="annotation id 42: missing point_coords"):
        InstanceDataset(path, tmp_path, "points")
    assert InstanceDataset(path, tmp_path, "none")[0].targets.num_points == 0


def test_missing_corrupt_and_resized_images(tmp_path: Path) -> None:
    images = [
        {"id": 10, "file_name": "a.png", "height": 30, "width": 40},
        {"id": 11, "file_name": "gone.png", "height": 30, "width": 40},
        {"id": 12, "file_name": "corrupt.jpg", "height": 30, "width": 40},
        {"id": 13, "file_name": "small.png", "height": 30, "width": 40},
    ]
    path = _crafted(tmp_path, [], images)
    (tmp_path / "gone.png").unlink()
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    _write_images(tmp_path, {"small.png": (20, 40)})
    dataset = InstanceDataset(path, tmp_path, "points", filter_empty=False)
    assert dataset[0].image.shape == (3, 30, 40)
    with pytest.raises(ImageReadError, match=r"gone\.png \(image id 11\): file not found"):
        dataset[1]
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg \(image id 12\): cannot decode"):
        dataset[2]
    with pytest.raises(ImageSizeError, match=r"small\.png \(image id 13\) is 40x20 .* says 40x30"):
        dataset[3]
    assert issubclass(ImageReadError, OSError)


def test_read_image_ignores_exif_orientation_and_converts_to_rgb(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.png", exif=exif)
    image = read_image(tmp_path / "rotated.png")
    assert image.shape == (3, 12, 20) and torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1))
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.png")
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (3, 12, 20) and torch.equal(grey[0], grey[2]) and torch.equal(grey[1], torch.from_numpy(pixels[..., 0]))


def test_rejects_unknown_supervision(synthetic: tuple[Path, Path, dict]) -> None:
    path, image_root, _ = synthetic
    with pytest.raises(ValueError, match="supervision must be one of"):
        InstanceDataset(path, image_root, supervision="boxes")  # type: ignore[arg-type]
