"""OpenImages details that real files bring: 6-decimal coordinates, boxes that were never
segmented, pre-filtered bbox CSVs, V6 file names, segmentation CSVs without PredictedIoU."""

from __future__ import annotations

import pytest

from soebench.errors import ConfigError, InputError
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.mining.build import build_dataset
from soebench.mining.split import source_split
from tests.mining.fixtures import OiObj, write_openimages

# 600 x 480: a side of 1/6 is 100 x 80 px, written 0.166667 by 6-decimal coordinates
SIDE = 1 / 6


def _rows(res):
    return read_manifest(res.manifest_path).table.to_pylist()


def _box_only(fx, out, bbox_csv=None, **kw):
    return build_dataset("openimages", out, images=fx.images, classes=fx.classes, bbox_csv=bbox_csv or fx.bbox_csv,
                         plots=False, **kw)


def _seg(fx, out, **kw):
    kw.setdefault("bbox_csv", fx.bbox_csv)
    return build_dataset("openimages", out, images=fx.images, classes=fx.classes, segmentation_csv=fx.segmentation_csv,
                         masks=fx.masks, plots=False, **kw)


def test_box_only_sample_ids_do_not_depend_on_the_csv_row(tmp_path):
    fx = write_openimages(tmp_path / "oi", {
        "aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)), OiObj((0.5, 0.5, 0.7, 0.7), "Ball")],
        "bbbb000000000002": [OiObj((0.2, 0.2, 0.4, 0.4)), OiObj((0.6, 0.1, 0.8, 0.3))],
    })
    lines = fx.bbox_csv.read_text().splitlines()
    sub = tmp_path / "sub" / fx.bbox_csv.name
    sub.parent.mkdir()
    sub.write_text("\n".join([lines[0]] + lines[2:]) + "\n")  # a pre-filtered CSV: the first box gone
    full = {r["sample_id"]: (r["image_id"], tuple(r["bbox"])) for r in _rows(_box_only(fx, tmp_path / "a.parquet", preset="none"))}
    part = {r["sample_id"]: (r["image_id"], tuple(r["bbox"])) for r in
            _rows(_box_only(fx, tmp_path / "b.parquet", bbox_csv=sub, preset="none"))}
    assert len(full) == 4 and len(part) == 3
    assert all(full[k] == v for k, v in part.items())  # same id, same box
    names = {r["annotation_id"] for r in _rows(_box_only(fx, tmp_path / "c.parquet", preset="none"))}
    assert all(n.startswith(("aaaa000000000001_m0", "bbbb000000000002_m0")) for n in names)


def test_an_identical_second_box_is_a_duplicate(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    lines = fx.bbox_csv.read_text().splitlines()
    fx.bbox_csv.write_text("\n".join(lines + [lines[1]]) + "\n")
    res = _box_only(fx, tmp_path / "a.parquet", preset="none")
    assert res.summary["kept"] == 1 and res.summary["invalid"] == {"duplicate annotation id": 1}


def test_box_masks_round_6_decimal_edges_to_the_nearest_pixel(tmp_path):
    box = (0.1, 1 / 3, 0.1 + SIDE, 1 / 3 + 1 / 8)  # 100 x 60 px; y0 = 0.333333 -> 159.99984 px
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj(box)]}, size=(600, 480))
    exact = 100 * 60 / (600 * 480)
    res = _box_only(fx, tmp_path / "a.parquet", preset="none",
                    filters={"area_by": "mask", "max_area_fraction": exact})
    (row,) = _rows(res)
    mask = decode_mask(row["mask_rle"])
    assert mask.sum() == 100 * 60 and mask[160:220, 60:160].all()
    assert row["mask_area_fraction"] == pytest.approx(exact, rel=1e-12)


def test_area_by_mask_filters_on_the_rasterised_box_of_box_only_rows(tmp_path):
    # 100.2 x 60 px on the image: the box fraction is above the edge, its 100 x 60 px mask on it
    box = (0.1, 0.25, 0.1 + 100.2 / 600, 0.25 + 60 / 480)
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj(box)]}, size=(600, 480))
    edge = 100 * 60 / (600 * 480)
    kept = _box_only(fx, tmp_path / "a.parquet", preset="none", filters={"area_by": "mask", "max_area_fraction": edge})
    assert kept.summary["kept"] == 1
    by_box = _box_only(fx, tmp_path / "b.parquet", preset="none", filters={"max_area_fraction": edge})
    assert by_box.summary["kept"] == 0 and by_box.summary["rejected"] == {"area_fraction": 1}


@pytest.mark.parametrize("size", [(600, 480), (1200, 900), (600, 600)])
def test_a_box_exactly_on_the_band_edge_stays_in_with_6_decimal_coordinates(tmp_path, size):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.1 + SIDE, 0.1 + SIDE))]}, size=size)
    assert "0.266667" in fx.segmentation_csv.read_text()
    res = _seg(fx, tmp_path / "a.parquet", preset="soe-eval")
    assert res.summary["kept"] == 1, res.summary["rejected"]


def test_the_tolerance_stays_far_below_a_pixel(tmp_path):
    # one pixel wider than 1/6 of a 600 px side is outside, coordinate rounding or not
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.1 + 101 / 600, 0.1 + SIDE))]},
                          size=(600, 480))
    res = _seg(fx, tmp_path / "a.parquet", preset="soe-eval")
    assert res.summary["kept"] == 0 and res.summary["rejected"]["area_fraction"] == 1


def test_unique_category_counts_boxes_that_were_never_segmented(tmp_path):
    fx = write_openimages(tmp_path / "oi", {
        "aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)), OiObj((0.5, 0.5, 0.7, 0.7), "Ball")],
        "bbbb000000000002": [OiObj((0.1, 0.1, 0.3, 0.3))],
    })
    # a second Cup box in image a that has no mask: the prompt "cup" no longer names one thing
    fx.bbox_csv.write_text(fx.bbox_csv.read_text() + "aaaa000000000001,xclick,/m/01,1,0.6,0.8,0.1,0.3,0,0,0,0,0\n")
    res = _seg(fx, tmp_path / "a.parquet", preset="none", filters={"unique_category": True})
    assert sorted((r["image_id"], r["category"]) for r in _rows(res)) == [
        ("aaaa000000000001", "Ball"), ("bbbb000000000002", "Cup")]
    assert res.summary["rejected"]["unique_category"] == 1
    without = _seg(fx, tmp_path / "b.parquet", preset="none", bbox_csv=None, filters={"unique_category": True})
    assert without.summary["kept"] == 3  # only the segmentation CSV: nothing else to count


def test_rows_whose_flags_a_drop_filter_could_not_see_are_counted(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.7, 0.7), "Ball")]})
    lines = fx.bbox_csv.read_text().splitlines()
    fx.bbox_csv.write_text("\n".join(lines[:2]) + "\n")  # the Ball's box is missing
    res = _seg(fx, tmp_path / "a.parquet", preset="none", filters={"drop_occluded": True, "drop_group": True})
    assert res.summary["kept"] == 2
    assert res.summary["unknown_flags"] == {"occluded": 1, "group": 1}
    assert _seg(fx, tmp_path / "b.parquet", preset="none").summary["unknown_flags"] == {}


def test_min_predicted_iou_needs_the_column(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    lines = [",".join(line.split(",")[:8] + line.split(",")[9:]) for line in fx.segmentation_csv.read_text().splitlines()]
    fx.segmentation_csv.write_text("\n".join(lines) + "\n")
    assert "PredictedIoU" not in lines[0]
    with pytest.raises(ConfigError, match="--min-predicted-iou .filter 'min_predicted_iou'. needs predicted_iou") as err:
        _seg(fx, tmp_path / "a.parquet", preset="none", filters={"min_predicted_iou": 0.5})
    assert "drop --min-predicted-iou" in str(err.value)
    with pytest.raises(ConfigError, match="min_predicted_iou.*needs predicted_iou"):
        _box_only(fx, tmp_path / "b.parquet", preset="none", filters={"min_predicted_iou": 0.5})
    assert not (tmp_path / "a.parquet").exists()


@pytest.mark.parametrize("name, split", [
    ("oidv6-train-annotations-bbox.csv", "train"),
    ("train-annotations-object-segmentation.csv", "train"),
    ("validation-annotations-bbox.csv", "validation"),
    ("test-annotations-object-segmentation.csv", "test"),
    ("oidv7-val-annotations.csv", "oidv7-val-annotations"),  # no known split word: the stem
])
def test_openimages_split_from_official_file_names(name, split):
    assert source_split(name, "openimages") == split


def _hierarchy(path, tree):
    import json

    path.write_text(json.dumps(tree))
    return path


TREE = {"LabelName": "/m/0bl9f", "Subcategory": [
    {"LabelName": "/m/0a", "Subcategory": [{"LabelName": "/m/0b", "Subcategory": [{"LabelName": "/m/01"}]}],
     "Part": [{"LabelName": "/m/02"}]},  # a Ball is part of Tableware here, not a kind of it
]}


def test_class_hierarchy_widens_class_filters_to_subclasses(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.7, 0.7), "Ball")]})
    fx.classes.write_text(fx.classes.read_text() + "/m/0a,Tableware\n/m/0b,Drinkware\n")
    tree = _hierarchy(tmp_path / "bbox_labels_600_hierarchy.json", TREE)
    by_name = _seg(fx, tmp_path / "a.parquet", preset="none", filters={"exclude_classes": "tableware"})
    assert by_name.summary["kept"] == 2  # no object is labelled Tableware itself
    res = _seg(fx, tmp_path / "b.parquet", preset="none", filters={"exclude_classes": "tableware"}, class_hierarchy=tree)
    assert [r["category"] for r in _rows(res)] == ["Ball"]  # Cup < Drinkware < Tableware; Part edges don't count
    meta = read_manifest(res.manifest_path).metadata
    assert meta["filters"]["exclude_classes"] == ["tableware", "/m/01", "/m/0b"]
    assert meta["inputs"]["class_hierarchy"]["name"] == "bbox_labels_600_hierarchy.json"
    kept = _seg(fx, tmp_path / "c.parquet", preset="none", filters={"include_classes": "/m/0b"}, class_hierarchy=tree)
    assert [r["category"] for r in _rows(kept)] == ["Cup"]


def test_class_hierarchy_widens_the_preset_exclusions(tmp_path):
    # "Mammal" is a soe-eval exclusion; OpenImages labels a cat "Cat", so only the hierarchy catches it
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.1 + 1 / 7, 0.1 + 1 / 7))]})
    fx.classes.write_text(fx.classes.read_text() + "/m/0c,Mammal\n")
    tree = _hierarchy(tmp_path / "h.json", {"LabelName": "/m/0bl9f", "Subcategory": [
        {"LabelName": "/m/0c", "Subcategory": [{"LabelName": "/m/01"}]}]})
    assert _seg(fx, tmp_path / "a.parquet", preset="soe-eval").summary["kept"] == 1
    res = _seg(fx, tmp_path / "b.parquet", preset="soe-eval", class_hierarchy=tree)
    assert res.summary["kept"] == 0 and res.summary["rejected"]["exclude_classes"] == 1


@pytest.mark.parametrize("text, match", [
    ("{not json", "not a JSON class hierarchy"),
    ('{"Subcategory": []}', "top level is not a"),
    ('{"LabelName": "/m/0bl9f", "Subcategory": [{"Label": "/m/01"}]}', "Subcategory entry of /m/0bl9f"),
    ('{"LabelName": "/m/0bl9f", "Subcategory": {"LabelName": "/m/01"}}', "Subcategory of /m/0bl9f is not a list"),
])
def test_bad_class_hierarchy_files_are_named(tmp_path, text, match):
    from soebench.errors import InputError

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    bad = tmp_path / "h.json"
    bad.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        _seg(fx, tmp_path / "a.parquet", preset="soe-eval", class_hierarchy=bad)
    assert str(bad) in str(err.value) and not (tmp_path / "a.parquet").exists()


def test_class_hierarchy_is_openimages_only(tmp_path):
    from soebench.errors import InputError
    from tests.mining.fixtures import write_coco

    fx = write_coco(tmp_path / "coco", [[]])
    with pytest.raises(InputError, match="--class-hierarchy applies to --source openimages only"):
        build_dataset("coco", tmp_path / "a.parquet", images=fx.images, annotations=fx.annotations,
                      class_hierarchy=_hierarchy(tmp_path / "h.json", TREE), plots=False)


def test_class_lists_given_as_text_to_the_api_are_comma_separated(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.7, 0.7), "Ball")]})
    res = _seg(fx, tmp_path / "a.parquet", preset="none", filters={"exclude_classes": "cup, ball"})
    assert res.summary["kept"] == 0 and res.summary["filters"]["exclude_classes"] == ["cup", "ball"]


def test_no_image_found_is_counted_and_the_cli_says_check_images(tmp_path, capsys):
    from soebench.cli.app import main

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    # not one image there: a wrong --images, an error (not an empty manifest and exit 0)
    with pytest.raises(InputError, match=r"all 1 objects that passed the filters were dropped .*\(missing image "
                       rf"file 1\); looked in --images {elsewhere}") as err:
        build_dataset("openimages", tmp_path / "a.parquet", images=elsewhere, classes=fx.classes,
                      segmentation_csv=fx.segmentation_csv, masks=fx.masks, preset="none", plots=False)
    assert f"looked for {elsewhere / 'aaaa000000000001'}.jpg|" in err.value.message  # the path looked up
    assert not (tmp_path / "a.parquet").exists() and not (tmp_path / "a.parquet.partial").exists()
    args = _cli(fx, tmp_path / "b.parquet", "--preset", "none")
    args[args.index("--images") + 1] = str(elsewhere)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"looked in --images {elsewhere}" in err and "folder of the image files" in err


def test_a_sharded_build_over_a_partial_copy_completes(tmp_path):
    images = {f"{k:04x}000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))] for k in range(8)}
    fx = write_openimages(tmp_path / "oi", images)
    for image in sorted(fx.images.glob("*.jpg"))[1:]:  # a partial copy: one image of eight
        image.unlink()
    for i in range(4):
        build_dataset("openimages", tmp_path / "parts", images=fx.images, classes=fx.classes,
                      segmentation_csv=fx.segmentation_csv, masks=fx.masks, preset="none", plots=False,
                      num_shards=4, shard_index=i)
    assert len(read_manifest(tmp_path / "parts").table) == 1


@pytest.mark.parametrize("preset, hint", [("none", "one of the two lists"), ("soe-eval", "--preset none")])
def test_a_class_both_included_and_excluded_is_an_error(tmp_path, preset, hint):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3), "Person")]})
    filters = {"include_classes": "person"} if preset != "none" else {"include_classes": "Person", "exclude_classes": "person"}
    with pytest.raises(ConfigError, match="'person' is in both") as err:
        _seg(fx, tmp_path / "a.parquet", preset=preset, filters=filters)
    assert hint in str(err.value)


def test_summary_json_keeps_size_bands_in_size_order(tmp_path):
    import json

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.6, 0.6), "Ball")]})
    res = _seg(fx, tmp_path / "a.parquet", preset="none")
    bands = list(json.loads(res.summary_path.read_text())["size_histogram"])
    assert bands == ["<1/32", "1/32-1/16", "1/16-1/12", "1/12-1/8", "1/8-1/6", "1/6-1/4", "1/4-1/2", ">=1/2"]


def _cli(fx, out, *extra):
    return ["build-dataset", "--source", "openimages", "--images", str(fx.images), "--classes", str(fx.classes),
            "--segmentation-csv", str(fx.segmentation_csv), "--masks", str(fx.masks), "--bbox-csv", str(fx.bbox_csv),
            "--no-plots", "-q", "--out", str(out), *extra]


def test_cli_class_hierarchy_flag_and_config_key(tmp_path, capsys):
    from soebench.cli.app import main

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.7, 0.7), "Ball")]})
    fx.classes.write_text(fx.classes.read_text() + "/m/0a,Tableware\n/m/0b,Drinkware\n")
    tree = _hierarchy(tmp_path / "h.json", TREE)
    assert main(_cli(fx, tmp_path / "a.parquet", "--preset", "none", "--exclude-classes", "Tableware",
                     "--class-hierarchy", str(tree))) == 0
    assert [r["category"] for r in _rows_at(tmp_path / "a.parquet")] == ["Ball"]
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"class_hierarchy: {tree}\nexclude_classes: [Tableware]\npreset: none\n")
    assert main(_cli(fx, tmp_path / "b.parquet", "--config", str(cfg))) == 0
    assert [r["category"] for r in _rows_at(tmp_path / "b.parquet")] == ["Ball"]


def test_cli_warns_when_the_manifest_is_empty(tmp_path, capsys):
    from soebench.cli.app import main

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    assert main(_cli(fx, tmp_path / "a.parquet", "--preset", "none", "--min-pixels", "1e6")) == 0
    captured = capsys.readouterr()
    assert "0 objects" in captured.out and "no object passed the filters" in captured.err


def _rows_at(path):
    return read_manifest(path).table.to_pylist()


def test_a_mistyped_config_key_gets_a_suggestion(tmp_path, capsys):
    from soebench.cli.app import main

    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3))]})
    cfg = tmp_path / "build.yaml"
    cfg.write_text("max_per_imag: 2\n")
    assert main(_cli(fx, tmp_path / "a.parquet", "--config", str(cfg))) == 2
    err = capsys.readouterr().err
    assert "unknown option(s) max_per_imag" in err and "did you mean 'max_per_image'?" in err


def test_an_included_class_under_an_excluded_parent_is_an_error(tmp_path):
    fx = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.3, 0.3)),
                                                                 OiObj((0.5, 0.5, 0.7, 0.7), "Ball")]})
    fx.classes.write_text(fx.classes.read_text() + "/m/0a,Tableware\n/m/0b,Drinkware\n")
    tree = _hierarchy(tmp_path / "h.json", TREE)
    with pytest.raises(ConfigError, match="'Cup' is in --include-classes but a subclass of an excluded class"):
        _seg(fx, tmp_path / "a.parquet", preset="none", class_hierarchy=tree,
             filters={"include_classes": "Cup", "exclude_classes": "Tableware"})
    narrower = _seg(fx, tmp_path / "b.parquet", preset="none", class_hierarchy=tree,
                    filters={"include_classes": "Tableware", "exclude_classes": "Drinkware"})
    assert narrower.summary["rejected"]["exclude_classes"] == 1  # Tableware but not Drinkware: the cup goes
