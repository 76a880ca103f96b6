"""pipelines.io.gzip_streams: ISA-L gzip streams, interchangeable with the standard library's."""

from __future__ import annotations

import gzip

import pytest

from pipelines.io.gzip_streams import HAVE_ISAL, open_gzip


def test_isal_is_installed_with_the_project():
    assert HAVE_ISAL


@pytest.mark.parametrize("level", [0, 1, 3, 9])
def test_round_trip_with_the_standard_library(tmp_path, level):
    payload = bytes(range(256)) * 4000 + b"\x00" * 100_000
    with open_gzip(tmp_path / "a.gz", "wb", compresslevel=level) as stream:
        stream.write(payload)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == payload
    (tmp_path / "b.gz").write_bytes(gzip.compress(payload))
    with open_gzip(tmp_path / "b.gz", "rb") as stream:
        assert stream.read() == payload


def test_text_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="binary"):
        open_gzip(tmp_path / "a.gz", "rt")
