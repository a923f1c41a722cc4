"""Outputs computed elsewhere: one ``<sample_id>.png`` per sample in a folder.

A folder that holds no file with the suffix at all is refused when the adapter is built, and one
that holds none of the run's samples before the run (:meth:`FolderInpainter.check_samples`; no
sample could be read); a folder that holds some is read sample by sample, a missing file being
an error for that sample only, which names the file expected.
"""

from __future__ import annotations

import glob
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soebench.errors import InputError
from soebench.image_io import rgb_array
from soebench.models.base import InpaintRequest, InpaintResult, absolute_if_local


@dataclass(frozen=True)
class FolderConfig:
    """``path``: folder of ``<sample_id>.<ext>`` images at the input size; ``ext``: file suffix."""

    path: Path
    ext: str = "png"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(absolute_if_local(self.path)))
        # a suffix, not a pattern: "*" or "" would glob other files or name none
        if not re.fullmatch(r"\.?[A-Za-z0-9]+", self.ext):
            raise ValueError(f"ext must be a file suffix such as png or jpg; got {self.ext!r}")


class FolderInpainter:
    """Reads precomputed outputs; a missing or unreadable file is an error for that sample only."""

    name = "folder"

    def __init__(self, config: FolderConfig):
        self.config = config
        self.folder = Path(config.path).expanduser()
        self.ext = config.ext.lstrip(".")
        if not self.folder.is_dir():
            raise InputError(f"folder adapter: {self.folder} is not a folder", hint="pass --model-args path=DIR")
        self._check_not_empty()

    def _check_not_empty(self) -> None:
        """Without a single ``*.<ext>`` file every sample would fail: say so once, before the run."""
        if any(p.is_file() for p in self.folder.glob(f"*.{self.ext}")):
            return
        suffixes = Counter(p.suffix for p in self.folder.iterdir() if p.is_file() and p.suffix)
        held = ", ".join(f"{n} {s}" for s, n in suffixes.most_common(3))
        found = f"; it holds {held} files (ext= sets the suffix, case included)" if held else (
            "; it holds no file" if any(self.folder.iterdir()) else "; it is empty")
        if (self.folder / "images").is_dir():
            found += f"; a soebench run keeps its outputs in RUN/images/: path={self.folder / 'images'}?"
        raise InputError(f"folder adapter: {self.folder} holds no .{self.ext} file",
                         hint=f"it needs one <sample_id>.{self.ext} per sample (the manifest's sample_id){found}")

    def check_samples(self, sample_ids: Sequence[str]) -> None:
        """Before the run (evaluate calls it with the run's sample ids): a folder that holds none
        of them -- another manifest's outputs, a run folder instead of its images/ -- would fail
        every sample; one with some of them runs, the others being per-sample errors."""
        if not sample_ids or any((self.folder / f"{sid}.{self.ext}").is_file() for sid in sample_ids):
            return
        example = next((p.name for p in self.folder.glob(f"*.{self.ext}") if p.is_file()), None)
        raise InputError(f"folder adapter: {self.folder} holds none of this run's {len(sample_ids)} outputs "
                         f"(e.g. {sample_ids[0]}.{self.ext})",
                         hint=f"it holds other files such as {example}: outputs of another manifest or another "
                              "folder? (a soebench run keeps its outputs in RUN/images/)")

    def cache_token(self) -> None:
        # The folder's files are the outputs; reading them is cheaper than caching them, and a
        # changed file must never be replaced by a cached copy.
        return None

    def _missing(self, request: InpaintRequest, path: Path) -> str:
        """The error for a sample without its file, naming the file expected (and a file of the
        same sample with another suffix, the usual cause)."""
        other = next((p.name for p in self.folder.glob(f"{glob.escape(request.sample_id)}.*") if p.is_file()), None)
        also = f"; found {other} (pass ext= for that suffix)" if other else ""
        return f"no output file {path} (the folder adapter reads <sample_id>.{self.ext} from {self.folder}){also}"

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[InpaintResult]:
        from PIL import Image, UnidentifiedImageError

        results = []
        for r in requests:
            path = self.folder / f"{r.sample_id}.{self.ext}"
            if not path.is_file():
                results.append(InpaintResult(r.sample_id, None, self._missing(r, path)))
                continue
            try:
                with Image.open(path) as img:
                    if (problem := self._wrong_format(path, img.format)) is not None:
                        results.append(InpaintResult(r.sample_id, None, problem))
                        continue
                    arr = rgb_array(img)
            except (OSError, UnidentifiedImageError) as exc:
                results.append(InpaintResult(r.sample_id, None, f"cannot read {path}: {exc}"))
                continue
            results.append(InpaintResult(r.sample_id, arr))
        return results

    def _wrong_format(self, path: Path, found: str | None) -> str | None:
        """A JPEG saved under a .png name would have its compression artefacts scored as the
        model's edit: a file must hold the format its suffix names (``ext=jpg`` opts in to JPEG)."""
        from PIL import Image

        expected = Image.registered_extensions().get(f".{self.ext.lower()}")
        if expected is None or found == expected or (expected, found) == ("JPEG", "MPO"):  # MPO: a camera's JPEG
            return None
        return f"{path} is a {found} image, not the {expected} its .{self.ext} suffix names (a lossy format is scored as the edit)"

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.folder)}
