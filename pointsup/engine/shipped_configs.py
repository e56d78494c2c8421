"""The configs that ship inside the package (``pointsup/configs/``), addressable by name.

``pointsup train mask_rcnn_R_50_FPN_3x_points ...`` and ``pointsup train
pointsup/configs/coco/mask_rcnn_R_50_FPN_3x_points.yaml ...`` name the same file: a config
argument that is an existing path is that file, otherwise it is looked up by its name (the file
name without ``.yaml``; names are unique across the folders). ``pointsup configs`` lists them.
"""

from __future__ import annotations

import difflib
from pathlib import Path

#: where the shipped configs live (installed with the package as package data)
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
SUFFIX = ".yaml"


def shipped_configs() -> dict[str, Path]:
    """Name to path of every shipped config, sorted by folder then name."""
    paths = sorted(CONFIGS_DIR.rglob(f"*{SUFFIX}"), key=lambda p: (p.parent.relative_to(CONFIGS_DIR).parts, p.name))
    return {path.stem: path for path in paths}


def shipped_config(name: str) -> Path | None:
    """The shipped config called ``name`` (``.yaml`` optional), None when there is none."""
    return shipped_configs().get(name.removesuffix(SUFFIX))


def resolve_config_path(path_or_name: str | Path) -> Path:
    """An existing file as given, else the shipped config of that name, else the path as given
    (whose absence the config reader then reports, with :func:`close_config_names`)."""
    path = Path(path_or_name)
    if path.exists():
        return path
    found = shipped_config(path.name) if path.parent == Path(".") else None
    return found if found is not None else path


def close_config_names(name: str) -> list[str]:
    """Shipped config names resembling ``name`` (for a "did you mean")."""
    return difflib.get_close_matches(Path(name).name.removesuffix(SUFFIX), list(shipped_configs()), n=3, cutoff=0.6)
