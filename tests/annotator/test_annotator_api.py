"""The labelling server's HTTP API: answers, undo, resume, concurrent annotators, pages."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from annotator_testing import Api, answer_all, true_labels
from PIL import Image

from pointsup.annotator.export import export_points
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.data.synthetic import SyntheticDataset
from pointsup.points.format import load_point_dataset


def test_state_answer_undo_round_trip(api: Api, store: AnnotationStore) -> None:
    state = api.state("ann")
    n = store.settings.num_points
    assert [t["key"] for t in state["tasks"]] == [f"0:{i}" for i in range(6)]
    first = state["tasks"][0]
    obj = store.objects()[0]
    assert (first["x"], first["y"]) == tuple(obj.points[0].tolist())
    assert first["bbox"] == list(obj.bbox_xywh)
    assert first["category"] == store.category_names[obj.category_id]
    assert first["image_url"] == f"/image/{obj.image_id}"

    status, reply = api.answer("ann", first, "object", 812.5)
    assert status == 200 and reply["tasks"][0]["key"] == "0:1" and reply["points_answered"] == 1
    (stored,) = store.live_answers()
    assert (stored.annotator, stored.position, stored.point_index, stored.label, stored.response_ms) == ("ann", 0, 0, 1, 812.5)

    # the same answer again (a retried request) is refused with the current state, not stored twice
    status, reply = api.answer("ann", first, "object")
    assert status == 409 and reply["state"]["tasks"][0]["key"] == "0:1"
    assert len(store.live_answers()) == 1

    undone = api.undo("ann")
    assert undone["undone"] == {"position": 0, "point_index": 0}
    assert undone["tasks"][0]["key"] == "0:0" and store.live_answers() == []
    assert api.undo("ann")["undone"] is None

    labels = true_labels(store)
    answered = answer_all(api, "ann", labels, limit=n + 2)
    assert answered == [(0, i) for i in range(n)] + [(1, 0), (1, 1)]
    assert api.state("ann")["objects_finished"] == 1


def test_resume_after_server_restart(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    db = tmp_path / "s.db"
    store, _ = open_session(db, synthetic.train_json)
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        answer_all(Api(server.port), "ann", true_labels(store), limit=13)
    store.close()
    store, created = open_session(db, synthetic.train_json)
    assert not created
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        assert Api(server.port).state("ann")["tasks"][0]["key"] == "1:3"
    store.close()


def test_two_annotators_at_once_label_disjoint_objects(api: Api, store: AnnotationStore, tmp_path: Path) -> None:
    labels = true_labels(store)
    done: dict[str, list[tuple[int, int]]] = {}

    def label(name: str) -> None:
        done[name] = answer_all(api, name, labels)

    threads = [threading.Thread(target=label, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    objects = {name: {position for position, _ in keys} for name, keys in done.items()}
    assert objects["alice"] and objects["bob"], "both annotators got work"
    assert not objects["alice"] & objects["bob"]
    assert objects["alice"] | objects["bob"] == set(range(store.settings.num_objects))
    assert len(done["alice"]) + len(done["bob"]) == store.settings.num_points * store.settings.num_objects
    export_points(store, tmp_path / "out.json")
    assert len(load_point_dataset(tmp_path / "out.json").images) == len(store.images)


def test_pages_images_and_progress(api: Api, store: AnnotationStore, synthetic: SyntheticDataset) -> None:
    status, page, headers = api.request("GET", "/")
    assert status == 200 and b'id="context-view"' in page and b'id="zoom-view"' in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/static/annotate.js", "/static/annotator.css"):
        assert api.request("GET", path)[0] == 200
    image_id = next(iter(store.images))
    status, body, headers = api.request("GET", f"/image/{image_id}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == (synthetic.image_dir / store.images[image_id][0]).read_bytes()
    assert Image.open(io.BytesIO(body)).size == store.images[image_id][1:]

    answer_all(api, "ann", true_labels(store), limit=4)
    status, progress = api.request("GET", "/api/progress")[:2]
    assert status == 200 and progress["annotators"][0]["points"] == 4
    assert progress["mask_agreement"] == 1.0
    status, html, _ = api.request("GET", "/progress")
    assert status == 200 and b"ann" in html and b"100.0 %" in html


def test_names_are_escaped_in_the_progress_page(api: Api, store: AnnotationStore) -> None:
    evil = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'
    answer_all(api, evil, true_labels(store), limit=2)
    assert [a.annotator for a in store.live_answers()] == [evil, evil]
    html = api.request("GET", "/progress")[1].decode()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img src=x onerror=alert(1)&gt;" in html


def test_an_answer_sent_again_with_its_id_is_stored_once(api: Api, store: AnnotationStore) -> None:
    """A page resending after an outage (the first reply lost) gets the state, not a conflict."""
    task = api.state("ann")["tasks"][0]
    body = {"annotator": "ann", "position": 0, "point_index": 0, "label": "object", "answer_id": "a1b2c3d4e5f6"}
    first = api.post("/api/answer", body)
    again = api.post("/api/answer", body)
    assert first[0] == again[0] == 200 and first[1]["tasks"] == again[1]["tasks"]
    assert [(a.position, a.point_index) for a in store.live_answers()] == [(task["position"], task["point_index"])]
    assert api.post("/api/answer", {**body, "answer_id": "bad id!"})[0] == 400


def test_gold_answers_are_stored_once_and_only_when_due(api: Api, store: AnnotationStore) -> None:
    from pointsup.annotator.gold import GoldError, GoldPlan

    store.gold = GoldPlan.for_store(store, share=0.5, training=1)
    tasks = api.state("ann")["tasks"]
    assert tasks[0]["key"] == "g:0" and tasks[0]["training"] and "truth" in tasks[0]
    assert "truth" not in next(t for t in tasks if t["key"] == "g:1")  # later gold questions carry no answer
    body = {"annotator": "ann", "gold_index": 1, "label": "object"}
    assert api.post("/api/gold", body)[0] == 409  # not due yet
    for _ in range(2):  # sent twice: stored once
        status, reply = api.post("/api/gold", {**body, "gold_index": 0})
        assert status == 200 and reply["tasks"][0]["key"] == "0:0"
    assert len(store.gold_answers()) == 1
    with pytest.raises(GoldError, match="below 1"):
        GoldPlan.for_store(store, share=1.5)


def test_a_response_time_over_an_hour_is_kept_as_unknown_not_refused(api: Api, store: AnnotationStore) -> None:
    """A point answered after the tab was left open for hours: the answer counts, its time does
    not (a refusal would make the page drop it and every answer queued after it)."""
    tasks = api.state("ann")["tasks"]
    status, reply = api.answer("ann", tasks[0], "object", 7_200_000.0)
    assert status == 200, reply
    status, reply = api.answer("ann", reply["tasks"][0], "background", 1e300)
    assert status == 200, reply
    status, reply = api.answer("ann", reply["tasks"][0], "object", 3_600_000.0)  # an hour exactly: kept
    assert status == 200, reply
    assert [(a.point_index, a.label, a.response_ms) for a in store.live_answers()] == [
        (0, 1, None),
        (1, 0, None),
        (2, 1, 3_600_000.0),
    ]
    assert api.answer("ann", reply["tasks"][0], "object", -1.0)[0] == 400  # a negative time is still malformed
