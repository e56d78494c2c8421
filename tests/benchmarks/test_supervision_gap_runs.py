"""benchmarks/supervision_gap.py training for real, on a tiny generated dataset: runs trained in
parallel worker processes (--jobs) are all recorded, once each, with the device they ran on."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import supervision_gap
from benchmarks._datasets import CPU_CONFIGS
from pointsup.data.synthetic import generate_synthetic_dataset
from tests.engine.test_trainer import TINY


def test_parallel_jobs_record_every_run_once(tmp_path: Path, capsys) -> None:
    data = generate_synthetic_dataset(tmp_path / "data", num_images=6, image_size=128, val_fraction=0.34, show_progress=False)
    dataset = f"tiny={data.train_json}:{data.image_dir}:{data.val_json}:{data.image_dir}"
    settings = [o for o in TINY if not o.startswith(("seed=", "device="))]
    argv = [
        "--dataset",
        dataset,
        "--config",
        str(CPU_CONFIGS / "synthetic_R18_points.yaml"),
        "--heads",
        "maskrcnn",
        "--supervisions",
        "masks",
        "points",
        "--iterations",
        "1",
        "--jobs",
        "2",
        "--work-dir",
        str(tmp_path / "work"),
        *settings,
    ]
    assert supervision_gap.main(argv) == 0
    rows = json.loads((tmp_path / "work" / "supervision_gap.json").read_text())
    assert sorted(r["supervision"] for r in rows) == ["masks", "points"]
    assert all(r["device"] == "cpu" and r["iterations"] == 1 and 0.0 <= r["segm_AP"] <= 100.0 for r in rows)
    capsys.readouterr()
    assert supervision_gap.main(argv) == 0  # everything recorded: nothing trains again
    assert capsys.readouterr().out.count("not repeated") == 2
    assert len(json.loads((tmp_path / "work" / "supervision_gap.json").read_text())) == 2
