"""Every user-facing error derives from PointsupError, and the command modules import no cycle."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import pointsup
from pointsup.errors import CommandError, PointsupError

PACKAGE_DIR = Path(pointsup.__file__).parent
#: exceptions that never reach a user: they are answered inside the labelling server
INTERNAL_ERRORS = {
    "pointsup.annotator.api.ApiError",
    "pointsup.annotator.store.AnswerConflict",
    "pointsup.annotator.box_store.BoxConflict",
}


def all_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="pointsup.") if not info.name.endswith("__main__")
    )


def test_every_error_class_is_a_pointsup_error() -> None:
    found = []
    for name in all_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == name and issubclass(cls, BaseException):
                qualified = f"{name}.{cls.__name__}"
                found.append(qualified)
                assert issubclass(cls, PointsupError) or qualified in INTERNAL_ERRORS, qualified
    assert len(found) >= 15  # the walk did find the package's errors


def test_one_line_is_the_first_line() -> None:
    assert PointsupError("first\nsecond").one_line() == "first"
    assert CommandError("").one_line() == "CommandError"


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_only_the_entry_point_imports_the_command_line(path: Path) -> None:
    """``pointsup.cli`` registers the command modules; none of them (and no library module)
    imports it back."""
    if path.name == "__main__.py":
        return
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "pointsup.cli":
            pytest.fail(f"{path} imports pointsup.cli")
        if isinstance(node, ast.Import) and any(alias.name == "pointsup.cli" for alias in node.names):
            pytest.fail(f"{path} imports pointsup.cli")
