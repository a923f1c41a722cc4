"""A folder of parts as a file contract: completeness from each part's recorded shard, one build
(versions and ordered split ratios included), part-level schema errors, dot-files ignored."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.manifest.inspect import validate_manifest
from soebench.manifest.io import merge_parts, read_manifest
from soebench.mining.build import build_dataset
from tests.mining.fixtures import write_coco
from tests.mining.test_build_coco import SIZE_OBJECTS

PART = "part-{:05d}-of-00003.parquet"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Three parts of one build (and the unsharded build), made once; tests copy what they change."""
    tmp = tmp_path_factory.mktemp("parts-contract")
    fx = write_coco(tmp / "coco", SIZE_OBJECTS * 4)
    kw = {"images": fx.images, "annotations": fx.annotations, "preset": "none", "plots": False}
    whole = build_dataset("coco", tmp / "whole.parquet", **kw)
    for i in range(3):
        build_dataset("coco", tmp / "parts", num_shards=3, shard_index=i, **kw)
    return whole, tmp / "parts"


def _folder(built, tmp_path, names: dict[int, str] | None = None):
    """A copy of the parts folder beside the original (same images root): part index -> file name."""
    _, parts = built
    folder = parts.parent / f"copy-{tmp_path.name}"
    folder.mkdir()
    for index, name in (names or {i: PART.format(i) for i in range(3)}).items():
        shutil.copy(parts / PART.format(index), folder / name)
    return folder


def _edit_metadata(path, change):
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"soebench"])
    change(meta)
    pq.write_table(table.replace_schema_metadata({b"soebench": json.dumps(meta).encode()}), path)


def test_renamed_parts_with_one_missing_are_refused_from_their_metadata(built, tmp_path):
    folder = _folder(built, tmp_path, {0: "shard0.parquet", 2: "shard2.parquet"})
    with pytest.raises(InputError, match=r"incomplete: 1 of 3 parts missing \(part-00001-of-00003.parquet\)"):
        read_manifest(folder)
    assert main(["manifest", "merge", str(folder), "--out", str(tmp_path / "m.parquet")]) == 2
    assert not (tmp_path / "m.parquet").exists()


def test_a_part_read_alone_is_refused(built, tmp_path, capsys):
    folder = _folder(built, tmp_path, {0: "a.parquet"})
    with pytest.raises(InputError, match=r"a.parquet is one part of a sharded build \(shard index 0 of 3 parts\)"):
        read_manifest(folder / "a.parquet")
    assert main(["manifest", "validate", str(folder / "a.parquet")]) == 2
    assert "one part of a sharded build" in capsys.readouterr().err
    with pytest.raises(InputError, match="incomplete: 2 of 3 parts missing"):  # the folder of that one part
        read_manifest(folder)
    assert len(read_manifest(folder / "a.parquet", validate=False)) > 0  # raw access stays possible


def test_a_part_there_twice_is_refused(built, tmp_path):
    folder = _folder(built, tmp_path)
    shutil.copy(folder / PART.format(0), folder / "again.parquet")
    with pytest.raises(InputError, match=r"again.parquet and part-00000-of-00003.parquet are both part 0 of 3"):
        read_manifest(folder)


def test_merge_calls_the_output_complete_only_when_it_is_known_to_be(built, tmp_path):
    whole, _ = built
    merged = merge_parts(_folder(built, tmp_path), tmp_path / "merged.parquet")
    assert read_manifest(merged).metadata["shard"] == {"index": 0, "count": 1}
    # two plain files (no shard recorded, no part-I-of-N names): nothing says they are all of a build
    plain = tmp_path / "plain"
    plain.mkdir()
    table = pq.read_table(whole.manifest_path)
    meta = json.loads(table.schema.metadata[b"soebench"])
    meta.pop("shard")
    for i, half in enumerate((table.slice(0, 5), table.slice(5))):
        pq.write_table(half.replace_schema_metadata({b"soebench": json.dumps(meta).encode()}), plain / f"{i}.parquet")
    out = merge_parts(plain, tmp_path / "plain.parquet")
    assert "shard" not in read_manifest(out).metadata


@pytest.mark.parametrize("key, value", [
    ("tool", {"name": "soebench", "version": "0.9.0"}),
    ("colour_namer_version", "lab-rules-2"),
    ("prompt_template_version", "2"),
])
def test_parts_of_other_versions_are_different_builds(built, tmp_path, key, value):
    folder = _folder(built, tmp_path)
    _edit_metadata(folder / PART.format(2), lambda m: m.__setitem__(key, value))
    with pytest.raises(InputError, match=rf"{PART.format(2)} differs from {PART.format(0)} in '{key}'"):
        read_manifest(folder)


def test_split_ratios_are_compared_in_their_order(built, tmp_path):
    folder = _folder(built, tmp_path)
    written = {0: {"train": 0.8, "val": 0.2}, 1: {"train": 0.8, "val": 0.2}, 2: {"val": 0.2, "train": 0.8}}
    for i, ratios in written.items():
        _edit_metadata(folder / PART.format(i), lambda m, r=ratios: m["split"].__setitem__("ratios", r))
    with pytest.raises(InputError, match=rf"{PART.format(2)} differs .* in 'split'"):
        read_manifest(folder)


def test_a_part_missing_a_column_is_named_with_the_column(built, tmp_path):
    folder = _folder(built, tmp_path)
    path = folder / PART.format(2)
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["license"]).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(InputError, match=rf"{PART.format(2)} does not match .*: missing columns: license$") as err:
        read_manifest(folder)
    assert "\n" not in err.value.message and "Schema at index" not in err.value.message
    with pytest.raises(InputError, match=rf"{PART.format(2)}: missing column 'license', unlike {PART.format(0)}"):
        read_manifest(folder, validate=False)


def test_a_part_with_another_integer_type_reads_like_a_file_and_validate_names_it(built, tmp_path):
    whole, _ = built
    folder = _folder(built, tmp_path)
    path = folder / PART.format(2)
    table = pq.read_table(path)
    i = table.schema.get_field_index("width")
    wide = pa.field("width", pa.int64(), nullable=False)
    pq.write_table(table.set_column(i, wide, table.column("width").cast(pa.int64())), path)
    assert read_manifest(folder).table.equals(read_manifest(whole.manifest_path).table)  # cast, as for one file
    with pytest.raises(InputError, match=rf"{PART.format(2)}: column 'width' is stored as int64, the schema says"):
        validate_manifest(folder)


def test_validate_skips_dot_files_as_the_reader_does(built, tmp_path):
    folder = _folder(built, tmp_path)
    (folder / ".junk.parquet").write_text("junk")
    assert validate_manifest(folder)["rows"] == len(read_manifest(folder))
