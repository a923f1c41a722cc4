"""--help is read in 80-column terminals and logs: every option name whole, flags without a value."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner


def _commands():
    from soebench.cli.app import app as soebench_app
    from soediff.cli import app as soediff_app

    return [(soebench_app, ["build-dataset"]), (soebench_app, ["evaluate"]), (soebench_app, ["compare"]),
            (soebench_app, ["manifest", "validate"]), (soebench_app, ["inspect"]), (soediff_app, ["train"])]


@pytest.mark.parametrize("index", range(6))
def test_help_shows_whole_option_names_at_80_columns(index, monkeypatch):
    from typer.main import get_command

    app, args = _commands()[index]
    monkeypatch.setenv("COLUMNS", "80")
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "…" not in text and "<bool>" not in text
    cmd = get_command(app)  # click's own list of the options is the reference
    for name in args:
        cmd = cmd.commands[name]
    for param in cmd.params:
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("--"):
                assert re.search(re.escape(opt) + r"(?![\w-])", text), f"{opt} missing from {args} --help"
