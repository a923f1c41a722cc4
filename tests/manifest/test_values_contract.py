"""Row values and metadata as a file contract: what `manifest validate` finds, evaluate and soediff
refuse up front (or, for a mask, record per sample) instead of crashing mid-run."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soebench.errors import InputError
from soebench.manifest.inspect import validate_manifest
from soebench.manifest.io import read_manifest
from tests.factories import make_manifest

BG = ["bg_psnr"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Four synthetic samples; each test writes an edited copy beside it (same images root)."""
    return make_manifest(tmp_path_factory.mktemp("values-contract"), 4)


def _edited(base, name, column, change):
    """A copy of ``base`` with ``change(first row's value)`` in ``column``; returns (path, first id)."""
    table = pq.read_table(base)
    values = table.column(column).to_pylist()
    values[0] = change(values[0])
    field = table.schema.field(column)
    table = table.set_column(table.schema.get_field_index(column), field, pa.array(values, type=field.type))
    path = base.parent / name
    pq.write_table(table, path)
    return path, table.column("sample_id")[0].as_py()


def _with_metadata(base, name, **changes):
    table = pq.read_table(base)
    meta = json.loads(table.schema.metadata[b"soebench"])
    meta.update(changes)
    path = base.parent / name
    pq.write_table(table.replace_schema_metadata({b"soebench": json.dumps(meta).encode()}), path)
    return path


# -- metadata --------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("schema_version", 2, "metadata 'schema_version' must be text, got 2"),
    ("images_root", 5, "metadata 'images_root' must be text, got 5"),
    ("source", ["coco"], "metadata 'source' must be text"),
    ("shard", [0, 1], "metadata 'shard' must be .* got \\[0, 1\\]"),
    ("shard", {"index": 3, "count": 2}, "metadata 'shard' must be .* 0 <= I < N"),
    ("inputs", ["a.json"], "metadata 'inputs' must be a JSON object"),
])
def test_malformed_metadata_values_name_the_file_and_key(base, key, value, message):
    path = _with_metadata(base, f"meta-{key}.parquet", **{key: value})
    with pytest.raises(InputError, match=rf"meta-{key}.parquet: {message}"):
        read_manifest(path)


# -- image paths -----------------------------------------------------------------------------

@pytest.mark.parametrize("image_path", ["../../../../../etc/passwd", "/etc/passwd", "sub/../../x.png", "C:\\x.png", ""])
def test_an_image_path_leaving_the_images_root_is_a_validation_error(base, image_path):
    path, first = _edited(base, "escape.parquet", "image_path", lambda _: image_path)
    with pytest.raises(InputError, match=rf"sample {first}: image_path leaves the images root"):
        validate_manifest(path)
    manifest = read_manifest(path)
    with pytest.raises(InputError, match="leaves the images root"):
        manifest.image_path(image_path)
    assert manifest.image_path("sub/a..b.png") == manifest.images_root / "sub/a..b.png"  # dots in a name are fine


def test_evaluate_refuses_an_image_path_outside_the_root_before_any_sample(base, tmp_path):
    from soebench.evaluation import evaluate

    path, first = _edited(base, "escape-eval.parquet", "image_path", lambda _: "../../../../../etc/passwd")
    calls = []
    with pytest.raises(InputError, match=rf"sample {first}: image_path leaves the images root"):
        evaluate(path, lambda requests: calls.extend(requests) or [r.image for r in requests], tmp_path / "run",
                 metrics=BG, progress=False, report=False)
    assert not calls


# -- masks -----------------------------------------------------------------------------------

def test_validate_names_a_null_rle_instead_of_crashing(base):
    path, first = _edited(base, "rle-null.parquet", "mask_rle", lambda _: {"size": None, "counts": None})
    with pytest.raises(InputError, match=rf"sample {first}: mask_rle has no size or counts"):
        validate_manifest(path)


@pytest.mark.parametrize("counts, message", [
    ("garbage!!", r"mask_rle does not decode \(not COCO compressed RLE text\)"),
    ("", "mask_rle does not decode: its runs cover 0 of the"),  # pycocotools would decode it into garbage
])
def test_validate_names_an_rle_that_does_not_decode(base, counts, message):
    path, first = _edited(base, "rle-bad.parquet", "mask_rle", lambda v: {"size": v["size"], "counts": counts})
    with pytest.raises(InputError, match=rf"sample {first}: {message}"):
        validate_manifest(path)


def test_mask_problem_accepts_exactly_the_rles_that_cover_the_image():
    from soebench.manifest.masks import encode_mask
    from soebench.manifest.schema import mask_problem

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        rle = encode_mask(rng.random((h, w)) < rng.random())
        assert mask_problem(rle, h, w) is None
        assert mask_problem(rle, h + 1, w) == f"mask is {w}x{h} but the image is {w}x{h + 1}"
        for cut in range(len(rle["counts"])):  # every truncation is caught
            assert mask_problem({"size": rle["size"], "counts": rle["counts"][:cut]}, h, w) is not None


@pytest.mark.parametrize("rle", [
    lambda v: {"size": v["size"], "counts": "garbage!!"},
    lambda v: {"size": None, "counts": None},
])
def test_evaluate_records_a_mask_that_does_not_decode_as_that_samples_error(base, tmp_path, rle):
    from soebench.evaluation import evaluate

    path, first = _edited(base, "rle-eval.parquet", "mask_rle", rle)
    res = evaluate(path, "original", tmp_path / "run", metrics=BG, progress=False, report=False)
    errors = res.samples.set_index("sample_id")["error"]
    assert errors[first].startswith(f"sample {first}: mask_rle ")
    assert errors.drop(first).isna().all()  # the other samples ran


def test_soediff_refuses_a_mask_that_does_not_decode_before_training(base):
    from soediff.data import ManifestDataset, load_training_manifest

    path, first = _edited(base, "rle-train.parquet", "mask_rle", lambda v: {"size": v["size"], "counts": "garbage!!"})
    with pytest.raises(InputError, match=rf"row {first}: mask_rle does not decode"):
        load_training_manifest(path)
    # and a dataset made from the manifest directly names the row when the item is read
    ds = ManifestDataset(read_manifest(path), resolution=64, vae_scale_factor=8, prompt_key="label")
    with pytest.raises(InputError, match=rf"row {first}: mask_rle does not decode"):
        ds[0]


# -- other row values ------------------------------------------------------------------------

def test_evaluate_refuses_a_nan_box_before_any_sample(base, tmp_path):
    from soebench.evaluation import evaluate

    path, first = _edited(base, "bbox-nan.parquet", "bbox", lambda _: [math.nan] * 4)
    calls = []
    with pytest.raises(InputError, match=rf"sample {first}: bbox is not finite or has no area") as err:
        evaluate(path, lambda requests: calls.extend(requests) or [r.image for r in requests], tmp_path / "run",
                 metrics=BG, progress=False)
    assert not calls
    assert err.value.message.endswith("(1 row(s))")  # reported once, not also as "outside the image"
    # a row the run does not reach (--limit) does not stop it
    table = pq.read_table(path)
    last_first = pa.concat_tables([table.slice(1), table.slice(0, 1)])
    pq.write_table(last_first, base.parent / "bbox-nan-last.parquet")
    res = evaluate(base.parent / "bbox-nan-last.parquet", "original", tmp_path / "limited", metrics=BG, progress=False,
                   report=False, limit=3)
    assert res.samples["error"].isna().all()


@pytest.mark.parametrize("column, value, message", [
    ("teacher_crop", [math.nan, 0.0, 10.0, 10.0], "teacher_crop is not a box inside the image"),
    ("width", 0, "width or height is not positive"),
    ("image_path", "../outside.png", "image_path leaves the images root"),
])
def test_soediff_refuses_rows_it_cannot_use_before_training(base, column, value, message):
    from soediff.data import load_training_manifest

    path, first = _edited(base, f"train-{column}.parquet", column, lambda _: value)
    with pytest.raises(InputError, match=rf"sample {first}: {message}"):
        load_training_manifest(path)


def test_row_problems_runs_the_checks_of_the_columns_asked_for(base):
    from soebench.manifest.schema import row_problems

    path, first = _edited(base, "two-bad.parquet", "bbox", lambda _: [math.nan] * 4)
    table = pq.read_table(path)
    i = table.schema.get_field_index("color_confidence")
    conf = pa.array([7.0] + table.column("color_confidence").to_pylist()[1:], type=pa.float64())
    table = table.set_column(i, table.schema.field(i), conf)
    assert len(row_problems(table)) == 2
    assert row_problems(table, ["bbox"]) == [f"sample {first}: bbox is not finite or has no area (1 row(s))"]
    assert row_problems(table, ["eval_crop", "teacher_crop"]) == []


def test_the_report_figure_survives_a_box_that_is_no_box():
    from soebench.run.plots import zoom_window

    assert zoom_window([math.nan] * 4, 96, 80) == (slice(0, 80), slice(0, 96))
    assert zoom_window(None, 96, 80) == (slice(0, 80), slice(0, 96))
    assert zoom_window([40, 30, 4, 4], 96, 80) == (slice(0, 64), slice(10, 74))


@pytest.mark.parametrize("name", ["x:1.jpg", "a..b.jpg", "..a.jpg", "sub/..x.jpg", "C:x.jpg"])
def test_legitimate_file_names_stay_inside_the_root(name):
    from soebench.manifest.schema import leaves_images_root

    assert not leaves_images_root(name)


@pytest.mark.parametrize("name", ["C:/x.jpg", "c:\\x.jpg", "\\\\server\\share\\x.jpg", "a/../../x.jpg"])
def test_drives_unc_and_parent_components_leave_the_root(name):
    from soebench.manifest.schema import leaves_images_root

    assert leaves_images_root(name)
