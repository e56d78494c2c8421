"""Atomic writes give files the permissions an ordinary write would, not mkstemp's private 0o600."""

from __future__ import annotations

import os
import stat

import pytest

from pointsup.utils.atomic import write_bytes_atomic, write_json_atomic


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_follows_the_umask(tmp_path, umask, expected):
    previous = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "out.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.json").stat().st_mode) == expected
    assert (tmp_path / "out.json").read_text() == '{"a":1}'


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temporary file left
