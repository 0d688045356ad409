"""Files written through ``contracts.io`` get the mode any new file gets under the umask (as
pyarrow's own writes do), while staying atomic: a shared run folder stays readable."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from marc_ray.contracts.io import (current_umask, write_bytes_atomic, write_json_atomic,
                                   write_table_atomic, write_text_atomic)

TABLE = pa.table({"id": ["a", "b"], "x": [0.5, 0.25]})
WRITERS = {
    "table": lambda path: write_table_atomic(TABLE, path),
    "text": lambda path: write_text_atomic("hello\n", path),
    "json": lambda path: write_json_atomic({"alpha": 0.1}, path),
    "bytes": lambda path: write_bytes_atomic(b"\x00\x01", path),
}


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_honour_the_umask(tmp_path, umask, kind, mask, expected):
    umask(mask)
    assert current_umask() == mask
    path = tmp_path / "out" / f"file.{kind}"
    WRITERS[kind](path)
    assert mode(path) == expected
    pq.write_table(TABLE, tmp_path / "pyarrow.parquet")  # what pyarrow itself does
    assert mode(tmp_path / "pyarrow.parquet") == expected


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_a_rewrite_stays_atomic_and_leaves_no_temporary(tmp_path, umask, kind):
    umask(0o022)
    path = tmp_path / f"file.{kind}"
    WRITERS[kind](path)
    os.chmod(path, 0o600)  # the old file's mode is not carried over: the new file replaces it
    inode = os.stat(path).st_ino
    WRITERS[kind](path)
    assert os.stat(path).st_ino != inode       # renamed onto, never rewritten in place
    assert mode(path) == 0o644
    assert os.listdir(tmp_path) == [path.name]
