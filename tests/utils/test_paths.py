"""Refusing an output path that is an input file (pointsup.utils.paths)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pointsup.utils.paths import OutputOverInputError, refuse_output_over_input, same_file


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "instances.json"
    path.write_text("{}")
    return path


def test_same_path_is_refused_with_a_message_naming_both(input_file: Path) -> None:
    with pytest.raises(OutputOverInputError) as info:
        refuse_output_over_input(input_file, [input_file], "-o")
    assert str(info.value) == (f"-o {input_file} is the input file {input_file}: writing it would replace the input; "
                               "choose another output path")


def test_symlink_to_the_input_is_refused(tmp_path: Path, input_file: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(input_file)
    with pytest.raises(OutputOverInputError, match="link.json is the input file"):
        refuse_output_over_input(link, [input_file], "-o")
    with pytest.raises(OutputOverInputError):  # and the other way round
        refuse_output_over_input(input_file, [link], "-o")


def test_symlinked_folder_and_missing_output_are_compared_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert same_file(tmp_path / "alias" / "new.json", tmp_path / "real" / "new.json")  # neither exists
    assert not same_file(tmp_path / "alias" / "new.json", tmp_path / "real" / "other.json")


def test_hard_link_is_refused(tmp_path: Path, input_file: Path) -> None:
    hard = tmp_path / "hard.json"
    os.link(input_file, hard)
    with pytest.raises(OutputOverInputError):
        refuse_output_over_input(hard, [input_file], "-o")


def test_relative_path_is_refused(tmp_path: Path, input_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    with pytest.raises(OutputOverInputError, match=r"-o \.\./instances\.json is the input file"):
        refuse_output_over_input(Path("../instances.json"), [input_file], "-o")
    with pytest.raises(OutputOverInputError):
        refuse_output_over_input(input_file, [Path("..") / "sub" / ".." / "instances.json"], "-o")


def test_different_files_pass(tmp_path: Path, input_file: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text("{}")  # same content, another file
    refuse_output_over_input(other, [input_file, None], "-o")
    refuse_output_over_input(tmp_path / "missing.json", [input_file], "-o")
    refuse_output_over_input(input_file, [], "-o")


def test_folder_form_of_the_message(tmp_path: Path, input_file: Path) -> None:
    with pytest.raises(OutputOverInputError) as info:
        refuse_output_over_input(input_file, [input_file], "--output", folder=tmp_path)
    assert str(info.value).startswith(f"--output {tmp_path} would write {input_file}, which is the input file {input_file}: ")
    assert str(info.value).endswith("choose another output folder")
    assert isinstance(info.value, ValueError)
