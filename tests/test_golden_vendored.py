"""The vendored golden files (tests/golden) are byte-identical to their originals in ../shared."""

from __future__ import annotations

import pytest

from tests.conftest import GOLDEN, VENDORED_GOLDEN, require

VENDORED = sorted(p.name for p in VENDORED_GOLDEN.iterdir() if p.suffix in {".pt", ".json"})


def test_the_small_golden_files_are_vendored() -> None:
    assert {"sim_points_n10_v1.json", "mapper.pt", "point_features.pt", "implicit_point_head.pt"} <= set(VENDORED)


@pytest.mark.parametrize("name", VENDORED)
def test_vendored_copy_matches_the_original(name: str) -> None:
    assert (VENDORED_GOLDEN / name).read_bytes() == require(GOLDEN / name).read_bytes()
