"""build_dataset on COCO-format fixtures: filters, bad input, determinism, shards, splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.errors import ConfigError, InputError, OutputExistsError
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.mining.build import build_dataset
from tests.mining.fixtures import Obj, write_coco

# image 160 x 120 = 19200 px: soebench band [(1/16)^2, (1/6)^2] = [75, 533.33] px
SIZE_OBJECTS = [
    [Obj((5, 5, 8, 8), "cup", "red"), Obj((40, 40, 10, 10), "car", "blue"), Obj((100, 10, 20, 20), "cup", "green")],
    [Obj((10, 10, 25, 25), "cup", "yellow"), Obj((60, 60, 15, 5), "sports ball", "red"),
     Obj((100, 60, 20, 20), "car", "blue", crowd=True)],
    [Obj((30, 30, 20, 26), "person", "green"), Obj((90, 20, 23, 23), "cup", "blue")],
]


def _build(fx, out, **kw):
    kw.setdefault("plots", False)
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, captions=fx.captions, **kw)


def _ids(path) -> set[str]:
    return set(read_manifest(path).table.column("annotation_id").to_pylist())


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "coco", SIZE_OBJECTS)


def test_soebench_preset_keeps_the_box_band_inclusive(coco, tmp_path):
    res = _build(coco, tmp_path / "m.parquet", preset="soebench")
    # ids 101.. in order: 64px out, 100 in, 400 in, 625 out, 75 in (boundary), crowd, 520 in, 529 in
    assert _ids(res.manifest_path) == {"102", "103", "105", "107", "108"}
    s = res.summary
    assert s["candidates"] == 8 and s["kept"] == 5
    assert s["rejected"] == {"crowd": 1, "area_fraction": 2}
    table = read_manifest(res.manifest_path).table.to_pylist()
    by_id = {r["annotation_id"]: r for r in table}
    assert by_id["105"]["bbox_area_fraction"] == pytest.approx(75 / 19200)
    assert by_id["102"]["color"] == "blue" and by_id["103"]["color"] == "green"
    assert by_id["102"]["prompts"]["small_color_label"] == "a small blue car"
    assert by_id["102"]["captions"] == ['Image 1 caption 0 "quoted".', "Image 1 caption 1 \"quoted\"."]
    assert by_id["102"]["license"] == "CC BY 2.0" and by_id["102"]["split"] == "val2017"
    mask = decode_mask(by_id["103"]["mask_rle"])
    assert mask.shape == (120, 160) and abs(int(mask.sum()) - 400) <= 45
    assert by_id["103"]["mask_source"] == "polygon"
    meta = read_manifest(res.manifest_path).metadata
    assert meta["preset"] == "soebench" and meta["filters"]["min_area_fraction"] == (1 / 16) ** 2
    assert set(meta["inputs"]) == {"annotations", "captions"} and len(meta["inputs"]["annotations"]["sha256"]) == 64
    assert read_manifest(res.manifest_path).image_path(by_id["102"]["image_path"]).is_file()


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"area_by": "mask", "max_pixels": 101.0}, {"101", "102", "105"}),  # 64, 100, 75 px
        ({"min_pixels": 400.0}, {"103", "104", "106", "107", "108"}),
        ({"max_aspect_ratio": 2.0}, {"101", "102", "103", "104", "106", "107", "108"}),
        ({"include_classes": ["CUP", "37"]}, {"101", "103", "104", "105", "108"}),
        ({"exclude_classes": ["cup", "person"]}, {"102", "105", "106"}),
        ({"drop_crowd": True}, {"101", "102", "103", "104", "105", "107", "108"}),
        ({"border_margin": 0.05}, {"102", "103", "104", "105", "106", "107", "108"}),
        ({"unique_category": True}, {"102", "104", "105", "106", "107", "108"}),
        ({"min_area_fraction": 0.02, "max_area_fraction": 0.03}, {"103", "106", "107", "108"}),
    ],
)
def test_each_filter(coco, tmp_path, filters, expected):
    res = _build(coco, tmp_path / "m.parquet", preset="none", filters=filters)
    assert _ids(res.manifest_path) == expected
    rejected = sum(v for v in res.summary["rejected"].values())
    assert rejected == 8 - len(expected)


def test_max_per_image_is_seeded_and_stable(coco, tmp_path):
    a = _build(coco, tmp_path / "a.parquet", preset="none", filters={"max_per_image": 1}, seed=1)
    b = _build(coco, tmp_path / "b.parquet", preset="none", filters={"max_per_image": 1}, seed=1)
    table = read_manifest(a.manifest_path).table
    assert len(set(table.column("image_id").to_pylist())) == table.num_rows == 3
    assert _ids(a.manifest_path) == _ids(b.manifest_path)
    assert a.summary["rejected"]["max_per_image"] == 5


def test_soe_eval_excludes_person_and_uses_the_narrow_band(coco, tmp_path):
    # soe-eval band [(1/8)^2, (1/6)^2] = [300, 533.3] px; the 520-px person is excluded
    res = _build(coco, tmp_path / "m.parquet", preset="soe-eval")
    assert _ids(res.manifest_path) == {"103", "108"}
    assert res.summary["rejected"]["exclude_classes"] == 1


def test_limit_keeps_the_first_rows_in_sorted_order(coco, tmp_path):
    res = _build(coco, tmp_path / "m.parquet", preset="none", limit=3)
    assert read_manifest(res.manifest_path).table.column("annotation_id").to_pylist() == ["101", "102", "103"]


def test_same_inputs_give_byte_identical_outputs(coco, tmp_path):
    a = _build(coco, tmp_path / "a" / "m.parquet", plots=True)
    b = _build(coco, tmp_path / "b" / "m.parquet", plots=True)
    assert a.manifest_path.read_bytes() == b.manifest_path.read_bytes()
    assert a.summary_path.read_bytes() == b.summary_path.read_bytes()
    assert [p.name for p in a.plot_paths] == ["m.sizes.png", "m.categories.png"]
    assert all(p.stat().st_size > 1000 for p in a.plot_paths)


def test_shards_read_back_as_the_unsharded_manifest(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS * 3)
    whole = read_manifest(_build(fx, tmp_path / "whole.parquet", preset="none").manifest_path).table
    for i in range(3):
        res = _build(fx, tmp_path / "parts", preset="none", num_shards=3, shard_index=i)
        assert res.manifest_path.name == f"part-{i:05d}-of-00003.parquet"
    parts = read_manifest(tmp_path / "parts")
    assert parts.table.num_rows == whole.num_rows
    assert parts.table.sort_by("sample_id").equals(whole.sort_by("sample_id"))
    # validate=False: a part read alone is refused as a manifest (it is a fraction of the build)
    per_part = [read_manifest(p, validate=False).table.column("image_id").to_pylist()
                for p in sorted((tmp_path / "parts").glob("*.parquet"))]
    assert sum(len(set(a) & set(b)) for i, a in enumerate(per_part) for b in per_part[i + 1 :]) == 0
    assert parts.image_path(parts.table.column("image_path")[0].as_py()).is_file()


def test_images_decoded_ahead_in_threads_give_the_same_outputs(tmp_path, monkeypatch):
    from soebench.mining import build as build_module

    images = [[Obj((10 + 7 * i, 10, 12, 12), "cup", "red"), Obj((60, 40, 15, 15), "car", "blue")] for i in range(9)]
    fx = write_coco(tmp_path / "coco", images)
    (fx.images / "000000000003.png").write_bytes(b"not a png")  # dropped in both runs, same reason
    (fx.images / "000000000006.png").unlink()
    outs = []
    for workers in (1, 4):
        monkeypatch.setattr(build_module, "IMAGE_WORKERS", workers)
        outs.append(_build(fx, tmp_path / f"w{workers}" / "m.parquet", preset="none"))
    one, four = outs
    assert one.manifest_path.read_bytes() == four.manifest_path.read_bytes()
    assert one.summary_path.read_bytes() == four.summary_path.read_bytes()
    assert one.summary["invalid"] == {"corrupt image file": 2, "missing image file": 2} and one.num_rows == 14
    limited = _build(fx, tmp_path / "l4" / "m.parquet", preset="none", limit=3)
    monkeypatch.setattr(build_module, "IMAGE_WORKERS", 1)
    assert limited.summary == _build(fx, tmp_path / "l1" / "m.parquet", preset="none", limit=3).summary


def test_resplit_is_deterministic_and_keeps_images_whole(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS * 8)
    a = read_manifest(_build(fx, tmp_path / "a.parquet", preset="none", split_ratios="train=0.5,val=0.5").manifest_path)
    b = read_manifest(_build(fx, tmp_path / "b.parquet", preset="none", split_ratios="train=0.5,val=0.5").manifest_path)
    assert a.table.equals(b.table)
    rows = a.table.to_pylist()
    per_image = {}
    for r in rows:
        per_image.setdefault(r["image_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in per_image.values())
    assert {r["split"] for r in rows} == {"train", "val"}
    assert a.metadata["split"]["ratios"] == {"train": 0.5, "val": 0.5}
    # the sample ids do not depend on the re-split
    base = read_manifest(_build(fx, tmp_path / "c.parquet", preset="none").manifest_path)
    assert set(base.table.column("sample_id").to_pylist()) == {r["sample_id"] for r in rows}
    with pytest.raises(ConfigError, match="sum to"):
        _build(fx, tmp_path / "d.parquet", split_ratios="train=0.5,val=0.6")


def test_existing_output_is_refused_without_overwrite(coco, tmp_path):
    out = tmp_path / "m.parquet"
    _build(coco, out)
    before = out.read_bytes()
    with pytest.raises(OutputExistsError):
        _build(coco, out, preset="none")
    assert out.read_bytes() == before
    _build(coco, out, preset="none", overwrite=True)
    assert read_manifest(out).metadata["preset"] == "none"


# --- bad input ----------------------------------------------------------------------------


def test_truncated_annotation_file_names_file_and_position(coco, tmp_path):
    text = coco.annotations.read_text()
    coco.annotations.write_text(text[: len(text) // 2])
    with pytest.raises(InputError) as err:
        _build(coco, tmp_path / "m.parquet")
    assert str(coco.annotations) in str(err.value) and "line 1 column" in str(err.value)
    assert not (tmp_path / "m.parquet").exists()


def test_non_json_file(coco, tmp_path):
    coco.annotations.write_text("<html>not json</html>\n")
    with pytest.raises(InputError, match=r"not valid JSON: .* line 1 column 1"):
        _build(coco, tmp_path / "m.parquet")


def test_bad_rows_are_dropped_with_reasons(tmp_path):
    rle_bad = {"size": [10, 10], "counts": [100]}
    images = [
        [Obj((10, 10, 20, 20), "cup"), Obj((40, 40, 20, 20), "cup", segmentation=[[40.0, 40.0, 60.0, 40.0]])],
        [Obj((10, 10, 20, 20), "cup", segmentation=rle_bad), Obj((150, 100, 20, 20), "cup")],
        [Obj((10, 10, 20, 20), "cup", category_id=999), Obj((30, 30, 20, 20), "car")],
        [Obj((10, 10, 20, 20), "cup")],
        [Obj((10, 10, 20, 20), "cup")],
    ]
    fx = write_coco(tmp_path / "coco", images)
    (fx.images / "000000000004.png").unlink()
    (fx.images / "000000000005.png").write_bytes(b"not a png")
    res = _build(fx, tmp_path / "m.parquet", preset="none")
    assert res.summary["invalid"] == {
        "bbox outside the image": 1,
        "corrupt image file": 1,
        "missing image file": 1,
        "polygon with fewer than 3 points": 1,
        "RLE size differs from the image": 1,
        "unknown category id": 1,
    }
    assert res.summary["invalid_examples"]["unknown category id"] == ["105"]
    assert _ids(res.manifest_path) == {"101", "106"}


def test_uncompressed_rle_and_compressed_rle_masks(tmp_path):
    from pycocotools import mask as mask_utils

    m = np.zeros((120, 160), dtype=np.uint8)
    m[20:40, 30:50] = 1
    compressed = mask_utils.encode(np.asfortranarray(m))
    compressed = {"size": [120, 160], "counts": compressed["counts"].decode()}
    flat = m.flatten(order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v == value:
            count += 1
        else:
            runs.append(count)
            value, count = v, 1
    runs.append(count)
    images = [[Obj((30, 20, 20, 20), "cup", crowd=True, segmentation={"size": [120, 160], "counts": runs}),
               Obj((30, 20, 20, 20), "car", segmentation=compressed)]]
    fx = write_coco(tmp_path / "coco", images)
    res = _build(fx, tmp_path / "m.parquet", preset="none")
    rows = read_manifest(res.manifest_path).table.to_pylist()
    assert [r["mask_source"] for r in rows] == ["rle", "rle"] and [r["crowd"] for r in rows] == [True, False]
    for r in rows:
        assert np.array_equal(decode_mask(r["mask_rle"]), m.astype(bool))
        assert r["mask_area_fraction"] == pytest.approx(400 / 19200)


# --- segmentations -----------------------------------------------------------------------


def test_undecodable_compressed_rle_and_malformed_rle_are_dropped_not_a_crash(tmp_path):
    images = [[
        Obj((10, 10, 20, 20), "cup", segmentation={"size": [120, 160], "counts": "garbage!!"}),
        Obj((40, 40, 20, 20), "cup", segmentation={"size": ["a", 160], "counts": "x"}),
        Obj((70, 40, 20, 20), "cup", segmentation={"size": [120, 160], "counts": [1, "2"]}),
        Obj((100, 40, 20, 20), "car"),
    ]]
    fx = write_coco(tmp_path / "coco", images)
    res = _build(fx, tmp_path / "m.parquet", preset="none")
    assert res.summary["invalid"] == {
        "malformed RLE counts": 1, "malformed RLE size": 1, "malformed rle segmentation (does not decode)": 1,
    }
    assert _ids(res.manifest_path) == {"104"}


def test_damaged_segmentation_of_a_kept_object_names_annotation_and_position(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS)
    text = fx.annotations.read_text()
    starts = [i for i in range(len(text)) if text.startswith('"segmentation": [[', i)]
    at = starts[1] + len('"segmentation": [[') + 3  # inside annotation 102's polygon (kept by soebench)
    fx.annotations.write_text(text[:at] + "xx" + text[at:])
    with pytest.raises(json.JSONDecodeError) as ref:
        json.loads(fx.annotations.read_text())
    with pytest.raises(InputError) as err:
        _build(fx, tmp_path / "m.parquet")
    msg = str(err.value)
    assert "annotation id 102" in msg and str(fx.annotations) in msg
    assert f"line {ref.value.lineno} column {ref.value.colno} (char {ref.value.pos})" in msg
    assert not (tmp_path / "m.parquet").exists()


@pytest.mark.parametrize("keep", [60, -3])
def test_truncated_captions_fail_before_any_work(tmp_path, keep):
    # the only object is rejected, so the captions would never be read by the mining itself
    fx = write_coco(tmp_path / "coco", [[Obj((5, 5, 60, 60), "cup")]])
    fx.captions.write_text(fx.captions.read_text()[:keep])
    with pytest.raises(InputError, match=r"captions_val2017\.json: not valid JSON: .* line 1 column"):
        _build(fx, tmp_path / "m.parquet")
    assert not list(tmp_path.glob("m.*"))


def test_plots_of_objects_all_the_same_size(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((40, 40, 10, 10), "car")], [Obj((40, 40, 10, 10), "cup")]])
    res = _build(fx, tmp_path / "m.parquet", preset="none", plots=True)
    assert res.num_rows == 2 and res.summary["plots"] == ["m.sizes.png", "m.categories.png"]
    assert all(p.stat().st_size > 1000 for p in res.plot_paths)


def test_outputs_get_the_usual_file_mode(coco, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        res = _build(coco, tmp_path / "m.parquet", plots=True)
    finally:
        os.umask(old)
    for path in [res.manifest_path, res.summary_path, *res.plot_paths]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_flag_filters_coco_cannot_serve_say_so(coco, tmp_path):
    with pytest.raises(ConfigError) as err:
        _build(coco, tmp_path / "m.parquet", filters={"drop_occluded": True})
    assert err.value.hint is not None and "--keep-occluded" in err.value.hint and "iscrowd" in err.value.hint
