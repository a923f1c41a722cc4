"""Decoding the images of the next image groups in worker threads while the miner works on one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from soebench.mining.sources import read_image_rgb


def decode_image(path: Path) -> tuple[np.ndarray, float]:
    from soebench.mining.colour import exposure_gain

    image = read_image_rgb(path)
    return image, exposure_gain(image)


class ImagePrefetch:
    """Decodes the images of the next few groups in worker threads (PIL and numpy release the
    GIL) while the main thread works on the current one.

    Only the pure decode runs ahead; every decision -- which rows survive, what is counted --
    is still taken in group order in the main thread, so the manifest is the same as with
    decoding on demand. A decode nobody asks for (all of its rows were dropped first) is wasted
    work, never a result.
    """

    def __init__(self, src, image_keys: list, workers: int = 1):
        self.src = src
        self.keys = image_keys
        self.workers = workers
        self.depth = 2 * workers  # images decoded ahead: enough to keep the workers busy
        self.pool = ThreadPoolExecutor(max_workers=self.workers) if self.workers > 1 else None
        self.futures: dict[int, Any] = {}
        self.submitted = 0

    def __enter__(self) -> "ImagePrefetch":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            for fut in self.futures.values():
                fut.cancel()
            self.pool.shutdown(wait=True)

    def _path(self, gi: int) -> Path | None:
        rel = self.src.image_file(self.keys[gi])
        return None if rel is None else self.src.images_root / rel

    def ahead(self, gi: int) -> None:
        """Start the decodes of groups gi .. gi + depth; forget those of groups before gi."""
        if self.pool is None:
            return
        for done in [k for k in self.futures if k < gi]:  # their rows were all dropped first
            self.futures.pop(done).cancel()
        self.submitted = max(self.submitted, gi)
        while self.submitted < min(len(self.keys), gi + self.depth + 1):
            path = self._path(self.submitted)
            if path is not None:
                self.futures[self.submitted] = self.pool.submit(decode_image, path)
            self.submitted += 1

    def get(self, gi: int):
        """A callable returning (RGB image, exposure gain) of group ``gi``; raises ImageError."""

        def pixels(path: Path) -> tuple[np.ndarray, float]:
            fut = self.futures.pop(gi, None)
            return fut.result() if fut is not None else decode_image(path)

        return pixels
