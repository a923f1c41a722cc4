"""build_dataset on OpenImages-format fixtures."""

from __future__ import annotations

import pytest

from soebench.errors import ConfigError, InputError
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.mining.build import build_dataset
from soebench.mining.openimages import read_classes
from soebench.mining.presets import OPENIMAGES_EXCLUDED
from tests.mining.fixtures import OiObj, write_openimages

# image 200 x 160; soe-eval band: box side fraction in [1/8, 1/6] -> area fraction [0.015625, 0.02778]
IMAGES = {
    "aaaa000000000001": [
        OiObj((0.10, 0.10, 0.25, 0.25), "Cup", "blue"),  # 0.0225 in band
        OiObj((0.50, 0.50, 0.65, 0.65), "Person", "red"),  # excluded class
        OiObj((0.60, 0.10, 0.75, 0.25), "Ball", "green", flags=(1, 0, 0, 0, 0)),  # occluded
    ],
    "bbbb000000000002": [
        OiObj((0.10, 0.10, 0.40, 0.40), "Cup", "yellow"),  # 0.09 too big
        OiObj((0.50, 0.20, 0.65, 0.35), "Ball", "red", mask_scale=1.0),  # in band, mask at image size
        OiObj((0.20, 0.60, 0.35, 0.75), "Cup", "green", flags=(0, 0, 1, 0, 0)),  # group
    ],
    "cccc000000000003": [
        OiObj((0.10, 0.10, 0.25, 0.25), "Cup", "blue", write_mask=False),  # missing mask file
        OiObj((0.50, 0.50, 0.65, 0.65), "Wheel", "red"),  # excluded class
    ],
}


def _build(fx, out, **kw):
    kw.setdefault("plots", False)
    kw.setdefault("bbox_csv", fx.bbox_csv)
    return build_dataset(
        "openimages", out, images=fx.images, segmentation_csv=fx.segmentation_csv, masks=fx.masks,
        classes=fx.classes, **kw,
    )


@pytest.fixture
def oi(tmp_path):
    return write_openimages(tmp_path / "oi", IMAGES)


def test_soe_eval_on_openimages(oi, tmp_path):
    res = _build(oi, tmp_path / "oi.parquet", preset="soe-eval")
    m = read_manifest(res.manifest_path)
    rows = m.table.to_pylist()
    assert [(r["image_id"], r["category"]) for r in rows] == [("aaaa000000000001", "Cup"), ("bbbb000000000002", "Ball")]
    assert res.summary["rejected"]["exclude_classes"] == 2
    assert res.summary["rejected"]["occluded"] == 1 and res.summary["rejected"]["group"] == 1
    assert res.summary["rejected"]["area_fraction"] == 1
    assert res.summary["invalid"] == {"missing mask file": 1}
    cup = rows[0]
    assert cup["split"] == "validation" and cup["category_id"] == "/m/01" and cup["mask_source"] == "png"
    assert cup["width"] == 200 and cup["height"] == 160 and cup["image_path"] == "aaaa000000000001.jpg"
    assert cup["bbox"] == pytest.approx([20, 16, 30, 24])
    assert cup["bbox_area_fraction"] == pytest.approx(0.0225)
    # the mask PNG is 100 x 80: the fraction is measured on it, the stored mask is at image size
    assert cup["mask_area_fraction"] == pytest.approx((15 * 12) / (100 * 80))
    mask = decode_mask(cup["mask_rle"])
    assert mask.shape == (160, 200) and mask[16:40, 20:50].all() and mask.sum() == 30 * 24
    assert cup["color"] == "blue" and cup["prompts"]["color_label"] == "blue cup"
    assert cup["occluded"] is False and cup["crowd"] is None and cup["predicted_iou"] == pytest.approx(0.9)
    assert m.image_path(cup["image_path"]).is_file()


def test_flag_filters_need_the_bbox_csv(oi, tmp_path):
    with pytest.raises(ConfigError, match="--bbox-csv"):
        _build(oi, tmp_path / "oi.parquet", preset="soe-eval", bbox_csv=None)
    res = _build(oi, tmp_path / "oi.parquet", preset="none", bbox_csv=None)
    assert res.summary["kept"] == 7
    assert read_manifest(res.manifest_path).table.column("occluded").null_count == 7


def test_min_predicted_iou_and_mask_area_filter(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"dddd000000000004": [
        OiObj((0.1, 0.1, 0.2, 0.2), iou=0.4), OiObj((0.5, 0.5, 0.6, 0.6), iou=0.95),
        OiObj((0.2, 0.5, 0.5, 0.8), iou=0.95)]})
    res = _build(fx, tmp_path / "a.parquet", preset="none",
                 filters={"min_predicted_iou": 0.5, "area_by": "mask", "max_area_fraction": 0.05})
    assert res.summary["rejected"] == {"min_predicted_iou": 1, "area_fraction": 1}
    assert res.summary["kept"] == 1


def test_box_only_objects(oi, tmp_path):
    res = build_dataset("openimages", tmp_path / "b.parquet", images=oi.images, classes=oi.classes,
                        bbox_csv=oi.bbox_csv, preset="none", plots=False)
    rows = read_manifest(res.manifest_path).table.to_pylist()
    assert len(rows) == 8 and {r["mask_source"] for r in rows} == {"box"}
    assert all(r["mask_area_fraction"] == pytest.approx(r["bbox_area_fraction"], abs=0.01) for r in rows)


def test_missing_csv_columns_are_named(oi, tmp_path):
    text = oi.segmentation_csv.read_text().splitlines()
    header = text[0].replace("BoxXMin", "XMinimum").replace("LabelName", "Label")
    oi.segmentation_csv.write_text("\n".join([header] + text[1:]) + "\n")
    with pytest.raises(InputError, match="missing required column.*LabelName, BoxXMin"):
        _build(oi, tmp_path / "oi.parquet", preset="none")
    assert not (tmp_path / "oi.parquet").exists()


def test_missing_and_corrupt_images_and_masks_are_counted(oi, tmp_path):
    (oi.images / "aaaa000000000001.jpg").unlink()
    (oi.images / "bbbb000000000002.jpg").write_bytes(b"garbage")
    next(oi.masks.glob("cccc000000000003_m04_*.png")).write_bytes(b"\x89PNG broken")
    res = _build(oi, tmp_path / "oi.parquet", preset="none", split="val-custom")
    assert res.summary["invalid"] == {
        "missing image file": 3, "corrupt image file": 3, "missing mask file": 1, "corrupt mask file": 1,
    }
    assert res.summary["kept"] == 0 and res.summary["invalid_examples"]["corrupt mask file"][0].startswith("cccc")


@pytest.mark.parametrize("header", [False, True])
def test_class_file_with_or_without_header(tmp_path, header):
    fx = write_openimages(tmp_path / "oi", {}, classes_header=header)
    classes = read_classes(fx.classes)
    assert classes["/m/01"] == "Cup" and len(classes) == 5


def test_exclusion_lists_use_real_display_names():
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "openimages" / "class-descriptions-boxable.csv"
    if not path.exists():
        pytest.skip("OpenImages class list not found")
    names = set(read_classes(path).values())
    assert set(OPENIMAGES_EXCLUDED) <= names, sorted(set(OPENIMAGES_EXCLUDED) - names)
    assert {n for n in names if n.startswith("Human ")} <= set(OPENIMAGES_EXCLUDED)


def test_masks_in_archive_folders_and_zips(oi, tmp_path):
    import zipfile

    a_masks = sorted(oi.masks.glob("aaaa*.png"))
    with zipfile.ZipFile(oi.masks / "validation-masks-a.zip", "w") as archive:
        for path in a_masks:
            archive.write(path, path.name)
            path.unlink()
    (oi.masks / "validation-masks-b").mkdir()
    for path in oi.masks.glob("bbbb*.png"):
        path.rename(oi.masks / "validation-masks-b" / path.name)
    res = _build(oi, tmp_path / "oi.parquet", preset="soe-eval")
    assert [r["image_id"] for r in read_manifest(res.manifest_path).table.to_pylist()] == [
        "aaaa000000000001", "bbbb000000000002"]


def test_non_numeric_csv_value_names_row_and_column(oi, tmp_path):
    lines = oi.segmentation_csv.read_text().splitlines()
    fields = lines[2].split(",")
    fields[4] = "abc"  # BoxXMin of data row 2
    lines[2] = ",".join(fields)
    oi.segmentation_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"row 2 \(line 3\): column BoxXMin is 'abc', not a number"):
        _build(oi, tmp_path / "oi.parquet", preset="none")
    assert not (tmp_path / "oi.parquet").exists()


def test_empty_box_coordinates_are_dropped_with_their_own_reason(oi, tmp_path):
    lines = oi.segmentation_csv.read_text().splitlines()
    fields = lines[1].split(",")
    fields[5] = ""  # BoxXMax
    lines[1] = ",".join(fields)
    oi.segmentation_csv.write_text("\n".join(lines) + "\n")
    res = _build(oi, tmp_path / "oi.parquet", preset="none")
    assert res.summary["invalid"] == {"missing box coordinates": 1, "missing mask file": 1}


def test_bbox_csv_without_a_flag_column_names_the_flag(oi, tmp_path):
    lines = [",".join(line.split(",")[:12]) for line in oi.bbox_csv.read_text().splitlines()]  # no IsInside
    oi.bbox_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="'inside'") as err:
        _build(oi, tmp_path / "oi.parquet", preset="soe-eval")
    assert "IsInside" in err.value.hint and "--keep-inside" in err.value.hint
    res = _build(oi, tmp_path / "oi.parquet", preset="soe-eval", filters={"drop_inside": False})
    assert res.summary["kept"] == 2


def test_one_object_plots(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"eeee000000000005": [OiObj((0.1, 0.1, 0.25, 0.25))]})
    res = _build(fx, tmp_path / "oi.parquet", preset="soe-eval", plots=True)
    assert res.num_rows == 1 and all(p.stat().st_size > 1000 for p in res.plot_paths)


def _edge_box(side: float) -> tuple[float, float, float, float]:
    """A box of exactly ``side`` x ``side`` (normalised) whose float area lands below side**2,
    as real OpenImages coordinates do."""
    for k in range(1, 200):
        x0 = y0 = k / 1000
        x1, y1 = float(f"{x0 + side:.6f}"), float(f"{y0 + side:.6f}")
        if (x1 - x0) * (y1 - y0) < side * side:
            return x0, y0, x1, y1
    raise AssertionError("no box below the edge found")


def test_area_band_is_inclusive_despite_rounding(tmp_path):
    """soe-eval's band is [(1/8)^2, (1/6)^2] inclusive: a box of exactly 1/8 x 1/8 is kept even
    when its area computes a hair below (1/8)^2 from the CSV's decimal coordinates; one a
    pixel-scale step smaller is still rejected."""
    side = 1 / 8
    box = _edge_box(side)
    outside = (0.5, 0.5, 0.5 + side * 0.99, 0.5 + side)
    fx = write_openimages(tmp_path / "oi", {"eeee000000000005": [OiObj(box, "Cup"), OiObj(outside, "Cup")]})
    res = _build(fx, tmp_path / "band.parquet", preset="soe-eval")
    rejected = {k: v for k, v in res.summary["rejected"].items() if v}
    assert res.summary["kept"] == 1 and rejected == {"area_fraction": 1}
