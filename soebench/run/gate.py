"""Keeping background I/O off the cores while torch computes on the CPU.

An evaluation decodes the next batch's inputs and encodes the last batch's PNGs on worker
threads. On a CPU run torch's intra-op (OpenMP) threads already occupy every core, and each of
their parallel regions ends in a barrier: when one core is taken by a PNG encode, every small
op waits for the descheduled worker. Measured with the tiny networks of the overhead benchmark
on 2 cores, the CLIP and Inception passes ran ~10x slower inside a run than on their own, most
of the harness overhead. So the workers take their next task only while the main thread is
*not* inside a torch call -- during the numpy-bound metrics (background preservation, the
taxonomy), which leave a core free. On CUDA the kernels run on the GPU and the gate stays open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ComputeGate:
    """Closed while the main thread computes with torch on the CPU; workers :meth:`wait` on it."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._open = threading.Event()
        self._open.set()

    @classmethod
    def for_device(cls, device: str | None) -> ComputeGate:
        """Enabled for CPU devices only."""
        return cls(enabled=str(device or "cpu").split(":")[0] == "cpu")

    @contextmanager
    def compute(self) -> Iterator[None]:
        """Hold the workers back for the duration (re-entrant: inner blocks leave it closed)."""
        if not self.enabled or not self._open.is_set():
            yield
            return
        self._open.clear()
        try:
            yield
        finally:
            self._open.set()

    def wait(self) -> None:
        """Block a worker until no torch computation is running (returns at once when disabled)."""
        if self.enabled:
            self._open.wait()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()


#: A gate that never closes: the default where no one computes.
OPEN = ComputeGate(enabled=False)
