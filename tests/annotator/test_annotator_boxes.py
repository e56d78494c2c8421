"""Issue 19, the box stage, without a browser: a session from a folder of photos (images and
categories, no annotation file), photos handed out like objects, boxes and "no more objects"
stored once per client id, undo (the last box on the photo on screen, whoever drew it; a finished
photo, in the order of the finishes, while nothing depends on it), idle annotators' photos back to
the pool, inverted, tiny and outside boxes refused, times over an hour kept as unknown, photos
skipped, the objects' points drawn as `pointsup simulate` draws them, the exports (P_N and boxes
only, with extreme points, checked), progress (seconds per box against 7 s), version-3 and
incomplete version-4 databases completed on open, links in the photo folder, and bad input
refused with one line and exit status 2."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from annotator_testing import Api
from PIL import Image

from pointsup.annotator import box_store
from pointsup.annotator.box_session import FolderError, open_box_session, parse_categories, scan_image_folder
from pointsup.annotator.box_store import (
    BoxConflict,
    BoxStage,
    box_from_extreme_points,
    boxes_only_coco,
    order_extreme_points,
)
from pointsup.annotator.database import SCHEMA_VERSION
from pointsup.annotator.export import build_export
from pointsup.annotator.progress import compute_progress
from pointsup.annotator.progress_page import render_progress_page
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset
from pointsup.points.format import load_point_dataset
from pointsup.points.simulate import sample_uniform_pixels

#: the photos the tests make: (file name, width, height)
PHOTOS = [("a.png", 96, 64), ("b.jpg", 80, 80), ("c.png", 64, 48), ("more/d.png", 50, 40)]


def make_photos(folder: Path, photos: list[tuple[str, int, int]] = PHOTOS) -> Path:
    for k, (name, width, height) in enumerate(photos):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((height, width, 3), 40 + 30 * k, dtype=np.uint8)
        pixels[height // 4 : height // 2, width // 4 : width // 2] = (220, 60, 60)
        Image.fromarray(pixels).save(path)
    return folder


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return make_photos(tmp_path / "photos")


@pytest.fixture
def boxes_store(tmp_path: Path, photos: Path) -> AnnotationStore:
    store, created = open_box_session(tmp_path / "s.db", photos, ["ball", "box"], num_points=3)
    assert created
    return store


def test_photos_are_handed_out_boxed_and_become_objects_with_simulated_points(
    boxes_store: AnnotationStore, tmp_path: Path
) -> None:
    store, stage = boxes_store, BoxStage(boxes_store)
    assert store.images == {1: ("a.png", 96, 64), 2: ("b.jpg", 80, 80), 3: ("c.png", 64, 48), 4: ("more/d.png", 50, 40)}
    assert store.category_names == {1: "ball", 2: "box"} and store.objects_total() == 0
    assert [i.image_id for i in stage.held_images("Kim", claim=False)] == []  # only a POST claims
    assert [i.image_id for i in stage.held_images("Kim")] == [1, 2]  # the photo on screen and one ahead
    assert [i.image_id for i in stage.held_images("ben")] == [3, 4]  # one annotator per photo
    assert stage.held_images("carl") == []

    # extreme points in any order: stored left, top, right, bottom; the box around their pixels
    clicks = [(70, 30), (30, 10), (40, 50), (20, 33)]
    assert stage.add_box("kim", 1, 1, extreme_points=clicks, draw_ms=6500.0, total_ms=7100.0, client_id="box-000001")
    assert not stage.add_box("KIM", 1, 1, extreme_points=clicks, client_id="box-000001")  # sent again: stored once
    assert stage.add_box("kim", 1, 2, edges=(0, 0, 16, 12), draw_ms=3000.0, client_id="box-000002")
    (first, dragged) = stage.held_images("kim")[0].boxes
    assert first.extreme_points == ((20, 33), (30, 10), (70, 30), (40, 50)) and first.bbox_xywh == (20.0, 10.0, 51.0, 41.0)
    assert dragged.extreme_points is None and dragged.bbox_xywh == (0.0, 0.0, 16.0, 12.0)
    with pytest.raises(BoxConflict, match="not held"):
        stage.add_box("ben", 1, 1, edges=(0, 0, 5, 5))
    with pytest.raises(ValueError, match="outside the image"):
        stage.add_box("kim", 1, 1, extreme_points=[(0, 0), (96, 5), (3, 3), (4, 4)])
    with pytest.raises(ValueError, match="no category"):
        stage.add_box("kim", 1, 3, edges=(0, 0, 5, 5))

    assert store.next_points("ann", 6) == []  # no finished photo: nothing to ask yet
    stage.add_box("ben", 3, 1, edges=(8, 8, 40, 30), client_id="box-000003")
    assert stage.finish_image("ben", 3, "finish-00003")  # ben's photo is finished first: objects 0
    assert stage.finish_image("kim", 1, "finish-00001")  # then kim's: objects 1 and 2
    assert not stage.finish_image("kim", 1, "finish-00001")  # sent again
    assert stage.finish_image("kim", 2)  # no box: a photo without objects
    with pytest.raises(BoxConflict, match="finished already"):
        stage.finish_image("ben", 2)
    assert [(o.position, o.annotation_id, o.image_id, o.category_id) for o in store.objects()] == [
        (0, 1, 3, 1),
        (1, 2, 1, 1),
        (2, 3, 1, 2),
    ]
    assert store.objects_total() == 3 and store.settings.from_folder

    # the boxes-only file gives `pointsup simulate` (same seed and N) the very points of the session
    boxes = boxes_only_coco(store)
    assert [i["id"] for i in boxes["images"]] == [1, 2, 3]  # finished photos, the empty one included
    assert [a["id"] for a in boxes["annotations"]] == [1, 2, 3]
    assert boxes["annotations"][1]["extreme_points"] == [[20, 33], [30, 10], [70, 30], [40, 50]]
    assert "extreme_points" not in boxes["annotations"][2] and "point_coords" not in boxes["annotations"][0]
    drawn = sample_uniform_pixels(boxes, 3, seed=store.settings.seed)
    assert {o.annotation_id: o.points.tolist() for o in store.objects()} == {k: v.tolist() for k, v in drawn.items()}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))  # and a session made from that file asks them too
    again, _ = open_session(tmp_path / "again.db", tmp_path / "boxes.json", num_points=3)
    assert {o.annotation_id: o.points.tolist() for o in again.objects()} == {k: v.tolist() for k, v in drawn.items()}
    again.close()

    # the point stage follows: the objects of finished photos, in the order they were finished
    tasks = store.next_points("ann", 9)
    assert [(t.position, t.point_index) for t in tasks[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    for task in tasks[:3]:
        store.record_answer("ann", task.position, task.point_index, 1, 800.0)
    document, summary = build_export(store)
    assert [i["id"] for i in document["images"]] == [2, 3]  # photo 1 has unanswered objects; photo 2 is empty
    assert summary.objects == 1 and summary.points == 3
    ann = next(a for a in document["annotations"] if a["id"] == 1)
    assert ann["point_coords"] == store.objects()[0].points.tolist() and ann["point_labels"] == [1, 1, 1]
    store.close()


def test_undo_takes_back_boxes_then_reopens_the_last_photo_while_nothing_depends_on_it(boxes_store: AnnotationStore) -> None:
    store, stage = boxes_store, BoxStage(boxes_store)
    stage.held_images("kim")
    stage.held_images("ben")
    stage.add_box("kim", 1, 1, edges=(0, 0, 10, 10))
    stage.add_box("kim", 1, 2, edges=(5, 5, 20, 20))
    undone = stage.undo("kim")
    assert undone.kind == "box" and [b.category_id for b in stage.held_images("kim")[0].boxes] == [1]
    stage.finish_image("kim", 1)
    assert stage.undo("kim").kind == "finish"  # photo 2 (on screen) has no box of kim's: photo 1 comes back
    assert [i.image_id for i in stage.held_images("kim", claim=False)] == [1, 2] and store.objects_total() == 0
    assert [b.category_id for b in stage.held_images("kim")[0].boxes] == [1]  # its boxes are back
    stage.finish_image("kim", 1)
    stage.add_box("ben", 3, 1, edges=(0, 0, 9, 9))
    stage.finish_image("ben", 3)  # its object follows kim's
    refused = stage.undo("kim")
    assert refused.kind is None and refused.refused is not None and "after it" in refused.refused
    assert stage.undo("ben").kind == "finish"  # ben's photo is the last one: it can come back
    stage.finish_image("ben", 3)
    store.next_points("ann", 6)  # someone claims both objects
    assert "being labelled" in (stage.undo("ben").refused or "")
    assert store.objects_total() == 2
    store.close()


def test_idle_annotators_photos_go_back_to_the_pool_with_their_boxes(tmp_path: Path, photos: Path) -> None:
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball"], claim_timeout_s=0.3)
    stage = BoxStage(store)
    stage.held_images("tab")  # a forgotten tab holds photos 1 and 2, with a box on 1
    stage.add_box("tab", 1, 1, edges=(0, 0, 10, 10))
    assert [i.image_id for i in stage.held_images("kim")] == [3, 4]
    stage.finish_image("kim", 3)
    stage.finish_image("kim", 4)
    time.sleep(0.5)
    held = stage.held_images("kim")
    assert [i.image_id for i in held] == [1, 2] and [b.annotator for b in held[0].boxes] == ["tab"]  # continued by kim
    # Z on the photo taken over: its last box goes, though tab drew it (it stays tab's, undone by kim)
    undone = stage.undo("kim")
    assert (undone.kind, undone.image_id, undone.drawn_by) == ("box", 1, "tab")
    assert stage.held_images("kim", claim=False)[0].boxes == () and stage.boxes() == []
    with store._read() as db:
        assert db.execute("SELECT annotator, undone_by, undone_at IS NOT NULL FROM boxes").fetchall() == [("tab", "kim", 1)]
    # no box left on the photo on screen: now the photo kim finished last (4) comes back, and goes first
    assert stage.undo("kim").kind == "finish"
    assert [i.image_id for i in stage.held_images("kim", claim=False)] == [4, 1, 2]
    assert stage.release("kim") == [("kim", 1), ("kim", 2), ("kim", 4)]
    assert stage.summary() == {"images_total": 4, "images_finished": 1, "images_held_by_others": 0, "images_left": 3}
    store.close()


def test_undo_reopens_the_photo_finished_last_even_when_the_clock_went_back(
    boxes_store: AnnotationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which photo was finished last is the order of the finishes, not their wall-clock times."""
    clock = [1000.0]
    monkeypatch.setattr(box_store, "time", SimpleNamespace(time=lambda: clock[0]))
    stage = BoxStage(boxes_store)
    stage.held_images("kim")
    stage.finish_image("kim", 1)
    clock[0] = 500.0  # the system clock is set back (NTP, a new time zone on a laptop)
    stage.finish_image("kim", 2)
    assert stage.undo("kim").image_id == 2
    assert stage.undo("kim").image_id == 1
    assert [i.image_id for i in stage.held_images("kim", claim=False)] == [1, 2]
    boxes_store.close()


def test_a_reopened_photo_counts_as_claimed_now(tmp_path: Path, photos: Path) -> None:
    """An annotator idle for longer than the timeout who reopens a photo keeps it: the next claim
    of someone else does not take it straight back."""
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball"], claim_timeout_s=0.3)
    stage = BoxStage(store)
    stage.held_images("kim")
    stage.finish_image("kim", 1)
    time.sleep(0.5)
    assert stage.undo("kim").image_id == 1
    assert [i.image_id for i in stage.held_images("ben")] == [3, 4]  # ben's claim releases idle annotators' photos
    assert stage.holders() == {1: "kim", 2: "kim", 3: "ben", 4: "ben"}
    store.close()


def test_inverted_empty_tiny_and_outside_boxes_are_refused_each_with_its_reason(boxes_store: AnnotationStore) -> None:
    stage = BoxStage(boxes_store)
    stage.held_images("kim")  # photo 1 is 96 x 64
    for edges, message in (
        ((5, 5, 5, 6), "the box [5, 5, 5, 6] is inverted or empty: x0 (5) must be less than x1 (5)"),
        ((10, 5, 4, 9), "x0 (10) must be less than x1 (4)"),
        ((4, 9, 10, 5), "y0 (9) must be less than y1 (5)"),
        ((4, 5, 10, 5), "y0 (5) must be less than y1 (5)"),
        ((-3, 0, 5, 5), "does not lie inside the image (96 x 64 pixels)"),
        ((90, 50, 97, 60), "does not lie inside the image"),
        ((3, 3, 4, 20), "the box [3, 3, 4, 20] spans 1 x 17 pixels: a box must span at least 2 pixels each way"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            stage.add_box("kim", 1, 1, edges=edges)
    for points, message in (
        ([(7, 7)] * 4, "the extreme points span 1 x 1 pixels"),  # four clicks on one pixel
        ([(7, 7), (7, 8), (7, 9), (7, 12)], "the extreme points span 1 x 6 pixels"),
        ([(0, 0), (96, 5), (3, 3), (4, 4)], "an extreme point lies outside the image"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            stage.add_box("kim", 1, 1, extreme_points=points)
    assert stage.boxes() == []
    assert stage.add_box("kim", 1, 1, edges=(94, 62, 96, 64))  # 2 x 2 in the corner: the smallest box
    assert stage.add_box("kim", 1, 1, extreme_points=[(7, 7), (8, 7), (7, 8), (8, 8)])
    assert [b.bbox_xywh for b in stage.boxes()] == [(94.0, 62.0, 2.0, 2.0), (7.0, 7.0, 2.0, 2.0)]
    boxes_store.close()


def test_the_box_api_is_strict_idempotent_and_read_only_on_get(boxes_store: AnnotationStore, photos: Path) -> None:
    store = boxes_store
    with serving_in_background(AnnotationServer(store, photos)) as server:
        api = Api(server.port)
        status, payload, _ = api.request("GET", "/api/boxes/state?annotator=kim")
        assert status == 200 and payload["images"] == [] and payload["images_total"] == 4
        status, state = api.post("/api/boxes/state", {"annotator": "Kim"})
        assert status == 200 and [i["image_id"] for i in state["images"]] == [1, 2]
        assert state["categories"] == [{"id": 1, "name": "ball"}, {"id": 2, "name": "box"}] and state["stage"] == "both"
        assert state["images"][0]["image_url"] == "/image/1" and state["images"][0]["width"] == 96
        body = {"annotator": "kim", "image_id": 1, "category_id": 2, "extreme_points": [[5, 9], [9, 2], [30, 8], [12, 20]]}
        for _ in range(2):  # a request sent again after a lost reply: one box
            status, state = api.post("/api/boxes/box", {**body, "draw_ms": 5200, "total_ms": 6000, "box_id": "abcdefgh01"})
            assert status == 200
        assert state["boxes_drawn"] == 1
        assert state["images"][0]["boxes"] == [
            {
                "id": 1,
                "category_id": 2,
                "bbox": [5.0, 2.0, 26.0, 19.0],
                "extreme_points": [[5, 9], [9, 2], [30, 8], [12, 20]],
                "mine": True,
            }
        ]
        for bad in (
            {**body, "extreme_points": [[1, 1]] * 3},  # three points
            {**body, "box": [0, 0, 5, 5]},  # both ways at once
            {**body, "extreme_points": [[1, 1], [2, 2], [3, 3], [400, 4]]},  # outside the photo
            {**body, "category_id": 7},
            {**body, "surprise": 1},
        ):
            assert api.post("/api/boxes/box", bad)[0] == 400, bad
        status, refused = api.post("/api/boxes/box", {**body, "image_id": 3})
        assert status == 409 and "not held" in refused["error"] and refused["state"]["images"][0]["image_id"] == 1
        for _ in range(2):
            status, state = api.post("/api/boxes/finish", {"annotator": "kim", "image_id": 1, "finish_id": "finish0001"})
            assert status == 200
        assert state["images_finished"] == 1 and [i["image_id"] for i in state["images"]] == [2, 3]
        # the point page sees the object, and that photos are still to box
        points = api.state("ann")
        assert points["objects_total"] == 1 and points["boxes"] == {"stage": "both", "images_left": 3}
        status, state = api.post("/api/boxes/undo", {"annotator": "kim"})
        assert status == 200 and state["undone"] is None and "being labelled" in state["refused"]
        # downloads: boxes only, and the points
        status, document, headers = api.request("GET", "/export.json?boxes=1")
        assert status == 200 and document["annotations"][0]["extreme_points"] == [[5, 9], [9, 2], [30, 8], [12, 20]]
        assert 'filename="photos.boxes.json"' in headers["Content-Disposition"]
        status, page, _ = api.request("GET", "/progress")
        assert status == 200 and b"Seconds per box: median <b>5.20 s</b> over 1 boxes (the paper: 7.0 s" in page
        store.stage = "points"  # serve --stage points: boxes are not taken
        assert api.post("/api/boxes/box", {**body, "image_id": 2})[0] == 409
        status, page, _ = api.request("GET", "/boxes")
        assert status == 200 and b"boxes.js" in page
    store.close()


def test_box_api_timings_skips_degenerate_boxes_and_undo_of_an_inherited_box(tmp_path: Path, photos: Path) -> None:
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball"], claim_timeout_s=0.3)
    with serving_in_background(AnnotationServer(store, photos)) as server:
        api = Api(server.port)
        assert [i["image_id"] for i in api.post("/api/boxes/state", {"annotator": "Tab"})[1]["images"]] == [1, 2]
        base = {"annotator": "tab", "image_id": 1, "category_id": 1}
        # a box drawn hours after the photo appeared is kept; its time is unknown
        status, state = api.post("/api/boxes/box", {**base, "box": [0, 0, 10, 10], "draw_ms": 7_200_000, "total_ms": 1e300})
        assert status == 200 and state["boxes_drawn"] == 1
        status, state = api.post("/api/boxes/box", {**base, "box": [5, 5, 20, 20], "draw_ms": 4000, "total_ms": 3_600_001})
        assert status == 200 and state["boxes_drawn"] == 2
        assert [(b.draw_ms, b.total_ms) for b in BoxStage(store).boxes()] == [(None, None), (4000.0, None)]
        assert api.post("/api/boxes/box", {**base, "box": [1, 1, 9, 9], "draw_ms": -1})[0] == 400
        for bad, message in (
            ({"box": [5, 5, 5, 6]}, "x0 (5) must be less than x1 (5)"),
            ({"box": [10, 5, 4, 9]}, "x0 (10) must be less than x1 (4)"),
            ({"box": [10, 5, 96, 65]}, "does not lie inside the image"),
            ({"extreme_points": [[7, 7]] * 4}, "span 1 x 1 pixels"),
        ):
            status, refused = api.post("/api/boxes/box", {**base, **bad})
            assert status == 400 and message in refused["error"], (bad, refused)
        report = compute_progress(store)
        assert report.boxes is not None and report.boxes.timing.count == 1 and report.boxes.timing_with_category.count == 0

        # a photo the page cannot load goes behind the annotator's others, and comes back after the next
        status, state = api.post("/api/boxes/skip", {"annotator": "tab", "image_id": 1})
        assert status == 200 and [i["image_id"] for i in state["images"]] == [2, 1]
        state = api.post("/api/boxes/finish", {"annotator": "tab", "image_id": 2})[1]
        assert [i["image_id"] for i in state["images"]] == [1, 3]
        assert api.post("/api/boxes/skip", {"annotator": "tab", "image_id": 4})[0] == 409  # not tab's

        # tab leaves; kim gets photo 1 with tab's boxes, and Z takes them back, last first
        time.sleep(0.5)
        state = api.post("/api/boxes/state", {"annotator": "kim"})[1]
        assert [i["image_id"] for i in state["images"]] == [1, 3]
        assert [b["mine"] for b in state["images"][0]["boxes"]] == [False, False]
        status, state = api.post("/api/boxes/undo", {"annotator": "kim"})
        assert status == 200 and state["undone"] == {"kind": "box", "image_id": 1, "drawn_by": "Tab", "mine": False}
        assert [b["bbox"] for b in state["images"][0]["boxes"]] == [[0.0, 0.0, 10.0, 10.0]]
        api.post("/api/boxes/box", {"annotator": "kim", "image_id": 1, "category_id": 1, "box": [30, 30, 40, 40]})
        assert api.post("/api/boxes/undo", {"annotator": "kim"})[1]["undone"]["mine"] is True
        assert api.post("/api/boxes/undo", {"annotator": "kim"})[1]["undone"]["drawn_by"] == "Tab"
        state = api.post("/api/boxes/undo", {"annotator": "kim"})[1]  # nothing on photo 1, kim finished none
        assert state["undone"] is None and state["refused"] is None
    store.close()


def test_the_boxes_download_is_the_checked_export(
    tmp_path: Path, boxes_store: AnnotationStore, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage = BoxStage(boxes_store)
    stage.held_images("kim")
    stage.add_box("kim", 1, 1, extreme_points=[(1, 5), (5, 1), (9, 5), (5, 9)])
    stage.add_box("kim", 1, 2, edges=(20, 20, 40, 30))
    stage.finish_image("kim", 1)
    with serving_in_background(AnnotationServer(boxes_store, photos)) as server:
        api = Api(server.port)
        status, served, _ = api.request("GET", "/export.json?boxes=1")
        assert status == 200
        assert main(["annotate", "export", "--db", str(boxes_store.path), "--boxes", "-o", str(tmp_path / "b.json")]) == 0
        assert served == json.loads((tmp_path / "b.json").read_text())
        assert all("point_coords" not in a for a in served["annotations"])  # boxes only: `annotate serve` draws the points
        with boxes_store._write() as db:  # a damaged database: a finished box without width
            db.execute("UPDATE boxes SET x1 = x0 WHERE id = 2")
        status, refused, _ = api.request("GET", "/export.json?boxes=1")
        assert status == 500 and "zero or negative size" in refused["error"]
    boxes_store.close()
    assert main(["annotate", "export", "--db", str(tmp_path / "s.db"), "--boxes", "-o", str(tmp_path / "c.json")]) == 2
    assert "zero or negative size" in capsys.readouterr().err and not (tmp_path / "c.json").exists()


def test_the_box_queries_of_one_annotator_use_an_index(boxes_store: AnnotationStore) -> None:
    with boxes_store._read() as db:
        for query in (
            "SELECT COUNT(*) FROM boxes WHERE annotator = ? AND undone_at IS NULL",
            "SELECT drawn_at FROM boxes WHERE annotator = ?",
        ):
            plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ("kim",)))
            assert "boxes_by_annotator" in plan, plan
        query = "SELECT undone_at FROM boxes WHERE undone_by = ?"
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {query}", ("kim",)))
        assert "boxes_by_undoer" in plan, plan
    boxes_store.close()


def test_a_session_from_a_coco_file_has_no_box_stage(store: AnnotationStore, server: AnnotationServer, api: Api) -> None:
    assert api.post("/api/boxes/state", {"annotator": "kim"})[0] == 404
    assert api.request("GET", "/export.json?boxes=1")[0] == 404
    assert api.state("kim")["boxes"] is None
    assert compute_progress(store).boxes is None


def test_progress_reports_seconds_per_box_against_the_paper(boxes_store: AnnotationStore) -> None:
    store, stage = boxes_store, BoxStage(boxes_store)
    stage.held_images("Kim")
    for k, ms in enumerate([5000.0, 6000.0, 9000.0]):
        stage.add_box("kim", 1, 1, edges=(k, k, k + 10, k + 10), draw_ms=ms, total_ms=ms + 500)
    stage.add_box("kim", 1, 1, extreme_points=[(1, 5), (5, 1), (9, 5), (5, 9)], draw_ms=7000.0, total_ms=7000.0)
    stage.finish_image("kim", 1)
    stage.finish_image("kim", 2)
    report = compute_progress(store)
    assert report.boxes is not None and report.objects_total == 4
    assert report.boxes.images_finished == 2 and report.boxes.images_empty == 1 and report.boxes.extreme == 1
    assert report.boxes.timing.median_s == pytest.approx(6.5)
    text = report.format_table()
    assert "photos boxed: 2 / 4 (1 without objects, 0 held now); 4 boxes (1 extreme-clicked, 3 dragged)" in text
    assert "seconds per box: 6.50 median over 4 boxes (the paper: 7.0 s); 6.75 with the choice of the category" in text
    assert json.loads(json.dumps(report.to_dict()))["boxes"]["timing"]["median_s"] == pytest.approx(6.5)
    assert "Kim" in render_progress_page(report)
    store.close()


#: what a version-3 database holds (user tables and indexes; SQLite's own aside)
V3_TABLES = {
    "meta", "dataset", "images", "categories", "objects", "assignments", "answers", "annotators", "relabels", "gold_answers",
    "sqlite_sequence",
}  # fmt: skip
V3_INDEXES = {"objects_by_assigned", "answers_live", "answers_by_annotator", "answers_by_client_id"}


def schema(path: Path) -> list[tuple[str, str, str]]:
    """``(type, name, sql)`` of everything in the database's schema, sorted."""
    db = sqlite3.connect(path)
    try:
        return sorted(db.execute("SELECT type, name, COALESCE(sql, '') FROM sqlite_master").fetchall())
    finally:
        db.close()


def keep_only(path: Path, tables: set[str], indexes: set[str], version: int) -> None:
    """Turn a current database into an older one: every table and index not listed dropped (those
    of later versions), ``schema_version`` set."""
    db = sqlite3.connect(path)
    with db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            if table not in tables:
                db.execute(f"DROP TABLE {table}")
        for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchall():
            if index not in indexes:
                db.execute(f"DROP INDEX {index}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    db.close()


def test_version_3_databases_are_upgraded_and_every_open_completes_the_schema(
    tmp_path: Path, synthetic: SyntheticDataset
) -> None:
    path = tmp_path / "s.db"
    store, _ = open_session(path, synthetic.train_json, num_points=3)
    for task in store.next_points("kim", 3):
        store.record_answer("kim", task.position, task.point_index, 1, 500.0, f"answer-000{task.point_index}")
    store.close()
    current = schema(path)
    keep_only(path, V3_TABLES, V3_INDEXES, 3)  # what version 3 wrote: no box stage, no suggestions
    v3 = schema(path)
    assert {name for kind, name, sql in v3 if kind == "table"} == V3_TABLES
    assert {name for kind, name, sql in v3 if kind == "index" and sql} == V3_INDEXES

    store = AnnotationStore.open(path)
    assert schema(path) == current  # every table and index of version 4, the box stage's and the suggestions'
    assert store._connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    assert store.annotator_counts("kim") == (3, 1)  # reads answer_suggestions (labels the model made)
    position = store.live_answers()[0].position
    assert store.relabel("kim", position, 1, 0) == 1  # writes answer_suggestions
    assert store.undo_last("kim") == (position, 2)
    assert store.annotator_counts("kim") == (2, 0)
    report = compute_progress(store)
    assert report.boxes is None and report.annotators[0].points == 2 and report.timing.count == 2
    store.close()
    store = AnnotationStore.open(path)  # again: nothing changes
    assert schema(path) == current and store.annotator_counts("kim") == (2, 0)
    assert store.own_answers("kim", position) == {0: 1, 1: 0}
    store.close()


def test_a_version_4_database_made_with_one_feature_gets_the_others_tables(
    tmp_path: Path, photos: Path, synthetic: SyntheticDataset
) -> None:
    # a build with the box stage only: no suggestion tables, though the version is 4
    store, _ = open_box_session(tmp_path / "boxes.db", photos, ["ball"], num_points=2)
    stage = BoxStage(store)
    stage.held_images("kim")
    stage.add_box("kim", 1, 1, edges=(0, 0, 10, 10))
    stage.finish_image("kim", 1)
    store.close()
    current = schema(tmp_path / "boxes.db")
    names = {name for _, name, _ in current}
    keep_only(tmp_path / "boxes.db", names - {"suggestions", "answer_suggestions"}, names, SCHEMA_VERSION)
    store = AnnotationStore.open(tmp_path / "boxes.db")
    assert schema(tmp_path / "boxes.db") == current
    task = store.next_points("ann", 1)[0]
    store.record_answer("ann", task.position, task.point_index, 1, 400.0)
    assert store.annotator_counts("ann") == (1, 0) and store.relabel("ann", task.position, 0, 0) == 1
    assert compute_progress(store).boxes is not None
    store.close()

    # a build with model suggestions only: no box tables
    store, _ = open_session(tmp_path / "coco.db", synthetic.train_json, num_points=2)
    store.close()
    current = schema(tmp_path / "coco.db")
    names = {name for _, name, _ in current}
    box_names = {name for _, name, _ in current if name.startswith(("box", "sqlite_autoindex_box"))}
    assert {"boxes", "box_images", "boxes_by_annotator"} <= box_names
    keep_only(tmp_path / "coco.db", names - box_names, names - box_names, SCHEMA_VERSION)
    AnnotationStore.open(tmp_path / "coco.db").close()
    assert schema(tmp_path / "coco.db") == current


def test_box_tables_of_an_earlier_build_get_their_new_columns(tmp_path: Path, photos: Path) -> None:
    """A box stage made before ``finish_order`` and ``undone_by``: the columns are added and filled
    (finish order by time; boxes undone then were their authors' own)."""
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball"])
    stage = BoxStage(store)
    stage.held_images("kim")
    stage.add_box("kim", 1, 1, edges=(0, 0, 10, 10))
    stage.add_box("kim", 1, 1, edges=(2, 2, 10, 10))
    stage.undo("kim")
    stage.finish_image("kim", 2)
    stage.finish_image("kim", 1)
    store.close()
    current = schema(tmp_path / "s.db")
    db = sqlite3.connect(tmp_path / "s.db")
    with db:
        db.execute("DROP INDEX boxes_by_undoer")
        db.execute("ALTER TABLE boxes DROP COLUMN undone_by")
        db.execute("ALTER TABLE box_images DROP COLUMN finish_order")
    db.close()
    store = AnnotationStore.open(tmp_path / "s.db")
    with store._read() as db:
        assert db.execute("SELECT image_id, finish_order FROM box_images ORDER BY image_id").fetchall()[:2] == [(1, 2), (2, 1)]
        assert db.execute("SELECT id, undone_by FROM boxes ORDER BY id").fetchall() == [(1, None), (2, "kim")]
    assert {name for _, name, _ in schema(tmp_path / "s.db")} == {name for _, name, _ in current}
    assert BoxStage(store).undo("kim").image_id == 1  # photo 1 was finished last
    store.close()


def test_order_of_extreme_points() -> None:
    assert order_extreme_points([(5, 0), (0, 5), (5, 10), (10, 5)]) == ((0, 5), (5, 0), (10, 5), (5, 10))
    assert order_extreme_points([(9, 4), (3, 8), (0, 5), (4, 0)]) == ((0, 5), (4, 0), (9, 4), (3, 8))
    # corner clicks: the top-left one is left and top at once, so each of the two takes one role
    assert order_extreme_points([(9, 9), (0, 0), (9, 9), (0, 0)]) == ((0, 0), (0, 0), (9, 9), (9, 9))
    assert box_from_extreme_points(order_extreme_points([(9, 9), (0, 0), (9, 9), (0, 0)])) == (0, 0, 10, 10)


# ---- the command line and bad input ------------------------------------------------------------


def serve(*args: str | Path) -> list[str]:
    return ["annotate", "serve", *map(str, args)]


def refused_with(capsys: pytest.CaptureFixture[str], argv: list[str], *expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, err


def test_bad_folders_and_category_lists_are_refused_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_photos(tmp_path / "good", PHOTOS[:1])
    db = ["--db", tmp_path / "s.db"]
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    (empty / ".DS_Store").write_bytes(b"x")
    refused_with(capsys, serve("--images", empty, "--categories", "a", *db), f"--images {empty}: no image files")
    texts = make_photos(tmp_path / "texts", PHOTOS[:1])
    (texts / "notes.txt").write_text("hello")
    (texts / "IMG_1.heic").write_bytes(b"....")
    refused_with(
        capsys, serve("--images", texts, "--categories", "a", *db), "2 files are not images a browser shows", "IMG_1.heic"
    )
    broken = make_photos(tmp_path / "broken", PHOTOS[:1])
    (broken / "z.jpg").write_bytes(b"not a jpeg at all")
    refused_with(capsys, serve("--images", broken, "--categories", "a", *db), "1 of 2 image files cannot be used", "z.jpg")
    cut = make_photos(tmp_path / "cut", [("x.png", 64, 64)])
    data = (cut / "x.png").read_bytes()
    (cut / "x.png").write_bytes(data[: len(data) // 2])
    refused_with(capsys, serve("--images", cut, "--categories", "a", *db), "x.png (not a readable image")
    refused_with(
        capsys, serve("--images", good, "--categories", f"@{tmp_path / 'missing.txt'}", *db), "missing.txt: no such file"
    )
    (tmp_path / "empty.txt").write_text("# nothing but a comment\n\n")
    refused_with(
        capsys, serve("--images", good, "--categories", f"@{tmp_path / 'empty.txt'}", *db), "empty.txt: no category names"
    )
    (tmp_path / "twice.txt").write_text("balloon\nkite\nBalloon\n")
    refused_with(
        capsys,
        serve("--images", good, "--categories", f"@{tmp_path / 'twice.txt'}", *db),
        "'Balloon' is listed twice (line 1 and line 3)",
    )
    # a file given without @ (as earlier versions took it): refused with the way to give it
    refused_with(
        capsys,
        serve("--images", good, "--categories", tmp_path / "twice.txt", *db),
        f"give --categories @{tmp_path / 'twice.txt'}",
    )
    refused_with(capsys, serve("--images", good, "--categories", "a,b,A", *db), "'A' is listed twice")
    refused_with(capsys, serve("--images", good, "--categories", " , ", *db), "no category names given")
    refused_with(capsys, serve("--images", good, *db), "holds no session yet: give --categories")
    refused_with(capsys, serve(tmp_path / "x.json", "--images", good, "--categories", "a"), "without DATASET.json")
    refused_with(capsys, serve("--images", good, "--categories", "a", "--gold", "0.1", *db), "--gold")
    assert not (tmp_path / "s.db").exists()


def test_resuming_checks_the_settings_and_categories(tmp_path: Path, photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, _ = open_box_session(tmp_path / "s.db", photos, ["ball", "box"])
    store.close()
    db = ["--db", tmp_path / "s.db"]
    refused_with(
        capsys, serve("--images", photos, "--categories", "ball,kite", *db), "--categories ball,kite (it was made with ball,box)"
    )
    refused_with(capsys, serve("--images", photos, "--points", "4", *db), "--points 4 (it was made with 10)")
    (photos / "a.png").unlink()
    refused_with(capsys, serve("--images", photos, *db), "1 of 4 image files are not there")


def test_parse_categories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_categories("balloon") == ["balloon"]
    assert parse_categories(" cat, dog ,bird") == ["cat", "dog", "bird"]
    (tmp_path / "names").write_text("\ufeff# categories\ncat\n\ndog, bird\n")
    assert parse_categories(f"@{tmp_path / 'names'}") == ["cat", "dog", "bird"]
    # names are names, whatever files the working folder holds, and may hold a slash
    monkeypatch.chdir(tmp_path)
    assert parse_categories("names") == ["names"]
    assert parse_categories("person/rider") == ["person/rider"] and parse_categories("car,bus/coach") == ["car", "bus/coach"]
    assert parse_categories("@names") == ["cat", "dog", "bird"]  # relative to the working folder
    for value, message in (
        ("@", "give the file of category names after @"),
        ("@nothing.txt", "@nothing.txt: no such file"),
        ("names.txt", "give --categories @names.txt"),
    ):
        with pytest.raises(FolderError, match=message):
            parse_categories(value)
    assert [name for name, _, _ in scan_image_folder(make_photos(tmp_path / "p"))] == [p[0] for p in sorted(PHOTOS)]


def test_export_and_release_commands(tmp_path: Path, boxes_store: AnnotationStore, capsys: pytest.CaptureFixture[str]) -> None:
    stage = BoxStage(boxes_store)
    stage.held_images("kim")
    stage.add_box("kim", 1, 2, extreme_points=[(1, 5), (5, 1), (9, 5), (5, 9)])
    stage.finish_image("kim", 1)
    boxes_store.close()
    db = str(tmp_path / "s.db")
    assert main(["annotate", "export", "--db", db, "--boxes", "-o", str(tmp_path / "boxes.json")]) == 0
    assert (
        "1 photos with their boxes finished, 1 boxes (1 extreme-clicked, 0 dragged); 3 photos not finished yet"
        in capsys.readouterr().out
    )
    boxes = load_point_dataset(tmp_path / "boxes.json", require_points=False)
    assert boxes.instances[0].extra["extreme_points"] == [[1, 5], [5, 1], [9, 5], [5, 9]]
    assert main(["annotate", "release", "--db", db]) == 0
    assert "released 1 photos held by kim (their boxes stay)" in capsys.readouterr().out
    assert main(["annotate", "progress", "--db", db]) == 0
    assert "photos boxed: 1 / 4" in capsys.readouterr().out


def test_links_in_the_photo_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Links to folders are not followed: one into the folder would ask its photos twice, one to a
    folder above never ends. A link to a file is fine when it leads to a file of the folder that no
    other name leads to."""
    db = ["--db", tmp_path / "s.db"]

    twice = make_photos(tmp_path / "twice")
    (twice / "again").symlink_to(twice / "more", target_is_directory=True)
    refused_with(
        capsys,
        serve("--images", twice, "--categories", "a", *db),
        f"1 of its subfolders is a link to a folder, e.g. {twice / 'again'} -> {twice / 'more'}",
        "links to folders are not followed",
    )
    loop = make_photos(tmp_path / "loop")
    (loop / "more" / "up").symlink_to("..", target_is_directory=True)
    refused_with(capsys, serve("--images", loop, "--categories", "a", *db), f"{loop / 'more' / 'up'} -> ..")

    outside = make_photos(tmp_path / "outside", PHOTOS[:2])
    make_photos(tmp_path / "elsewhere", [("x.png", 30, 20)])
    (outside / "x.png").symlink_to(tmp_path / "elsewhere" / "x.png")
    refused_with(
        capsys,
        serve("--images", outside, "--categories", "a", *db),
        "1 of 3 image files cannot be used",
        f"{outside / 'x.png'} (a link to a file outside the folder)",
    )
    double = make_photos(tmp_path / "double", PHOTOS[:2])
    (double / "c.png").symlink_to("a.png")
    refused_with(capsys, serve("--images", double, "--categories", "a", *db), "c.png (the same file as a.png (a link)")
    assert not (tmp_path / "s.db").exists()

    fine = make_photos(tmp_path / "fine", PHOTOS[:2])
    (fine / "b.jpg").rename(tmp_path / "fine" / ".b.jpg")
    (fine / "b.jpg").symlink_to(".b.jpg")  # a link to a file of the folder (hidden itself): one photo
    assert [name for name, _, _ in scan_image_folder(fine)] == ["a.png", "b.jpg"]


def test_command_line_refusals_of_the_box_stage(
    tmp_path: Path, synthetic: SyntheticDataset, boxes_store: AnnotationStore, capsys: pytest.CaptureFixture[str]
) -> None:
    boxes_store.close()
    refused_with(capsys, serve("--images", "/", "--categories", "a"), "--images /: the root folder", "give --db FILE")
    db = ["--db", tmp_path / "coco.db"]
    refused_with(
        capsys,
        serve(synthetic.train_json, "--images", synthetic.image_dir, "--stage", "boxes", *db),
        f"--stage boxes: {synthetic.train_json} has its boxes already",
    )
    assert not (tmp_path / "coco.db").exists()
    export = ["annotate", "export", "--db", str(tmp_path / "s.db"), "--boxes", "-o", str(tmp_path / "b.json")]
    refused_with(capsys, [*export, "--partial"], "--partial applies to the point file (leave out --boxes)")
    refused_with(capsys, [*export, "--annotator", "kim"], "--annotator applies to the point file")
    assert not (tmp_path / "b.json").exists()
