"""Tests of image decoding (pointsup.data.image_io) and of the readers built on it.

Every image is written by the test itself; each case checks exact uint8 values at a few pixels.
"""

from __future__ import annotations

import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pointsup.data.dataset import InstanceDataset, read_image
from pointsup.data.image_io import (
    EXIF_ORIENTATION,
    ImageReadError,
    ImageSizeError,
    check_image_header,
    image_format_for,
    open_rgb_image,
    to_rgb8,
    write_image,
)
from pointsup.points.format import ImageRecord
from pointsup.visualize import load_image

#: 16-bit test values and their 8-bit images under ``v >> 8``.
WIDE = [0, 255, 256, 257, 32767, 32768, 65279, 65280, 65535]
NARROW = [0, 0, 1, 1, 127, 128, 254, 255, 255]


def rgb_of(path: Path, **kwargs) -> np.ndarray:
    """``(H, W, 3)`` uint8 from :func:`read_image` (the training reader)."""
    return read_image(path, **kwargs).permute(1, 2, 0).numpy()


def png16(values: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG of ``values`` ((H, W) grey, color_type 0, or (H, W, 3) RGB, color_type 2),
    written by hand: Pillow cannot write 16-bit RGB."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + np.ascontiguousarray(values[y]).astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_grey_becomes_three_equal_channels(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 7, 255]], dtype=np.uint8)).save(tmp_path / "grey.png")
    assert rgb_of(tmp_path / "grey.png").tolist() == [[[0, 0, 0], [7, 7, 7], [255, 255, 255]]]


@pytest.mark.parametrize("transparency", [None, 1, bytes([255, 0, 128])], ids=["opaque", "one-index", "alpha-table"])
def test_palette_gives_the_palette_colours(tmp_path: Path, transparency: int | bytes | None) -> None:
    image = Image.new("P", (3, 1), 0)
    image.putpalette([10, 20, 30, 200, 100, 50, 7, 8, 9] + [0] * 759)
    image.putpixel((1, 0), 1)
    image.putpixel((2, 0), 2)
    image.save(tmp_path / "palette.png", **({} if transparency is None else {"transparency": transparency}))
    with Image.open(tmp_path / "palette.png") as stored:
        assert stored.mode == "P" and (transparency is None) == ("transparency" not in stored.info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns on a direct RGB conversion of an alpha table
        pixels = rgb_of(tmp_path / "palette.png")
    assert pixels.tolist() == [[[10, 20, 30], [200, 100, 50], [7, 8, 9]]]  # transparent pixels keep their colour


def test_rgba_drops_alpha_and_keeps_colours(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 128, 255, 0], [12, 34, 56, 99]]], dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert rgb_of(tmp_path / "rgba.png").tolist() == [[[255, 0, 0], [0, 128, 255], [12, 34, 56]]]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 32, 4), dtype=np.uint8)
    cmyk[:, :16] = (0, 255, 255, 0)  # full magenta and yellow: red
    cmyk[:, 16:] = (0, 0, 0, 128)  # half black: grey
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    with Image.open(tmp_path / "cmyk.jpg") as stored:
        assert stored.mode == "CMYK"
    pixels = rgb_of(tmp_path / "cmyk.jpg")
    assert pixels[0, 0].tolist() == [255, 0, 0] and pixels[15, 15].tolist() == [255, 0, 0]
    assert pixels[0, 16].tolist() == [127, 127, 127] and pixels[15, 31].tolist() == [127, 127, 127]


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    gradient = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)  # 0 .. 65472, row-major
    Image.fromarray(gradient).save(tmp_path / "gradient.png")
    Image.fromarray(np.array([WIDE], dtype=np.uint16)).save(tmp_path / "values.png")
    with Image.open(tmp_path / "gradient.png") as stored:
        assert stored.mode in ("I;16", "I")
    pixels = rgb_of(tmp_path / "gradient.png")
    flat = pixels[..., 0].ravel().astype(int)
    assert (np.diff(flat) >= 0).all() and flat[0] == 0 and flat[-1] == 255 and len(np.unique(flat)) == 256
    assert pixels[0, 0].tolist() == [0, 0, 0] and pixels[16, 0].tolist() == [128, 128, 128] and pixels[31, 31].tolist() == [255, 255, 255]
    assert rgb_of(tmp_path / "values.png")[0].tolist() == [[v] * 3 for v in NARROW]


def test_16_bit_rgb_png_follows_the_same_rule(tmp_path: Path) -> None:
    wide = np.array(WIDE, dtype=np.uint16)
    values = np.stack([wide, wide[::-1], np.full_like(wide, 257 * 7)], axis=-1)[None]
    (tmp_path / "rgb16.png").write_bytes(png16(values, color_type=2))
    (tmp_path / "grey16.png").write_bytes(png16(wide[None], color_type=0))
    pixels = rgb_of(tmp_path / "rgb16.png")
    assert pixels[0].tolist() == [[r, g, 7] for r, g in zip(NARROW, NARROW[::-1])]
    assert np.array_equal(rgb_of(tmp_path / "grey16.png")[..., 0], pixels[..., 0])  # grey and RGB agree


def test_32_bit_integer_grey_is_read_as_16_bit() -> None:
    image = Image.fromarray(np.array([[-5, 0, 256, 65535, 70000]], dtype=np.int32))
    assert image.mode == "I"
    assert np.asarray(to_rgb8(image))[0, :, 0].tolist() == [0, 0, 1, 255, 255]


def test_floating_point_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0.5, 2.0]], dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ImageReadError, match=r"float\.tif \(image id 4\): .*floating-point"):
        read_image(tmp_path / "float.tif", 4)


def rotated_jpeg(path: Path) -> None:
    """A 32 x 16 (width x height) grey JPEG in four flat quadrants, tagged Orientation 6 (turn 90
    degrees clockwise to display). Stored: top 0 | 200, bottom 50 | 250."""
    grey = np.zeros((16, 32), dtype=np.uint8)
    grey[:, 16:] = 200
    grey[8:] += 50
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path, quality=100, subsampling=0, exif=exif)


def corners(pixels: np.ndarray) -> list[int]:
    return [int(pixels[0, 0, 0]), int(pixels[0, -1, 0]), int(pixels[-1, 0, 0]), int(pixels[-1, -1, 0])]


def test_exif_orientation_follows_the_recorded_size(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    rotated_jpeg(path)
    stored = rgb_of(path)  # no recorded size (predict): the stored grid
    assert stored.shape == (16, 32, 3) and corners(stored) == [0, 200, 50, 250]
    assert np.array_equal(rgb_of(path, expected_size=(32, 16)), stored)  # recorded as stored: not turned
    turned = rgb_of(path, expected_size=(16, 32))  # recorded as displayed: turned clockwise
    assert turned.shape == (32, 16, 3) and corners(turned) == [50, 0, 250, 200]
    with pytest.raises(ImageSizeError, match=r"rotated\.jpg \(image id 9\) is 32x16 .* says 20x20"):
        read_image(path, 9, (20, 20), "ann.json")


def test_dataset_boxes_and_pixels_agree_on_a_turned_image(tmp_path: Path) -> None:
    rotated_jpeg(tmp_path / "rotated.jpg")
    box = [0.0, 16.0, 8.0, 16.0]  # displayed lower-left quadrant: stored bottom-right, value 250
    coco = {
        "images": [{"id": 1, "file_name": "rotated.jpg", "width": 16, "height": 32}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "bbox": box, "iscrowd": 0}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    sample = InstanceDataset(tmp_path / "ann.json", tmp_path, "none")[0]
    assert sample.original_size == (32, 16) and sample.targets.boxes.tolist() == [[0.0, 16.0, 8.0, 32.0]]
    assert (sample.image[:, 16:32, 0:8] == 250).all() and (sample.image[:, 0:16, 8:16] == 0).all()


def test_show_reads_the_same_pixels_as_training(tmp_path: Path) -> None:
    rotated_jpeg(tmp_path / "rotated.jpg")
    Image.fromarray(np.array([WIDE], dtype=np.uint16)).save(tmp_path / "values.png")
    for name, size in (("rotated.jpg", (16, 32)), ("values.png", (len(WIDE), 1))):
        record = ImageRecord(1, name, height=size[1], width=size[0])
        shown = np.asarray(load_image(tmp_path / name, record, max_side=None))
        assert np.array_equal(shown, rgb_of(tmp_path / name, expected_size=size)), name
    assert np.array_equal(np.asarray(open_rgb_image(tmp_path / "values.png")), rgb_of(tmp_path / "values.png"))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (10 gigapixels by default) over a
    few bytes of data: the shape of a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bombs_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    for read in (lambda: open_rgb_image(path, image_id=7), lambda: check_image_header(path, image_id=7)):
        with pytest.raises(ImageReadError, match=r"bomb.png \(image id 7\): refused as a possible decompression bomb"):
            read()


def test_header_check_finds_what_decoding_would(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 10)).save(good)
    check_image_header(good, expected_size=(20, 10))
    with pytest.raises(ImageSizeError, match="is 20x10"):
        check_image_header(good, expected_size=(10, 20), source="train.json")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageReadError, match="corrupt.png: not a readable image"):
        check_image_header(corrupt)
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        check_image_header(tmp_path / "missing.png")


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".jpg", b"\xff\xd8\xff"), (".JPEG", b"\xff\xd8\xff"),
                                           (".webp", b"RIFF")])
def test_written_pictures_are_in_the_format_their_name_says(tmp_path: Path, suffix: str, magic: bytes) -> None:
    path = tmp_path / f"picture{suffix}"
    write_image(path, Image.new("RGBA", (8, 8), (200, 10, 10, 128)))
    assert path.read_bytes().startswith(magic)
    with Image.open(path) as image:
        assert image.size == (8, 8)


def test_an_unknown_picture_suffix_is_named() -> None:
    with pytest.raises(ValueError, match=r"out.xyz: cannot tell the image format from '.xyz'; use one of .png"):
        image_format_for("out.xyz")
