"""An external program as an inpainter (any language, any environment).

Per batch the harness writes the inputs as PNGs and a JSONL file of requests into a temporary
folder, then runs ``argv + [requests.jsonl]`` (an argv list, never a shell; ``{requests}`` in
argv is replaced by the path instead when present) in ``cwd`` (default: soebench's own), with
stdin closed (``/dev/null``: a program waiting for input would only wait for the timeout). Each
JSONL line holds ``sample_id``, ``image`` (path), ``mask`` (path, white = edit), ``prompt``,
``seed``, ``width``, ``height`` and ``output``: the path the program must write a PNG of the
input size to (that exact path, not one named after the sample id; any other format, even under
the ``.png`` name, is an error for that sample, since a lossy JPEG would be scored as the edit).

A timeout, a non-zero exit status, a missing or non-PNG output becomes an error for the samples
concerned (with the tail of the program's stderr); outputs the program did write are used.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import ConfigError
from soebench.image_io import rgb_array
from soebench.models.base import InpaintRequest, InpaintResult, absolute_if_local

STDERR_TAIL = 800


@dataclass(frozen=True)
class CommandConfig:
    """``argv``: the program and its arguments -- a list (Python API), or one string split like a
    POSIX shell would (``--model-args argv=...``); no shell ever runs. ``timeout``: seconds per
    batch (finite, > 0); ``cwd``: working directory; ``version``: any string you bump when the
    program changes (it is part of the cache key)."""

    argv: tuple[str, ...] | str
    timeout: float = 600.0
    cwd: str | None = None
    version: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cwd", absolute_if_local(self.cwd))
        # checked here, once: a bad timeout would otherwise fail (and re-run the program for) every sample
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a finite number of seconds > 0; got {self.timeout}")


def _tail(text: bytes | str | None) -> str:
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.strip()
    return text[-STDERR_TAIL:]


def _kill_group(proc: subprocess.Popen) -> None:
    import os
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


#: seconds between wake-ups while the program runs (see _wait)
_POLL = 0.5


def _wait(proc: subprocess.Popen, timeout: float) -> int:
    """The program's exit status, waiting on the process itself -- not on pipes a background
    helper it started may hold open for ever -- in short waits: a signal the kernel hands to another
    thread (SIGTERM) runs its Python handler only when the main thread wakes, and one long wait
    would keep soebench, and the program, running until the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.wait(timeout=max(0.0, min(_POLL, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                raise


def _log_tail(path: Path) -> str:
    """The end of the program's stderr, read from its file: a program writing gigabytes of log
    costs disk for the batch, never memory."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4 * STDERR_TAIL))
            return _tail(fh.read())
    except OSError:
        return ""


class CommandInpainter:
    name = "command"

    def __init__(self, config: CommandConfig):
        self.config = config
        if isinstance(config.argv, str):
            try:
                self.argv = shlex.split(config.argv)
            except ValueError as exc:
                raise ConfigError(f"command adapter: cannot split argv {config.argv!r}: {exc}") from exc
        else:
            self.argv = [str(a) for a in config.argv]
        if not self.argv:
            raise ConfigError("command adapter: argv is empty", hint="--model-args argv='python my_inpaint.py'")
        self._check_program()

    def _check_program(self) -> None:
        """A program that cannot be found fails the run before any sample, not every sample."""
        import os
        import shutil

        if self.config.cwd is not None and not Path(self.config.cwd).is_dir():
            raise ConfigError(f"command adapter: cwd={self.config.cwd} is not a folder",
                              hint="give cwd= an existing folder (the program runs there)")
        program = self.argv[0]
        if os.sep in program or (os.altsep and os.altsep in program):
            path = Path(self.config.cwd or ".") / program
            ok = path.is_file() and os.access(path, os.X_OK)
        else:
            ok = shutil.which(program) is not None
        if not ok:
            raise ConfigError(f"command adapter: program {program!r} not found or not executable",
                              hint="give an executable path (relative paths start from cwd=) or a program on PATH")

    def cache_token(self) -> dict[str, Any]:
        return {"adapter": self.name, "argv": self.argv, "cwd": self.config.cwd, "version": self.config.version}

    def _argv(self, requests_file: Path) -> list[str]:
        if any("{requests}" in a for a in self.argv):
            return [a.replace("{requests}", str(requests_file)) for a in self.argv]
        return [*self.argv, str(requests_file)]

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[InpaintResult]:
        from PIL import Image

        with tempfile.TemporaryDirectory(prefix="soebench-cmd-") as tmp:
            folder = Path(tmp)
            lines, outputs = [], {}
            for i, r in enumerate(requests):
                image_path, mask_path, out_path = (folder / f"{i:05d}_{kind}.png" for kind in ("image", "mask", "output"))
                Image.fromarray(r.image).save(image_path)
                Image.fromarray(r.mask.astype(np.uint8) * 255).save(mask_path)
                outputs[r.sample_id] = out_path
                w, h = r.size
                lines.append(json.dumps({
                    "sample_id": r.sample_id, "image": str(image_path), "mask": str(mask_path), "prompt": r.prompt,
                    "seed": int(r.seed), "width": w, "height": h, "output": str(out_path),
                }))
            requests_file = folder / "requests.jsonl"
            requests_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
            argv = self._argv(requests_file)
            failure = self._run(argv, folder / "stderr.log")
            return [self._read(r, outputs[r.sample_id], failure) for r in requests]

    def _run(self, argv: list[str], stderr_path: Path) -> str | None:
        """Run the program in a session of its own, so that a timeout or Ctrl-C ends it with
        every process it started (a wrapper script's model process would otherwise keep its GPU).
        Its stdout is not read; its stderr goes to ``stderr_path``. Returns the failure text, or None."""
        try:
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(argv, cwd=self.config.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=err, start_new_session=True)
        except OSError as exc:
            return f"cannot run command {argv[0]}: {exc}"
        try:
            status = _wait(proc, self.config.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            failure = f"command {argv[0]} timed out after {self.config.timeout:g} s"
            return failure + (f"; stderr: {tail}" if (tail := _log_tail(stderr_path)) else "")
        except BaseException:  # Ctrl-C or any error here: never leave the program running
            _kill_group(proc)
            proc.wait()
            raise
        _kill_group(proc)  # helpers it left behind in the background
        if status != 0:
            failure = f"command {argv[0]} exited with status {status}"
            return failure + (f"; stderr: {tail}" if (tail := _log_tail(stderr_path)) else "")
        return None

    @staticmethod
    def _read(request: InpaintRequest, path: Path, failure: str | None) -> InpaintResult:
        from PIL import Image, UnidentifiedImageError

        if not path.is_file():
            missing = f"command wrote no output for sample {request.sample_id} (expected a PNG at {path}, its 'output' path)"
            return InpaintResult(request.sample_id, None, failure or missing)
        try:
            with Image.open(path) as img:
                if img.format != "PNG":
                    return InpaintResult(request.sample_id, None,
                                         f"command output {path.name} is a {img.format} image, not a PNG")
                return InpaintResult(request.sample_id, rgb_array(img))
        except (OSError, UnidentifiedImageError) as exc:
            return InpaintResult(request.sample_id, None, f"command output {path.name} is not an image: {exc}")
