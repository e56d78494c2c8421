"""A proposed recipe as text: the report printed to the user and the config file.

:func:`recipe_yaml` writes a config that inherits (``_base_``) from the shipped CPU recipe of the
model (:func:`base_recipe_path`) and sets every proposed value, with the reason for it in a
comment above; :func:`load_recipe_text` loads such text as ``pointsup train`` would.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import yaml

from pointsup.engine.config import BASE_KEY, Config, load_config
from pointsup.engine.recipe import Recipe
from pointsup.engine.recipe_stats import DatasetStatistics, format_statistics
from pointsup.engine.shipped_configs import CONFIGS_DIR

#: The repository's CPU recipes, which proposed recipes inherit from.
CPU_CONFIGS_DIR = CONFIGS_DIR / "cpu"
#: Shipped base recipe per (architecture, mask head); ``{tag}`` is the backbone's tag.
BASE_RECIPES: dict[tuple[str, str], str] = {
    ("mask_rcnn", "maskrcnn"): "balloon_{tag}_points.yaml",
    ("mask_rcnn", "pointrend"): "balloon_{tag}_pointrend_points.yaml",
    ("mask_rcnn", "implicit_pointrend"): "balloon_{tag}_implicit_pointrend_points.yaml",
    ("condinst", "maskrcnn"): "balloon_{tag}_condinst_points.yaml",
}
BACKBONE_TAGS: dict[str, str] = {"efficientnet_lite0": "lite0"}


def base_recipe_path(architecture: str, mask_head: str, backbone: str, configs_dir: Path = CPU_CONFIGS_DIR) -> Path:
    """The shipped CPU recipe a proposal for this model inherits from (CondInst ignores the head)."""
    head = "maskrcnn" if architecture == "condinst" else mask_head
    return configs_dir / BASE_RECIPES[(architecture, head)].format(tag=BACKBONE_TAGS[backbone])


def format_report(stats: DatasetStatistics, recipe: Recipe) -> str:
    """The statistics, one line per decision, and the warnings."""
    return "\n".join([format_statistics(stats), *recipe.reasons, *(f"warning: {w}" for w in recipe.warnings)])


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).removesuffix("...\n").strip()


def _comment(text: str, indent: str) -> list[str]:
    return [f"{indent}# {line}" for line in textwrap.wrap(text, width=100 - len(indent))]


def recipe_yaml(
    recipe: Recipe,
    base: str | os.PathLike[str],
    train_json: str | os.PathLike[str],
    train_images: str | os.PathLike[str],
    stats: DatasetStatistics | None = None,
) -> str:
    """The recipe as a config file: ``_base_`` (made absolute), then each proposed setting and
    the training data, with its reason in a comment above it."""
    settings = {
        **recipe.settings(),
        "data.train_json": str(Path(train_json).resolve()),
        "data.train_images": str(Path(train_images).resolve()),
    }
    comments = {**recipe.comments, "data.train_json": "the dataset this recipe was fitted to"}
    header = f"Proposed by `pointsup recipe` for {recipe.architecture}"
    header += f" ({recipe.mask_head} head)" if recipe.architecture == "mask_rcnn" else ""
    header += f", {recipe.backbone}, about {recipe.estimated_minutes:.0f} min of training on the CPU."
    lines = _comment(header, "")
    if stats is not None:
        lines += [comment for line in format_statistics(stats).splitlines() for comment in _comment(line.strip(), "")]
    lines += _comment("Evaluation: add data.val_json and data.val_images.", "")
    lines.append(f"{BASE_KEY}: {_yaml_value(str(Path(base).resolve()))}")
    for section in ("model", "data", "solver"):
        lines.append(f"{section}:")
        grouped: dict[str, tuple[Any, list[str]]] = {}  # key below the section -> value, comments
        for key, value in settings.items():
            if key.startswith(section + "."):
                first, _, rest = key.partition(".")[2].partition(".")
                merged, reasons = grouped.get(first, ({}, []))
                if rest:  # a nested setting (model.rpn.anchor_sizes): one flow mapping per sub-section
                    node = merged
                    *parents, leaf = rest.split(".")
                    for name in parents:
                        node = node.setdefault(name, {})
                    node[leaf] = value
                    value = merged
                grouped[first] = (value, reasons + ([comments[key]] if key in comments else []))
        for first, (value, reasons) in grouped.items():
            lines += [comment for reason in reasons for comment in _comment(reason, "  ")]
            lines.append(f"  {first}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"


def load_recipe_text(text: str) -> Config:
    """Load a rendered recipe as :func:`~pointsup.engine.config.load_config` would load its file.

    Raises:
        ConfigError: the recipe or its base does not fit the schema.
    """
    with tempfile.TemporaryDirectory(prefix="pointsup-recipe-") as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        return load_config(path)
