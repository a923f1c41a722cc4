"""File helpers against the standard library."""

from __future__ import annotations

import hashlib

import pytest

from soebench.fileio import sha256_file


@pytest.mark.parametrize("size", [0, 1, 7, 64, 1000])
@pytest.mark.parametrize("chunk", [1, 7, 1 << 25])
def test_sha256_file_matches_hashlib_across_block_boundaries(tmp_path, size, chunk):
    data = bytes(range(256)) * (size // 256 + 1)
    path = tmp_path / "f.bin"
    path.write_bytes(data[:size])
    assert sha256_file(path, chunk=chunk) == hashlib.sha256(data[:size]).hexdigest()


def test_exclusive_lock_refuses_a_second_holder_and_cleans_up(tmp_path):
    from soebench.errors import OutputExistsError
    from soebench.fileio import exclusive_lock

    lock = tmp_path / ".out.lock"
    with exclusive_lock(lock, what="output X"):
        with pytest.raises(OutputExistsError, match="another soebench process is writing output X"):
            with exclusive_lock(lock, what="output X"):
                pass
    assert not lock.exists()
    with exclusive_lock(lock, what="output X"):  # free again
        pass


def test_exclusive_lock_that_cannot_be_made_does_not_stop_the_work(tmp_path):
    from soebench.fileio import exclusive_lock

    blocker = tmp_path / "afile"
    blocker.write_text("x")
    ran = []
    with exclusive_lock(blocker / ".out.lock", what="output"):
        ran.append(True)
    assert ran


def test_remove_stale_temps_takes_only_the_targets_own(tmp_path):
    from soebench.fileio import remove_stale_temps

    for name in (".m.parquet.abc123.tmp", ".m.summary.json.x.tmp", ".other.parquet.q.tmp", "m.parquet.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps([tmp_path / "m.parquet", tmp_path / "m.summary.json", tmp_path / "nowhere" / "x"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.parquet.q.tmp", "m.parquet.tmp"]
