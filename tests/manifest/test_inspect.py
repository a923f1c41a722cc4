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


def _rewrite(table, path, **columns):
    import pyarrow as pa

    for name, values in columns.items():
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field, pa.array(values, type=field.type))
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    "column, change, message",
    [
        ("mask_area_fraction", lambda v: [0.5] + v[1:], "mask_area_fraction 0.5 is not the decoded mask's"),
        ("bbox", lambda v: [[float("nan"), 1.0, 2.0, 2.0]] + v[1:], "bbox is not finite"),
        ("bbox", lambda v: [[150.0, 100.0, 30.0, 30.0]] + v[1:], "bbox lies outside the image"),
        ("eval_crop", lambda v: [[-20.0, 0.0, 40.0, 60.0]] + v[1:], "eval_crop is not a box inside the image"),
        ("color_confidence", lambda v: [7.0] + v[1:], r"color_confidence is not in \[0, 1\]"),
        ("source", lambda v: ["imagenet"] + v[1:], "source is not one of coco, openimages"),
        ("mask_rle", None, "the mask is empty"),  # an all-zero mask of the image's size
    ],
)
def test_validate_checks_the_values_of_every_row(manifest, tmp_path, column, change, message):
    table = pq.read_table(manifest)
    first = table.column("sample_id")[0].as_py()
    values = table.column(column).to_pylist()
    if change is None:
        import numpy as np

        from soebench.manifest.masks import encode_mask

        h, w = values[0]["size"]
        values = [encode_mask(np.zeros((h, w), dtype=bool))] + values[1:]
    else:
        values = change(values)
    path = _rewrite(table, tmp_path / "bad.parquet", **{column: values})
    with pytest.raises(InputError, match=rf"sample {first}: {message}"):
        validate_manifest(path)


def test_validate_wants_soebench_metadata_and_the_exact_types(manifest, tmp_path):
    import pyarrow as pa

    table = pq.read_table(manifest)
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="no soebench metadata"):
        validate_manifest(tmp_path / "plain.parquet")
    pq.write_table(table.replace_schema_metadata({b"soebench": b"{not json"}), tmp_path / "junk.parquet")
    with pytest.raises(InputError, match="metadata of the file is not JSON"):
        validate_manifest(tmp_path / "junk.parquet")
    with pytest.raises(InputError, match="metadata of the file is not JSON"):
        manifest_info(tmp_path / "junk.parquet")
    i = table.schema.get_field_index("width")
    wide = table.set_column(i, pa.field("width", pa.int64(), nullable=False), table.column("width").cast(pa.int64()))
    pq.write_table(wide, tmp_path / "wide.parquet")
    with pytest.raises(InputError, match="column 'width' is stored as int64, the schema says int32"):
        validate_manifest(tmp_path / "wide.parquet")
    assert manifest_info(tmp_path / "wide.parquet")["rows"] == 3  # readers still cast what they can
