"""Model-assisted labelling (``annotate serve --weights``): suggestions from a tiny trained
checkpoint agree with the masks at clear points and with ``pseudo-label``; they are stored once,
handed out with the points, kept beside the answers and reported; ``--skip-confident`` labels
confident points by the model and the export marks them; a checkpoint that does not fit is one
line and exit status 2; in a real browser, A accepts the suggestion shown."""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from annotator_testing import Api, open_page, start_server
from pycocotools import mask as mask_utils

from benchmarks.assist_latency import build_tiny_checkpoint, make_blob_dataset
from pointsup.annotator.assist import (
    Assist,
    SuggestionModel,
    SuggestionWorker,
    answer_suggestions,
    objects_without_suggestions,
    start_assist,
    suggested_label,
)
from pointsup.annotator.browser import browser_unavailable_reason
from pointsup.annotator.export import MODEL_LABELLED_FIELD, export_points
from pointsup.annotator.progress import compute_progress
from pointsup.annotator.progress_page import render_progress_page
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, open_session
from pointsup.cli import main
from pointsup.data.dataset import InstanceDataset
from pointsup.engine.predictor import load_trained_model
from pointsup.engine.pseudo_label import predict_pseudo_masks
from pointsup.points.format import load_point_dataset, read_coco_json
from pointsup.points.rle import segmentation_to_rle
from pointsup.utils.atomic import write_json_atomic

POINTS = 10
#: pixels around a point that must share its mask value for it to be "clear"
CLEAR_RADIUS = 2


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(dataset, images, checkpoint)``: pictures of blobs and a tiny model fitted to them."""
    root = tmp_path_factory.mktemp("blobs")
    dataset, images = make_blob_dataset(root, num_images=6)
    return dataset, images, build_tiny_checkpoint(dataset, images, root / "model")


@pytest.fixture(scope="module")
def template(blobs: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A session database whose suggestions are computed (by :func:`start_assist`, as ``serve``
    does), and the checkpoint's digest."""
    dataset, images, weights = blobs
    path = tmp_path_factory.mktemp("template") / "session.db"
    store, _ = open_session(path, dataset, num_points=POINTS, images_dir=images)
    worker, computed = start_assist(store, SuggestionModel.load(weights, "cpu"), images, source=str(dataset), show_progress=False)
    worker.stop()
    assert computed == store.settings.num_objects
    digest = worker.model.digest
    store.close()
    return path, digest


def copy_session(template: tuple[Path, str], folder: Path, skip_confident: float | None = None) -> AnnotationStore:
    source, digest = template
    target = folder / "session.db"
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    store = AnnotationStore.open(target)
    store.assist = Assist(digest, skip_confident)
    return store


@pytest.fixture
def assisted(template: tuple[Path, str], tmp_path: Path) -> Iterator[AnnotationStore]:
    store = copy_session(template, tmp_path)
    yield store
    store.close()


def stored_probabilities(store: AnnotationStore) -> dict[int, list[float]]:
    assert store.assist is not None
    positions = [o.position for o in store.objects()]
    with store._read() as db:
        found = {position: store.assist.suggestions(db, position) for position in positions}
    return {position: value[0] for position, value in found.items() if value is not None}


def truth_masks(dataset: Path) -> dict[int, np.ndarray]:
    coco = read_coco_json(dataset)
    sizes = {i["id"]: (i["height"], i["width"]) for i in coco["images"]}
    return {
        a["id"]: mask_utils.decode(segmentation_to_rle(a["segmentation"], *sizes[a["image_id"]])) for a in coco["annotations"]
    }


def test_suggestions_match_the_masks_at_clear_points_and_the_pseudo_masks(assisted, blobs) -> None:
    dataset, images, weights = blobs
    probabilities = stored_probabilities(assisted)
    assert set(probabilities) == {o.position for o in assisted.objects()}
    masks = truth_masks(dataset)
    pseudo = predict_pseudo_masks(load_trained_model(weights, "cpu"), dataset, images, show_progress=False)
    clear = agree = 0
    for obj in assisted.objects():
        mask = masks[obj.annotation_id]
        pseudo_mask = mask_utils.decode(
            {"size": pseudo[obj.annotation_id]["size"], "counts": pseudo[obj.annotation_id]["counts"]}
        )
        for (x, y), probability in zip(obj.points.tolist(), probabilities[obj.position]):
            assert 0.0 <= probability <= 1.0
            if abs(probability - 0.5) > 1e-3:  # the pseudo mask holds the point exactly when the suggestion says object
                assert suggested_label(probability) == pseudo_mask[y, x], (obj.annotation_id, x, y, probability)
            window = mask[max(y - CLEAR_RADIUS, 0) : y + CLEAR_RADIUS + 1, max(x - CLEAR_RADIUS, 0) : x + CLEAR_RADIUS + 1]
            if window.min() == window.max():
                clear += 1
                agree += suggested_label(probability) == mask[y, x]
    print(f"suggestions agree with the masks at {agree} of {clear} clear points")
    assert clear >= 0.2 * len(probabilities) * POINTS
    assert agree >= 0.95 * clear


def test_stored_once_recomputed_for_new_or_changed_objects(assisted, blobs) -> None:
    dataset, images, weights = blobs
    model = SuggestionModel.load(weights, "cpu")
    model.check_categories(assisted.category_names, str(dataset))
    worker = SuggestionWorker(assisted, model, images)
    assert worker.compute_missing() == 0  # a restart with the same checkpoint computes nothing
    before = stored_probabilities(assisted)
    with assisted._write() as db:  # an object appears (its suggestions missing) and another one's box changes
        db.execute("DELETE FROM suggestions WHERE position = 0")
        db.execute("UPDATE objects SET bbox = ? WHERE position = 1", (json.dumps([0.0, 0.0, 64.0, 64.0]),))
    assert [o.position for o in objects_without_suggestions(assisted, model.digest)] == [0, 1]
    assert 0 not in stored_probabilities(assisted) and 1 not in stored_probabilities(assisted)  # a stale one is never shown
    worker.start(interval_s=0.05)
    try:
        deadline = time.monotonic() + 60
        while objects_without_suggestions(assisted, model.digest) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    after = stored_probabilities(assisted)
    assert after[0] == pytest.approx(before[0], abs=1e-3)
    assert after[1] != before[1]
    assert {k: v for k, v in after.items() if k > 1} == {k: v for k, v in before.items() if k > 1}


def test_points_carry_suggestions_and_answers_keep_them(assisted, blobs) -> None:
    probabilities = stored_probabilities(assisted)
    truth = {(o.position, k): int(v) for o in assisted.objects() for k, v in enumerate(o.mask_values)}
    with serving_in_background(AnnotationServer(assisted, blobs[1])) as server:
        api = Api(server.port)
        tasks = api.state("kim")["tasks"]
        assert [t["suggestion"] for t in tasks] == [probabilities[t["position"]][t["point_index"]] for t in tasks]
        first = tasks[0]
        wrong = "background" if suggested_label(first["suggestion"]) else "object"
        status, reply = api.post(
            "/api/answer",
            {
                "annotator": "kim",
                "position": 0,
                "point_index": 0,
                "label": wrong,
                "accepted": True,
                "suggestion": first["suggestion"],
            },
        )
        assert status == 400 and "label of the suggestion" in reply["error"]
        overruled = accepted = 0
        while tasks:
            task = tasks[0]
            suggested = suggested_label(task["suggestion"])
            take = task["point_index"] % 2 == 0
            # every even point accepted, some odd ones overruled, the others answered from the mask
            label = (
                suggested
                if take
                else 1 - suggested
                if task["point_index"] % 4 == 1
                else truth[(task["position"], task["point_index"])]
            )
            body = {
                "annotator": "kim",
                "position": task["position"],
                "point_index": task["point_index"],
                "label": "object" if label else "background",
                "response_ms": 400.0 if take else 900.0,
                "suggestion": task["suggestion"],
                "accepted": take,
            }
            if task["position"] == 2:  # a page that showed none
                del body["suggestion"], body["accepted"]
            status, reply = api.post("/api/answer", body)
            assert status == 200, reply
            if task["position"] != 2:
                accepted += take
                overruled += label != suggested
            tasks = reply["tasks"]
        status, page = api.request("GET", "/progress")[:2]
        assert status == 200 and b"Model suggestions" in page
    kept = answer_suggestions(assisted)
    shown = len(probabilities[0]) * (len(probabilities) - 1)
    assert overruled > 0 and accepted > 0
    assert len(kept) == shown and not any(k.model_made for k in kept)
    assert sum(k.accepted for k in kept) == accepted and sum(k.overruled for k in kept) == overruled
    assert all(k.probability == probabilities[k.position][k.point_index] for k in kept)

    report = compute_progress(assisted)
    assert report.assist is not None
    overall = report.assist.overall
    assert (overall.shown, overall.accepted, overall.overruled) == (shown, accepted, overruled)
    assert overall.with_suggestion.count == shown and overall.without_suggestion.count == POINTS
    assert overall.without_suggestion.median_s == pytest.approx(0.65)  # half at 0.4 s, half at 0.9 s
    text = report.format_table()
    assert "model suggestions: shown with" in text and "median with a suggestion" in text
    msgspec.json.encode(report.to_dict())
    assert "Model suggestions" in render_progress_page(report)
    printed = main(["annotate", "progress", "--db", str(assisted.path)])
    assert printed == 0


def answer_all_from_masks(api: Api, store: AnnotationStore, name: str = "kim") -> list[tuple[int, int]]:
    truth = {(o.position, k): int(v) for o in store.objects() for k, v in enumerate(o.mask_values)}
    asked = []
    tasks = api.state(name)["tasks"]
    while tasks:
        task = tasks[0]
        asked.append((task["position"], task["point_index"]))
        status, reply = api.answer(name, task, "object" if truth[asked[-1]] else "background")
        assert status == 200, reply
        tasks = reply["tasks"]
    return asked


def test_skip_confident_labels_confident_points_and_the_export_marks_them(template, blobs, tmp_path) -> None:
    store = copy_session(template, tmp_path, skip_confident=0.9)
    probabilities = stored_probabilities(store)
    confident = {(p, k) for p, values in probabilities.items() for k, v in enumerate(values) if v >= 0.9 or v <= 0.1}
    assert 0 < len(confident) < len(probabilities) * POINTS
    with serving_in_background(AnnotationServer(store, blobs[1])) as server:
        api = Api(server.port)
        tasks = api.state("kim")["tasks"]
        assert all((t["position"], t["point_index"]) not in confident for t in tasks)
        # undo takes back the annotator's last answer and the model's labels after it
        first = tasks[0]
        before = {(a.position, a.point_index) for a in store.live_answers()}  # the model's labels at the chains' heads
        status, reply = api.answer("kim", first, "object")
        assert status == 200
        answered = {(a.position, a.point_index) for a in store.live_answers()} - before
        assert (first["position"], first["point_index"]) in answered and answered - {
            (first["position"], first["point_index"])
        } <= confident
        undone = api.undo("kim")
        on_first = {(a.position, a.point_index) for a in store.live_answers() if a.position == first["position"]}
        assert on_first == {key for key in before if key[0] == first["position"]}  # the model's labels after it went too
        assert undone["undone"] == {"position": first["position"], "point_index": first["point_index"]}
        assert undone["tasks"][0]["key"] == first["key"]
        asked = answer_all_from_masks(api, store)
    assert set(asked) == {(p, k) for p in probabilities for k in range(POINTS)} - confident
    made = [s for s in answer_suggestions(store) if s.model_made]
    assert {(s.position, s.point_index) for s in made} == confident
    assert all(s.probability == probabilities[s.position][s.point_index] for s in made)
    assert store.annotator_counts("kim") == (len(asked), len(probabilities))
    report = compute_progress(store)
    assert report.objects_done == len(probabilities)
    assert report.annotators[0].points == len(asked) and report.assist is not None and report.assist.model_made == len(confident)
    assert f"{len(confident)} labels made by the model" in report.format_table()

    output = tmp_path / "points.json"
    export_points(store, output)
    exported = load_point_dataset(output)
    positions = {o.annotation_id: o.position for o in store.objects()}
    for instance in exported.instances:
        position = positions[instance.annotation_id]
        marked = instance.extra[MODEL_LABELLED_FIELD]
        expected = [k for k in range(POINTS) if (position, k) in confident]
        assert marked == expected  # no point is unsure here: indices into point_coords are point indices
        for k in marked:
            assert instance.point_labels[k] == suggested_label(probabilities[position][k])
    # the training loader reads the file
    loaded = InstanceDataset(output, blobs[1], supervision="points")
    assert sum(len(loaded[i].targets) for i in range(len(loaded))) == len(exported.instances)
    store.close()


def test_serve_computes_the_suggestions_once(blobs, tmp_path) -> None:
    dataset, images, weights = blobs
    args = ("--weights", str(weights), "--device", "cpu", "--db", str(tmp_path / "s.db"), "--points", str(POINTS))
    objects = len(read_coco_json(dataset)["annotations"])
    for computed in (f"{objects} objects computed now", "0 objects computed now"):  # a restart computes nothing again
        server = start_server(dataset, images, *args)
        try:
            assert f"model suggestions from {weights} ({computed}" in server.printed
            tasks = Api(server.port).state("kim")["tasks"]
            assert tasks and all(0.0 <= t["suggestion"] <= 1.0 for t in tasks)
        finally:
            server.stop()


def test_a_checkpoint_that_does_not_fit_is_one_line_and_status_2(blobs, tmp_path, capsys) -> None:
    dataset, images, weights = blobs
    serve = ["annotate", "serve", str(dataset), "--images", str(images), "--port", "0", "--db", str(tmp_path / "s.db")]

    def refused(*extra: str) -> str:
        assert main([*serve, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    assert str(tmp_path / "missing.pth") in refused("--weights", str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    assert str(garbage) in refused("--weights", str(garbage))
    assert "--skip-confident needs --weights" in refused("--skip-confident", "0.9")
    assert "--skip-confident must be above 0.5" in refused("--weights", str(weights), "--skip-confident", "0.4")
    other = read_coco_json(dataset)
    other["categories"] = [{"id": 7, "name": "cat"}]
    for annotation in other["annotations"]:
        annotation["category_id"] = 7
    other_path = tmp_path / "cats.json"
    write_json_atomic(other_path, other)
    serve[2] = str(other_path)
    message = refused("--weights", str(weights), "--device", "cpu")
    assert str(weights) in message and "7 cat" in message and "1 blob" in message
    assert not (tmp_path / "s.db").exists()  # refused before anything was written


UNAVAILABLE = browser_unavailable_reason()


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"no headless browser: {UNAVAILABLE}")
def test_the_page_shows_the_suggestion_and_a_accepts_it(assisted, blobs, browser: Any) -> None:
    probabilities = stored_probabilities(assisted)
    with serving_in_background(AnnotationServer(assisted, blobs[1])) as server:
        page, problems = open_page(browser, server.url() + "?annotator=kim")
        keys: list[tuple[str, str]] = []
        for step in range(24):
            page.wait_for_selector("body[data-state=ready]")
            key = page.get_attribute("body", "data-point-key")
            position, index = (int(v) for v in key.split(":"))
            probability = probabilities[position][index]
            label = "object" if probability >= 0.5 else "background"
            sure = probability if label == "object" else 1 - probability
            assert page.is_visible("#accept-suggestion")
            assert page.inner_text("#suggestion-text") == f"model: {label} {round(100 * sure)} %"
            press = "a" if step % 3 == 0 else "Enter" if step % 3 == 1 else ("j" if label == "object" else "f")
            keys.append((key, press))
            page.keyboard.press(press)
            page.wait_for_selector(f'body:not([data-point-key="{key}"])')
        page.wait_for_selector('body[data-pending="0"]')
        latencies = page.evaluate("window.pointsupLatencies")
        page.close()
    assert not problems, problems
    kept = {f"{s.position}:{s.point_index}": s for s in answer_suggestions(assisted)}
    for key, press in keys:
        suggestion = kept[key]
        assert suggestion.accepted == (press in ("a", "Enter"))
        assert suggestion.overruled == (press not in ("a", "Enter"))
    p95 = statistics.quantiles(latencies, n=20, method="inclusive")[-1]
    print(f"answer -> next point with suggestions: median {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms")
    assert p95 <= 50.0


def test_objects_made_by_the_box_stage_get_suggestions_while_serving(blobs, tmp_path, capsys) -> None:
    from pointsup.annotator.box_session import open_box_session
    from pointsup.annotator.box_store import BoxStage

    dataset, images, weights = blobs
    folder = [
        "annotate",
        "serve",
        "--images",
        str(images),
        "--port",
        "0",
        "--db",
        str(tmp_path / "f.db"),
        "--weights",
        str(weights),
    ]
    assert main([*folder, "--categories", "cat,dog"]) == 2  # refused before the session is made
    assert str(weights) in capsys.readouterr().err and not (tmp_path / "f.db").exists()

    store, _ = open_box_session(tmp_path / "folder.db", images, ["blob"], num_points=POINTS)
    model = SuggestionModel.load(weights, "cpu")
    worker, computed = start_assist(store, model, images, source="--categories", show_progress=False)
    try:
        assert computed == 0 and store.objects_total() == 0
        boxes = BoxStage(store)
        (first, *_) = boxes.held_images("kim")
        truth = [a for a in read_coco_json(dataset)["annotations"] if a["image_id"] == first.image_id]
        for annotation in truth:
            x, y, w, h = (int(round(v)) for v in annotation["bbox"])
            boxes.add_box("kim", first.image_id, 1, edges=(x, y, x + w, y + h))
        boxes.finish_image("kim", first.image_id)
        assert store.objects_total() == len(truth)
        deadline = time.monotonic() + 60
        while objects_without_suggestions(store, model.digest) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not objects_without_suggestions(store, model.digest)
        tasks = store.next_points("kim", 6)
        probabilities = stored_probabilities(store)
        assert tasks and all(t.suggestion == probabilities[t.position][t.point_index] for t in tasks)
    finally:
        worker.stop()
        store.close()
