"""Entry point: builds the typer app from the command modules and renders SoebenchError once."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Annotated

import typer

from soebench.errors import SoebenchError, Terminated, storage_error

app = typer.Typer(
    name="soebench",
    help="Small object editing: build benchmark manifests, evaluate inpainters, inspect failures.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's plain help: at 80 columns rich's four-column tables cut option names
    # ("--segmentation-c…") and show a <bool> value for flags that take none
    rich_markup_mode=None,
)

# Each command module adds its commands to ``app`` in ``register``; imports stay light so that
# ``soebench --help`` starts fast (heavy libraries are imported inside the commands).
from soebench.cli import build as _build  # noqa: E402
from soebench.cli import evaluate as _evaluate  # noqa: E402
from soebench.cli import inspect as _inspect  # noqa: E402
from soebench.cli import taxonomy as _taxonomy  # noqa: E402

def _print_version(value: bool) -> None:
    if value:
        version()
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Small object editing: build benchmark manifests, evaluate inpainters, inspect failures."""


for _module in (_build, _evaluate, _inspect, _taxonomy):
    _module.register(app)


@app.command("version")
def version() -> None:
    """Print the soebench version and the manifest schema version."""
    from soebench import __version__
    from soebench.manifest.schema import SCHEMA_VERSION

    typer.echo(f"soebench {__version__} (manifest schema {SCHEMA_VERSION})")


def render_error(err: SoebenchError) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True)
    # escaped: messages hold paths and hints such as `pip install 'soebench[fiftyone]'`, not markup
    console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False, soft_wrap=True)
    if err.hint:
        console.print(f"[yellow]hint:[/] {escape(err.hint)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _terminate_like_ctrl_c():
    """SIGTERM (a scheduler's kill, ``timeout``) and SIGHUP (a closed terminal) unwind the stack
    as Ctrl-C does, so ``finally`` blocks run: pending PNG writes finish, locks are released and a
    command adapter's program -- in a session of its own, which the signal does not reach -- is
    ended. Only in the main thread and where nobody installed a handler of their own."""
    import signal

    def stop(signum, _frame):
        raise Terminated(signum)

    installed = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
                installed[sig] = signal.signal(sig, stop)
    try:
        yield
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; click renders usage errors, SoebenchError is rendered here, once."""
    try:
        with _terminate_like_ctrl_c():
            app(args=argv, prog_name="soebench")
    except SoebenchError as err:
        render_error(err)
        return err.exit_code
    except Exception as exc:  # a disk-full error may arrive wrapped (a writer thread re-raises it)
        err = storage_error(exc)
        if err is None:
            raise
        render_error(err)
        return err.exit_code
    except KeyboardInterrupt as exc:  # the command said what is kept, where it has something to say
        return getattr(exc, "exit_code", 130)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
