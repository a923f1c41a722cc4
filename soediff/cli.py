"""soediff command line (filled in by the soediff owner)."""

from __future__ import annotations

import sys

import typer

from soebench.errors import SoebenchError

app = typer.Typer(name="soediff", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def run() -> None:
    from soebench.cli.app import render_error

    try:
        app(standalone_mode=True)
    except SoebenchError as err:
        render_error(err)
        sys.exit(err.exit_code)
