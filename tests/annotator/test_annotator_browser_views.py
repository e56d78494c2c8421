"""Issue 18, item 4, in a real headless Chromium: the views of a small, thin, dark object (at
most 8x magnification, a marker scaled to the object, visible on red), H hides the markers, B
brightens a dark picture, ? lists the keys; the views fill a large window and fit a phone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotator_testing import open_page  # noqa: E402
from PIL import Image

from pointsup.annotator.browser import browser_unavailable_reason
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session

UNAVAILABLE = browser_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no headless browser: {UNAVAILABLE}")

GROUND = (18, 18, 22)  # a dark picture
OBJECT = (70, 12, 12)  # a dark red object of 21 x 7 pixels
BOX = [60.0, 50.0, 21.0, 7.0]
POINT = [70, 53]
#: the most screen pixels per image pixel the views may show
MAX_SCALE = 8.0


@pytest.fixture
def dark_session(tmp_path: Path) -> Iterator[tuple[AnnotationServer, AnnotationStore]]:
    folder = tmp_path / "data"
    folder.mkdir()
    pixels = np.empty((120, 160, 3), dtype=np.uint8)
    pixels[:] = GROUND
    x, y, w, h = (int(v) for v in BOX)
    pixels[y : y + h, x : x + w] = OBJECT
    Image.fromarray(pixels).save(folder / "dark.png")
    coco = {
        "images": [{"id": 1, "file_name": "dark.png", "width": 160, "height": 120}],
        "categories": [{"id": 1, "name": "pen"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": BOX,
                "iscrowd": 0,
                "area": 147.0,
                "point_coords": [POINT],
                "point_labels": [1],
            }
        ],
    }
    (folder / "dark.json").write_text(json.dumps(coco))
    store, _ = open_session(tmp_path / "s.db", folder / "dark.json", images_dir=folder, use_points=True)
    with serving_in_background(AnnotationServer(store, folder)) as server:
        yield server, store
    store.close()


def open_ready(browser: Any, url: str, viewport: dict[str, int], **options: Any) -> tuple[Any, list[str]]:
    page, problems = open_page(browser, url, viewport, **options)
    page.wait_for_selector("body[data-state=ready]")
    return page, problems


def region(page: Any, canvas: str) -> tuple[float, float, float]:
    """``(x0, y0, screen pixels per image pixel)`` of a view (canvas pixels over CSS pixels)."""
    x0, y0, scale = json.loads(page.get_attribute(f"#{canvas}", "data-region"))
    return x0, y0, scale / page.evaluate("window.devicePixelRatio")


def pixel(page: Any, canvas: str, x: float, y: float, dx: float = 0.0) -> tuple[int, int, int]:
    """The colour at image position ``(x, y)``, ``dx`` CSS pixels to the right."""
    return tuple(
        page.evaluate(
            """([id, x, y, dx]) => {
            const canvas = document.getElementById(id);
            const [x0, y0, scale] = JSON.parse(canvas.dataset.region);
            const px = Math.floor((x - x0) * scale + dx * devicePixelRatio), py = Math.floor((y - y0) * scale);
            return Array.from(canvas.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3));
        }""",
            [canvas, x, y, dx],
        )
    )


def test_a_small_dark_object(browser: Any, dark_session: tuple[AnnotationServer, AnnotationStore]) -> None:
    server, _ = dark_session
    page, problems = open_ready(browser, server.url() + "?annotator=ana", {"width": 1100, "height": 760})
    px, py = POINT[0] + 0.5, POINT[1] + 0.5

    # no view magnifies more than 8 times: the close-up shows context instead of blocky pixels
    assert region(page, "zoom-view")[2] <= MAX_SCALE + 1e-6
    context_scale = region(page, "context-view")[2]
    assert context_scale <= MAX_SCALE + 1e-6
    # the green square is scaled to the object: it covers well under the thin box's height
    square = float(page.get_attribute("#context-view", "data-square")) / page.evaluate("window.devicePixelRatio")
    assert square <= 0.5 * BOX[3] * context_scale
    # the point on a red object: a red disc in a white ring in a dark ring
    assert pixel(page, "context-view", px, py)[0] > 200
    assert min(pixel(page, "context-view", px, py, dx=4.2)) > 200  # the white ring
    assert max(pixel(page, "context-view", px, py, dx=5.7)) < 30  # the dark ring

    # H held: the picture without markers (the object's own colour at the point); released: back
    page.keyboard.down("h")
    page.wait_for_selector("body[data-markers=hidden]")
    assert pixel(page, "context-view", px, py) == OBJECT
    page.keyboard.up("h")
    page.wait_for_selector("body[data-markers=shown]")
    assert pixel(page, "context-view", px, py)[0] > 200

    # B brightens the dark picture (inside the box, away from the markers), C adds contrast
    spot = (BOX[0] + 1.5, BOX[1] + 0.5)
    before = pixel(page, "context-view", *spot)
    assert before == OBJECT
    page.keyboard.press("b")
    page.keyboard.press("b")
    brighter = pixel(page, "context-view", *spot)
    assert brighter[0] > 1.8 * before[0]
    assert "×2.2" in page.inner_text("#brightness-button")
    page.keyboard.press("c")
    assert pixel(page, "context-view", *spot)[0] > brighter[0]

    # ? lists the keys, Esc closes the list
    page.keyboard.press("?")
    assert page.is_visible("#help") and "brightness" in page.inner_text("#help")
    page.keyboard.press("Escape")
    assert not page.is_visible("#help")
    page.keyboard.press("f")
    page.wait_for_selector("body[data-state=done]")
    page.context.close()
    assert not problems, problems


def on_screen(page: Any, selector: str, viewport: dict[str, int]) -> bool:
    box = page.locator(selector).bounding_box()
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"] + 0.5
        and (box["y"] + box["height"] <= viewport["height"] + 0.5)
    )


@pytest.mark.parametrize(
    ("viewport", "options"),
    [
        ({"width": 1920, "height": 1080}, {}),
        ({"width": 1024, "height": 768}, {"has_touch": True}),  # a tablet
        ({"width": 390, "height": 844}, {"is_mobile": True, "has_touch": True, "device_scale_factor": 3}),  # a phone
    ],
)
def test_the_views_scale_with_the_window(
    browser: Any, dark_session: tuple[AnnotationServer, AnnotationStore], viewport: dict[str, int], options: dict[str, Any]
) -> None:
    server, _ = dark_session
    page, problems = open_ready(browser, server.url() + "?annotator=ana", viewport, **options)
    views = page.locator("#context-view").bounding_box(), page.locator("#zoom-view").bounding_box()
    width = sum(v["width"] for v in views) if views[0]["y"] == views[1]["y"] else max(v["width"] for v in views)
    assert width > 0.75 * viewport["width"], (width, views)  # the views use the window
    for selector in ("#answer-object", "#answer-background", "#answer-unsure", "#undo", "#context-view", "#zoom-view"):
        assert on_screen(page, selector, viewport), selector  # nothing needs scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    x0, y0, scale = region(page, "context-view")
    box = page.locator("#context-view").bounding_box()
    point_x, point_y = box["x"] + (POINT[0] + 0.5 - x0) * scale, box["y"] + (POINT[1] + 0.5 - y0) * scale
    assert 0 < point_x < viewport["width"] and 0 < point_y < viewport["height"]  # the point is on screen
    page.tap("#answer-object") if options.get("has_touch") else page.click("#answer-object")
    page.wait_for_selector("body[data-state=done]")
    page.context.close()
    assert not problems, problems
