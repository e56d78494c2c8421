"""scripts/labelling_loop.py: the whole labelling loop, end to end on tiny synthetic data, and its
refusals of bad input.

The end-to-end test runs the real thing (annotate serve processes spoken to over HTTP, annotate
export, two `pointsup train` runs with their evaluation, annotate progress) on 6 synthetic images
of 96 pixels (4 to label, 2 to validate) with 1 training iteration per model; it checks what was
made against the ground truth, computed here independently of the script.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from pointsup.points.format import load_point_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "labelling_loop.py"
#: tiny and fast: 96-pixel images trained and tested at their size, no loader workers, batches of 2
FAST = [
    "--images", "6", "--image-size", "96", "--iterations", "1",
    "--set", "data.min_size_train=[96]", "--set", "data.max_size_train=96",
    "--set", "data.min_size_test=96", "--set", "data.max_size_test=96",
    "--set", "data.num_workers=0", "--set", "solver.ims_per_batch=2",
]  # fmt: skip


def load_script():
    """The script as a module (registered, as its dataclasses need)."""
    if "labelling_loop" not in sys.modules:
        spec = importlib.util.spec_from_file_location("labelling_loop", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["labelling_loop"] = module
        spec.loader.exec_module(module)
    return sys.modules["labelling_loop"]


def truth_by_file(ground_truth: Path) -> dict[str, list[np.ndarray]]:
    """The masks of the synthetic training images, by file name."""
    coco = json.loads((ground_truth / "instances_train.json").read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    masks: dict[str, list[np.ndarray]] = {name: [] for name in names.values()}
    for annotation in coco["annotations"]:
        masks[names[annotation["image_id"]]].append(mask_utils.decode(annotation["segmentation"]).astype(bool))
    return masks


def mask_of_box(masks: list[np.ndarray], bbox: list[float]) -> np.ndarray:
    """The one mask whose tight pixel box is ``bbox`` (what extreme clicking on it gives)."""
    x, y, w, h = (round(v) for v in bbox)
    found = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if (xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) == (x, y, w, h):
            found.append(mask)
    assert len(found) == 1, f"box {bbox} matches {len(found)} masks"
    return found[0]


def check_point_file(path: Path, masks: dict[str, list[np.ndarray]], photos: Path) -> tuple[int, int, int]:
    """(images, objects, points) of a P_N file, checking every label against the masks and every
    photo's presence under ``photos``."""
    dataset = load_point_dataset(path)
    coco = json.loads(path.read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    for name in names.values():
        assert (photos / name).is_file()
    points = 0
    for instance in dataset.instances:
        assert instance.num_points == 10
        file_name = names[instance.image_id].split("/")[-1]
        mask = mask_of_box(masks[file_name], list(instance.bbox_xywh))
        for (x, y), label in zip(np.asarray(instance.point_coords), np.asarray(instance.point_labels)):
            assert int(mask[int(y), int(x)]) == int(label)
            points += 1
    return len(coco["images"]), len(dataset.instances), points


def test_the_loop_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = load_script()
    output = tmp_path / "loop"
    started = time.perf_counter()
    assert loop.main(["--output", str(output), *FAST]) == 0
    seconds = time.perf_counter() - started
    printed = capsys.readouterr().out
    masks = truth_by_file(output / "ground_truth")

    # the photos: the 4 training images in two batches, no labels beside them
    batches = [sorted(p.name for p in (output / "photos" / f"batch{k}").iterdir()) for k in (1, 2)]
    assert len(batches[0]) == len(batches[1]) == 2 and not set(batches[0]) & set(batches[1])
    assert set(batches[0] + batches[1]) == set(masks)

    # every object of each batch was boxed, and its 10 points are labelled as its mask says
    summary = json.loads((output / "summary.json").read_text())
    for k, names in enumerate(batches, 1):
        images, objects, points = check_point_file(
            output / "labels" / f"batch{k}_p10.json", masks, output / "photos" / f"batch{k}"
        )
        assert images == 2 and objects == sum(len(masks[name]) for name in names) and points == 10 * objects
        record = summary["batches"][k - 1]
        assert (record["boxes"], record["not_boxable"], record["objects"]) == (objects, 0, objects)
        assert record["exported_points"] == record["points_agreeing_with_masks"] == points

    # the merge: both batches, ids renumbered, file names under photos/
    merged = json.loads((output / "labels" / "batches_1_2_p10.json").read_text())
    assert len({image["id"] for image in merged["images"]}) == 4
    assert len({a["id"] for a in merged["annotations"]}) == len(merged["annotations"]) == sum(map(len, masks.values()))
    assert check_point_file(output / "labels" / "batches_1_2_p10.json", masks, output / "photos")[1] == len(merged["annotations"])

    # the two models, evaluated
    for run in ("batch1", "batches_1_2"):
        assert (output / "runs" / run / "model_final.pth").is_file()
        metrics = json.loads((output / "runs" / run / "final_metrics.json").read_text())
        assert {"bbox", "segm"} <= set(metrics)
    table = summary["table"]
    assert [row["model"] for row in table] == ["batch 1", "batches 1+2"]
    assert [row["training_images"] for row in table] == [2, 4]
    assert "| model " in printed and "| batches 1+2 " in printed and "mask AP" in printed

    # the suggestions: shown at every point of batch 2; agreement counted and reported as the
    # progress report counts it (accepted with the key = agreed; overruled = the others)
    suggestions = summary["suggestions"]
    assert suggestions["shown"] == summary["batches"][1]["points_answered"] > 0
    assert suggestions["agreement"] == pytest.approx(suggestions["agreed"] / suggestions["shown"])
    report = suggestions["progress_report"]
    assert report["accepted"] == suggestions["agreed"]
    assert report["overruled"] == suggestions["shown"] - suggestions["agreed"]
    assert f"agreed with the (ground-truth) answer at {suggestions['agreed']} of {suggestions['shown']} points" in printed

    # each step says what a person runs, and that the annotator is simulated
    assert "SCRIPTED ANNOTATOR" in printed and printed.count("a person runs: pointsup ") == 8
    assert [step["step"] for step in summary["steps"]] == [1, 2, 3, 4, 5, 6]
    print(f"the loop took {seconds:.0f} s")  # shown with -s


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_bad_input_is_one_line_and_status_2(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    cases = [
        (["--output", str(taken)], {}, "--output"),
        (["--output", str(tmp_path / "a"), "--dataset", "balloon"], {"POINTSUP_SHARED": str(tmp_path / "nothing")}, "balloon"),
        (["--output", str(tmp_path / "b"), "--images", "6", "--batch-images", "3"], {}, "--batch-images"),
        (["--output", str(tmp_path / "c"), "--set", "solver.no_such_key=1"], {}, "no_such_key"),
        (["--output", str(taken / "notes.txt")], {}, "is a file"),
    ]
    for argv, env, named in cases:
        result = run_script(*argv, env=env)
        assert result.returncode == 2, (argv, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labelling_loop: error: ") and named in lines[0], (argv, lines)
    assert (taken / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / name).exists() for name in "abc")


def test_force_removes_only_what_the_script_writes(tmp_path: Path) -> None:
    loop = load_script()
    for name in ("photos", "runs", "sessions"):
        (tmp_path / name / "x").mkdir(parents=True)
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "mine.txt").write_text("keep")
    loop.clear_output(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_extreme_points_and_merge(tmp_path: Path) -> None:
    loop = load_script()
    mask = np.zeros((8, 10), dtype=bool)
    mask[2:5, 3:7] = True
    mask[5, 4] = True
    assert loop.extreme_points(mask) == [[3, 3], [5, 2], [6, 3], [4, 5]]  # left, top, right, bottom
    assert loop.extreme_points(np.zeros((4, 4), dtype=bool)) is None

    def point_file(path: Path, images: int) -> Path:
        coco = {
            "images": [{"id": k, "file_name": f"{k}.png", "width": 10, "height": 8} for k in range(1, images + 1)],
            "annotations": [
                {"id": k, "image_id": k, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16.0, "iscrowd": 0,
                 "point_coords": [[2, 2]], "point_labels": [1], "extreme_points": [[1, 2], [2, 1], [4, 2], [2, 4]]}
                for k in range(1, images + 1)
            ],
            "categories": [{"id": 1, "name": "thing"}],
        }  # fmt: skip
        path.write_text(json.dumps(coco))
        return path

    first, second = point_file(tmp_path / "1.json", 2), point_file(tmp_path / "2.json", 3)
    counts = loop.merge_point_files([(first, "batch1"), (second, "batch2")], tmp_path / "merged.json")
    assert counts == {"images": 5, "objects": 5}
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert [i["id"] for i in merged["images"]] == [1, 2, 3, 4, 5]
    assert [i["file_name"] for i in merged["images"]][1:3] == ["batch1/2.png", "batch2/1.png"]
    assert [(a["id"], a["image_id"]) for a in merged["annotations"]] == [(k, k) for k in range(1, 6)]
    assert all("extreme_points" in a for a in merged["annotations"])
    other = json.loads(second.read_text())
    other["categories"] = [{"id": 1, "name": "other"}]
    second.write_text(json.dumps(other))
    with pytest.raises(loop.LoopError, match="categories differ"):
        loop.merge_point_files([(first, "batch1"), (second, "batch2")], tmp_path / "merged2.json")
