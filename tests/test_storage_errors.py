"""A full or read-only disk is a one-line error with a hint, not a traceback; other errors keep theirs."""

from __future__ import annotations

import errno
import os

import pytest

import soebench.cli.app as cli_app
import soediff.cli as soediff_cli
from soebench.errors import StorageError, storage_error


def _enospc(path="/runs/x/images/a.png") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


def test_disk_full_is_named_with_the_file():
    err = storage_error(_enospc())
    assert isinstance(err, StorageError)
    assert err.message == "no space left on the device writing /runs/x/images/a.png (ENOSPC)"
    assert "--resume" in err.hint


def test_a_wrapped_disk_full_error_is_found_through_its_cause():
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as inner:
            raise RuntimeError("background writer failed") from inner
    except RuntimeError as outer:
        err = storage_error(outer)
    assert err is not None and err.message == "the file system is read-only (EROFS)"


@pytest.mark.parametrize("exc", [OSError(errno.ENOENT, "No such file"), ValueError("bug"), OSError("no errno")])
def test_other_errors_are_not_storage_errors(exc):
    assert storage_error(exc) is None


def test_soebench_renders_disk_full_as_one_error_line(monkeypatch, capsys):
    def full(**_):
        raise _enospc()

    monkeypatch.setattr(cli_app, "app", full)
    assert cli_app.main([]) == StorageError.exit_code
    err = capsys.readouterr().err
    assert "error: no space left on the device writing /runs/x/images/a.png (ENOSPC)" in err
    assert "Traceback" not in err and "hint:" in err


def test_soebench_keeps_the_traceback_of_other_errors(monkeypatch):
    def bug(**_):
        raise KeyError("bug")

    monkeypatch.setattr(cli_app, "app", bug)
    with pytest.raises(KeyError):
        cli_app.main([])


def test_soediff_renders_disk_full_as_one_error_line(monkeypatch, capsys):
    def full(**_):
        raise RuntimeError("checkpoint failed") from _enospc("/runs/soediff/checkpoint-4/lora.safetensors")

    monkeypatch.setattr(soediff_cli, "app", full)
    with pytest.raises(SystemExit) as stop:
        soediff_cli.run()
    assert stop.value.code == StorageError.exit_code
    err = capsys.readouterr().err
    assert "no space left on the device writing /runs/soediff/checkpoint-4/lora.safetensors" in err
