"""Parts of one build made from copies of its input files (other paths, same content) are one
build; a refusal says which field differs; ``manifest info`` on a merged file names its parts."""

from __future__ import annotations

import shutil

import pytest

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.manifest.inspect import manifest_info, validate_manifest
from soebench.manifest.io import merge_parts, read_manifest
from soebench.mining.build import build_dataset
from tests.mining.fixtures import write_coco
from tests.mining.test_build_coco import SIZE_OBJECTS


def _copy_of(fx, folder):
    folder.mkdir()
    return shutil.copy(fx.annotations, folder / fx.annotations.name)


@pytest.fixture
def fx(tmp_path):
    return write_coco(tmp_path / "coco", SIZE_OBJECTS * 4)


def _part(fx, annotations, out, index):
    return build_dataset("coco", out, images=fx.images, annotations=annotations, preset="none", plots=False,
                         num_shards=2, shard_index=index)


def test_parts_built_from_copies_of_the_inputs_are_one_build(fx, tmp_path, capsys):
    parts = tmp_path / "parts"
    _part(fx, fx.annotations, parts, 0)
    _part(fx, _copy_of(fx, tmp_path / "node-b"), parts, 1)  # another machine's copy, same sha256
    whole = build_dataset("coco", tmp_path / "whole.parquet", images=fx.images, annotations=fx.annotations,
                          preset="none", plots=False)
    assert read_manifest(parts).table.equals(read_manifest(whole.manifest_path).table)
    assert validate_manifest(parts)["rows"] == whole.num_rows
    assert main(["manifest", "validate", str(parts)]) == 0
    capsys.readouterr()


def test_parts_of_other_input_content_name_the_field(fx, tmp_path):
    parts = tmp_path / "parts"
    _part(fx, fx.annotations, parts, 0)
    copy = _copy_of(fx, tmp_path / "node-b")
    copy.write_text(copy.read_text().replace('"test fixture"', '"test fixturf"'))  # same size, other content
    _part(fx, copy, parts, 1)
    with pytest.raises(InputError, match=r"part-00001-of-00002.parquet differs from part-00000-of-00002.parquet in "
                                         r"'inputs' \(inputs.annotations.sha256: \"[0-9a-f]+\" vs \"[0-9a-f]+\"\)"):
        read_manifest(parts)


def test_info_of_a_merged_file_names_the_parts_it_was_merged_from(fx, tmp_path, capsys):
    parts = tmp_path / "parts"
    for i in range(2):
        _part(fx, fx.annotations, parts, i)
    merged = merge_parts(parts, tmp_path / "merged.parquet")
    info = manifest_info(merged)
    assert info["merged_from"] == ["part-00000-of-00002.parquet", "part-00001-of-00002.parquet"]
    assert info["parts"] is None and manifest_info(parts)["merged_from"] is None
    assert main(["manifest", "info", str(merged)]) == 0
    assert "merged from 2 parts: part-00000-of-00002.parquet, part-00001-of-00002.parquet" in capsys.readouterr().out
