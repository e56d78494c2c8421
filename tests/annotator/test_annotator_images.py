"""Images reach the browser in their stored pixel grid: EXIF (orientation) removed losslessly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from annotator_testing import Api
from PIL import Image

from pointsup.annotator.images import browser_image_bytes, strip_jpeg_exif, strip_png_exif
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import open_session

ORIENTATION = 0x0112


def rotated_tag_image(path: Path, fmt: str) -> np.ndarray:
    """Write a 40 x 24 image tagged ``Orientation = 6`` (rotate 90 degrees to display)."""
    pixels = np.random.default_rng(0).integers(0, 255, (24, 40, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(pixels).save(path, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return pixels


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_is_dropped_and_pixels_are_untouched(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"tagged.{fmt.lower()}"
    rotated_tag_image(path, fmt)
    with Image.open(path) as original:
        assert original.getexif().get(ORIENTATION) == 6
        stored = np.asarray(original.convert("RGB"))
    served = browser_image_bytes(path)
    assert len(served) < path.stat().st_size
    with Image.open(io.BytesIO(served)) as image:
        assert image.getexif().get(ORIENTATION) is None
        assert image.size == (40, 24)
        assert np.array_equal(np.asarray(image.convert("RGB")), stored)


def test_files_without_exif_or_unparsable_are_unchanged(tmp_path: Path) -> None:
    plain = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(plain, format="JPEG")
    assert strip_jpeg_exif(plain.getvalue()) == plain.getvalue()
    for junk in (b"\xff\xd8\xff\xe1\xff\xff", b"\xff\xd8garbage", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xffeXIf"):
        assert strip_jpeg_exif(junk) == junk and strip_png_exif(junk) == junk
    (tmp_path / "x.gif").write_bytes(b"GIF89a....")
    assert browser_image_bytes(tmp_path / "x.gif") == b"GIF89a...."


def test_the_server_sends_images_without_exif(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rotated_tag_image(images / "photo.jpg", "JPEG")
    with Image.open(images / "photo.jpg") as original:
        stored = np.asarray(original.convert("RGB"))
    coco = {
        "images": [{"id": 7, "file_name": "photo.jpg", "width": 40, "height": 24}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [4.0, 2.0, 20.0, 10.0], "iscrowd": 0}],
    }
    (tmp_path / "photo.json").write_text(json.dumps(coco))
    store, _ = open_session(tmp_path / "s.db", tmp_path / "photo.json")
    with serving_in_background(AnnotationServer(store, images)) as server:
        status, body, headers = Api(server.port).request("GET", "/image/7")
    store.close()
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(body)) as image:
        assert image.getexif().get(ORIENTATION) is None and image.size == (40, 24)
        assert np.array_equal(np.asarray(image.convert("RGB")), stored)  # the stored grid, not rotated
