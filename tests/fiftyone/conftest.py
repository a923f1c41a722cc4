"""A real MongoDB for the FiftyOne tests: one mongod per test session, on loopback, with its data
in a temporary folder; stopped (and FiftyOne disconnected) at the end of the session."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.factories import make_manifest
from tests.fiftyone.builders import coco_manifest, make_run


@pytest.fixture(scope="session")
def fo_db(tmp_path_factory):
    """FiftyOne connected to a mongod of our own (skips with the reason when it cannot start)."""
    try:
        import fiftyone  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"fiftyone is not installed ({exc})")
    from soebench.errors import MissingDependencyError
    from soebench.fo.db import LocalMongo, connect

    mongo = LocalMongo(tmp_path_factory.mktemp("mongo"))
    try:
        mongo.start()
    except MissingDependencyError as exc:
        pytest.skip(f"cannot start mongod for the FiftyOne tests: {exc}")
    old = os.environ.get("FIFTYONE_DATABASE_URI")
    os.environ["FIFTYONE_DATABASE_URI"] = mongo.uri
    import fiftyone as fo
    import fiftyone.core.odm.database as fodb

    fo.config.database_uri = mongo.uri
    try:
        connect()
        yield mongo
    finally:
        for name in fo.list_datasets():
            fo.delete_dataset(name)
        fodb._disconnect()
        mongo.stop()
        if old is None:
            os.environ.pop("FIFTYONE_DATABASE_URI", None)
        else:
            os.environ["FIFTYONE_DATABASE_URI"] = old


@pytest.fixture
def dataset_name(fo_db):
    """A unique dataset name, deleted after the test."""
    import fiftyone as fo

    name = f"soebench-test-{uuid.uuid4().hex[:10]}"
    yield name
    if fo.dataset_exists(name):
        fo.delete_dataset(name)


@pytest.fixture(scope="session")
def coco_fixture(coco_sample, tmp_path_factory):
    """A manifest of 12 real COCO val2017 objects and two fixture runs of it (one error, one lost image)."""
    folder = tmp_path_factory.mktemp("coco_fo")
    manifest = coco_manifest(coco_sample, folder / "coco-val-soebench.parquet")
    from soebench.manifest.io import read_manifest

    ids = read_manifest(manifest).table.column("sample_id").to_pylist()
    run_a = make_run(folder / "reports" / "model-a", manifest, name="model-a", model="fixture-a", seed=1,
                     errors=(ids[0],), missing_images=(ids[1],))
    run_b = make_run(folder / "reports" / "model-b", manifest, name="model-b", model="fixture-b", seed=2)
    return {"manifest": manifest, "runs": [run_a, run_b], "ids": ids, "folder": folder}


@pytest.fixture(scope="session")
def synthetic_fixture(tmp_path_factory):
    """A synthetic manifest (tests.factories) and a fixture run of it."""
    folder = tmp_path_factory.mktemp("synth_fo")
    manifest = make_manifest(folder, 5)
    run = make_run(folder / "reports" / "synth", manifest, name="synth", seed=3)
    return {"manifest": manifest, "run": run, "folder": folder}
