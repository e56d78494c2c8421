"""Tests for pointsup.visualize (the ``pointsup show`` drawing)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from pointsup import visualize as vis
from pointsup.points.format import PointFormatError, load_point_dataset
from tests.conftest import DATASETS, require

# pycocotools' decode triggers a NumPy 2 DeprecationWarning that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

GREY = (128, 128, 128)
FRUITS = DATASETS / "fruits_nuts" / "data"


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(mask.shape), "counts": counts}


def _rect_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _make_dataset(root: Path) -> tuple[Path, Path]:
    """Image 1: 800x600 (scaled to 640x480), polygon + uncompressed RLE masks. Image 2: 300x200
    (not scaled), compressed RLE mask. Image 3: no annotations."""
    images_dir = root / "images"
    images_dir.mkdir()
    for name, size in (("a.png", (800, 600)), ("b.png", (300, 200)), ("c.png", (100, 100))):
        Image.new("RGB", size, GREY).save(images_dir / name)
    compressed = mask_utils.encode(np.asfortranarray(_rect_mask(200, 300, 150, 50, 250, 150)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    coco = {
        "images": [
            {"id": 3, "file_name": "c.png", "width": 100, "height": 100},
            {"id": 1, "file_name": "a.png", "width": 800, "height": 600},
            {"id": 2, "file_name": "b.png", "width": 300, "height": 200},
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [100, 100, 200, 200],
                "iscrowd": 0,
                "segmentation": [[100, 100, 300, 100, 300, 300, 100, 300]],
                "point_coords": [[200, 200], [50, 400]],
                "point_labels": [1, 0],
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 7,
                "bbox": [500, 100, 200, 200],
                "iscrowd": 0,
                "segmentation": _uncompressed_rle(_rect_mask(600, 800, 500, 100, 700, 300)),
                "point_coords": [[600, 200]],
                "point_labels": [1],
            },
            {
                "id": 12,
                "image_id": 2,
                "category_id": 7,
                "bbox": [150, 50, 100, 100],
                "iscrowd": 0,
                "segmentation": compressed,
                "point_coords": [[200, 100], [20, 180]],
                "point_labels": [1, 0],
            },
        ],
    }
    path = root / "points.json"
    path.write_text(json.dumps(coco))
    return path, images_dir


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    return _make_dataset(tmp_path)


def _tile_origin(index: int, cell_width: int, row_height: int) -> tuple[int, int]:
    """Top-left of tile ``index``'s image (below its title) in the grid."""
    row, col = divmod(index, vis.GRID_COLUMNS)
    x = vis.PADDING + col * (cell_width + vis.PADDING)
    y = 2 * vis.PADDING + vis.LEGEND_HEIGHT + row * (row_height + vis.PADDING) + vis.TITLE_HEIGHT
    return x, y


def test_grid_png_points_and_masks(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images_dir = dataset
    out = vis.show_annotations(annotations, images_dir, tmp_path / "out" / "grid.png")
    assert out == tmp_path / "out" / "grid.png"
    grid = np.asarray(Image.open(out).convert("RGB"))
    # Default choice: the annotated images 1 and 2 (image 3 has none), two columns.
    tile_h = 480 + vis.TITLE_HEIGHT
    assert grid.shape[1] == 2 * 640 + 3 * vis.PADDING
    assert grid.shape[0] == vis.LEGEND_HEIGHT + tile_h + 3 * vis.PADDING

    ox, oy = _tile_origin(0, 640, tile_h)
    at = lambda x, y, s=0.8: tuple(grid[oy + int((y + 0.5) * s), ox + int((x + 0.5) * s)])  # noqa: E731
    assert at(200, 200) == vis.OBJECT_POINT_COLOR
    assert at(600, 200) == vis.OBJECT_POINT_COLOR
    assert at(50, 400) == vis.BACKGROUND_POINT_COLOR
    assert at(150, 250) != GREY  # inside the polygon mask
    assert at(650, 270) != GREY  # inside the uncompressed RLE mask
    assert at(700, 550) == GREY  # far outside any mask
    assert at(400, 450) == GREY
    ox2, _ = _tile_origin(1, 640, tile_h)
    assert tuple(grid[oy + 100, ox2 + 200]) == vis.OBJECT_POINT_COLOR  # unscaled tile
    assert tuple(grid[oy + 180, ox2 + 20]) == vis.BACKGROUND_POINT_COLOR
    assert tuple(grid[oy + 120, ox2 + 170]) != GREY  # inside the compressed RLE mask
    assert tuple(grid[oy + 190, ox2 + 290]) == GREY


def test_markers_keep_their_size_after_scaling(dataset: tuple[Path, Path]) -> None:
    annotations, images_dir = dataset
    data = load_point_dataset(annotations, require_points=False)
    by_image, names = data.instances_by_image(), data.category_names()
    sizes = []
    for image_id, scale in ((1, 0.8), (2, 1.0)):
        record = data.images[image_id]
        image = Image.new("RGB", (record.width, record.height), GREY)
        tile = np.asarray(vis.render_image_annotations(image, by_image[image_id], names))
        assert tile.shape[:2] == (round(record.height * scale), round(record.width * scale))
        sizes.append(int(np.all(tile == vis.OBJECT_POINT_COLOR, axis=-1).sum()) / (1 if image_id == 2 else 2))
    assert abs(sizes[0] - sizes[1]) <= 8  # the same marker size on screen
    assert 0.5 * np.pi * (vis.MARKER_RADIUS - 2) ** 2 < sizes[1] < np.pi * (vis.MARKER_RADIUS + 1) ** 2


def test_image_id_selection(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images_dir = dataset
    out = vis.show_annotations(annotations, images_dir, tmp_path / "one.png", image_ids=[2], max_images=1)
    width, height = Image.open(out).size
    assert (width, height) == (300 + 2 * vis.PADDING, 200 + vis.TITLE_HEIGHT + vis.LEGEND_HEIGHT + 3 * vis.PADDING)
    # An image without annotations can be asked for; explicit ids ignore max_images.
    out = vis.show_annotations(annotations, images_dir, tmp_path / "three.png", image_ids=[3, 2, 1], max_images=1)
    rows = (200 + vis.TITLE_HEIGHT) + (480 + vis.TITLE_HEIGHT)  # [c, b] then [a]
    assert Image.open(out).size == (2 * 640 + 3 * vis.PADDING, vis.LEGEND_HEIGHT + rows + 4 * vis.PADDING)


def test_default_falls_back_to_first_images(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), GREY).save(tmp_path / "x.png")
    coco = {"images": [{"id": 5, "file_name": "x.png", "width": 40, "height": 30}], "categories": [], "annotations": []}
    (tmp_path / "empty.json").write_text(json.dumps(coco))
    out = vis.show_annotations(tmp_path / "empty.json", tmp_path, tmp_path / "e.png")
    assert Image.open(out).size[1] == 30 + vis.TITLE_HEIGHT + vis.LEGEND_HEIGHT + 3 * vis.PADDING


def test_title_counts(dataset: tuple[Path, Path]) -> None:
    data = load_point_dataset(dataset[0], require_points=False)
    assert vis.tile_title("a.png", data.instances_by_image()[1]) == "a.png: 2 instances, 3 points, 67% positive"
    assert vis.tile_title("c.png", []) == "c.png: 0 instances, 0 points, no positives"


def test_missing_image_file(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images_dir = dataset
    (images_dir / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="b.png"):
        vis.show_annotations(annotations, images_dir, tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_unknown_image_id(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image id 99"):
        vis.show_annotations(*dataset, tmp_path / "o.png", image_ids=[1, 99])


def test_size_mismatch(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images_dir = dataset
    Image.new("RGB", (310, 200), GREY).save(images_dir / "b.png")
    with pytest.raises(ValueError, match=r"b\.png.*310x200.*300x200"):
        vis.show_annotations(annotations, images_dir, tmp_path / "o.png")


def test_corrupt_image(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    annotations, images_dir = dataset
    (images_dir / "a.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="a.png"):
        vis.show_annotations(annotations, images_dir, tmp_path / "o.png")


def test_bad_annotation_file(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PointFormatError):
        vis.show_annotations(tmp_path / "bad.json", tmp_path, tmp_path / "o.png")


def test_cli_show(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    from pointsup.cli import main

    annotations, images_dir = dataset
    out = tmp_path / "cli.png"
    status = main(["show", str(annotations), "--images", str(images_dir), "-o", str(out), "--image-id", "1"])
    assert status == 0 and Image.open(out).size[0] == 640 + 2 * vis.PADDING
    jpeg = tmp_path / "cli.jpg"
    assert main(["show", str(annotations), "--images", str(images_dir), "-o", str(jpeg), "--image-id", "1"]) == 0
    with Image.open(jpeg) as image:
        assert image.format == "JPEG"


def test_real_dataset_fruits_nuts(tmp_path: Path) -> None:
    out = vis.show_annotations(
        require(FRUITS / "trainval.json"), require(FRUITS / "images"), tmp_path / "fruits.png", max_images=2
    )
    with Image.open(out) as image:
        image.load()
        assert image.size[0] > 640 and image.mode == "RGB"
