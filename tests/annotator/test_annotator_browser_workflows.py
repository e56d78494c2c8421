"""Issue 18 in a real headless Chromium, clicking and typing as a person does: the question is
about the object in the box (an ambiguous balloon), a forgotten tab does not keep objects from
being labelled and exported, annotators switch and names are case-insensitive, and bad inputs
(sizes missing from the file, points given in the file, a wrong images folder, an unwritable
database place) are handled."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from annotator_testing import open_page as open_fresh_page
from annotator_testing import start_server, true_labels
from PIL import Image

from pointsup.annotator.browser import browser_unavailable_reason
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset
from pointsup.points.format import load_point_dataset

UNAVAILABLE = browser_unavailable_reason()
pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no headless browser: {UNAVAILABLE}")

KEYS = {"object": "f", "background": "j", "unsure": "u"}
GREY, DISC = 160, 230  # the balloon picture: grey ground, bright balloons
#: two balloons whose boxes overlap, and a kite apart; the point of the first balloon lies on the second
BALLOONS = [
    {"id": 1, "category_id": 1, "centre": (35, 48), "bbox": [15.0, 28.0, 40.0, 40.0], "point": [54, 30]},
    {"id": 2, "category_id": 1, "centre": (62, 48), "bbox": [42.0, 28.0, 40.0, 40.0], "point": [70, 50]},
    {"id": 3, "category_id": 2, "centre": None, "bbox": [4.0, 74.0, 16.0, 16.0], "point": [10, 80]},
]
RADIUS = 20


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    """A page in a fresh browser context (its own storage: a first visit)."""
    return open_fresh_page(browser, url, first_visit=True)


def read_instructions(page: Any) -> str:
    """Wait for the first-use instructions, read them and click them away."""
    page.wait_for_selector("body[data-state=instructions]")
    text = page.inner_text("#instructions")
    page.click("#instructions-ok")
    return text


def point_on_screen(page: Any) -> tuple[int, int]:
    page.wait_for_selector("body[data-state=ready]")
    position, index = page.get_attribute("body", "data-point-key").split(":")
    return int(position), int(index)


def press(page: Any, label: str) -> None:
    """Answer with the keyboard and wait for the next point (or the end)."""
    before = "{}:{}".format(*point_on_screen(page))
    page.keyboard.press(KEYS[label])
    page.wait_for_selector(f'body[data-state=ready]:not([data-point-key="{before}"]), body[data-state=done]')


def canvas_pixel(page: Any, canvas: str, x: float, y: float) -> tuple[int, int, int]:
    """The colour the canvas shows at image position ``(x, y)`` (through its data-region)."""
    return tuple(
        page.evaluate(
            """([id, x, y]) => {
            const canvas = document.getElementById(id);
            const [x0, y0, scale] = JSON.parse(canvas.dataset.region);
            const px = Math.floor((x - x0) * scale), py = Math.floor((y - y0) * scale);
            return Array.from(canvas.getContext("2d").getImageData(px, py, 1, 1).data.slice(0, 3));
        }""",
            [canvas, x, y],
        )
    )


def write_balloons(folder: Path, *, sizes: bool = True) -> Path:
    """A 96 x 96 picture of two overlapping balloons and a kite, and its COCO file with one
    given point per object (labelled 1: what a careless annotator would answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:96, 0:96]
    pixels = np.full((96, 96), GREY, dtype=np.uint8)
    for balloon in BALLOONS:
        if balloon["centre"] is not None:
            cx, cy = balloon["centre"]
            pixels[(xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 < RADIUS**2] = DISC
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(folder / "balloons.png")
    image: dict[str, Any] = {"id": 1, "file_name": "balloons.png"}
    if sizes:
        image.update(width=96, height=96)
    coco = {
        "images": [image],
        "categories": [{"id": 1, "name": "balloon"}, {"id": 2, "name": "kite"}],
        "annotations": [
            {
                "id": b["id"],
                "image_id": 1,
                "category_id": b["category_id"],
                "bbox": b["bbox"],
                "iscrowd": 0,
                "area": b["bbox"][2] * b["bbox"][3],
                "point_coords": [b["point"]],
                "point_labels": [1],
            }
            for b in BALLOONS
        ],
    }
    path = folder / "balloons.json"
    path.write_text(json.dumps(coco))
    return path


def test_the_question_is_about_the_balloon_in_the_box(browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_balloons(tmp_path / "data")
    store, _ = open_session(tmp_path / "s.db", dataset, images_dir=tmp_path / "data", use_points=True)
    with serving_in_background(AnnotationServer(store, tmp_path / "data")) as server:
        page, problems = open_page(browser, server.url() + "?annotator=ana")
        instructions = read_instructions(page)  # first use: what "object" means
        assert "the one the yellow box was drawn around" in instructions
        assert "not any object of its category" in instructions and "background" in instructions
        assert point_on_screen(page) == (0, 0)
        assert page.inner_text(".question") == "Is the point on the balloon inside the yellow box?"
        note = page.inner_text("#crowd-note")
        assert page.is_visible("#crowd-note") and note.startswith("1 other balloon overlaps this box")
        assert "a point on another one is background" in note

        # everything outside the box is dimmed, in both views; inside it is not
        inside = canvas_pixel(page, "context-view", 25.5, 60.5)  # on the target balloon
        outside = canvas_pixel(page, "context-view", 5.5, 60.5)  # grey ground left of the box
        assert inside == (DISC,) * 3
        assert max(outside) < 0.5 * GREY
        zoom_inside = canvas_pixel(page, "zoom-view", 50.5, 35.5)  # on the other balloon, inside the box
        zoom_outside = canvas_pixel(page, "zoom-view", 60.5, 35.5)  # the other balloon beyond the box
        assert zoom_inside == (DISC,) * 3
        assert max(zoom_outside) < 0.5 * DISC
        # the target's box stays drawn, highlighted (yellow, thick) in the close-up too
        r, g, b = canvas_pixel(
            page, "zoom-view", 55.0 + 2.5 / json.loads(page.get_attribute("#zoom-view", "data-region"))[2], 34.5
        )
        assert r > 200 and g > 160 and b < 90, (r, g, b)

        # the truthful answer for a point on the other balloon: background
        press(page, "background")
        assert point_on_screen(page) == (1, 0)
        press(page, "object")  # the second balloon's point lies on it
        assert point_on_screen(page) == (2, 0)
        assert not page.is_visible("#crowd-note")  # the kite overlaps no other kite
        assert page.inner_text(".question") == "Is the point on the kite inside the yellow box?"
        press(page, "background")
        page.wait_for_selector("body[data-state=done]")
        page.context.close()
    output = tmp_path / "out.json"
    assert main(["annotate", "export", "--db", str(store.path), "-o", str(output)]) == 0
    capsys.readouterr()
    store.close()
    exported = {a["id"]: (a["point_coords"], a["point_labels"]) for a in json.loads(output.read_text())["annotations"]}
    assert exported == {1: ([[54, 30]], [0]), 2: ([[70, 50]], [1]), 3: ([[10, 80]], [0])}
    assert not problems, problems


def test_a_forgotten_tab_does_not_keep_objects_from_being_labelled_and_exported(
    browser: Any, tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    timeout_s = 15.0  # ben must finish his share before Kim's claims expire, even on a slow machine
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=3, claim_timeout_s=timeout_s)
    labels = true_labels(store)
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        forgotten, problems = open_page(browser, server.url() + "?annotator=Kim")
        read_instructions(forgotten)
        press(forgotten, labels[point_on_screen(forgotten)])  # one answer on object 0, then the tab is forgotten
        forgotten.wait_for_selector('body[data-pending="0"]')
        left_at = time.monotonic()

        worker, worker_problems = open_page(browser, server.url() + "?annotator=ben")
        read_instructions(worker)
        while worker.get_attribute("body", "data-state") != "done" and time.monotonic() - left_at < timeout_s - 1:
            press(worker, labels[point_on_screen(worker)])
        assert worker.get_attribute("body", "data-state") == "done", "ben labelled too slowly for this test"
        detail = worker.inner_text("#done-detail")
        assert detail.startswith("2 unfinished object(s) are held by other annotators") and "0.3 min" in detail

        # once Kim has been inactive for the timeout, ben's page finds her objects by itself:
        # object 0 continues at its second point (her answer stays), then object 1
        worker.wait_for_selector('body[data-state=ready][data-point-key="0:1"]', timeout=30_000)
        while worker.get_attribute("body", "data-state") != "done":
            press(worker, labels[point_on_screen(worker)])
        assert worker.inner_text("#done-detail") == ""

        # Kim comes back to her tab: her stale point is refused, nothing is lost, nothing left
        forgotten.keyboard.press("f")
        forgotten.wait_for_selector("body[data-state=done]", timeout=10_000)
        forgotten.context.close()
        worker.context.close()

    answers = {(a.position, a.point_index): a.annotator for a in store.live_answers()}
    total = store.settings.num_objects * store.settings.num_points
    assert len(answers) == total and answers[(0, 0)] == "kim" and answers[(0, 1)] == "ben"
    output = tmp_path / "out.json"
    assert main(["annotate", "export", "--db", str(store.path), "-o", str(output)]) == 0  # the default export
    assert "unfinished images left out" not in capsys.readouterr().out
    exported = load_point_dataset(output)
    assert len(exported.images) == len(store.images)
    assert sorted(i.num_points for i in exported.instances if not i.is_crowd) == [3] * store.settings.num_objects
    store.close()
    assert not worker_problems, worker_problems
    assert all("409 (Conflict)" in p for p in problems), problems  # the browser logs the refused stale answer


def test_switch_annotator_and_names_in_any_case(browser: Any, tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=3)
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        page, problems = open_page(browser, server.url())
        page.wait_for_selector("body[data-state=login]")
        page.fill("#name-input", "Kim")
        page.press("#name-input", "Enter")
        read_instructions(page)
        press(page, "object")
        assert page.inner_text("#who") == "Kim"

        page.click("#switch-annotator")  # hand the page to ana
        page.wait_for_selector("body[data-state=login]")
        assert page.input_value("#name-input") == ""
        page.fill("#name-input", "ana")
        page.press("#name-input", "Enter")
        assert point_on_screen(page)[0] == 2  # Kim holds objects 0 and 1
        assert page.inner_text("#who") == "ana"
        press(page, "background")

        page.click("#switch-annotator")  # Kim again, typed in capitals: the same annotator
        page.wait_for_selector("body[data-state=login]")
        page.fill("#name-input", "KIM")
        page.press("#name-input", "Enter")
        assert point_on_screen(page) == (0, 1)
        assert page.inner_text("#who") == "Kim"  # the name as first typed
        press(page, "object")
        page.reload()  # the page remembers KIM
        assert point_on_screen(page) == (0, 2)
        page.context.close()
    assert [(a.annotator, a.position, a.point_index) for a in store.live_answers()] == [
        ("kim", 0, 0),
        ("ana", 2, 0),
        ("kim", 0, 1),
    ]
    assert store.display_names() == {"kim": "Kim", "ana": "ana"}
    store.close()
    assert not problems, problems


def test_sizes_come_from_the_files_and_given_points_are_labelled(
    browser: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_balloons(tmp_path / "data", sizes=False)  # no width/height in the file
    db = tmp_path / "s.db"
    server = start_server(dataset, tmp_path / "data", "--db", str(db), "--use-points")
    try:
        page, problems = open_page(browser, server.url + "?annotator=ana")
        read_instructions(page)
        assert point_on_screen(page) == (0, 0)  # the image loaded and the point is drawn
        assert canvas_pixel(page, "context-view", 25.5, 60.5) == (DISC,) * 3  # the stored pixels, in place
        for label in ("background", "object", "background"):
            press(page, label)
        page.wait_for_selector("body[data-state=done]")
        page.context.close()
    finally:
        server.stop()
    output = tmp_path / "out.json"
    assert main(["annotate", "export", "--db", str(db), "-o", str(output)]) == 0
    capsys.readouterr()
    exported = json.loads(output.read_text())
    assert exported["images"][0]["width"] == 96 and exported["images"][0]["height"] == 96
    assert [(a["point_coords"], a["point_labels"]) for a in exported["annotations"]] == [
        ([[54, 30]], [0]),
        ([[70, 50]], [1]),
        ([[10, 80]], [0]),
    ]
    assert not problems, problems


def serve_and_fail(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``pointsup annotate serve`` that must refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "pointsup", "annotate", "serve", *map(str, args), "--port", "0", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_inputs_never_serve_a_broken_page(browser: Any, tmp_path: Path, synthetic: SyntheticDataset) -> None:
    """A wrong images folder and an unwritable database place stop the server before any page
    exists (one line, exit 2); a file with points but no --use-points says they are ignored."""
    wrong = tmp_path / "wrong-images"
    wrong.mkdir()
    result = serve_and_fail(synthetic.train_json, "--images", wrong, "--db", tmp_path / "a.db")
    first = json.loads(synthetic.train_json.read_text())["images"][0]["file_name"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"--images {wrong}" in result.stderr and str(wrong / first) in result.stderr
    assert not (tmp_path / "a.db").exists()

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the dataset's folder should let us write\n")
    result = serve_and_fail(synthetic.train_json, "--images", synthetic.image_dir, "--db", blocker / "s.db")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not an SQLite database" not in result.stderr
    assert "--db" in result.stderr and str(blocker) in result.stderr and "is not a folder" in result.stderr

    dataset = write_balloons(tmp_path / "data")
    server = start_server(dataset, tmp_path / "data", "--db", str(tmp_path / "drawn.db"), "--points", "2")
    try:
        page, problems = open_page(browser, server.url + "?annotator=ana")
        read_instructions(page)
        assert point_on_screen(page) == (0, 0)
        page.context.close()
    finally:
        server.stop()
    assert "warning: 3 annotations of" in server.printed
    assert "they are ignored and new points are drawn (--use-points labels exactly those points)" in server.printed
    store = AnnotationStore.open(tmp_path / "drawn.db")
    assert store.settings.given_points_ignored == 3 and not store.settings.points_given
    assert store.objects()[0].points.shape == (2, 2)  # new points were drawn
    store.close()
    assert not problems, problems
