"""The labelling session store: points as `pointsup simulate` samples them, hand-out rules,
answers and undo, resuming, settings checks, concurrent claims."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from pointsup.annotator.store import (
    MAX_OPEN_OBJECTS,
    AnnotationStore,
    AnswerConflict,
    StoreError,
    already_stored,
    check_annotator_name,
    open_session,
)
from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset


def test_points_are_those_of_pointsup_simulate(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=7, seed=3)
    simulated = tmp_path / "sim.json"
    assert main(["simulate", str(synthetic.train_json), "-o", str(simulated), "--num-points", "7", "--seed", "3", "-q"]) == 0
    expected = {a["id"]: (a["point_coords"], a["point_labels"]) for a in json.loads(simulated.read_text())["annotations"]}
    objects = store.objects()
    assert len(objects) == len(expected) == store.settings.num_objects
    for obj in objects:
        coords, labels = expected[obj.annotation_id]
        assert obj.points.tolist() == coords
        assert obj.mask_values.tolist() == labels  # the agreement reference is the mask at the point
    # presented image by image
    image_order = [obj.image_id for obj in objects]
    assert image_order == sorted(image_order)
    store.close()


def test_answers_follow_points_in_order_and_undo_steps_back(store: AnnotationStore) -> None:
    n = store.settings.num_points
    tasks = store.next_points("ann", n + 3)
    assert [(t.position, t.point_index) for t in tasks] == [(0, i) for i in range(n)] + [(1, 0), (1, 1), (1, 2)]
    for i in range(n):
        store.record_answer("ann", 0, i, i % 2, 100.0 + i)
    assert (store.next_points("ann", 1)[0].position, store.next_points("ann", 1)[0].point_index) == (1, 0)
    assert store.annotator_counts("ann") == (n, 1)
    with pytest.raises(AnswerConflict) as conflict:
        store.record_answer("ann", 0, n - 1, 1, None)  # answered already
    assert conflict.value.expected == (1, 0)
    with pytest.raises(AnswerConflict):
        store.record_answer("ann", 1, 1, 1, None)  # skips a point
    # undo crosses back into the finished object
    assert store.undo_last("ann") == (0, n - 1)
    current = store.next_points("ann", 1)[0]
    assert (current.position, current.point_index) == (0, n - 1)
    assert store.annotator_counts("ann") == (n - 1, 0)
    store.record_answer("ann", 0, n - 1, -1, 50.0)
    live = [(a.position, a.point_index, a.label) for a in store.live_answers()]
    assert live == [(0, i, i % 2) for i in range(n - 1)] + [(0, n - 1, -1)]
    assert store.undo_last("nobody") is None


def test_an_answer_sent_again_with_its_client_id_counts_once(store: AnnotationStore) -> None:
    store.next_points("Ann", 2)
    assert store.record_answer("Ann", 0, 0, 1, 120.0, client_id="a-1")
    # the page resends after an outage: refused as a repeat even though point (0, 1) is now current
    assert not store.record_answer("ann", 0, 0, 1, 120.0, client_id="a-1")
    assert store.annotator_counts("ann") == (1, 0)
    assert store.record_answer("ann", 0, 1, 0, 90.0, client_id="a-2")
    assert [(a.point_index, a.label) for a in store.live_answers()] == [(0, 1), (1, 0)]
    with store._write() as db:
        assert already_stored(db, "answers", "ann", "a-2")
        assert not already_stored(db, "answers", "bob", "a-2")  # ids are per annotator
        assert not already_stored(db, "answers", "ann", None)
        assert not already_stored(db, "boxes", "ann", "a-2")
        with pytest.raises(ValueError, match="no client ids"):
            already_stored(db, "assignments", "ann", "a-2")


def test_an_annotator_holds_at_most_two_unfinished_objects(store: AnnotationStore) -> None:
    for _ in range(3):
        store.next_points("ann", 50)
    held = [position for name, position, _ in store.assignments() if name == "ann"]
    assert held == list(range(MAX_OPEN_OBJECTS))


def test_resume_after_reopening(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, created = open_session(tmp_path / "s.db", synthetic.train_json)
    assert created
    with pytest.raises(AnswerConflict):
        store.record_answer("ann", 0, 0, 1, 10.0)  # object 0 is not handed to ann yet
    store.next_points("ann", 1)
    for i in range(4):
        store.record_answer("ann", 0, i, 1, 10.0)
    store.next_points("bob", 1)
    store.close()
    again, created = open_session(tmp_path / "s.db", synthetic.train_json)
    assert not created
    assert (again.next_points("ann", 1)[0].position, again.next_points("ann", 1)[0].point_index) == (0, 4)
    assert again.next_points("bob", 1)[0].position == 1  # held by bob before the restart
    assert [p for name, p, _ in again.assignments() if name == "bob"] == [1]
    again.close()


def test_settings_and_dataset_must_match_the_session(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=5, seed=1)
    store.close()
    with pytest.raises(StoreError, match="--points 6"):
        open_session(tmp_path / "s.db", synthetic.train_json, num_points=6)
    with pytest.raises(StoreError, match="--seed 2"):
        open_session(tmp_path / "s.db", synthetic.train_json, seed=2)
    changed = tmp_path / "changed.json"
    coco = json.loads(synthetic.train_json.read_text())
    coco["annotations"] = coco["annotations"][1:]
    changed.write_text(json.dumps(coco))
    with pytest.raises(StoreError, match="different file"):
        open_session(tmp_path / "s.db", changed)
    same, created = open_session(tmp_path / "s.db", synthetic.train_json, num_points=5)
    assert not created and same.settings.seed == 1
    same.close()
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        open_session(tmp_path / "junk.db", synthetic.train_json)


@pytest.mark.parametrize("name", ["", "   ", "a" * 65, "tab\there", "nul\x00", "bidi\u202e"])
def test_bad_annotator_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_annotator_name(name)


def test_concurrent_annotators_never_share_an_object(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    """Six threads label through their own store connections (as separate server processes
    would); no object is held twice and every object is handed out."""
    open_session(tmp_path / "s.db", synthetic.train_json, num_points=2)[0].close()
    errors: list[BaseException] = []

    def work(name: str) -> None:
        store = AnnotationStore.open(tmp_path / "s.db")
        try:
            while tasks := store.next_points(name, 3):
                store.record_answer(name, tasks[0].position, tasks[0].point_index, 1, 5.0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(f"a{k}",)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = AnnotationStore.open(tmp_path / "s.db")
    positions = [position for _, position, _ in store.assignments()]
    assert sorted(positions) == list(range(store.settings.num_objects))
    assert all(answered == 2 for _, _, answered in store.assignments())
    assert len(store.live_answers()) == 2 * store.settings.num_objects
    store.close()


def test_overlap_hands_each_object_to_k_different_annotators(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=1, overlap=2)
    active = ["a", "b", "c"]
    while active:  # round robin, one answer each
        for name in list(active):
            tasks = store.next_points(name, 2)
            if not tasks:
                active.remove(name)
                continue
            store.record_answer(name, tasks[0].position, 0, 1, 5.0)
    holders: dict[int, list[str]] = {}
    for name, position, _ in store.assignments():
        holders.setdefault(position, []).append(name)
    assert sorted(holders) == list(range(store.settings.num_objects))
    assert all(len(names) == 2 and len(set(names)) == 2 for names in holders.values())
    assert {name for names in holders.values() for name in names} == {"a", "b", "c"}
    store.close()


def test_objects_round_trip_through_the_database(store: AnnotationStore) -> None:
    objects = store.objects()
    assert [o.position for o in objects] == list(range(len(objects)))
    assert all(o.points.dtype == np.int64 and o.points.shape == (store.settings.num_points, 2) for o in objects)
    template = store.export_template()
    assert all("segmentation" not in a for a in template["annotations"])
    assert {a["id"] for a in template["annotations"]} >= {o.annotation_id for o in objects}
