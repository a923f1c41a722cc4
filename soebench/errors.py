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
