"""The App on loopback answers a real HTTP request; missing FiftyOne or database give clear errors."""

from __future__ import annotations

import sys
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
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            assert response.status == 200
            assert b"<html" in response.read().lower()
        assert session.server_address == "127.0.0.1" and session.server_port == port
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
