"""The built wheel carries what a user needs outside the repository: the shipped configs, found
by name, and the labelling tool's page."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pointsup.engine.shipped_configs import shipped_configs
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this checkout, installed (without dependencies) into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root),
                            str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = root.glob("pointsup-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pointsup/configs/coco/mask_rcnn_R_50_FPN_3x_points.yaml" in names
    assert "pointsup/annotator/static/annotate.js" in names
    site = root / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    return site


def run_installed(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m pointsup ARGV`` importing the installed copy (its folder first on the path), run
    from ``cwd``, outside the repository."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "pointsup", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_package_lists_and_resolves_its_configs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run([sys.executable, "-c", "import pointsup; print(pointsup.__file__)"], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed)}, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout  # not the checkout

    listing = run_installed(installed, tmp_path, "configs")
    assert listing.returncode == 0, listing.stderr
    listed = [line.split()[0] for line in listing.stdout.splitlines()]
    assert listed == list(shipped_configs())

    resolved = run_installed(installed, tmp_path, "configs", "mask_rcnn_R_50_FPN_3x_points", "solver.max_iter=7")
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.startswith(f"# {installed / 'pointsup' / 'configs' / 'coco' / 'mask_rcnn_R_50_FPN_3x_points.yaml'}")
    assert "max_iter: 7" in resolved.stdout and "  backbone:\n    name: resnet50\n" in resolved.stdout


def test_a_training_command_takes_a_shipped_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pointsup.cli import main

    # the name resolves to the shipped file; the run then stops on its first real problem (no data here)
    assert main(["train", "synthetic_R18_points", "data.train_json=missing.json", "data.train_images=.", "data.val_json=null",
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and "config file not found" not in err
