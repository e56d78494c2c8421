"""Issue 19, the box stage, in a real headless Chromium, clicking and typing as a person does:
extreme-click boxes on real photos (the balloon set of ../shared), the category keys and the typed
filter, undo, drag, "no more objects", then the points of those boxes on the point page, the
export, and `pointsup train` on it; on generated photos the key map, an empty photo, undo of a
finished photo, and an outage during which boxes wait in the page and are stored once; a box's time
over an hour sent as unknown and the clock stopped while the tab is hidden, four clicks on one
pixel refused, a photo that does not load tried again or skipped, a page reloaded offline that
keeps its photo, category and outbox, and boxes drawn with the vertical scale."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotator_testing import open_page
from PIL import Image

from pointsup.annotator.box_session import open_box_session
from pointsup.annotator.box_store import BoxStage
from pointsup.annotator.browser import browser_unavailable_reason
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore
from pointsup.cli import main
from pointsup.points.format import load_point_dataset
from pointsup.points.mask_lookup import mask_values_at_pixels
from tests.conftest import DATASETS, require

UNAVAILABLE = browser_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no headless browser: {UNAVAILABLE}")

#: a model and schedule small enough for a few CPU iterations
TINY_TRAINING = [
    "seed=0", "device=cpu", "log_period=1",
    "model.fpn.channels=32", "model.mask_head.conv_dim=16",
    "model.rpn.pre_nms_top_n_train=100", "model.rpn.post_nms_top_n_train=50",
    "model.rpn.pre_nms_top_n_test=50", "model.rpn.post_nms_top_n_test=20", "model.roi_heads.batch_size_per_image=16",
    "model.detections_per_image=10",
    "data.min_size_train=[64]", "data.max_size_train=96", "data.num_workers=0",
    "solver.ims_per_batch=2", "solver.warmup_iters=1", "solver.steps=[]", "solver.max_iter=3",
    "solver.checkpoint_period=100",
]  # fmt: skip
#: two balloon photos (1 and 3 balloons) of the validation split
BALLOON_PHOTOS = ("2917282960_06beee649a_b.jpg", "410488422_5f8991f26e_b.jpg")
WINDOW = {"width": 1400, "height": 1000}


# ---- driving the box page --------------------------------------------------------------------


def photo_rect(page: Any) -> dict[str, float]:
    return page.locator("#box-overlay").bounding_box()


def page_position(page: Any, width: int, x: float, y: float) -> tuple[float, float]:
    """Where on the page the image position ``(x, y)`` of a photo ``width`` pixels wide lies."""
    rect = photo_rect(page)
    scale = rect["width"] / width
    return rect["x"] + x * scale, rect["y"] + y * scale


def click_pixel(page: Any, width: int, x: int, y: int) -> None:
    page.mouse.click(*page_position(page, width, x + 0.5, y + 0.5))


def drag(page: Any, width: int, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*page_position(page, width, *start))
    page.mouse.down()
    page.mouse.move(*page_position(page, width, *end), steps=6)
    page.mouse.up()


def saved(page: Any) -> None:
    page.wait_for_selector('body[data-pending="0"]:not([data-state=undoing])')


def on_photo(page: Any, image_id: int) -> None:
    page.wait_for_selector(f'body[data-state=ready][data-image="{image_id}"]')


def boxes_on_screen(page: Any, count: int) -> None:
    page.wait_for_selector(f'body[data-boxes="{count}"]')


def answer_points(page: Any, label_of: Any) -> int:
    """Answer every point the point page asks with ``label_of(position, point_index)`` ("f" or
    "j"); returns how many."""
    answered = 0
    while True:
        page.wait_for_selector("body[data-state=ready], body[data-state=done]")
        if page.get_attribute("body", "data-state") == "done":
            return answered
        key = page.get_attribute("body", "data-point-key")
        position, index = (int(v) for v in key.split(":"))
        page.keyboard.press(label_of(position, index))
        page.wait_for_selector(f'body[data-state=ready]:not([data-point-key="{key}"]), body[data-state=done]')
        answered += 1


# ---- generated photos --------------------------------------------------------------------------

#: a 120 x 90 photo with a red block (the object: x 30..69, y 20..49) and an empty one
BLOCK = (30, 20, 70, 50)


def write_photos(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pixels = np.full((90, 120, 3), 60, dtype=np.uint8)
    x0, y0, x1, y1 = BLOCK
    pixels[y0:y1, x0:x1] = (210, 40, 40)
    Image.fromarray(pixels).save(folder / "1-block.png")
    Image.fromarray(np.full((90, 120, 3), 90, dtype=np.uint8)).save(folder / "2-empty.png")
    return folder


@pytest.fixture
def block_session(tmp_path: Path) -> Iterator[tuple[AnnotationServer, AnnotationStore, Path]]:
    photos = write_photos(tmp_path / "photos")
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball", "block"], num_points=3)
    with serving_in_background(AnnotationServer(store, photos)) as server:
        yield server, store, photos
    store.close()


def test_boxes_by_extreme_clicks_and_drag_with_keys_undo_and_an_empty_photo_then_points(
    browser: Any,
    block_session: tuple[AnnotationServer, AnnotationStore, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, store, _ = block_session
    page, problems = open_page(browser, server.url("/boxes") + "?annotator=Kim", viewport=WINDOW)
    on_photo(page, 1)
    assert page.inner_text("#category-list").split() == ["1", "ball", "2", "block"]  # the key map
    page.keyboard.press("?")
    keys = page.inner_text("#help")
    assert "left-, right-, top- and bottom-most" in keys and "no more objects in this photo" in keys and "Backspace" in keys
    page.keyboard.press("?")

    # four extreme clicks, in any order; no category chosen yet: the box waits for its key
    x0, y0, x1, y1 = BLOCK
    for x, y in [(x1 - 1, 33), (45, y0), (x0, 31), (52, y1 - 1)]:
        click_pixel(page, 120, x, y)
    page.wait_for_selector("body[data-state=category]")
    assert "choose the box's category: 1 ball, 2 block" in page.inner_text("#status")
    page.keyboard.press("2")
    boxes_on_screen(page, 1)
    assert page.get_attribute("body", "data-category") == "2"

    # a click too many: Z takes back the click, Esc the rest; then a drag (the category stays)
    click_pixel(page, 120, 5, 5)
    click_pixel(page, 120, 9, 9)
    page.keyboard.press("z")
    page.wait_for_selector('body[data-clicks="1"]')
    page.keyboard.press("Escape")
    page.wait_for_selector('body[data-clicks="0"]')
    drag(page, 120, (80.2, 60.5), (100.7, 85.1))
    boxes_on_screen(page, 2)
    saved(page)
    page.keyboard.press("Backspace")  # undo the dragged box (sent already: the server takes it back)
    boxes_on_screen(page, 1)
    saved(page)
    assert page.inner_text("#status") == "last box undone"
    page.keyboard.press("1")
    drag(page, 120, (80.2, 60.5), (100.7, 85.1))
    boxes_on_screen(page, 2)
    page.keyboard.press("n")  # no more objects: the next photo
    on_photo(page, 2)
    page.keyboard.press("n")  # an empty photo
    page.wait_for_selector("body[data-state=done], body[data-state=waiting]")
    page.keyboard.press("z")  # the photo comes back (at once, or by the server)
    on_photo(page, 2)
    page.keyboard.press("n")
    page.wait_for_selector("body[data-state=done]")
    saved(page)
    assert "2 boxed object(s) are ready for point questions" in page.inner_text("#done-detail")
    assert page.is_visible("#done-points")

    stage = BoxStage(store)
    extreme, dragged = stage.boxes()
    assert (extreme.x0, extreme.y0, extreme.x1, extreme.y1, extreme.category_id) == (x0, y0, x1, y1, 2)
    assert extreme.extreme_points == ((x0, 31), (45, y0), (x1 - 1, 33), (52, y1 - 1))  # left, top, right, bottom
    assert (dragged.x0, dragged.y0, dragged.x1, dragged.y1, dragged.category_id, dragged.extreme_points) == (
        80,
        60,
        101,
        86,
        1,
        None,
    )
    assert all(b.draw_ms is not None and b.total_ms is not None and b.total_ms >= b.draw_ms > 0 for b in stage.boxes())
    assert (
        extreme.total_ms is not None and extreme.draw_ms is not None and extreme.total_ms > extreme.draw_ms
    )  # the key came after
    assert sorted(stage.finished_images()) == [1, 2] and store.objects_total() == 2
    page.close()

    # the point stage: the objects of the finished photo, with the box drawn as on a COCO session
    points, more = open_page(browser, server.url() + "?annotator=kim", viewport=WINDOW)
    points.wait_for_selector("body[data-state=ready]")
    assert points.is_visible("#boxes-link") and points.inner_text("#category") == "block"
    objects = {o.position: o for o in store.objects()}

    def inside_block(position: int, index: int) -> str:
        x, y = objects[position].points[index]
        return "f" if x0 <= x < x1 and y0 <= y < y1 and position == 0 else "j"

    assert answer_points(points, inside_block) == 6
    points.wait_for_selector('body[data-pending="0"]')
    points.close()
    assert not problems and not more, problems + more

    output = tmp_path / "points.json"
    assert main(["annotate", "export", "--db", str(store.path), "-o", str(output)]) == 0
    capsys.readouterr()
    exported = load_point_dataset(output)
    assert sorted(exported.images) == [1, 2]  # the empty photo is kept: a negative example
    first = exported.instances[0]
    assert first.extra["extreme_points"] == [[x0, 31], [45, y0], [x1 - 1, 33], [52, y1 - 1]]
    assert first.bbox_xywh.tolist() == [30.0, 20.0, 40.0, 30.0] and first.num_points == 3
    assert first.point_labels.tolist() == [int(inside_block(0, k) == "f") for k in range(3)]


def test_boxes_wait_in_the_page_during_an_outage_and_are_stored_once(
    browser: Any, block_session: tuple[AnnotationServer, AnnotationStore, Path]
) -> None:
    server, store, _ = block_session
    page, problems = open_page(browser, server.url("/boxes") + "?annotator=kim", viewport=WINDOW)
    on_photo(page, 1)
    page.keyboard.press("2")

    def stored_but_reply_lost(route: Any) -> None:
        route.fetch()  # the server stores the box...
        route.abort()  # ...and the reply never arrives

    page.route("**/api/boxes/box", stored_but_reply_lost)
    drag(page, 120, (10, 10), (20, 20))
    page.wait_for_selector("body[data-connection=offline]")
    assert page.is_visible("#offline")
    drag(page, 120, (30, 30), (50, 45))  # drawing goes on while the server cannot be reached
    page.keyboard.press("n")
    on_photo(page, 2)
    assert page.get_attribute("body", "data-pending") == "3"
    page.unroute("**/api/boxes/box")
    saved(page)
    page.wait_for_selector("body[data-connection=online]")
    assert [(b.x0, b.y0, b.x1, b.y1) for b in BoxStage(store).boxes()] == [(10, 10, 20, 20), (30, 30, 50, 45)]  # once each
    assert list(BoxStage(store).finished_images()) == [1]
    page.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


# ---- real photos, the command line, training ----------------------------------------------------


def extreme_pixels(segmentation: list[list[float]]) -> list[tuple[int, int]]:
    """The left-, top-, right- and bottom-most vertices of a polygon mask, as pixel indices."""
    xy = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in segmentation])
    picks = [xy[np.argmin(xy[:, 0])], xy[np.argmin(xy[:, 1])], xy[np.argmax(xy[:, 0])], xy[np.argmax(xy[:, 1])]]
    return [(int(np.floor(x)), int(np.floor(y))) for x, y in picks]


def start_folder_server(*args: str | Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """``pointsup annotate serve`` from a folder, on a free port; the pages it printed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pointsup", "annotate", "serve", *map(str, args), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    pages: dict[str, str] = {}
    for line in process.stdout:
        if match := re.match(r"(\w+) page: (http://\S+)", line):
            pages[match.group(1)] = match.group(2)
        else:
            pages.setdefault("printed", "")
            pages["printed"] += line
        if "labelling" in pages:
            return process, pages
    process.kill()
    raise AssertionError(f"the server did not start: {process.stderr.read() if process.stderr else ''}")


def test_real_photos_extreme_clicks_then_points_export_and_training(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    balloon = require(DATASETS / "balloon")
    coco = json.loads(require(balloon / "instances_val.json").read_text())
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in BALLOON_PHOTOS:
        shutil.copy(require(balloon / "val" / name), photos / name)
    images = {i["file_name"]: i for i in coco["images"] if i["file_name"] in BALLOON_PHOTOS}
    truth = {name: [a for a in coco["annotations"] if a["image_id"] == images[name]["id"]] for name in BALLOON_PHOTOS}
    db = tmp_path / "balloons.db"
    process, pages = start_folder_server("--images", photos, "--categories", "balloon,kite", "--points", "3", "--db", db)
    try:
        assert "created session" in pages["printed"] and "2 photos of" in pages["printed"] and "stage both" in pages["printed"]
        page, problems = open_page(browser, pages["labelling"] + "?annotator=ana", viewport=WINDOW)
        assert pages["labelling"].endswith("/boxes") and pages["point"].endswith("/")
        for image_id, name in enumerate(sorted(BALLOON_PHOTOS), 1):  # photos in file name order
            on_photo(page, image_id)
            width = images[name]["width"]
            if image_id == 1:
                # a wrong category first: typed after "/", then undone
                page.keyboard.press("/")
                page.keyboard.type("kit")
                page.keyboard.press("Enter")
                page.wait_for_selector('body[data-category="2"]')
                drag(page, width, (10, 10), (60, 60))
                boxes_on_screen(page, 1)
                page.keyboard.press("z")
                boxes_on_screen(page, 0)
            for k, annotation in enumerate(truth[name]):
                for x, y in reversed(extreme_pixels(annotation["segmentation"])):  # any order
                    click_pixel(page, width, x, y)
                if image_id == 1 and k == 0:
                    page.wait_for_selector('body[data-state=ready][data-boxes="1"]')  # kite was chosen: the box took it...
                    page.keyboard.press("z")  # ...undo, choose balloon, click again
                    boxes_on_screen(page, 0)
                    page.keyboard.press("1")
                    for x, y in extreme_pixels(annotation["segmentation"]):
                        click_pixel(page, width, x, y)
                boxes_on_screen(page, k + 1)
            saved(page)
            page.keyboard.press("n")
        page.wait_for_selector("body[data-state=done]")
        saved(page)
        page.close()

        store = AnnotationStore.open(db)
        drawn = BoxStage(store).boxes()
        assert len(drawn) == sum(len(t) for t in truth.values()) == 4 and {b.category_id for b in drawn} == {1}
        for box in drawn:  # each box fits its balloon's, to a click's precision on the scaled photo
            edges = np.array([*box.bbox_xywh[:2], box.x1, box.y1])
            fits = [
                np.abs(edges - [t["bbox"][0], t["bbox"][1], t["bbox"][0] + t["bbox"][2], t["bbox"][1] + t["bbox"][3]]).max()
                for t in truth[store.images[box.image_id][0]]
            ]
            assert min(fits) <= 3.0, (box, fits)
        objects = store.objects()
        store.close()

        # the point stage: answered as the balloons' masks say
        def mask_answer(position: int, index: int) -> str:
            obj = objects[position]
            name = store.images[obj.image_id][0]
            ious = [_iou(obj.bbox_xywh, t["bbox"]) for t in truth[name]]
            target = truth[name][int(np.argmax(ious))]
            size = np.array([[images[name]["height"], images[name]["width"]]])
            values, _ = mask_values_at_pixels([target["segmentation"]], size, obj.points[None, index : index + 1])
            return "f" if values[0][0] else "j"

        points, more = open_page(browser, pages["point"] + "?annotator=ben", viewport=WINDOW)
        assert answer_points(points, mask_answer) == 12
        points.wait_for_selector('body[data-pending="0"]')
        points.close()
        assert not problems and not more, problems + more
    finally:
        process.terminate()
        process.wait(timeout=30)

    output = tmp_path / "balloons_p3.json"
    assert main(["annotate", "export", "--db", str(db), "-o", str(output)]) == 0
    assert "2 images, 4 objects, 12 labelled points" in capsys.readouterr().out
    exported = load_point_dataset(output)
    assert all(len(i.extra["extreme_points"]) == 4 for i in exported.instances)
    assert sum(int(i.point_labels.sum()) for i in exported.instances) > 0  # the balloons fill most of their boxes

    run = tmp_path / "run"
    overrides = [f"data.train_json={output}", f"data.train_images={photos}", "data.val_json=null"]
    assert main(["train", "synthetic_R18_points", *TINY_TRAINING, *overrides, "--output", str(run)]) == 0, capsys.readouterr().err
    assert (run / "model_final.pth").is_file()


def _iou(a: tuple[float, ...], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_beyond_nine_categories_a_typed_name_picks_one(browser: Any, tmp_path: Path) -> None:
    photos = write_photos(tmp_path / "photos")
    names = ["ant", "bee", "cat", "cow", "dog", "eel", "elk", "fox", "gnu", "hen", "elephant", "yak"]
    store, _ = open_box_session(tmp_path / "s.db", photos, names)
    with serving_in_background(AnnotationServer(store, photos)) as server:
        page, problems = open_page(browser, server.url("/boxes") + "?annotator=kim", viewport=WINDOW)
        on_photo(page, 1)
        assert page.is_visible("#category-filter")  # more than nine: the name filter is shown
        assert page.locator("#category-list kbd").all_inner_texts() == [str(k) for k in range(1, 10)]
        page.keyboard.press("9")
        page.wait_for_selector('body[data-category="9"]')
        page.keyboard.press("/")
        page.keyboard.type("el")
        assert page.locator("#category-list button").all_inner_texts() == [
            "1 elk",
            "2 elephant",
            "3 eel",
        ]  # names starting so first
        page.keyboard.press("Enter")
        page.wait_for_selector('body[data-category="7"]')
        page.keyboard.press("/")
        page.keyboard.type("eleph")
        page.keyboard.press("Escape")  # closes the filter, nothing chosen
        page.wait_for_selector('body[data-category="7"]')
        drag(page, 120, (10, 10), (30, 30))
        boxes_on_screen(page, 1)
        saved(page)
        page.close()
        assert not problems, problems
    assert [b.category_id for b in BoxStage(store).boxes()] == [7]
    store.close()


# ---- time, small boxes, photos that do not load, reloads offline, the scale ---------------------


def hide_tab(page: Any, hidden: bool) -> None:
    """Make the page believe its tab was hidden (or shown again), as switching tabs does."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => hidden ? "hidden" : "visible" });
            Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def test_time_over_an_hour_is_unknown_the_clock_stops_while_hidden_and_tiny_boxes_are_refused(
    browser: Any, block_session: tuple[AnnotationServer, AnnotationStore, Path]
) -> None:
    server, store, _ = block_session
    page, problems = open_page(browser, server.url("/boxes") + "?annotator=kim", viewport=WINDOW)
    page.clock.install()
    page.reload()
    sent: list[dict[str, Any]] = []
    page.on("request", lambda r: sent.append(json.loads(r.post_data or "{}")) if r.url.endswith("/api/boxes/box") else None)
    on_photo(page, 1)
    page.keyboard.press("1")
    page.clock.fast_forward("02:00:00")  # the photo stays on screen for two hours
    drag(page, 120, (10, 10), (20, 20))
    boxes_on_screen(page, 1)
    saved(page)  # kept, not refused with the boxes after it
    drag(page, 120, (30, 30), (50, 45))  # the next one at once
    boxes_on_screen(page, 2)
    saved(page)
    hide_tab(page, True)  # three hours in another tab: not the box's time
    page.clock.fast_forward("03:00:00")
    hide_tab(page, False)
    drag(page, 120, (60, 10), (80, 30))
    boxes_on_screen(page, 3)
    saved(page)
    first, second, third = BoxStage(store).boxes()
    assert (sent[0]["draw_ms"], sent[0]["total_ms"]) == (None, None)  # the page sends an hour's time and more as unknown
    assert first.draw_ms is None and first.total_ms is None
    assert second.draw_ms is not None and second.draw_ms < 60_000
    assert third.draw_ms is not None and third.draw_ms < 60_000 and third.total_ms is not None and third.total_ms < 60_000

    for _ in range(4):  # four clicks on one pixel: not a box, and the page says why
        click_pixel(page, 120, 90, 70)
    page.wait_for_function("document.getElementById('status').textContent.startsWith('not a box')")
    assert "the four clicks span only 1 x 1 pixels; a box must span at least 2 pixels each way" in page.inner_text("#status")
    assert page.get_attribute("body", "data-boxes") == "3" and page.get_attribute("body", "data-clicks") == "0"
    assert page.get_attribute("body", "data-state") == "ready" and len(BoxStage(store).boxes()) == 3
    page.close()
    assert not problems, problems


def test_a_photo_that_does_not_load_is_tried_again_or_skipped(
    browser: Any, block_session: tuple[AnnotationServer, AnnotationStore, Path]
) -> None:
    server, store, _ = block_session
    page, problems = open_page(browser, server.url("/progress"), viewport=WINDOW)
    page.route("**/image/1*", lambda route: route.abort())
    page.goto(server.url("/boxes") + "?annotator=kim")
    page.wait_for_selector("body[data-state=error]")
    assert page.is_visible("#load-error") and "1-block.png" in page.inner_text("#load-error")
    page.keyboard.press("n")  # not "no objects": the photo was never seen
    assert "R tries again, S skips it for now" in page.inner_text("#status")
    page.keyboard.press("s")  # skipped for now: the next photo
    on_photo(page, 2)
    assert "skipped for now" in page.inner_text("#status")
    page.keyboard.press("n")
    page.wait_for_selector('body[data-state=error][data-image="1"]')  # back, and still not loading
    page.unroute("**/image/1*")
    page.click("#retry")
    on_photo(page, 1)
    page.keyboard.press("2")
    drag(page, 120, (30, 20), (70, 50))
    boxes_on_screen(page, 1)
    page.keyboard.press("n")
    page.wait_for_selector("body[data-state=done]")
    saved(page)
    assert sorted(BoxStage(store).finished_images()) == [1, 2] and len(BoxStage(store).boxes()) == 1
    page.close()
    assert not [p for p in problems if "Failed to load resource" not in p and "ERR_FAILED" not in p], problems


def test_a_page_reloaded_while_offline_keeps_its_photo_its_category_and_its_outbox(
    browser: Any, block_session: tuple[AnnotationServer, AnnotationStore, Path]
) -> None:
    server, store, _ = block_session
    page, problems = open_page(browser, server.url("/boxes") + "?annotator=kim", viewport=WINDOW)
    on_photo(page, 1)
    page.keyboard.press("2")
    drag(page, 120, (10, 10), (20, 20))
    saved(page)
    page.route("**/api/**", lambda route: route.abort())  # the server goes away
    drag(page, 120, (30, 30), (50, 45))
    page.wait_for_selector("body[data-connection=offline]")
    drag(page, 120, (60, 10), (80, 30))
    page.wait_for_selector('body[data-pending="2"]')
    page.reload()  # still offline: the photo, its boxes, the category and the outbox come back
    page.wait_for_selector('body[data-state=ready][data-image="1"][data-boxes="3"][data-category="2"][data-pending="2"]')
    page.wait_for_selector("body[data-connection=offline]")
    page.keyboard.press("z")  # the box never sent is taken back at once
    page.wait_for_selector('body[data-boxes="2"][data-pending="1"]')
    drag(page, 120, (90, 60), (110, 80))  # drawing goes on, in the remembered category
    page.wait_for_selector('body[data-boxes="3"][data-pending="2"]')
    page.unroute("**/api/**")
    saved(page)
    page.wait_for_selector("body[data-connection=online]")
    drawn = BoxStage(store).boxes()
    assert [(b.x0, b.y0, b.x1, b.y1, b.category_id) for b in drawn] == [
        (10, 10, 20, 20, 2),
        (30, 30, 50, 45, 2),
        (90, 60, 110, 80, 2),
    ]
    page.close()
    assert not [p for p in problems if "Failed to load resource" not in p], problems


def test_boxes_are_drawn_with_the_vertical_scale_on_a_narrow_photo(browser: Any, tmp_path: Path) -> None:
    """A 2 x 300 photo is shown a whole number of pixels wide (5 for 810 high): its horizontal scale
    differs from its vertical one by several percent, so a box drawn with the wrong one lands dozens
    of pixels off."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((300, 2, 3), 60, dtype=np.uint8)).save(photos / "pole.png")
    store, _ = open_box_session(tmp_path / "s.db", photos, ["pole"])
    stage = BoxStage(store)
    stage.held_images("kim")
    stage.add_box("kim", 1, 1, edges=(0, 200, 2, 290))
    with serving_in_background(AnnotationServer(store, photos)) as server:
        page, problems = open_page(browser, server.url("/boxes") + "?annotator=kim", viewport=WINDOW)
        on_photo(page, 1)
        sx, sy, rows = page.evaluate(
            """() => {
                const canvas = document.getElementById("box-view");
                const data = canvas.getContext("2d").getImageData(Math.floor(canvas.width / 2), 0, 1, canvas.height).data;
                const rows = [];
                for (let y = 0; y < canvas.height; y++) {
                    const [r, g, b] = data.slice(4 * y, 4 * y + 3);
                    if (r > 230 && g > 190 && g < 235 && b < 40) rows.push(y);  // the box's yellow
                }
                return [JSON.parse(canvas.dataset.region)[2], Number(canvas.dataset.scaleY), rows];
            }"""
        )
        assert abs(sx - sy) * 290 > 10, (sx, sy)  # the test means something
        assert rows and abs(max(rows) - 290 * sy) <= 3, (max(rows), 290 * sy, 290 * sx)
        assert abs(min(rows) - (200 * sy - 16)) <= 3, (min(rows), 200 * sy)  # the label sits on the top edge
        page.close()
        assert not problems, problems
    store.close()
