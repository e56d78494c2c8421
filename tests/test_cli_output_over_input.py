"""Every command that writes a file from input files refuses an output that is one of its inputs:
exit status 2, one line on stderr, no traceback, and the input unchanged (pointsup.utils.paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pointsup.cli import main
from pointsup.data.synthetic import SyntheticDataset, generate_synthetic_dataset
from tests.conftest import REPO_ROOT

POINTS_CONFIG = REPO_ROOT / "configs" / "cpu" / "synthetic_R18_points.yaml"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """2 images of 64 x 64 with masks; each test copies the file it may overwrite."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_images=2, image_size=64,
                                      val_fraction=0.0, show_progress=False)


@pytest.fixture
def dataset(tmp_path: Path, synthetic: SyntheticDataset) -> Path:
    """A copy of the synthetic training file, in this test's folder."""
    path = tmp_path / "instances.json"
    path.write_bytes(synthetic.train_json.read_bytes())
    return path


def assert_refused(capsys: pytest.CaptureFixture[str], argv: list[str], protected: Path, *fragments: str) -> str:
    """``pointsup ARGV`` exits 2 with one ``pointsup CMD: error: ...`` line and leaves ``protected``
    byte for byte as it was."""
    before = protected.read_bytes()
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pointsup {argv[0]}: error: "), err
    assert "writing it would replace the input" in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    assert protected.read_bytes() == before
    return err


def test_simulate(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = assert_refused(capsys, ["simulate", str(dataset), "-o", str(dataset), "-q"], dataset)
    assert f"-o {dataset} is the input file {dataset}" in err
    relative = Path("..") / tmp_path.name / "instances.json"  # the same file, spelt differently
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert_refused(capsys, ["simulate", str(relative), "-o", "instances.json", "-q"], dataset)


def test_simulate_versions_and_stats(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    second = tmp_path / "points_v2.json"  # what version 2 of -o points.json is called
    second.write_bytes(dataset.read_bytes())
    assert_refused(capsys, ["simulate", str(second), "-o", str(tmp_path / "points.json"), "--versions", "2", "-q"], second,
                   f"-o {second}")
    assert not (tmp_path / "points_v1.json").exists()  # refused before anything is written
    placeholder = tmp_path / "p2.json"  # version 2 of -o p{version}.json
    placeholder.write_bytes(dataset.read_bytes())
    assert_refused(capsys, ["simulate", str(placeholder), "-o", str(tmp_path / "p{version}.json"), "--versions", "2", "-q"],
                   placeholder, f"-o {placeholder}")
    assert_refused(capsys, ["simulate", str(dataset), "-o", str(tmp_path / "out.json"), "--stats-json", str(dataset), "-q"],
                   dataset, "--stats-json")


def test_simulate_through_a_symlink(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(dataset)
    assert_refused(capsys, ["simulate", str(link), "-o", str(dataset), "-q"], dataset)


def test_show(tmp_path: Path, dataset: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(capsys, ["show", str(dataset), "--images", str(synthetic.image_dir), "-o", str(dataset)], dataset, "-o")
    images = tmp_path / "images"
    images.mkdir()
    for image in synthetic.image_dir.iterdir():
        (images / image.name).write_bytes(image.read_bytes())
    first = images / "000001.png"
    assert_refused(capsys, ["show", str(dataset), "--images", str(images), "-o", str(first)], first, f"-o {first}")


def test_recipe(dataset: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(capsys, ["recipe", str(dataset), "--images", str(synthetic.image_dir), "-o", str(dataset), "--force"],
                   dataset, "-o")


def test_pseudo_label(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"not read: refused first")
    reference = tmp_path / "reference.json"
    reference.write_bytes(dataset.read_bytes())
    base = ["pseudo-label", "--weights", str(weights), "--dataset", str(dataset)]
    assert_refused(capsys, [*base, "-o", str(dataset)], dataset)
    assert_refused(capsys, [*base, "-o", str(weights)], weights)
    assert_refused(capsys, [*base, "--reference", str(reference), "-o", str(reference)], reference)


def test_predict(tmp_path: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    first = folder / "a.png"
    first.write_bytes((synthetic.image_dir / "000001.png").read_bytes())
    clash = folder / "0000_a_pred.png"  # the overlay name of the first image
    clash.write_bytes((synthetic.image_dir / "000002.png").read_bytes())
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"not read: refused first")
    assert_refused(capsys, ["predict", str(first), str(clash), "--weights", str(weights), "-o", str(folder)], clash,
                   f"-o {folder} would write {clash}")


def test_eval(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = tmp_path / "metrics.json"  # the metrics file eval writes into --output
    val.write_bytes(dataset.read_bytes())
    weights = tmp_path / "model_final.pth"
    weights.write_bytes(b"not read: refused first")
    assert_refused(capsys, ["eval", str(POINTS_CONFIG), f"data.val_json={val}", "--weights", str(weights), "--output", str(tmp_path)],
                   val, "--output")


def test_selftrain(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pseudo = tmp_path / "pseudo_masks.json"  # what stage 2 writes into --output
    pseudo.write_bytes(dataset.read_bytes())
    assert_refused(capsys, ["selftrain", str(POINTS_CONFIG), "--output", str(tmp_path), "--reference", str(pseudo)], pseudo,
                   f"--output {tmp_path} would write {pseudo}")
    config = tmp_path / "points" / "config.yaml"  # what stage 1 writes
    config.parent.mkdir()
    config.write_bytes(POINTS_CONFIG.read_bytes())
    assert_refused(capsys, ["selftrain", str(config), "--output", str(tmp_path)], config, f"--output {tmp_path} would write {config}")


def test_train_config_in_the_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"  # the resolved config a run writes
    config.write_bytes(POINTS_CONFIG.read_bytes())
    assert_refused(capsys, ["train", str(config), "--output", str(tmp_path)], config, f"--output {tmp_path} would write {config}")


def test_annotate_serve_db(dataset: Path, synthetic: SyntheticDataset, capsys: pytest.CaptureFixture[str]) -> None:
    assert_refused(capsys, ["annotate", "serve", str(dataset), "--images", str(synthetic.image_dir), "--db", str(dataset)],
                   dataset, "--db")


def test_cost_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    curves = tmp_path / "curves.json"
    curves.write_text('{"not": "read"}')
    assert_refused(capsys, ["cost", "--curves", str(curves), "--target-ap", "30", "--plot", str(curves)], curves, "--plot")
