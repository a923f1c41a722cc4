"""A folder of shard parts read (and merged) as one manifest; incomplete or mixed folders refused."""

from __future__ import annotations

import shutil

import pytest

from soebench.cli.app import main
from soebench.errors import InputError, OutputExistsError
from soebench.manifest.io import merge_parts, read_manifest
from soebench.mining.build import build_dataset
from tests.mining.fixtures import OiObj, write_coco, write_openimages
from tests.mining.test_build_coco import SIZE_OBJECTS


def _coco(fx, out, **kw):
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, captions=fx.captions,
                         preset="none", plots=False, **kw)


@pytest.fixture
def built(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS * 4)
    whole = _coco(fx, tmp_path / "whole.parquet")
    for i in range(3):
        _coco(fx, tmp_path / "parts", num_shards=3, shard_index=i)
    return fx, whole, tmp_path / "parts"


def test_folder_reads_back_in_the_unsharded_order(built):
    _, whole, parts = built
    a, b = read_manifest(whole.manifest_path), read_manifest(parts)
    assert b.table.equals(a.table)  # same rows, same order, no sort needed
    assert b.metadata["summary"] == a.metadata["summary"]
    assert b.metadata["parts"] == [f"part-{i:05d}-of-00003.parquet" for i in range(3)]


def test_merge_writes_the_unsharded_manifest(built, tmp_path):
    _, whole, parts = built
    out = tmp_path / "elsewhere" / "deeper" / "merged.parquet"
    merge_parts(parts, out)
    merged, ref = read_manifest(out), read_manifest(whole.manifest_path)
    assert merged.table.equals(ref.table)
    assert merged.metadata["summary"] == ref.metadata["summary"]
    assert merged.images_root == ref.images_root  # re-based on the new file's folder
    assert merged.image_path(merged.table.column("image_path")[0].as_py()).is_file()
    for role, entry in merged.metadata["inputs"].items():  # input paths re-based like the images root
        assert (out.parent / entry["path"]).resolve() == (whole.manifest_path.parent /
                                                         ref.metadata["inputs"][role]["path"]).resolve()
    with pytest.raises(OutputExistsError):
        merge_parts(parts, out)


def test_incomplete_folder_is_refused(built, tmp_path):
    _, _, parts = built
    (parts / "part-00001-of-00003.parquet").unlink()
    with pytest.raises(InputError, match=r"incomplete: 1 of 3 parts missing \(part-00001-of-00003.parquet\)"):
        read_manifest(parts)
    assert main(["manifest", "merge", str(parts), "--out", str(tmp_path / "m.parquet")]) == 2
    assert not (tmp_path / "m.parquet").exists()


def test_parts_of_different_builds_are_refused(built, tmp_path):
    fx, _, parts = built
    other = tmp_path / "other"
    _coco(fx, other, num_shards=3, shard_index=1, filters={"drop_crowd": True})
    shutil.copy(other / "part-00001-of-00003.parquet", parts / "part-00001-of-00003.parquet")
    with pytest.raises(InputError, match="part-00001-of-00003.parquet differs .* in 'filters'"):
        read_manifest(parts)


def test_openimages_parts_keep_the_unsharded_order(tmp_path):
    images = {f"{k:x}{k:015x}": [OiObj((0.1, 0.1, 0.25, 0.25)), OiObj((0.5, 0.5, 0.6, 0.62), "Ball")]
              for k in (11, 2, 7, 3, 14, 5, 9, 1, 12, 6, 4, 8)}
    fx = write_openimages(tmp_path / "oi", images)

    def build(out, **kw):
        return build_dataset("openimages", out, images=fx.images, segmentation_csv=fx.segmentation_csv,
                             masks=fx.masks, classes=fx.classes, preset="none", plots=False, **kw)

    whole = build(tmp_path / "whole.parquet")
    for i in range(2):
        build(tmp_path / "parts", num_shards=2, shard_index=i)
    assert read_manifest(tmp_path / "parts").table.equals(read_manifest(whole.manifest_path).table)


def test_cli_merge(built, tmp_path, capsys):
    _, whole, parts = built
    out = tmp_path / "m.parquet"
    assert main(["manifest", "merge", str(parts), "--out", str(out)]) == 0
    assert f"{whole.num_rows} rows merged" in capsys.readouterr().out
    assert main(["manifest", "validate", str(out)]) == 0
