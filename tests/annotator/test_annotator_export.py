"""Export of a labelling session to the project's point format, and the progress report."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pointsup.annotator.export import export_points
from pointsup.annotator.progress import compute_progress
from pointsup.annotator.store import LABEL_CODES, AnnotationStore, open_session
from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset
from pointsup.points.format import load_point_dataset


def label_everything(store: AnnotationStore, annotator: str, choose: Callable[[int, int, int], int]) -> None:
    """Answer every point the annotator gets with ``choose(position, point_index, mask_value)``
    (mask value -1 without a mask)."""
    masks = {o.position: o.mask_values for o in store.objects()}
    while tasks := store.next_points(annotator, 2):
        t = tasks[0]
        mask = masks[t.position]
        label = choose(t.position, t.point_index, -1 if mask is None else int(mask[t.point_index]))
        store.record_answer(annotator, t.position, t.point_index, label, 400.0 + 10 * t.point_index)


def test_mask_answers_export_exactly_what_simulate_writes(
    tmp_path: Path, store: AnnotationStore, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    label_everything(store, "ann", lambda p, i, mask: mask)
    output = tmp_path / "labelled.json"
    assert main(["annotate", "export", "--db", str(store.path), "-o", str(output)]) == 0
    assert "16 objects, 160 labelled points" in capsys.readouterr().out
    simulated = tmp_path / "simulated.json"
    assert main(["simulate", str(synthetic.train_json), "-o", str(simulated), "-q"]) == 0
    exported, reference = json.loads(output.read_text()), json.loads(simulated.read_text())
    assert exported["images"] == reference["images"]
    assert exported["categories"] == reference["categories"]
    assert [(a["id"], a["bbox"], a["point_coords"], a["point_labels"]) for a in exported["annotations"]] == [
        (a["id"], a["bbox"], a["point_coords"], a["point_labels"]) for a in reference["annotations"]
    ]
    assert all("segmentation" not in a for a in exported["annotations"])
    dataset = load_point_dataset(output)
    assert sum(i.num_points for i in dataset.instances) == 160


def test_unsure_points_are_left_out(tmp_path: Path, store: AnnotationStore) -> None:
    label_everything(store, "ann", lambda p, i, mask: LABEL_CODES["unsure"] if i in (0, 7) else mask)
    summary = export_points(store, tmp_path / "out.json")
    assert summary.unsure_left_out == 2 * store.settings.num_objects
    points = {o.annotation_id: o for o in store.objects()}
    for instance in load_point_dataset(tmp_path / "out.json").instances:
        expected = [p for i, p in enumerate(points[instance.annotation_id].points.tolist()) if i not in (0, 7)]
        assert instance.point_coords.tolist() == expected


def test_only_finished_images_unless_partial(tmp_path: Path, store: AnnotationStore) -> None:
    objects = store.objects()
    first_image = [o for o in objects if o.image_id == objects[0].image_id]
    masks = {o.position: o.mask_values for o in objects}
    answered = 0
    while answered < store.settings.num_points * len(first_image) + 3:  # the first image and 3 points more
        t = store.next_points("ann", 1)[0]
        store.record_answer("ann", t.position, t.point_index, int(masks[t.position][t.point_index]), 300.0)
        answered += 1
    summary = export_points(store, tmp_path / "finished.json")
    finished = load_point_dataset(tmp_path / "finished.json")
    assert list(finished.images) == [objects[0].image_id]
    assert summary.unfinished_images_left_out == len(store.images) - 1
    assert all(i.num_points == store.settings.num_points for i in finished.instances)

    summary = export_points(store, tmp_path / "partial.json", partial=True)
    partial = load_point_dataset(tmp_path / "partial.json")
    # only the objects with an answered point, and the images holding them
    second_image = next(o.image_id for o in objects if o.image_id != objects[0].image_id)
    assert list(partial.images) == [objects[0].image_id, second_image]
    counts = [i.num_points for i in partial.instances if not i.is_crowd]
    assert counts == [store.settings.num_points] * len(first_image) + [3]
    assert summary.unlabelled_objects_left_out == len(objects) - len(first_image) - 1
    assert not summary.mostly_unlabelled and "warning" not in summary.describe()


def test_partial_export_warns_when_most_objects_have_no_point(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=2)
    first = store.next_points("ann", 1)[0]
    store.record_answer("ann", first.position, first.point_index, -1, 300.0)  # unsure: no labelled point yet
    summary = export_points(store, tmp_path / "none.json", partial=True)
    assert (summary.images, summary.objects, summary.unlabelled_objects_left_out) == (0, 0, store.settings.num_objects)
    store.record_answer("ann", first.position, first.point_index + 1, 0, 300.0)
    summary = export_points(store, tmp_path / "one.json", partial=True)
    assert summary.objects == 1 and summary.points == 1
    text = summary.describe()
    assert f"warning: {store.settings.num_objects - 1} of {store.settings.num_objects} objects have no labelled point yet" in text
    store.close()


def test_overlap_answers_are_combined_by_majority(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    store, _ = open_session(tmp_path / "s.db", synthetic.train_json, num_points=2, overlap=3)
    votes = {"a": (1, 1), "b": (1, 0), "c": (0, -1)}  # point 0: 2 to 1 for object; point 1: a tie
    for name, labels in votes.items():
        label_everything(store, name, lambda p, i, mask, labels=labels: labels[i])
    summary = export_points(store, tmp_path / "vote.json")
    assert summary.ties_left_out == store.settings.num_objects
    for instance in load_point_dataset(tmp_path / "vote.json").instances:
        assert instance.point_labels.tolist() == [1]
    export_points(store, tmp_path / "b.json", annotator="b")
    assert {tuple(i.point_labels.tolist()) for i in load_point_dataset(tmp_path / "b.json").instances} == {(1, 0)}
    with pytest.raises(ValueError, match="no answers"):
        export_points(store, tmp_path / "x.json", annotator="nobody")
    report = compute_progress(store)
    # point 0: pairs a-b agree, a-c and b-c do not; point 1: a-b disagree (c is unsure)
    assert report.annotator_pairs == 4 * store.settings.num_objects
    assert report.annotator_agreement == pytest.approx(0.25)
    assert report.objects_done == store.settings.num_objects
    store.close()


def test_progress_report_counts_time_and_agreement(store: AnnotationStore, capsys: pytest.CaptureFixture[str]) -> None:
    # wrong on point 3 of each object: 90 % agreement with the masks
    label_everything(store, "ann", lambda p, i, mask: 1 - mask if i == 3 else mask)
    report = compute_progress(store)
    n, objects = store.settings.num_points, store.settings.num_objects
    assert (report.objects_done, report.objects_total) == (objects, objects)
    assert report.mask_agreement == pytest.approx(0.9)
    assert report.mask_compared == n * objects
    (ann,) = report.annotators
    assert ann.points == n * objects and ann.objects_finished == objects
    assert ann.timing.median_s == pytest.approx(0.445)  # 400 .. 490 ms
    assert sum(ann.timing.histogram) == n * objects
    assert ann.timing.histogram[1] == n * objects  # all in [0.25, 0.5) s
    assert main(["annotate", "progress", "--db", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert f"objects done: {objects} / {objects}" in out and "agreement with masks: 90.0 %" in out
    assert main(["annotate", "progress", "--db", str(store.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mask_agreement"] == pytest.approx(0.9)


def test_export_is_read_by_the_training_dataset(tmp_path: Path, store: AnnotationStore, synthetic: SyntheticDataset) -> None:
    dataset_module = pytest.importorskip("pointsup.data.dataset")
    label_everything(store, "ann", lambda p, i, mask: LABEL_CODES["unsure"] if i == 0 and p == 0 else mask)
    export_points(store, tmp_path / "out.json")
    dataset = dataset_module.InstanceDataset(tmp_path / "out.json", synthetic.image_dir, supervision="points")
    sample = dataset[0]
    labels = sample.targets.point_labels
    assert labels.shape[0] == len([o for o in store.objects() if o.image_id == sample.image_id])
    assert int((labels == -1).sum()) == 1  # the unsure point of object 0 is padding, not a label


def test_cli_errors_are_one_line(tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotate", "export", "--db", str(tmp_path / "missing.db"), "-o", str(tmp_path / "o.json")]) == 2
    assert main(["annotate", "progress", "--db", str(synthetic.train_json)]) == 2
    assert main(["annotate", "serve", str(synthetic.train_json), "--images", str(tmp_path / "nope")]) == 2
    assert main(["annotate", "serve", str(synthetic.train_json), "--images", str(synthetic.image_dir), "--token", "short"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("pointsup annotate: error: ") for line in lines), err
    assert "Traceback" not in err


def test_input_without_masks(tmp_path: Path, synthetic: SyntheticDataset) -> None:
    coco = json.loads(synthetic.train_json.read_text())
    for ann in coco["annotations"]:
        del ann["segmentation"]
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    store, _ = open_session(tmp_path / "s.db", tmp_path / "boxes.json", num_points=2)
    assert not store.settings.has_masks
    label_everything(store, "ann", lambda p, i, mask: i)
    report = compute_progress(store)
    assert report.mask_agreement is None and report.mask_compared == 0
    assert "agreement with masks" not in report.format_table()
    export_points(store, tmp_path / "out.json")
    assert {tuple(i.point_labels.tolist()) for i in load_point_dataset(tmp_path / "out.json").instances} == {(0, 1)}
    store.close()


def test_export_refuses_to_write_over_its_inputs(
    tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.json"
    source.write_bytes(synthetic.train_json.read_bytes())
    store, _ = open_session(tmp_path / "s.db", source, num_points=2)
    label_everything(store, "ann", lambda p, i, mask: mask)
    store.close()
    for output in (tmp_path / "s.db", source):
        before = output.read_bytes()
        assert main(["annotate", "export", "--db", str(tmp_path / "s.db"), "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"pointsup annotate: error: -o {output} is the input file "), err
        assert "Traceback" not in err
        assert output.read_bytes() == before
    assert main(["annotate", "export", "--db", str(tmp_path / "s.db"), "-o", str(tmp_path / "out.json")]) == 0


def test_objects_left_out_of_the_agreement_are_counted_and_named(
    tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]
) -> None:
    coco = json.loads(synthetic.train_json.read_text())
    del coco["annotations"][0]["segmentation"]
    coco["annotations"][1]["segmentation"] = {"size": [7, 7], "counts": "0"}  # an RLE of the wrong size
    (tmp_path / "partly.json").write_text(json.dumps(coco))
    store, _ = open_session(tmp_path / "s.db", tmp_path / "partly.json", num_points=3)
    label_everything(store, "ann", lambda p, i, mask: max(mask, 0))
    report = compute_progress(store)
    assert report.objects_without_mask == 2
    assert report.mask_compared == 3 * (store.settings.num_objects - 2)
    assert "(2 of" in report.format_table() and "left out: their masks are missing or malformed" in report.format_table()
    store.close()
