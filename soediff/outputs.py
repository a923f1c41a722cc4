"""Weight files and output folders that follow the umask like every other output.

safetensors (0.8) writes a file by creating its own temporary file, mode 0600, and renaming it over
the target: whatever mode the target had, and whatever the umask says, ``save_file`` -- and with it
``save_pretrained`` and ``save_lora_weights`` -- leaves weights that only their owner can read, so
other users of a shared machine cannot load a LoRA. Every weight file soediff writes gets its mode
set here after the library has written it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from soebench.errors import InputError
from soebench.fileio import atomic_path, folder_problem, umask_mode


def follow_umask(paths: Iterable[str | os.PathLike]) -> None:
    """Give each file (or folder) the mode the umask gives new ones."""
    file_mode, folder_mode = umask_mode(), umask_mode(folder=True)
    for path in paths:
        os.chmod(path, folder_mode if Path(path).is_dir() else file_mode)


def save_safetensors(tensors: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """``safetensors.torch.save_file`` written atomically, with the umask's mode."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        follow_umask([tmp])  # save_file replaced atomic_path's file with its own 0600 one


def check_out_folder(path: str | os.PathLike, option: str = "--out") -> Path:
    """``path`` must be a folder or not exist yet; a file there (or above it) is refused before any
    work, where ``mkdir`` would otherwise fail late with a traceback."""
    path = Path(path)
    problem = folder_problem(path)  # found now, not after the models have loaded
    if problem is not None and problem[0] == "file":
        existing = problem[1]
        where = f"{option} {path} is a file" if existing == path.absolute() else f"{option} {path}: {existing} is a file"
        raise InputError(f"{where}; {option} must be a folder", hint=f"pass a folder (new or existing) as {option}")
    if problem is not None:
        raise InputError(f"cannot write {option} {path}: folder {problem[1]} is not writable")
    return path
