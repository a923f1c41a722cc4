"""Small file helpers shared by every writer: atomic writes and content hashes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from soebench.errors import InputError, OutputExistsError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | os.PathLike | None) -> str | None:
    """sha256 of a weights file (None for no path or a folder): recorded with every score, since
    the file's identity, not its path, says whether two runs' scores are comparable."""
    return sha256_file(path) if path is not None and Path(path).is_file() else None


def refuse_existing(path: str | os.PathLike, overwrite: bool, *, what: str = "output") -> None:
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(f"{what} {path} already exists", hint="pass --overwrite to replace it")


def umask_mode(*, folder: bool = False) -> int:
    """The mode a plain ``open`` (or ``mkdir`` for a folder) gives under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def nearest_existing(path: str | os.PathLike) -> Path:
    """``path`` itself or its closest ancestor that exists: what decides whether an output
    folder can be made there (a file at or above it cannot hold one)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(folder: str | os.PathLike) -> tuple[str, Path] | None:
    """Why ``folder`` cannot be (or become) a folder this process writes into: ``("file", p)``
    when ``p``, the folder itself or its closest existing ancestor, is a file; ``("unwritable",
    p)`` when that folder cannot be written; None when it can. Callers phrase the message."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        return "file", existing
    if not os.access(existing, os.W_OK | os.X_OK):
        return "unwritable", existing
    return None


def check_output_file(path: str | os.PathLike, *, what: str = "output") -> None:
    """Refuse, before any work, an output file that cannot be written: ``path`` is a folder, or
    a file sits where one of its folders would be, or that folder is not writable. Raises
    :class:`~soebench.errors.InputError` naming the path (an existing *file* is for
    :func:`refuse_existing` to judge)."""
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {target} is a folder; expected a file path")
    problem = folder_problem(target.parent)
    if problem is not None:
        kind, existing = problem
        raise InputError(f"cannot write {what} {target}: " + (f"{existing} is a file, not a folder" if kind == "file"
                                                                 else f"folder {existing} is not writable"))


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made, and removed again) for the block: a
    second soebench process writing the same output is refused at once instead of mixing its
    files with the first's. ``what`` names the output for the message. Advisory (``flock``), so
    it guards soebench against itself; where ``fcntl`` is missing (Windows) or the lock file
    cannot be made (a writable run folder inside a read-only one) it does nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    lock = Path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a+")
    except OSError:  # e.g. a writable run folder inside a read-only one: run unguarded rather than not at all
        yield
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputExistsError(f"another soebench process is writing {what} (lock {lock} is held)",
                                    hint="wait for it to finish, or write to another --out") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()  # no litter beside the output (a process starting in this instant may lock the old inode)


def remove_stale_temps(targets: Iterable[str | os.PathLike]) -> int:
    """Remove the temporary files :func:`atomic_path` left beside ``targets`` when a process was
    killed mid-write (``.NAME.*.tmp``); returns how many. Only for a caller that holds the
    output's :func:`exclusive_lock`: no other soebench process can be writing them then."""
    removed = 0
    for target in targets:
        target = Path(target)
        if not target.parent.is_dir():
            continue
        for tmp in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, else delete it."""
    target = Path(path)
    check_output_file(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, umask_mode())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def tree_mtime(path: str | os.PathLike) -> float:
    """Latest modification time of a file, or of any file under a folder: weights replaced in
    place change every cache key that includes it."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_mtime
    return max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=path.stat().st_mtime)


def read_json_object(path: str | os.PathLike, *, what: str = "a JSON object") -> dict:
    """The JSON object in ``path``; an InputError naming the file and where it is broken (not
    JSON, not UTF-8, unreadable, or JSON that is no object -- ``what`` says what was expected)."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
                         f"(offset {exc.pos})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                         f"offset {exc.start})") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected {what}, got {type(data).__name__}")
    return data

