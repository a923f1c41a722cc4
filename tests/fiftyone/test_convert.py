"""Pure converters (no database): geometry, sample dicts, run reading and source checks."""

from __future__ import annotations

import hashlib

import json
import shutil

import numpy as np
import pytest

from soebench.errors import InputError
from soebench.fiftyone_export import (
    TAG_ERROR,
    TAG_MISSING_MEDIA,
    default_dataset_name,
    manifest_sample_dicts,
    object_box,
    parse_evidence,
    read_run,
    relative_box,
    resolve_sources,
    run_sample_dicts,
    slice_name,
)
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from tests.factories import make_manifest
from tests.fiftyone.builders import make_run

pytestmark = pytest.mark.fiftyone


def test_object_box_encloses_bbox_and_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:15] = True
    mask[9, 16] = True  # a pixel outside the float bbox below
    assert object_box([10.2, 5.0, 4.5, 3.7], mask) == (10, 5, 17, 10)
    assert relative_box((10, 5, 17, 10), 30, 20) == [10 / 30, 5 / 20, 7 / 30, 5 / 20]


def test_manifest_dicts_hold_the_cropped_mask_and_fields(tmp_path):
    path = make_manifest(tmp_path, 3)
    man = read_manifest(path)
    dicts = manifest_sample_dicts(man)
    assert [d["sample_id"] for d in dicts] == man.table.column("sample_id").to_pylist()
    for d, row in zip(dicts, man.table.to_pylist()):
        full = decode_mask(row["mask_rle"])
        x, y, w, h = d["labels"]["ground_truth"]["bounding_box"]
        x0, y0 = round(x * row["width"]), round(y * row["height"])
        x1, y1 = x0 + round(w * row["width"]), y0 + round(h * row["height"])
        np.testing.assert_array_equal(d["labels"]["ground_truth"]["mask"], full[y0:y1, x0:x1])
        assert d["labels"]["ground_truth"]["mask"].sum() == full.sum()
        assert d["fields"]["prompt_color_label"] == row["prompts"]["color_label"]
        assert d["fields"]["color"] == row["color"] and d["media_exists"] and d["tags"] == []


def test_missing_original_image_is_tagged(tmp_path):
    path = make_manifest(tmp_path, 2)
    first = read_manifest(path).table.column("image_path")[0].as_py()
    (tmp_path / "images" / first).unlink()
    dicts = manifest_sample_dicts(read_manifest(path))
    assert [d["tags"] for d in dicts] == [[TAG_MISSING_MEDIA], []]


def test_run_dicts_labels_scores_and_tags(tmp_path):
    path = make_manifest(tmp_path, 4)
    ids = read_manifest(path).table.column("sample_id").to_pylist()
    run_dir = make_run(tmp_path / "run", path, name="my run!", errors=(ids[0],), missing_images=(ids[1],))
    run = read_run(run_dir)
    # "my run!" loses characters: a short hash of the name keeps distinct names apart
    assert run.slice == "my-run-" + hashlib.sha1(b"my run!").hexdigest()[:6]
    base = {d["sample_id"]: d for d in manifest_sample_dicts(read_manifest(path))}
    dicts = run_sample_dicts(run, base)
    assert dicts[0]["tags"] == [TAG_ERROR] and dicts[0]["failure"] is None and dicts[0]["fields"]["error"]
    assert dicts[1]["tags"] == [TAG_MISSING_MEDIA]
    for d, row in zip(dicts[2:], run.samples[2:]):
        assert d["tags"] == [] and d["failure"]["label"] == row["failure"]
        assert d["fields"]["bg_mse"] == row["bg_mse"] and d["fields"]["run"] == run.slice
        assert d["failure"]["attributes"]["bad"] is None  # NaN evidence -> None
        assert d["fields"]["category"] == base[d["sample_id"]]["fields"]["category"]


def test_parse_evidence():
    assert parse_evidence(None) == {}
    assert parse_evidence('{"a b": 1.5, "c": "x", "d": [1, 2], "e": NaN}') == {"a_b": 1.5, "c": "x", "d": "[1, 2]",
                                                                               "e": None}
    assert parse_evidence("not json") == {"raw": "not json"}


def test_sources_check_the_manifest_hash(tmp_path):
    a = make_manifest(tmp_path / "a", 3)
    b = make_manifest(tmp_path / "b", 3, seed=5)
    run_a = make_run(tmp_path / "ra", a, name="ra")
    run_b = make_run(tmp_path / "rb", b, name="rb")
    src = resolve_sources([run_a])
    assert src.manifest.path == a.resolve() and [r.name for r in src.runs] == ["ra"]
    with pytest.raises(InputError, match="made from another manifest"):
        resolve_sources([run_a, run_b])
    with pytest.raises(InputError, match="made from another manifest"):
        resolve_sources([b, run_a])
    with pytest.raises(InputError, match="share the run name"):
        shutil.copytree(run_a, tmp_path / "ra2")
        resolve_sources([run_a, tmp_path / "ra2"])
    with pytest.raises(InputError, match="does not exist"):
        resolve_sources([tmp_path / "nope"])


def test_moved_manifest_and_broken_run_are_named(tmp_path):
    a = make_manifest(tmp_path / "a", 2)
    run = make_run(tmp_path / "r", a, name="r")
    moved = tmp_path / "moved.parquet"
    shutil.copy(a, moved)
    a.unlink()
    with pytest.raises(InputError, match="does not exist"):
        resolve_sources([run])
    assert resolve_sources([run], manifest=moved).manifest.path == moved.resolve()
    (run / "summary.json").write_text(json.dumps({"run_name": "r"}))
    with pytest.raises(InputError, match="missing key"):
        read_run(run)


def test_default_name_is_stable():
    assert default_dataset_name("x/coco-val-soebench.parquet", "ab" * 32) == "soebench-coco-val-soebench-abababab"
    assert slice_name("original") == "run-original"
