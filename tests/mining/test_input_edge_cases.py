"""Inputs as real datasets deliver them: high bit depths, repeated ids, damaged archives,
byte-order marks, float-written flags, odd mask levels. Each is read right or dropped with a
reason (never silently wrong, never a traceback)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from soebench.errors import ConfigError, InputError
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.mining.build import build_dataset
from soebench.mining.split import parse_split_ratios
from tests.mining.fixtures import Obj, OiObj, write_coco, write_openimages


def _coco(fx, out, **kw):
    kw.setdefault("plots", False)
    kw.setdefault("preset", "none")
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, **kw)


def _rows(res):
    return read_manifest(res.manifest_path).table.to_pylist()


# --- COCO -----------------------------------------------------------------------------------


def test_sixteen_bit_grayscale_images_get_the_colour_of_their_8_bit_copy(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((40, 40, 20, 20), "cup", "blue"), Obj((100, 10, 20, 20), "car", "yellow")]])
    png = fx.images / "000000000001.png"
    gray8 = np.asarray(Image.open(png).convert("L"))
    Image.fromarray(gray8).save(png)
    want = [(r["annotation_id"], r["color"]) for r in _rows(_coco(fx, tmp_path / "a.parquet"))]
    Image.fromarray(gray8.astype(np.uint16) * 257).save(png)  # the same picture, 16 bits deep
    assert Image.open(png).mode.startswith("I")
    got = [(r["annotation_id"], r["color"]) for r in _rows(_coco(fx, tmp_path / "b.parquet"))]
    assert got == want and {c for _, c in got} != {"white"}


def test_repeated_annotation_id_keeps_the_first_and_counts_the_rest(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((10, 10, 20, 20), "cup")], [Obj((10, 10, 20, 20), "car")]])
    fx.data["annotations"][1]["id"] = fx.data["annotations"][0]["id"]
    fx.annotations.write_text(json.dumps(fx.data))
    res = _coco(fx, tmp_path / "m.parquet")
    assert res.summary["invalid"] == {"duplicate annotation id": 1}
    assert res.summary["invalid_examples"]["duplicate annotation id"] == ["101"]
    assert [(r["annotation_id"], r["category"]) for r in _rows(res)] == [("101", "cup")]


def test_ids_beyond_64_bits_name_their_annotation(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((10, 10, 20, 20), "cup"), Obj((40, 40, 20, 20), "cup")]])
    fx.data["annotations"][1]["id"] = 2**63
    fx.annotations.write_text(json.dumps(fx.data))
    with pytest.raises(InputError, match=r"annotations\[1\]\.id: Expected `int` <= 9223372036854775807"):
        _coco(fx, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_category_names_are_normalised_and_an_empty_name_is_an_error(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((10, 10, 20, 20), "sports ball")]])
    cats = fx.data["categories"]
    ball = next(c for c in cats if c["name"] == "sports ball")
    ball["name"] = "  sports   ball "
    fx.annotations.write_text(json.dumps(fx.data))
    (row,) = _rows(_coco(fx, tmp_path / "a.parquet"))
    assert row["category"] == "sports ball" and row["prompts"]["small_label"] == "a small sports ball"
    ball["name"] = "  "
    fx.annotations.write_text(json.dumps(fx.data))
    with pytest.raises(InputError, match=rf"categories\[{cats.index(ball)}\]: category id {ball['id']} has an empty name"):
        _coco(fx, tmp_path / "b.parquet")


def test_image_without_a_size_drops_its_objects_with_that_reason(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((10, 10, 20, 20), "cup")], [Obj((10, 10, 20, 20), "car")]])
    fx.data["images"][0]["width"] = 0
    fx.annotations.write_text(json.dumps(fx.data))
    res = _coco(fx, tmp_path / "m.parquet")
    assert res.summary["invalid"] == {"image width or height is not positive": 1}
    assert [r["category"] for r in _rows(res)] == ["car"]


def test_split_ratios_naming_a_split_twice():
    with pytest.raises(ConfigError, match="name split 'train' twice"):
        parse_split_ratios("train=0.9,train=0.1")


# --- OpenImages -----------------------------------------------------------------------------

OI_IMAGES = {
    "aaaa000000000001": [OiObj((0.10, 0.10, 0.25, 0.25), "Cup", "blue"),
                         OiObj((0.50, 0.50, 0.65, 0.65), "Ball", "red", flags=(1, 0, 0, 0, 0))],
    "bbbb000000000002": [OiObj((0.50, 0.20, 0.65, 0.35), "Ball", "green", mask_scale=1.0)],
}


def _oi(fx, out, **kw):
    kw.setdefault("plots", False)
    kw.setdefault("preset", "none")
    kw.setdefault("bbox_csv", fx.bbox_csv)
    return build_dataset("openimages", out, images=fx.images, segmentation_csv=fx.segmentation_csv, masks=fx.masks,
                         classes=fx.classes, **kw)


@pytest.fixture
def oi(tmp_path):
    return write_openimages(tmp_path / "oi", OI_IMAGES)


def _zip_masks(fx, prefix: str) -> zipfile.Path:
    archive = fx.masks / f"validation-masks-{prefix}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(fx.masks.glob(f"{prefix}*.png")):
            zf.write(path, path.name)
            path.unlink()
    return archive


def test_truncated_mask_archive_drops_its_masks_naming_the_archive(oi, tmp_path):
    archive = _zip_masks(oi, "a")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 6 // 10])  # an interrupted download
    res = _oi(oi, tmp_path / "m.parquet")
    assert res.summary["invalid"] == {"corrupt mask archive validation-masks-a.zip": 2}
    assert [r["image_id"] for r in _rows(res)] == ["bbbb000000000002"]


def test_damaged_member_of_a_mask_archive_drops_that_mask(oi, tmp_path):
    archive = _zip_masks(oi, "a")
    with zipfile.ZipFile(archive) as zf:
        first = zf.infolist()[0]
        offset = first.header_offset + 30 + len(first.filename) + len(first.extra)
    data = bytearray(archive.read_bytes())
    data[offset + 10] ^= 0xFF  # one byte of the first member's compressed data
    archive.write_bytes(bytes(data))
    res = _oi(oi, tmp_path / "m.parquet")
    assert res.summary["invalid"] == {"corrupt mask file in archive validation-masks-a.zip": 1}
    assert res.summary["kept"] == 2


def test_byte_order_marks_in_the_csv_files_are_ignored(oi, tmp_path):
    want = _rows(_oi(oi, tmp_path / "a.parquet"))
    for path in (oi.segmentation_csv, oi.bbox_csv, oi.classes):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    got = _rows(_oi(oi, tmp_path / "b.parquet"))
    assert got == want and got[1]["occluded"] is True


def test_flags_written_as_floats_are_read_and_other_values_named(oi, tmp_path):
    lines = oi.bbox_csv.read_text().splitlines()
    header, rows = lines[0], [line.split(",") for line in lines[1:]]
    for fields in rows:
        fields[8:13] = [f"{float(v):.1f}" for v in fields[8:13]]  # a CSV that went through pandas
    rows[2][12] = ""  # IsInside unknown
    oi.bbox_csv.write_text("\n".join([header] + [",".join(f) for f in rows]) + "\n")
    got = {(r["image_id"], r["category"]): r for r in _rows(_oi(oi, tmp_path / "a.parquet"))}
    assert got[("aaaa000000000001", "Ball")]["occluded"] is True
    assert got[("aaaa000000000001", "Cup")]["occluded"] is False
    assert got[("bbbb000000000002", "Ball")]["inside"] is None
    rows[1][9] = "2.0"
    oi.bbox_csv.write_text("\n".join([header] + [",".join(f) for f in rows]) + "\n")
    with pytest.raises(InputError, match=r"row 2 \(line 3\): column IsTruncated is 2.0, expected 1, 0 or -1"):
        _oi(oi, tmp_path / "b.parquet")


@pytest.mark.parametrize("levels", [(30, 200), (0, 1), (0, 65535)])
def test_masks_are_cut_at_half_their_peak(oi, tmp_path, levels):
    background, fill = levels
    path = next(oi.masks.glob("bbbb*.png"))
    mask = np.asarray(Image.open(path)) > 0
    dtype = np.uint16 if fill > 255 else np.uint8
    Image.fromarray(np.where(mask, fill, background).astype(dtype)).save(path)
    row = next(r for r in _rows(_oi(oi, tmp_path / "m.parquet")) if r["image_id"] == "bbbb000000000002")
    np.testing.assert_array_equal(decode_mask(row["mask_rle"]), mask)
    assert row["mask_area_fraction"] == pytest.approx(mask.mean())


def test_repeated_segmentation_rows_are_counted_once(oi, tmp_path):
    lines = oi.segmentation_csv.read_text().splitlines()
    oi.segmentation_csv.write_text("\n".join(lines + lines[1:2]) + "\n")
    res = _oi(oi, tmp_path / "m.parquet")
    assert res.summary["invalid"] == {"duplicate annotation id": 1}
    assert res.summary["kept"] == 3 and len({r["sample_id"] for r in _rows(res)}) == 3


def test_a_row_without_mask_path_is_named_by_its_row(oi, tmp_path):
    lines = oi.segmentation_csv.read_text().splitlines()
    lines[3] = "," + lines[3].split(",", 1)[1]
    oi.segmentation_csv.write_text("\n".join(lines) + "\n")
    res = _oi(oi, tmp_path / "m.parquet")
    assert res.summary["invalid_examples"]["missing mask file"] == ["row 3 (no MaskPath)"]


def test_unknown_class_names_on_openimages(oi, tmp_path):
    with pytest.raises(ConfigError, match=r"'Balll' is not a category name or id of openimages") as err:
        _oi(oi, tmp_path / "m.parquet", filters={"include_classes": ["Balll"]})
    assert "did you mean 'Ball'" in err.value.hint
    res = _oi(oi, tmp_path / "m.parquet", filters={"include_classes": ["/m/02"]})
    assert {r["category"] for r in _rows(res)} == {"Ball"}
