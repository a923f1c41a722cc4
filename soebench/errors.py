"""The one user-facing error family. The CLI renders these in one place (soebench.cli.app)."""

from __future__ import annotations


class SoebenchError(Exception):
    """An error whose message is meant for the user: it names the file, row or sample and what is wrong."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class InputError(SoebenchError):
    """A bad input file, row, column or argument."""


class ConfigError(SoebenchError):
    """An invalid option, preset or configuration value."""


class MissingWeightsError(SoebenchError):
    """Model weights that are needed are not on disk; the message says how to provide them."""


class OutputExistsError(SoebenchError):
    """An output exists and would be overwritten without --overwrite (or --resume)."""


class MissingDependencyError(SoebenchError):
    """An optional dependency (or service such as FiftyOne's database) is not available."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP received by the CLI: it unwinds like Ctrl-C (``finally`` blocks run, an
    adapter's catch-all does not swallow it) and the process exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.exit_code = 128 + signum


class StorageError(SoebenchError):
    """The disk refused a write (full, over quota, read-only): what was written before is kept."""


# the write failures a user fixes by freeing space or choosing another --out, not by reading a traceback
_STORAGE_ERRNOS = {"ENOSPC": "no space left on the device", "EDQUOT": "disk quota exceeded",
                   "EROFS": "the file system is read-only", "EFBIG": "file too large for the file system"}


def storage_error(exc: BaseException) -> StorageError | None:
    """The StorageError for a disk-full / read-only OSError (also when it is the cause of another
    error), else None: other OS errors are bugs or inputs and keep their traceback."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            name = errno.errorcode.get(exc.errno)
            if name in _STORAGE_ERRNOS:
                where = f" writing {exc.filename}" if exc.filename else ""
                return StorageError(f"{_STORAGE_ERRNOS[name]}{where} ({name})",
                                    hint="free space or write to another --out, then rerun with --resume "
                                         "where the command has it: finished work is kept")
        exc = exc.__cause__ or exc.__context__
    return None
