"""Outputs computed elsewhere: one ``<sample_id>.png`` per sample in a folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soebench.errors import InputError
from soebench.image_io import rgb_array
from soebench.models.base import InpaintRequest, InpaintResult


@dataclass(frozen=True)
class FolderConfig:
    """``path``: folder of ``<sample_id>.<ext>`` images at the input size; ``ext``: file suffix."""

    path: Path
    ext: str = "png"


class FolderInpainter:
    """Reads precomputed outputs; a missing or unreadable file is an error for that sample only."""

    name = "folder"

    def __init__(self, config: FolderConfig):
        self.config = config
        self.folder = Path(config.path).expanduser()
        if not self.folder.is_dir():
            raise InputError(f"folder adapter: {self.folder} is not a folder", hint="pass --model-args path=DIR")

    def cache_token(self) -> None:
        # The folder's files are the outputs; reading them is cheaper than caching them, and a
        # changed file must never be replaced by a cached copy.
        return None

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[InpaintResult]:
        from PIL import Image, UnidentifiedImageError

        results = []
        for r in requests:
            path = self.folder / f"{r.sample_id}.{self.config.ext.lstrip('.')}"
            if not path.is_file():
                results.append(InpaintResult(r.sample_id, None, f"no output file {path}"))
                continue
            try:
                with Image.open(path) as img:
                    arr = rgb_array(img)
            except (OSError, UnidentifiedImageError) as exc:
                results.append(InpaintResult(r.sample_id, None, f"cannot read {path}: {exc}"))
                continue
            results.append(InpaintResult(r.sample_id, arr))
        return results

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.folder)}
