"""pyarrow columns -> numpy, cheaply: the CSV and JSON readers' numeric columns come out of
pyarrow, and ``Array.to_numpy``'s first call costs ~0.5 s of lazy imports (pandas among them)."""

from __future__ import annotations

import numpy as np

_NUMERIC = {"double": np.float64, "int64": np.int64, "int32": np.int32, "int8": np.int8}


def chunk_to_numpy(chunk) -> np.ndarray:
    """Numeric chunks without nulls straight from their buffer: Array.to_numpy's first call
    costs ~0.5 s of lazy imports."""
    dtype = _NUMERIC.get(str(chunk.type))
    if dtype is not None and chunk.null_count == 0:
        return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * np.dtype(dtype).itemsize)
    return chunk.to_numpy(zero_copy_only=False)


def arrow_to_numpy(column) -> np.ndarray:
    """A pyarrow ChunkedArray as numpy without importing pandas (ChunkedArray.to_numpy may)."""
    chunks = [chunk_to_numpy(c) for c in column.chunks]
    if not chunks:
        return np.zeros(0, dtype=object if column.type == "string" else np.float64)
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
