"""SIGTERM / SIGHUP stop a soebench command as Ctrl-C does: finally blocks run, the command says
what it kept, the exit status is 128 + the signal, and the default handlers come back after."""

from __future__ import annotations

import os
import signal
import time

import pytest

import soebench.cli.app as cli_app
import soebench.mining.build as mining_build
from soebench.errors import Terminated


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_unwinds_the_command_and_sets_the_exit_status(monkeypatch, sig):
    unwound = []

    def command(**_):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(30)  # the handler raises before this ends
        finally:
            unwound.append(True)
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(cli_app, "app", command)
    assert cli_app.main([]) == 128 + sig
    assert unwound == [True]
    assert signal.getsignal(sig) is signal.SIG_DFL  # restored: main() leaves no handler behind


def test_a_handler_someone_else_installed_is_left_alone(monkeypatch):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda *_: seen.append("theirs"))
    try:
        def command(**_):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            return None

        monkeypatch.setattr(cli_app, "app", command)
        assert cli_app.main([]) == 0
        assert seen == ["theirs"]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_build_dataset_says_where_its_progress_is_and_exits_143(monkeypatch, tmp_path, capsys):
    def terminated(*_, **__):
        raise Terminated(signal.SIGTERM)

    monkeypatch.setattr(mining_build, "build_dataset", terminated)
    annotations = tmp_path / "instances.json"
    annotations.write_text('{"images": [], "annotations": [], "categories": []}')
    code = cli_app.main(["build-dataset", "--source", "coco", "--annotations", str(annotations), "--images",
                         str(tmp_path), "--out", str(tmp_path / "m.parquet")])
    assert code == 128 + signal.SIGTERM
    assert "interrupted" in capsys.readouterr().err
