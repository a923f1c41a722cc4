"""build_dataset on inputs near a rule's edge: boxes that overshoot the image by rounding, captions
that do not belong to the annotations, and objects exactly on an area band's edge."""

from __future__ import annotations

import json

import pytest
from soebench.errors import InputError
from soebench.manifest.inspect import validate_manifest
from soebench.manifest.io import read_manifest
from soebench.mining import per_image
from soebench.mining.build import build_dataset, size_histogram
from tests.mining.fixtures import Obj, write_coco

W, H = 160, 120


def _set_boxes(fx, boxes: dict[int, list[float]]) -> None:
    """Replace the bbox of annotations by their position in the file."""
    data = json.loads(fx.annotations.read_text())
    for i, box in boxes.items():
        data["annotations"][i]["bbox"] = box
    fx.annotations.write_text(json.dumps(data))


def _build(fx, out, **kw):
    kw.setdefault("preset", "none")
    kw.setdefault("plots", False)
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, **kw)


# -- 1. a box that overshoots the image by less than the tolerance --------------------------------


def test_a_box_overshooting_the_image_by_rounding_is_clipped_to_it(tmp_path):
    fx = write_coco(tmp_path / "c", [[Obj((0, 0, W, H), "cup", "red")], [Obj((0, 10, 20, 20), "car", "blue")],
                                     [Obj((150, 10, 10, 5), "cup", "green")]])
    _set_boxes(fx, {0: [0.0, 0.0, W + 0.5, H + 0.25],  # the whole image and a bit more
                    1: [-0.5, 10.0, 20.5, 20.0],  # left edge
                    2: [W + 0.25, 10.0, 0.5, 5.0]})  # within the tolerance, but nothing of it inside the image
    res = _build(fx, tmp_path / "m.parquet")
    validate_manifest(res.manifest_path)  # the tool accepts what it wrote
    rows = {r["category"]: r for r in read_manifest(res.manifest_path).table.to_pylist()}
    assert rows["cup"]["bbox"] == [0.0, 0.0, W, H] and rows["cup"]["bbox_area_fraction"] == 1.0
    assert rows["car"]["bbox"] == [0.0, 10.0, 20.0, 20.0]
    assert rows["car"]["bbox_area_fraction"] == pytest.approx(20 * 20 / (W * H))
    assert res.summary["invalid"] == {"bbox outside the image": 1}


def test_a_box_inside_the_image_keeps_its_exact_values(tmp_path):
    fx = write_coco(tmp_path / "c", [[Obj((3, 4, 17, 13))]])
    _set_boxes(fx, {0: [3.3, 4.7, 17.1, 13.9]})
    row = read_manifest(_build(fx, tmp_path / "m.parquet").manifest_path).table.to_pylist()[0]
    assert row["bbox"] == [3.3, 4.7, 17.1, 13.9] and row["bbox_area_fraction"] == 17.1 * 13.9 / (W * H)


# -- 2. captions that do not belong to the annotations -------------------------------------------


def _shift_captions(fx, images: set[int], by: int = 1000) -> None:
    caps = json.loads(fx.captions.read_text())
    for c in caps["annotations"]:
        if c["image_id"] in images:
            c["image_id"] += by
    fx.captions.write_text(json.dumps(caps))


def test_captions_of_other_images_are_an_error_before_the_per_image_stage(tmp_path, monkeypatch):
    fx = write_coco(tmp_path / "c", [[Obj((10, 10, 20, 20))], [Obj((30, 30, 20, 20))]])
    _shift_captions(fx, {1, 2})  # e.g. captions_train2017.json beside instances_val2017.json

    def mine(*a, **k):
        raise AssertionError("the per-image stage ran")

    monkeypatch.setattr(per_image.Stage, "mine", mine)
    with pytest.raises(InputError, match="no caption of any of the 2 images of --annotations") as exc:
        _build(fx, tmp_path / "m.parquet", captions=fx.captions)
    assert str(fx.captions) in exc.value.message and str(fx.annotations) in exc.value.message
    assert not (tmp_path / "m.parquet").exists()


def test_images_without_captions_are_counted_in_the_summary(tmp_path):
    fx = write_coco(tmp_path / "c", [[Obj((10, 10, 20, 20))], [Obj((30, 30, 20, 20))], [Obj((50, 50, 20, 20))]])
    _shift_captions(fx, {2})
    res = _build(fx, tmp_path / "m.parquet", captions=fx.captions)
    assert res.summary["images_without_captions"] == 1
    caps = {r["image_id"]: r["captions"] for r in read_manifest(res.manifest_path).table.to_pylist()}
    assert caps["2"] == [] and len(caps["1"]) == len(caps["3"]) == 2
    assert "images_without_captions" not in _build(fx, tmp_path / "n.parquet").summary  # no --captions


def test_a_partial_captions_file_is_no_error_when_only_uncaptioned_images_are_kept(tmp_path):
    fx = write_coco(tmp_path / "c", [[Obj((10, 10, 20, 20), "cup")], [Obj((30, 30, 20, 20), "car")]])
    _shift_captions(fx, {1})  # the file has image 2's captions only, and the filter keeps image 1
    res = _build(fx, tmp_path / "m.parquet", captions=fx.captions, filters={"include_classes": "cup"})
    assert res.num_rows == 1 and res.summary["images_without_captions"] == 1


def test_the_cli_warns_about_images_without_captions(tmp_path, capsys):
    from soebench.cli.app import main

    fx = write_coco(tmp_path / "c", [[Obj((10, 10, 20, 20))], [Obj((30, 30, 20, 20))]])
    _shift_captions(fx, {2})
    assert main(["build-dataset", "--source", "coco", "--annotations", str(fx.annotations), "--images",
                 str(fx.images), "--captions", str(fx.captions), "--preset", "none", "--no-plots", "--quiet",
                 "--out", str(tmp_path / "m.parquet")]) == 0
    out = capsys.readouterr()
    text = (out.out + out.err).replace("\n", "")
    assert "1 of 2 images have no caption" in text and str(fx.captions) in text


# -- 4. the summary's size histogram and the band's edges ----------------------------------------


def test_objects_on_the_bands_edges_are_counted_in_the_bands_bins(tmp_path):
    # 40x30 is exactly (1/4)^2 of 160x120; 20x15 exactly (1/8)^2: the band [(1/8)^2, (1/4)^2]
    fx = write_coco(tmp_path / "c", [[Obj((10, 10, 20, 15))], [Obj((10, 10, 40, 30))], [Obj((10, 10, 30, 20))]])
    res = _build(fx, tmp_path / "m.parquet", filters={"min_area_fraction": (1 / 8) ** 2,
                                                      "max_area_fraction": (1 / 4) ** 2})
    assert res.num_rows == 3
    hist = res.summary["size_histogram"]
    assert hist["1/8-1/6"] == 1 and hist["1/6-1/4"] == 2 and hist["1/4-1/2"] == 0  # 40x30 is in the band
    from soebench.manifest.inspect import manifest_info

    assert manifest_info(tmp_path / "m.parquet")["size_histogram"] == hist  # `manifest info` reads the band too


def test_size_histogram_counts_the_kept_objects_inside_the_band():
    lo, hi = (1 / 16) ** 2, (1 / 6) ** 2
    hair_below, hair_above = lo * (1 - 1e-12), hi * (1 + 1e-12)  # within the filter's BAND_RTOL
    rounded = (0.166667 - 0.0) ** 2  # an OpenImages box 1/6 a side, 6 decimals: kept by its coordinate allowance
    banded = size_histogram([hair_below, hi, hair_above, rounded], band=(lo, hi))
    assert banded["1/16-1/12"] == 1 and banded["1/8-1/6"] == 3 and sum(banded.values()) == 4
    plain = size_histogram([hair_below, hi])  # no band (manifest info): plain half-open bins
    assert plain["1/32-1/16"] == 1 and plain["1/6-1/4"] == 1
    inner = size_histogram([0.005, 0.01], band=(0.004, 0.012))  # a band inside the bins changes nothing
    assert inner == size_histogram([0.005, 0.01])
