"""Datasets and CPU recipes of the training benchmarks, and the command-line options they share.

Built-in datasets:
    synthetic     generated (96 images at 320 px); the seed also draws the images
    balloon       ../shared/datasets/balloon, with its own train/val split
    fruits_nuts   ../shared/datasets/fruits_nuts: one JSON of 18 images and 3 categories, split
                  here by the fixed rule of pointsup.data.split: image id % 3 == 2 is validation
                  (ids 2, 5, 8, 11, 14, 17), the other 12 images train. The two JSONs are written
                  into the benchmark's work folder.
Any other COCO dataset (with masks) comes from the command line:
``--dataset NAME=TRAIN_JSON:TRAIN_IMAGES:VAL_JSON:VAL_IMAGES`` together with ``--config RECIPE``.

The CPU recipes of the built-in datasets (configs/cpu/), by backbone and mask head:
    {dataset}_{backbone}_points.yaml          Mask R-CNN head ("maskrcnn")
    {dataset}_{backbone}_{head}_points.yaml   head: pointrend, implicit_pointrend, condinst
with backbone "lite0" (ImageNet EfficientNet-Lite0) or "R18" (ResNet-18 from scratch; fruits_nuts
has no R18 recipes). The supervision is always chosen by the override ``supervision=...``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

from pointsup.data.split import split_by_image_id
from pointsup.data.synthetic import generate_synthetic_dataset
from pointsup.engine import solver
from pointsup.engine.config import ConfigError, load_config
from pointsup.engine.shipped_configs import CONFIGS_DIR
from pointsup.points.format import PointFormatError, read_coco_json
from pointsup.points.simulate import SimulationConfig, simulate
from pointsup.utils.atomic import write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared")) / "datasets"
CPU_CONFIGS = CONFIGS_DIR / "cpu"

BUILTIN_DATASETS = ("synthetic", "balloon", "fruits_nuts")
#: backbones of the built-in datasets' CPU recipes: pretrained EfficientNet-Lite0, ResNet-18 from scratch
BACKBONES = ("lite0", "R18")
DEFAULT_BACKBONE = "lite0"
#: mask heads: three on Mask R-CNN, and CondInst (one-stage; BoxInst when trained from boxes)
HEADS = ("maskrcnn", "pointrend", "implicit_pointrend", "condinst")
#: (dataset, backbone) pairs of built-in datasets without CPU recipes, and what to say
MISSING_RECIPES = {("fruits_nuts", "R18"): "fruits_nuts has no R18 recipe (its CPU recipes are lite0 only): use --backbone lite0"}
#: fruits_nuts ships no split: image id % FRUITS_NUTS_VAL_EVERY == FRUITS_NUTS_VAL_REMAINDER is validation
FRUITS_NUTS_VAL_EVERY, FRUITS_NUTS_VAL_REMAINDER = 3, 2
DATASET_SPEC = "NAME=TRAIN_JSON:TRAIN_IMAGES:VAL_JSON:VAL_IMAGES"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def fail(message: str) -> NoReturn:
    """Stop the benchmark: ``message`` as one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


@dataclass(frozen=True)
class Recipe:
    """A training recipe: its file, its mask head (one of :data:`HEADS`) and the backbone label
    recorded with its runs ("lite0"/"R18" for the built-in recipes, ``model.backbone.name`` otherwise)."""

    path: Path
    head: str
    backbone: str


@dataclass(frozen=True)
class CustomDataset:
    """A COCO dataset given on the command line, and the recipes to train it with (one per mask head)."""

    name: str
    train_json: Path
    train_images: Path
    val_json: Path
    val_images: Path
    recipes: tuple[Recipe, ...] = ()


#: a built-in dataset's name, or a dataset given on the command line
Dataset = str | CustomDataset


def dataset_name(dataset: Dataset) -> str:
    return dataset.name if isinstance(dataset, CustomDataset) else dataset


@dataclass
class BenchmarkData:
    """Mask JSONs, the simulated P10 training JSON, the image folders and the recipes.

    ``recipes`` is empty for the built-in datasets, whose recipes follow the configs/cpu/ naming
    rule for ``backbone`` (see :func:`recipe_path`).
    """

    name: str
    train_masks: Path
    train_points: Path
    train_images: Path
    val_json: Path
    val_images: Path
    backbone: str = "R18"
    recipes: tuple[Recipe, ...] = ()

    @property
    def config(self) -> Path:
        """The Mask R-CNN recipe (for a custom dataset without one: its first ``--config``)."""
        if self.recipes and not any(r.head == "maskrcnn" for r in self.recipes):
            return self.recipes[0].path
        return head_config(self, "maskrcnn")


def recipe_path(dataset: str, backbone: str, head: str) -> Path:
    """The configs/cpu/ file of a built-in dataset's recipe for ``backbone`` and mask ``head``
    (whether or not it exists)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}: choose from {', '.join(BACKBONES)}")
    if head not in HEADS:
        raise ValueError(f"unknown mask head {head!r}: choose from {', '.join(HEADS)}")
    suffix = "" if head == "maskrcnn" else f"_{head}"
    return CPU_CONFIGS / f"{dataset}_{backbone}{suffix}_points.yaml"


def builtin_recipe(dataset: str, backbone: str, head: str) -> Recipe:
    """The recipe of a built-in dataset; stops with one line when its file is missing."""
    if (dataset, backbone) in MISSING_RECIPES:
        fail(MISSING_RECIPES[dataset, backbone])
    path = recipe_path(dataset, backbone, head)
    if not path.is_file():
        fail(f"no CPU recipe for {dataset} with backbone {backbone} and mask head {head}: {path} is missing")
    return Recipe(path, head, backbone)


def find_recipe(dataset: Dataset, backbone: str, head: str) -> Recipe | None:
    """The recipe that trains ``head`` on ``dataset``: for a built-in dataset the configs/cpu/ one
    of ``backbone`` (stops when missing); for a custom dataset its ``--config`` of that head, or
    None when none was given (``backbone`` does not apply: the recipe names its own)."""
    if isinstance(dataset, CustomDataset):
        return next((r for r in dataset.recipes if r.head == head), None)
    return builtin_recipe(dataset, backbone, head)


def head_config(data: BenchmarkData, mask_head: str) -> Path:
    """The recipe file for ``mask_head`` (one of :data:`HEADS`) on ``data``."""
    if data.recipes:
        recipe = next((r for r in data.recipes if r.head == mask_head), None)
        if recipe is None:
            fail(
                f"{data.name}: no --config recipe with mask head {mask_head} "
                f"(given: {', '.join(f'{r.path} ({r.head})' for r in data.recipes)})"
            )
        return recipe.path
    return builtin_recipe(data.name, data.backbone, mask_head).path


def read_recipe(path: Path) -> Recipe:
    """Read a ``--config`` recipe: its mask head and backbone come from the file."""
    if not path.is_file():
        fail(f"--config: recipe not found: {path}")
    try:
        config = load_config(path)
    except ConfigError as error:
        fail(f"--config {path}: {error}")
    head = "condinst" if config.model.architecture == "condinst" else config.model.mask_head.name
    return Recipe(path.resolve(), head, str(config.model.backbone.name))


def planned_iterations(recipe: Recipe, overrides: list[str]) -> int:
    """The training iterations of ``recipe`` under ``overrides`` (what its result rows record)."""
    try:
        return load_config(recipe.path, overrides).solver.max_iter
    except ConfigError as error:
        fail(f"{recipe.path}: {error}")


def parse_dataset(spec: str) -> CustomDataset:
    """A ``--dataset NAME=TRAIN_JSON:TRAIN_IMAGES:VAL_JSON:VAL_IMAGES`` value (paths checked;
    stops with one line naming the first bad one)."""
    name, sep, rest = spec.partition("=")
    parts = rest.split(":")
    if not sep or len(parts) != 4 or not all(parts):
        fail(f"--dataset {spec!r}: expected {DATASET_SPEC}")
    if not _NAME.fullmatch(name):
        fail(f"--dataset {spec!r}: NAME must be letters, digits, '_', '.' or '-'")
    if name in BUILTIN_DATASETS:
        fail(f"--dataset {name}: that is a built-in dataset's name; choose another")
    paths = [Path(p).expanduser() for p in parts]
    for path, what in zip(paths, ("training JSON", "training image folder", "validation JSON", "validation image folder")):
        if not (path.is_dir() if what.endswith("folder") else path.is_file()):
            fail(f"--dataset {name}: {what} not found: {path}")
    return CustomDataset(name, *(p.resolve() for p in paths))


def prepare(dataset: Dataset, work_dir: Path, seed: int = 0, synthetic_images: int = 96, backbone: str = "R18") -> BenchmarkData:
    """Materialise ``dataset`` under ``work_dir`` with P10 points simulated from its training masks.

    Args:
        dataset: "synthetic", "balloon", "fruits_nuts" or a :class:`CustomDataset`.
        work_dir: where the generated or split JSONs and the P10 JSON go (never the repository or shared/).
        seed: draws the points (and the synthetic images).
        synthetic_images: images of the synthetic dataset.
        backbone: the built-in recipes :func:`head_config` names (default R18, the recipes
            budget.py and train_speed.py were measured with).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    name, recipes = dataset_name(dataset), ()
    if isinstance(dataset, CustomDataset):
        train_masks, val_json = dataset.train_json, dataset.val_json
        train_images, val_images, recipes = dataset.train_images, dataset.val_images, dataset.recipes
    elif name == "synthetic":
        data = generate_synthetic_dataset(
            work_dir / "synthetic", num_images=synthetic_images, seed=seed, image_size=320, show_progress=False
        )
        train_masks, val_json, train_images, val_images = data.train_json, data.val_json, data.image_dir, data.image_dir
    elif name == "balloon":
        root = SHARED_DATASETS / "balloon"
        if not root.is_dir():
            fail(f"balloon dataset not found at {root} (set POINTSUP_SHARED)")
        train_masks, val_json = root / "instances_train.json", root / "instances_val.json"
        train_images, val_images = root / "train", root / "val"
    elif name == "fruits_nuts":
        root = SHARED_DATASETS / "fruits_nuts" / "data"
        if not (root / "trainval.json").is_file():
            fail(f"fruits_nuts dataset not found: {root / 'trainval.json'} (set POINTSUP_SHARED)")
        train, val = split_by_image_id(read_coco_json(root / "trainval.json"), FRUITS_NUTS_VAL_EVERY, FRUITS_NUTS_VAL_REMAINDER)
        train_masks, val_json = work_dir / "fruits_nuts_train.json", work_dir / "fruits_nuts_val.json"
        write_json_atomic(train_masks, train)
        write_json_atomic(val_json, val)
        train_images = val_images = root / "images"
    else:
        fail(f"unknown dataset {name!r}: choose {', '.join(BUILTIN_DATASETS)} or give --dataset {DATASET_SPEC}")
    try:
        coco = read_coco_json(train_masks)
    except PointFormatError as error:
        fail(str(error).replace("\n", " "))
    points = simulate(coco, SimulationConfig(num_points=10, seed=seed), source=str(train_masks))
    train_points = work_dir / f"{name}_train_p10.json"
    write_json_atomic(train_points, points.coco)
    return BenchmarkData(
        name, Path(train_masks), train_points, Path(train_images), Path(val_json), Path(val_images), backbone, recipes
    )


def data_overrides(data: BenchmarkData, supervision: str) -> list[str]:
    """Config overrides that train ``supervision`` on ``data`` and evaluate on its masked val split."""
    train_json = data.train_points if supervision == "points" else data.train_masks
    return [
        f"supervision={supervision}",
        f"data.train_json={train_json}",
        f"data.train_images={data.train_images}",
        f"data.val_json={data.val_json}",
        f"data.val_images={data.val_images}",
    ]


def schedule_overrides(iterations: int | None) -> list[str]:
    """Overrides that rescale a recipe to ``iterations`` (pointsup.engine.solver.rescaled_schedule);
    none when ``iterations`` is None."""
    return solver.schedule_overrides(iterations) if iterations else []


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """The options every training benchmark shares: ``--iterations``, ``--seed``, ``--work-dir``."""
    parser.add_argument(
        "--iterations", type=positive_int, default=None, metavar="N", help="override the recipe's solver.max_iter"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="the (first) seed (default 0)")
    parser.add_argument("--work-dir", type=Path, default=None, metavar="DIR", help=work_dir_help)


def add_dataset_arguments(parser: argparse.ArgumentParser, work_dir_help: str) -> None:
    """The options of the benchmarks that repeat runs over datasets and seeds (supervision_gap.py,
    selftrain.py): ``DATASET ... [KEY=VALUE ...]``, ``--dataset``, ``--config``, ``--backbone``,
    ``--seeds`` and those of :func:`add_run_arguments`. Parse with :func:`parse_dataset_arguments`."""
    parser.add_argument(
        "datasets",
        nargs="*",
        metavar="DATASET",
        help=f"{', '.join(BUILTIN_DATASETS)}; KEY=VALUE arguments are config overrides for every run",
    )
    parser.add_argument(
        "--dataset",
        dest="custom_datasets",
        action="append",
        default=[],
        metavar=DATASET_SPEC,
        help="a COCO dataset of your own, with masks (repeatable; needs --config)",
    )
    parser.add_argument(
        "--config",
        dest="configs",
        action="append",
        default=[],
        type=Path,
        metavar="RECIPE",
        help="the recipe to train the --dataset datasets with, e.g. from `pointsup recipe` (repeatable: "
        "one per mask head; the head is read from the recipe)",
    )
    parser.add_argument(
        "--backbone",
        choices=BACKBONES,
        default=DEFAULT_BACKBONE,
        help=f"the built-in datasets' CPU recipes: lite0 (ImageNet EfficientNet-Lite0) or R18 (ResNet-18 "
        f"from scratch) (default {DEFAULT_BACKBONE})",
    )
    parser.add_argument(
        "--seeds", type=positive_int, default=1, metavar="N", help="run N seeds: S..S+N-1, S from --seed (default 1)"
    )
    add_run_arguments(parser, work_dir_help)


def parse_dataset_arguments(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the options of :func:`add_dataset_arguments` (and any others of ``parser``).

    On return ``args.datasets`` holds the built-in names, then the :class:`CustomDataset` objects
    (with their recipes); ``args.seed_list`` the seeds; ``args.overrides`` the ``KEY=VALUE``
    arguments. A bad dataset name, path or recipe stops with one line and exit status 2.
    """
    args, unknown = parser.parse_known_intermixed_args(argv)
    if unknown:
        fail(f"unrecognised argument {unknown[0]!r}")
    names = [a for a in args.datasets if "=" not in a]
    args.overrides = [a for a in args.datasets if "=" in a]
    for name in names:
        if name not in BUILTIN_DATASETS:
            fail(f"unknown dataset {name!r}: choose {', '.join(BUILTIN_DATASETS)} or give --dataset {DATASET_SPEC}")
    custom = [parse_dataset(spec) for spec in args.custom_datasets]
    if len({c.name for c in custom}) < len(custom):
        fail("--dataset: two datasets with the same NAME")
    if custom and not args.configs:
        fail("--dataset needs --config RECIPE: the recipe to train it with (e.g. from `pointsup recipe`)")
    if args.configs and not custom:
        fail("--config is for --dataset datasets; the built-in ones use configs/cpu/ (choose with --backbone)")
    recipes = tuple(read_recipe(path) for path in args.configs)
    heads = [r.head for r in recipes]
    for head in dict.fromkeys(h for h in heads if heads.count(h) > 1):
        fail(f"--config: two recipes with mask head {head}: {', '.join(str(r.path) for r in recipes if r.head == head)}")
    if not names and not custom:
        fail(f"no dataset: give {', '.join(BUILTIN_DATASETS)} and/or --dataset {DATASET_SPEC}")
    args.datasets = [*dict.fromkeys(names), *(replace(c, recipes=recipes) for c in custom)]
    args.seed_list = list(range(args.seed, args.seed + args.seeds))
    return args


def data_dir(work_dir: Path, dataset: Dataset, seed: int) -> Path:
    """Where :func:`prepare` materialises ``dataset`` for ``seed``."""
    return work_dir / dataset_name(dataset) / f"data_seed{seed}"


def run_dir(work_dir: Path, dataset: Dataset, backbone: str, seed: int) -> Path:
    """The folder of the runs of ``dataset`` with ``backbone`` and ``seed``."""
    return work_dir / dataset_name(dataset) / f"{backbone}_seed{seed}"
