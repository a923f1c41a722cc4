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
