"""manifest validate / info."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.manifest.inspect import manifest_info, validate_manifest
from soebench.mining.build import build_dataset
from tests.mining.fixtures import Obj, write_coco


@pytest.fixture
def manifest(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((40, 40, 10, 10), "car", "blue"), Obj((100, 10, 20, 20), "cup", "green")],
                                        [Obj((10, 10, 12, 12), "cup", "red")]])
    return build_dataset("coco", tmp_path / "m.parquet", images=fx.images, annotations=fx.annotations,
                         preset="none", plots=False).manifest_path


def test_info_counts(manifest):
    info = manifest_info(manifest)
    assert info["rows"] == 3 and info["images"] == 2
    assert info["per_category"] == {"cup": 2, "car": 1}
    assert info["per_split"] == {"val2017": 3} and info["per_source"] == {"coco": 3}
    assert sum(info["size_histogram"].values()) == 3 and info["size_histogram"]["1/16-1/12"] == info["size_histogram"]["1/8-1/6"] == 1


def test_validate_accepts_and_rejects(manifest, tmp_path):
    assert validate_manifest(manifest)["rows"] == 3
    table = pq.read_table(manifest)
    bad = table.drop_columns(["eval_crop"])
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="missing columns: eval_crop"):
        validate_manifest(tmp_path / "bad.parquet")
    rle = table.column("mask_rle").to_pylist()
    rle[0] = {"size": [5, 5], "counts": rle[0]["counts"]}
    import pyarrow as pa

    wrong = table.set_column(table.schema.get_field_index("mask_rle"), table.schema.field("mask_rle"),
                             pa.array(rle, type=table.schema.field("mask_rle").type))
    pq.write_table(wrong, tmp_path / "wrong.parquet")
    with pytest.raises(InputError, match="not the image size"):
        validate_manifest(tmp_path / "wrong.parquet")


def test_cli_validate_and_info(manifest, tmp_path, capsys):
    assert main(["manifest", "validate", str(manifest)]) == 0
    assert "valid soebench manifest" in capsys.readouterr().out
    assert main(["manifest", "info", str(manifest), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 3
    (tmp_path / "junk.parquet").write_text("nope")
    assert main(["manifest", "validate", str(tmp_path / "junk.parquet")]) == 2
