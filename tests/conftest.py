"""Shared fixtures: where the read-only shared material lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared"))
GOLDEN = SHARED / "reference" / "golden"
DATASETS = SHARED / "datasets"

os.environ.setdefault("POINTSUP_NO_PROGRESS", "1")


def require(path: Path) -> Path:
    """Skip the test when a piece of shared material is absent."""
    if not path.exists():
        pytest.skip(f"shared material not found: {path}")
    return path
