"""benchmarks/data_path.py on a tiny generated COCO set (JPEG photos, polygon masks, a crowd region):
every row is timed, all images are used, and the reference-style path produces pointsup's shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import data_path

#: (height, width) of the generated images: a landscape one that hits --max-size, a portrait one, a square one
IMAGE_SIZES = ((50, 70), (61, 45), (40, 40))
#: --min-size 96 --max-size 120: sizes that need rounding and the long-side limit
SIZE_ARGS = ["--min-size", "96", "--max-size", "120"]
HAS_OPENCV = data_path.load_opencv() is not None

# torchvision 0.29 deprecates its image decoders (for TorchCodec); the benchmark still times them
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning")


def rectangle(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a 0/1 mask: run lengths in column-major order, zeros first."""
    flat = mask.ravel(order="F")
    bounds = np.r_[0, np.flatnonzero(flat[1:] != flat[:-1]) + 1, flat.size]
    counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": counts}


def object_annotations(ann_id: int, image_id: int, height: int, width: int) -> list[dict]:
    """Two polygon objects (a rectangle and a triangle) and one crowd region (uncompressed RLE)."""
    triangle = [width * 0.5, height * 0.2, width * 0.9, height * 0.8, width * 0.3, height * 0.9]
    xs, ys = triangle[0::2], triangle[1::2]
    crowd = np.zeros((height, width), dtype=np.uint8)
    crowd[: height // 4, : width // 4] = 1
    return [
        {"id": ann_id, "image_id": image_id, "category_id": 9, "bbox": [2.0, 3.0, width / 3, height / 3], "iscrowd": 0,
         "area": width * height / 9, "segmentation": [rectangle(2.0, 3.0, width / 3, height / 3)]},
        {"id": ann_id + 1, "image_id": image_id, "category_id": 4, "iscrowd": 0, "area": 100.0,
         "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], "segmentation": [triangle]},
        {"id": ann_id + 2, "image_id": image_id, "category_id": 4, "iscrowd": 1, "area": float(crowd.sum()),
         "bbox": [0.0, 0.0, width / 4, height / 4], "segmentation": uncompressed_rle(crowd)},
    ]  # fmt: skip


def write_tiny_coco(root: Path) -> tuple[Path, Path]:
    """Random JPEG images of :data:`IMAGE_SIZES` and their COCO file: (JSON, image folder)."""
    images_dir = root / "images"
    images_dir.mkdir()
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id, (height, width) in enumerate(IMAGE_SIZES, start=1):
        name = f"{image_id:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(images_dir / name, quality=90)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        annotations += object_annotations(10 * image_id, image_id, height, width)
    categories = [{"id": 9, "name": "nine"}, {"id": 4, "name": "four"}]
    json_path = root / "instances.json"
    json_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return json_path, images_dir


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> str:
    json_path, images_dir = write_tiny_coco(tmp_path_factory.mktemp("tiny_coco"))
    return f"{json_path}:{images_dir}"


def run_summary(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    """Run main(), return its JSON summary (the last line) and everything printed."""
    assert data_path.main(argv) == 0
    printed = capsys.readouterr().out
    return json.loads(printed.strip().splitlines()[-1]), printed


@pytest.mark.parametrize("supervision", ["masks", "points"])
def test_every_row_is_timed_on_every_image(tiny_coco: str, supervision: str, capsys: pytest.CaptureFixture[str]) -> None:
    summary, printed = run_summary(["--coco", tiny_coco, "--repeats", "1", "--supervision", supervision, *SIZE_ARGS], capsys)
    assert summary["images"] == len(IMAGE_SIZES) and summary["supervision"] == supervision
    names = {row["name"] for row in summary["rows"]}
    expected = {"decode/pointsup", "decode/torchvision", "sample/pointsup", "sample/torchvision"}
    expected |= {"sample/pointsup/load", "sample/pointsup/augment"}
    if HAS_OPENCV:
        expected |= {"decode/opencv", "sample/reference", "sample/reference/load", "sample/reference/augment"}
    assert expected <= names
    assert all(row["ms_per_image"] > 0 and len(row["ms_per_repeat"]) == 1 for row in summary["rows"])
    ratios = {row["name"]: row["vs_pointsup"] for row in summary["rows"]}
    assert ratios["decode/pointsup"] == ratios["sample/pointsup"] == 1.0
    assert f"{len(IMAGE_SIZES)} images" in printed and "verdict: " in printed
    if HAS_OPENCV:
        reference = summary["like_for_like"]["sample/reference"]
        assert reference["images"] == reference["same_shapes"] == len(IMAGE_SIZES), reference["differences"]
        assert reference["max_box_difference_px"] < data_path.BOX_TOLERANCE_PX


@pytest.mark.skipif(not HAS_OPENCV, reason="OpenCV is not installed")
def test_reference_style_sample_matches_pointsups_for_the_same_image(tiny_coco: str, tmp_path: Path) -> None:
    args = data_path.parse_args(["--coco", tiny_coco, *SIZE_ARGS])
    setup = data_path.build_setup(args, tmp_path)
    pointsup, reference = setup.paths["sample/pointsup"], setup.paths["sample/reference"]
    for entry in setup.entries:
        ours = pointsup.augment(pointsup.load(entry), entry)
        theirs = reference.augment(reference.load(entry), entry)
        shapes = pointsup.shapes(ours)
        assert reference.shapes(theirs) == shapes
        assert shapes.boxes == (2, 4) and shapes.masks is not None and shapes.masks[1:] == shapes.image[1:]  # crowd dropped
        assert theirs.image.dtype == ours.image.dtype and theirs.masks.dtype == ours.targets.masks.dtype
        assert theirs.classes.tolist() == ours.targets.classes.tolist() == [1, 0]  # category 9 -> 1, 4 -> 0


def test_without_opencv_its_rows_are_skipped_with_a_hint(
    tiny_coco: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(data_path, "load_opencv", lambda: None)
    summary, printed = run_summary(["--coco", tiny_coco, "--repeats", "1", "--images", "2", *SIZE_ARGS], capsys)
    assert summary["images"] == 2
    assert not any("opencv" in row["name"] or "reference" in row["name"] for row in summary["rows"])
    assert data_path.OPENCV_HINT in printed and summary["notes"]


def test_the_callers_thread_count_is_restored(tiny_coco: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark times one thread but hands the process back as it found it: a test that
    trains after it in the same process (the killed-and-resumed run compared with a subprocess's)
    would otherwise run on one thread and round differently."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        summary, _ = run_summary(["--coco", tiny_coco, "--repeats", "1", "--images", "1", *SIZE_ARGS], capsys)
        assert summary["threads"] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
