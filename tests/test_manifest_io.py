import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soebench.errors import InputError, OutputExistsError
from soebench.manifest import read_manifest, validate_table, write_manifest
from tests.factories import make_manifest


def test_write_refuses_existing_without_overwrite(tmp_path):
    path = make_manifest(tmp_path, n=2)
    table = read_manifest(path).table
    with pytest.raises(OutputExistsError, match="already exists"):
        write_manifest(table, path, {})
    write_manifest(table, path, {"preset": "x"}, overwrite=True)
    assert read_manifest(path).metadata["preset"] == "x"


def test_missing_columns_are_named(tmp_path):
    path = make_manifest(tmp_path, n=2)
    table = read_manifest(path).table.drop_columns(["teacher_crop", "mask_rle"])
    with pytest.raises(InputError, match="missing columns: mask_rle, teacher_crop"):
        validate_table(table)


def test_wrong_type_and_nulls_are_named(tmp_path):
    table = read_manifest(make_manifest(tmp_path, n=2)).table
    bad = table.set_column(table.column_names.index("width"), "width", pa.array(["a", "b"]))
    with pytest.raises(InputError, match="'width' has type string"):
        validate_table(bad)


def test_duplicate_sample_ids_rejected(tmp_path):
    table = read_manifest(make_manifest(tmp_path, n=1)).table
    with pytest.raises(InputError, match="duplicate sample_id"):
        validate_table(pa.concat_tables([table, table]))


def test_folder_of_parts_reads_as_one(tmp_path):
    table = read_manifest(make_manifest(tmp_path, n=4)).table
    parts = tmp_path / "parts"
    write_manifest(table.slice(0, 1), parts / "part-00000-of-00002.parquet", {"images_root": "../images"})
    write_manifest(table.slice(1), parts / "part-00001-of-00002.parquet", {"images_root": "../images"})
    merged = read_manifest(parts)
    assert merged.table.equals(table)
    assert merged.image_path(merged.table["image_path"][0].as_py()).exists()


def test_not_parquet_is_a_clear_error(tmp_path):
    bad = tmp_path / "m.parquet"
    bad.write_text("hello")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_manifest(bad)


def test_write_is_deterministic(tmp_path):
    table = read_manifest(make_manifest(tmp_path, n=3)).table
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_manifest(table, a, {"k": 1})
    write_manifest(table, b, {"k": 1})
    assert a.read_bytes() == b.read_bytes()
    assert pq.read_schema(a).metadata[b"soebench"]
