"""Shared fixtures: where the test vectors and the read-only shared material live.

The small golden files (test vectors computed with the authors' implementation) are vendored in
``tests/golden``; the large ones (whole mask heads, the EfficientNet-Lite stage outputs) and the
real datasets are read from ``../shared`` (or ``$POINTSUP_SHARED``). A test whose material is
absent is skipped, and the session ends with one line counting those skips, so a clone without
``../shared`` says what it did not test. With ``POINTSUP_REQUIRE_SHARED=1`` (set by ``.ci/run``
when ``../shared`` exists) a missing file fails the test instead: a moved or renamed file cannot
turn a parity test into a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POINTSUP_SHARED", REPO_ROOT.parent / "shared"))
GOLDEN = SHARED / "reference" / "golden"
VENDORED_GOLDEN = REPO_ROOT / "tests" / "golden"
DATASETS = SHARED / "datasets"
REQUIRE_SHARED_ENV = "POINTSUP_REQUIRE_SHARED"
#: the reason of every skip for absent shared material starts with this
MISSING_PREFIX = "shared material not found"

os.environ.setdefault("POINTSUP_NO_PROGRESS", "1")


def require(path: Path) -> Path:
    """``path``, or skip the test when it is absent (fail it under ``POINTSUP_REQUIRE_SHARED=1``)."""
    if not path.exists():
        message = f"{MISSING_PREFIX}: {path}"
        if os.environ.get(REQUIRE_SHARED_ENV):
            pytest.fail(f"{message} ({REQUIRE_SHARED_ENV} is set)", pytrace=False)
        pytest.skip(message)
    return path


def golden_file(name: str) -> Path:
    """A golden file by its name under the reference's golden folder: the vendored copy in
    ``tests/golden`` when there is one, else the one in ``../shared`` (see :func:`require`)."""
    vendored = VENDORED_GOLDEN / name
    return vendored if vendored.is_file() else require(GOLDEN / name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line counting the tests skipped for absent shared material, and where it was looked for."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if MISSING_PREFIX in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: shared material not found under {SHARED} "
            f"(set POINTSUP_SHARED to the folder holding reference/ and datasets/)",
            yellow=True,
            bold=True,
        )
