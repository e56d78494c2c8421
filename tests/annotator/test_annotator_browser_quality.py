"""Issue 18, item 5, in a real headless Chromium: review (an object's answered points drawn over
it, a click changes one), gold questions (a training round with feedback, then gold points
mixed in, accuracy on the progress page) and exporting from the progress page."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from annotator_testing import open_page, true_labels

from pointsup.annotator.browser import browser_unavailable_reason
from pointsup.annotator.gold import GoldPlan
from pointsup.annotator.server import AnnotationServer
from pointsup.annotator.store import AnnotationStore

UNAVAILABLE = browser_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no headless browser: {UNAVAILABLE}")

KEYS = {"object": "f", "background": "j", "unsure": "u"}
OTHER = {"object": "background", "background": "object"}


def on_screen(page: Any) -> str:
    page.wait_for_selector("body[data-state=ready], body[data-state=feedback]")
    return str(page.get_attribute("body", "data-point-key"))


def press(page: Any, label: str) -> None:
    """Answer the point on screen and wait for the next one (or the feedback, or the end)."""
    before = on_screen(page)
    page.keyboard.press(KEYS[label])
    page.wait_for_selector(
        f'body[data-state=ready]:not([data-point-key="{before}"]), body[data-state=feedback], body[data-state=done]'
    )


def test_review_an_object_and_change_an_answer(browser: Any, session: tuple[AnnotationServer, AnnotationStore]) -> None:
    server, store = session
    labels = true_labels(store)
    page, problems = open_page(browser, server.url() + "?annotator=kim")
    for _ in range(4):  # object 0 and the first point of object 1
        position, index = (int(v) for v in on_screen(page).split(":"))
        press(page, labels[(position, index)])
    page.keyboard.press("r")
    page.wait_for_selector("body[data-state=review]")
    assert page.is_visible("#review") and not page.is_visible("#labelling")
    assert "object 2: your 1 answers" in page.inner_text("#review-title")
    page.keyboard.press("ArrowLeft")  # the older object: object 0, all three points drawn
    page.wait_for_selector("#review-title:has-text('object 1: your 3 answers')")

    # click the second point's marker: its answer changes (object -> background -> unsure -> object)
    obj = store.objects()[0]
    x0, y0, scale = json.loads(page.get_attribute("#review-view", "data-region"))
    ratio = page.evaluate("window.devicePixelRatio")
    box = page.locator("#review-view").bounding_box()
    x, y = obj.points[1].tolist()
    page.mouse.click(box["x"] + (x + 0.5 - x0) * scale / ratio, box["y"] + (y + 0.5 - y0) * scale / ratio)
    changed = {"object": "background", "background": "unsure"}[labels[(0, 1)]]
    page.wait_for_selector(f"#status:has-text('point 2 is now {changed}')")
    stored = {(a.position, a.point_index): a.label for a in store.live_answers()}
    assert stored[(0, 1)] == {"background": 0, "unsure": -1}[changed]
    assert len(store.live_answers()) == 4  # changed, not added
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM relabels").fetchone()[0] == 1

    page.keyboard.press("r")  # back to labelling where the annotator was
    page.wait_for_selector('body[data-state=ready][data-point-key="1:1"]')
    page.context.close()
    assert not problems, problems


def test_partial_export_from_the_progress_page(browser: Any, session: tuple[AnnotationServer, AnnotationStore]) -> None:
    server, store = session
    labels = true_labels(store)
    page, problems = open_page(browser, server.url() + "?annotator=kim")
    for _ in range(4):
        position, index = (int(v) for v in on_screen(page).split(":"))
        press(page, labels[(position, index)])
    page.wait_for_selector('body[data-pending="0"]')
    page.goto(server.url("/progress"))
    assert "have no labelled point yet" in page.inner_text(".warning")  # 2 of 16 objects answered
    with page.expect_download() as download_info:
        page.click("a[href='/export.json?partial=1']")
    exported = json.loads(Path(download_info.value.path()).read_text())
    points = {a["id"]: a["point_labels"] for a in exported["annotations"] if not a.get("iscrowd")}
    first, second = store.objects()[:2]
    assert points == {
        first.annotation_id: [int(labels[(0, k)] == "object") for k in range(3)],
        second.annotation_id: [int(labels[(1, 0)] == "object")],
    }
    page.context.close()
    assert not problems, problems


def test_gold_training_round_then_gold_points(browser: Any, session: tuple[AnnotationServer, AnnotationStore]) -> None:
    server, store = session
    store.gold = GoldPlan.for_store(store, share=0.25, training=2)  # as `serve --gold 0.25 --training 2`
    labels = true_labels(store)
    page, problems = open_page(browser, server.url() + "?annotator=kim")

    # the training round: two gold questions, each followed by feedback
    assert on_screen(page) == "g:0"
    question = store.gold.question("kim", 0)
    truth = "object" if question.truth else "background"
    press(page, OTHER[truth])  # a wrong answer
    page.wait_for_selector("body[data-state=feedback]")
    assert page.inner_text("#feedback-text").startswith(f"Not quite: this point is {truth}")
    page.keyboard.press("f")  # any answer key goes on
    assert on_screen(page) == "g:1"
    question = store.gold.question("kim", 1)
    press(page, "object" if question.truth else "background")  # right
    assert page.inner_text("#feedback-text").startswith("Right")
    page.click("#feedback-ok")
    assert on_screen(page) == "0:0"

    # then one gold question after every 4 answers, with no feedback
    seen = []
    while len(seen) < 9:
        key = on_screen(page)
        seen.append(key)
        if key.startswith("g:"):
            question = store.gold.question("kim", int(key[2:]))
            press(page, "object" if question.truth else "background")
        else:
            position, index = (int(v) for v in key.split(":"))
            press(page, labels[(position, index)])
        assert page.get_attribute("body", "data-state") != "feedback"
    assert seen == ["0:0", "0:1", "0:2", "1:0", "g:2", "1:1", "1:2", "2:0", "2:1"]
    page.wait_for_selector('body[data-pending="0"]')
    gold = [(g.gold_index, g.training, g.label == g.truth) for _, g in store.gold_answers()]
    assert gold == [(0, True, False), (1, True, True), (2, False, True)]
    assert len(store.live_answers()) == 8  # gold answers are kept apart

    page.goto(server.url("/progress"))
    assert "gold questions right" in page.inner_text("table")
    assert "100.0 % of 1; training 1 / 2 right" in page.inner_text("table")
    page.context.close()
    assert not problems, problems
