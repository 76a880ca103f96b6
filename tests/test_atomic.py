"""Tests of pipelines.io.atomic: atomic writes leave either the old file or the new one, with a normal file mode."""

import os

import pytest

from pipelines.io.atomic import atomic_write, write_json_atomic


def test_written_file_has_the_mode_of_a_plain_open(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json_atomic({"a": 1}, tmp_path / "sub" / "x.json")
    finally:
        os.umask(old)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a server running as another user


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
