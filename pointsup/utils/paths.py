"""Refusing an output path that is one of a command's inputs, or that exists unasked.

Every command that writes a file from input files calls :func:`refuse_output_over_input`
before it reads or writes anything, so that ``pointsup simulate a.json -o a.json`` stops with
one line instead of replacing ``a.json``. Two paths are the same file when
:func:`os.path.samefile` says so (links and hard links included) or, when one of them does not
exist yet, when they resolve to the same absolute path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from pointsup.errors import PointsupError


class OutputOverInputError(PointsupError, ValueError):
    """An output path that is an input file of the same command (shown as one line by the CLI)."""

    def __init__(
        self,
        option: str,
        output: str | os.PathLike[str],
        input_file: str | os.PathLike[str],
        folder: str | os.PathLike[str] | None = None,
    ) -> None:
        self.option, self.output, self.input_file, self.folder = option, Path(output), Path(input_file), folder
        if folder is None:
            target, choose = f"{option} {output} is", "path"
        else:
            target, choose = f"{option} {folder} would write {output}, which is", "folder"
        super().__init__(
            f"{target} the input file {input_file}: writing it would replace the input; choose another output {choose}"
        )


def same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether two paths name the same file: :func:`os.path.samefile` when both exist, else
    equal resolved absolute paths (``~`` expanded)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet), or cannot be examined
        return Path(first).expanduser().resolve() == Path(second).expanduser().resolve()


def refuse_output_over_input(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None],
    option: str,
    folder: str | os.PathLike[str] | None = None,
) -> None:
    """Raise :class:`OutputOverInputError` when ``output`` is the same file as one of ``inputs``.

    Args:
        output: a file the command is about to write.
        inputs: the files the command reads; None entries (options not given) are skipped.
        option: the option that named the output, as the user typed it (``-o``, ``--output``).
        folder: the folder ``option`` named, when ``output`` is a file the command writes in it.
    """
    for input_file in inputs:
        if input_file is not None and same_file(output, input_file):
            raise OutputOverInputError(option, output, input_file, folder)


class OutputExistsError(PointsupError, FileExistsError):
    """An output file that exists already, without ``--force`` (shown as one line by the CLI)."""


def refuse_existing_output(output: str | os.PathLike[str], option: str, force: bool) -> None:
    """Raise :class:`OutputExistsError` when ``output`` exists and ``force`` is not given: no
    command replaces a file unasked."""
    if not force and Path(output).exists():
        raise OutputExistsError(f"{option} {output} exists: give --force to overwrite it")
