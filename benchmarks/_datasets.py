"""Datasets the training benchmarks accept: a generated synthetic set or one of ../shared/datasets."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.points.format import read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.utils.atomic import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared")) / "datasets"
CPU_CONFIGS = REPO_ROOT / "configs" / "cpu"


@dataclass
class BenchmarkData:
    """Mask JSONs, the simulated P10 training JSON, the image folders and the CPU recipe."""

    name: str
    train_masks: Path
    train_points: Path
    train_images: Path
    val_json: Path
    val_images: Path
    config: Path


def prepare(name: str, work_dir: Path, seed: int = 0, synthetic_images: int = 96) -> BenchmarkData:
    """Materialise dataset ``name`` ("synthetic" or "balloon") under ``work_dir`` with P10 points."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if name == "synthetic":
        data = generate_synthetic_dataset(work_dir / "synthetic", num_images=synthetic_images, seed=seed, image_size=320,
                                          show_progress=False)
        train_masks, val_json, train_images, val_images = data.train_json, data.val_json, data.image_dir, data.image_dir
        config = CPU_CONFIGS / "synthetic_R18_points.yaml"
    elif name == "balloon":
        root = SHARED_DATASETS / "balloon"
        if not root.is_dir():
            raise SystemExit(f"balloon dataset not found at {root} (set POINTSUP_SHARED)")
        train_masks, val_json = root / "instances_train.json", root / "instances_val.json"
        train_images, val_images = root / "train", root / "val"
        config = CPU_CONFIGS / "balloon_R18_points.yaml"
    else:
        raise SystemExit(f"unknown dataset {name!r}: choose synthetic or balloon")
    points = simulate(read_coco_json(train_masks), SimulationConfig(num_points=10, seed=seed), source=str(train_masks))
    train_points = work_dir / f"{name}_train_p10.json"
    write_json_atomic(train_points, points.coco)
    return BenchmarkData(name, Path(train_masks), train_points, Path(train_images), Path(val_json), Path(val_images), config)


def head_config(data: BenchmarkData, mask_head: str) -> Path:
    """The dataset's CPU recipe for ``mask_head`` ("maskrcnn", "pointrend", "implicit_pointrend")."""
    if mask_head == "maskrcnn":
        return data.config
    config = CPU_CONFIGS / f"{data.name}_R18_{mask_head}_points.yaml"
    if not config.is_file():
        raise SystemExit(f"no CPU recipe for mask head {mask_head!r}: {config} is missing")
    return config


def data_overrides(data: BenchmarkData, supervision: str) -> list[str]:
    """Config overrides that train ``supervision`` on ``data`` and evaluate on its masked val split."""
    train_json = data.train_points if supervision == "points" else data.train_masks
    return [f"supervision={supervision}", f"data.train_json={train_json}", f"data.train_images={data.train_images}",
            f"data.val_json={data.val_json}", f"data.val_images={data.val_images}"]


def schedule_overrides(iterations: int | None) -> list[str]:
    """Overrides that shorten or lengthen a recipe to ``iterations`` (learning-rate steps at 75 %
    and 92 %); none when ``iterations`` is None."""
    if not iterations:
        return []
    return [f"solver.max_iter={iterations}", f"solver.steps=[{int(iterations * 0.75)},{int(iterations * 0.92)}]"]


def add_run_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """The options every training benchmark shares: ``--iterations``, ``--seed``, ``--work-dir``."""
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's solver.max_iter")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None, help=work_dir_help)
