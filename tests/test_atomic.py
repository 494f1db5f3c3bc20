"""Atomic writes: whole files or none, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from ikl_zoo.atomic import atomic_path, write_json_atomic, write_text_atomic


@pytest.fixture
def umask():
    """Set the process umask for one test; the previous one is restored afterwards."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027, 0o077])
def test_written_files_get_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~mask
    written = [
        write_json_atomic(tmp_path / "result.json", {"a": 1}),
        write_text_atomic(tmp_path / "deep" / "card.md", "# card\n"),
    ]
    with atomic_path(tmp_path / "weights.bin") as tmp:
        tmp.write_bytes(b"\0" * 8)
    for path in [*written, tmp_path / "weights.bin"]:
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_replacing_a_file_keeps_its_mode_as_open_would(tmp_path, umask):
    umask(0o022)
    path = write_text_atomic(tmp_path / "record.json", "old")
    path.chmod(0o640)
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "result.json", "whole")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "whole"
    assert [entry.name for entry in tmp_path.iterdir()] == ["result.json"]
