"""Issue 18, server side: sessions finish (objects of inactive annotators come back and are
continued, `annotate release`), names are case-insensitive, version 1 databases are upgraded,
and bad inputs (sizes missing from the file, a wrong images folder, given points, an unwritable
database place) get one clear line."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from annotator_testing import Api

from pointsup.annotator.api import RECHECK_MIN_MS
from pointsup.annotator.export import export_points
from pointsup.annotator.images import ImageFolderError
from pointsup.annotator.progress import compute_progress
from pointsup.annotator.server import AnnotationServer, serving_in_background
from pointsup.annotator.store import AnnotationStore, StoreError, free_chain_starts, open_session
from pointsup.annotator.tasks import GivenPointsError
from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset
from pointsup.points.format import load_point_dataset


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def holders(store: AnnotationStore) -> dict[str, set[int]]:
    held: dict[str, set[int]] = {}
    for name, position, _ in store.assignments():
        held.setdefault(name, set()).add(position)
    return held


def answer_points(store: AnnotationStore, annotator: str, count: int, label: int = 1) -> None:
    for _ in range(count):
        task = store.next_points(annotator, 1)[0]
        store.record_answer(annotator, task.position, task.point_index, label, 300.0)


# ---- chains and release ------------------------------------------------------------------------


def test_free_chain_starts_follow_from_the_answer_counts() -> None:
    # one released chain of 3 answers, nobody holding: it continues at point 3
    assert free_chain_starts([1, 1, 1, 0, 0], [], fresh=0) == [3]
    # two released chains (lengths 4 and 2) and one holder at 1: longest first, then a fresh one
    assert free_chain_starts([3, 2, 1, 1, 0], [1], fresh=1) == [4, 2, 0]
    # everything answered belongs to holders: only fresh chains
    assert free_chain_starts([2, 1, 0], [2, 1], fresh=1) == [0]


def test_release_gives_back_unfinished_objects_which_are_continued(store: AnnotationStore) -> None:
    n = store.settings.num_points
    answer_points(store, "Bob", n + 2)  # finishes object 0, answers two points of object 1
    store.next_points("carol", 1)
    released = store.release("BOB")  # names are case-insensitive
    assert released.objects == (("bob", 1, 2),) and released.partly_answered == 1
    assert holders(store)["bob"] == {0}  # the finished object stays his
    tasks = store.next_points("alice", 3)
    assert [(t.position, t.point_index) for t in tasks] == [(1, 2), (1, 3), (1, 4)]
    answer_points(store, "alice", n - 2)
    assert store.annotator_counts("alice") == (n - 2, 1)
    assert store.annotator_counts("bob") == (n + 2, 1)
    export_points(store, store.path.with_name("out.json"), partial=True)
    points = {i.annotation_id: i.num_points for i in load_point_dataset(store.path.with_name("out.json")).instances}
    assert points[store.objects()[1].annotation_id] == n  # bob's two points and alice's others
    assert store.release().objects == (("carol", 2, 0),)  # everyone's
    with pytest.raises(StoreError, match="no annotator 'dave'.*annotators: Bob, carol, alice"):
        store.release("dave")


def test_with_overlap_each_annotator_votes_once_per_point(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=4, overlap=2)
    answer_points(store, "a", 2)  # a: points 0, 1 of object 0
    answer_points(store, "b", 3)  # b: points 0, 1, 2 of object 0
    assert store.release().partly_answered == 2
    assert store.next_points("c", 1)[0].point_index == 3  # c continues the longer chain (b's)
    assert store.next_points("a", 1)[0].point_index == 2  # a takes up her own chain again
    store.next_points("d", 1)
    assert 0 not in holders(store)["d"]  # both chains of object 0 are held
    for name in ("c", "a"):
        task = store.next_points(name, 1)[0]
        while task.position == 0:
            store.record_answer(name, 0, task.point_index, 1, 200.0)
            task = store.next_points(name, 1)[0]
    votes: dict[int, list[str]] = {}
    for answer in store.live_answers():
        if answer.position == 0:
            votes.setdefault(answer.point_index, []).append(answer.annotator)
    assert {k: len(v) for k, v in votes.items()} == {0: 2, 1: 2, 2: 2, 3: 2}
    assert all(len(set(v)) == 2 for v in votes.values())
    store.close()


def test_release_command(tmp_path: Path, store: AnnotationStore, capsys: pytest.CaptureFixture[str]) -> None:
    answer_points(store, "Kim", 3)
    store.next_points("Kim", 20)  # her page claims one object ahead
    store.next_points("ben", 20)
    status, out, _ = run_cli(capsys, "annotate", "release", "--db", store.path, "--annotator", "KIM")
    assert status == 0
    assert out.strip() == (
        "released 2 objects held by Kim (1 partly answered: their answers stay and the next annotator continues them)"
    )
    assert holders(store) == {"ben": {2, 3}}
    status, out, _ = run_cli(capsys, "annotate", "release", "--db", store.path, "--annotator", "kim")
    assert status == 0 and out.strip() == "nothing to release: 'kim' holds an unfinished object"
    status, out, err = run_cli(capsys, "annotate", "release", "--db", store.path, "--annotator", "nobody")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no annotator 'nobody'" in err and "annotators: Kim, ben" in err
    status, out, _ = run_cli(capsys, "annotate", "release", "--db", store.path)
    assert status == 0 and "released 2 objects held by ben (0 partly answered" in out


# ---- names -------------------------------------------------------------------------------------


def test_names_are_case_insensitive_and_shown_as_first_typed(api: Api, store: AnnotationStore) -> None:
    first = api.state("Kim")
    assert first["annotator"] == "Kim"
    status, reply = api.answer("KIM", first["tasks"][0], "object")
    assert status == 200 and reply["annotator"] == "Kim" and reply["tasks"][0]["key"] == "0:1"
    assert api.peek("kim")["tasks"][0]["key"] == "0:1"
    assert api.undo("kIm")["undone"] == {"position": 0, "point_index": 0}
    api.answer("kim", first["tasks"][0], "background")
    assert [a.annotator for a in store.live_answers()] == ["kim"]
    assert [a.name for a in compute_progress(store).annotators] == ["Kim"]
    export_points(store, store.path.with_name("k.json"), partial=True, annotator="KIM")


def test_state_says_when_to_ask_again(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=1, claim_timeout_s=0.5)
    with serving_in_background(AnnotationServer(store, synthetic.image_dir)) as server:
        api = Api(server.port)
        api.state("tab")  # a tab that claims two objects and is forgotten
        answered = 0
        tasks = api.state("ann")["tasks"]
        while tasks:
            status, reply = api.answer("ann", tasks[0], "object")
            answered += 1
            tasks = reply["tasks"]
        assert reply["held_by_others"] == 2 and reply["recheck_ms"] == RECHECK_MIN_MS
        time.sleep(0.6)
        assert [t["position"] for t in api.state("ann")["tasks"]] == [0, 1]  # the tab's objects came back
    store.close()


def test_version_1_databases_are_upgraded(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=2)
    answer_points(store, "x", 3)
    answer_points(store, "y", 1)
    store.close()
    old = sqlite3.connect(tmp_path / "s.db")  # as version 1 stored it: names as typed, no annotators table
    with old:
        old.execute("DROP TABLE annotators")
        old.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        old.execute("UPDATE answers SET annotator = 'Kim' WHERE annotator = 'x'")
        old.execute("UPDATE assignments SET annotator = 'Kim' WHERE annotator = 'x'")
    old.close()
    store = AnnotationStore.open(tmp_path / "s.db")
    assert store.display_names() == {"kim": "Kim", "y": "y"}
    assert store.next_points("KIM", 1)[0].position == 1 and store.annotator_counts("kim") == (3, 1)
    store.close()


# ---- bad inputs ----------------------------------------------------------------------------------


def without_sizes(tmp_path: Path, synthetic: SyntheticDataset) -> Path:
    coco = json.loads(synthetic.train_json.read_text())
    for image in coco["images"]:
        del image["width"]
        image["height"] = None
    path = tmp_path / "nosizes.json"
    path.write_text(json.dumps(coco))
    return path


def test_missing_sizes_are_read_from_the_image_files(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", without_sizes(tmp_path, synthetic), images_dir=synthetic.image_dir)
    reference = {
        i["id"]: (i["file_name"], i["width"], i["height"]) for i in json.loads(synthetic.train_json.read_text())["images"]
    }
    assert store.images == reference
    assert all("width" in i for i in store.export_template()["images"])
    store.close()
    count = len(reference)
    with pytest.raises(ImageFolderError, match=f"--images {tmp_path}: {count} of {count} image files are not there"):
        open_session(tmp_path / "t.db", without_sizes(tmp_path, synthetic), images_dir=tmp_path)
    assert not (tmp_path / "t.db").exists()


def test_wrong_images_folder_fails_naming_it(
    tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    partial = tmp_path / "images"
    partial.mkdir()
    names = [i["file_name"] for i in json.loads(synthetic.train_json.read_text())["images"]]
    (partial / names[0]).write_bytes((synthetic.image_dir / names[0]).read_bytes())
    status, _, err = run_cli(capsys, "annotate", "serve", synthetic.train_json, "--images", partial, "--db", tmp_path / "s.db")
    assert status == 2 and len(err.strip().splitlines()) == 1
    missing = f"{len(names) - 1} of {len(names)}"
    assert f"--images {partial}: {missing} image files are not there (e.g. {partial / names[1]})" in err
    assert not (tmp_path / "s.db").exists()
    open_session(tmp_path / "s.db", synthetic.train_json)[0].close()  # a session made elsewhere...
    with pytest.raises(ImageFolderError, match=missing):  # ...resumed with the wrong folder
        open_session(tmp_path / "s.db", synthetic.train_json, images_dir=partial)


def test_given_points(tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    points_file = tmp_path / "p5.json"
    assert main(["simulate", str(synthetic.train_json), "-o", str(points_file), "--num-points", "5", "--seed", "9", "-q"]) == 0
    given = {a["id"]: a["point_coords"] for a in json.loads(points_file.read_text())["annotations"]}
    store, _ = open_session(tmp_path / "s.db", points_file, use_points=True)
    assert store.settings.num_points == 5 and store.settings.points_given
    assert {o.annotation_id: o.points.tolist() for o in store.objects()} == given
    store.close()
    with pytest.raises(StoreError, match="--use-points"):
        open_session(tmp_path / "drawn.db", points_file)[0].close()
        open_session(tmp_path / "drawn.db", points_file, use_points=True)

    coco = json.loads(points_file.read_text())
    coco["annotations"][3]["point_coords"].pop()
    coco["annotations"][3]["point_labels"].pop()
    uneven = tmp_path / "uneven.json"
    uneven.write_text(json.dumps(coco))
    with pytest.raises(GivenPointsError, match=f"annotation id {coco['annotations'][3]['id']} has 4"):
        open_session(tmp_path / "u.db", uneven, use_points=True)
    status, _, err = run_cli(
        capsys, "annotate", "serve", uneven, "--images", synthetic.image_dir, "--db", tmp_path / "u.db", "--use-points"
    )
    assert status == 2 and len(err.strip().splitlines()) == 1 and "--use-points" in err
    status, _, err = run_cli(
        capsys,
        "annotate",
        "serve",
        synthetic.train_json,
        "--images",
        synthetic.image_dir,
        "--db",
        tmp_path / "n.db",
        "--use-points",
    )
    assert status == 2 and "no annotation carries point_coords" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not stop root")
def test_unwritable_default_place_names_the_folder_and_db(
    tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    dataset = folder / "train.json"
    dataset.write_bytes(synthetic.train_json.read_bytes())
    folder.chmod(0o555)
    try:
        status, _, err = run_cli(capsys, "annotate", "serve", dataset, "--images", synthetic.image_dir)
    finally:
        folder.chmod(0o755)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"the folder {folder} is not writable" in err and "--db" in err and "SQLite" not in err


def test_unwritable_place_is_named_for_root_too(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=f"the folder {blocker} is not a folder .*choose another place with --db FILE"):
        open_session(blocker / "s.db", synthetic.train_json)
