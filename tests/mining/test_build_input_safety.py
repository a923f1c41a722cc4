"""build-dataset never writes over what it reads, says when a flag replaces a preset's list, and
refuses inputs that would otherwise pass silently: flag values other than 1/0/-1, a bbox CSV of
other images, masks of another shape, a wrong --masks/--images folder, non-UTF-8 class lists,
mask paths outside --masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from soebench.cli.app import main
from soebench.errors import ConfigError, InputError
from soebench.manifest.inspect import manifest_info
from soebench.manifest.io import read_manifest
from soebench.mining import checkpoint
from soebench.mining.build import build_dataset
from soebench.mining.openimages import MASK_MISFIT, MASK_PATH_OUTSIDE, mask_fits
from soebench.mining.presets import OPENIMAGES_EXCLUDED
from tests.mining.fixtures import OiObj, write_openimages
from tests.mining.test_build_resume import Crash, _crash_after

IMAGES = {
    "aaaa000000000001": [OiObj((0.10, 0.10, 0.25, 0.25), "Cup"), OiObj((0.50, 0.50, 0.65, 0.65), "Person"),
                         OiObj((0.60, 0.10, 0.75, 0.25), "Ball", mask_scale=1.5)],
    "bbbb000000000002": [OiObj((0.10, 0.10, 0.25, 0.25), "Ball"), OiObj((0.50, 0.20, 0.65, 0.35), "Cup")],
}


@pytest.fixture
def oi(tmp_path):
    return write_openimages(tmp_path / "oi", IMAGES)


def _build(fx, out, **kw):
    kw.setdefault("plots", False)
    kw.setdefault("preset", "none")
    kw.setdefault("bbox_csv", fx.bbox_csv)
    kw.setdefault("masks", fx.masks)
    kw.setdefault("images", fx.images)
    return build_dataset("openimages", out, segmentation_csv=fx.segmentation_csv, classes=fx.classes, **kw)


def _cli(fx, out, *extra, preset: str | None = "none"):
    return ["build-dataset", "--source", "openimages", "--images", str(fx.images), "--classes", str(fx.classes),
            "--segmentation-csv", str(fx.segmentation_csv), "--masks", str(fx.masks), "--bbox-csv", str(fx.bbox_csv),
            "--no-plots", "-q", *(["--preset", preset] if preset else []), "--out", str(out), *extra]


# -- 1: outputs never replace inputs -----------------------------------------------------------

@pytest.mark.parametrize("role", ["segmentation_csv", "classes", "bbox_csv"])
def test_overwrite_never_replaces_an_input_file(oi, role, capsys):
    target = getattr(oi, role)
    before = target.read_bytes()
    assert main(_cli(oi, target, "--overwrite")) == 2
    assert f"which is the input --{role.replace('_', '-')}" in capsys.readouterr().err
    assert target.read_bytes() == before


def test_an_input_under_a_parquet_name_or_a_hard_link_is_recognised(oi, tmp_path):
    linked = tmp_path / "seg.parquet"
    linked.hardlink_to(oi.segmentation_csv)  # another name of the same file
    with pytest.raises(InputError, match="which is the input --segmentation-csv"):
        build_dataset("openimages", linked, images=oi.images, classes=oi.classes, segmentation_csv=oi.segmentation_csv,
                      masks=oi.masks, preset="none", plots=False, overwrite=True)
    assert linked.read_bytes() == oi.segmentation_csv.read_bytes() and linked.read_text().startswith("MaskPath")


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_outputs_inside_an_input_folder_are_refused(oi, folder):
    root = getattr(oi, folder)
    names = sorted(p.name for p in root.iterdir())
    with pytest.raises(InputError, match=f"inside the --{folder} folder"):
        _build(oi, root / "m.parquet", overwrite=True)
    with pytest.raises(InputError, match=f"inside the --{folder} folder"):
        _build(oi, root, num_shards=2, shard_index=0, overwrite=True)  # parts written into the folder
    assert sorted(p.name for p in root.iterdir()) == names


def test_the_config_file_is_an_input_too(oi, tmp_path, capsys):
    cfg = tmp_path / "build.parquet"  # a name that passes the suffix check
    cfg.write_text("preset: none\n")
    assert main(_cli(oi, cfg, "--config", str(cfg), "--overwrite")) == 2
    assert "which is the input --config" in capsys.readouterr().err
    assert cfg.read_text() == "preset: none\n"


@pytest.mark.parametrize("name", ["m.csv", "m", "m.parquet.json"])
def test_a_manifest_file_must_be_named_parquet(oi, tmp_path, name):
    with pytest.raises(ConfigError, match="must end in .parquet"):
        _build(oi, tmp_path / name)
    assert not (tmp_path / name).exists()
    assert _build(oi, tmp_path / "m.parquet").num_rows == 5  # the usual name, and shards in a folder
    assert _build(oi, tmp_path / "parts", num_shards=2, shard_index=1).manifest_path.suffix == ".parquet"


# -- 2: a class list replaces the preset's, visibly; --also-exclude-classes adds -------------

def test_exclude_classes_replacing_the_preset_list_warns_and_is_recorded(oi, tmp_path, capsys):
    res = _build(oi, tmp_path / "a.parquet", preset="soe-eval", filters={"exclude_classes": ["Ball"],
                                                                         "min_area_fraction": 0.0})
    (warning,) = res.summary["warnings"]
    assert f"--exclude-classes replaces the {len(OPENIMAGES_EXCLUDED)} excluded classes of preset 'soe-eval'" in warning
    assert "--also-exclude-classes" in warning
    meta = read_manifest(res.manifest_path).metadata
    assert meta["preset"] == "soe-eval"
    assert meta["overridden_preset_values"]["exclude_classes"] == list(OPENIMAGES_EXCLUDED)
    assert meta["overridden_preset_values"]["min_area_fraction"] == pytest.approx((1 / 8) ** 2)
    assert manifest_info(res.manifest_path)["overridden_preset_values"] == ["exclude_classes", "min_area_fraction"]
    assert "Person" in {r["category"] for r in read_manifest(res.manifest_path).table.to_pylist()}

    assert main(_cli(oi, tmp_path / "b.parquet", "--exclude-classes", "Ball", "--json", preset="soe-eval")) == 0
    captured = capsys.readouterr()
    assert "warning: --exclude-classes replaces the" in captured.err and json.loads(captured.out)["warnings"]
    assert main(["manifest", "info", str(tmp_path / "b.parquet")]) == 0
    assert "preset soe-eval, overriding its exclude_classes" in capsys.readouterr().out


def test_no_warning_when_the_preset_keeps_its_lists(oi, tmp_path):
    res = _build(oi, tmp_path / "a.parquet", preset="soe-eval")
    assert res.summary["warnings"] == [] and read_manifest(res.manifest_path).metadata["overridden_preset_values"] == {}


def test_also_exclude_classes_adds_to_the_preset_list(oi, tmp_path, capsys):
    res = _build(oi, tmp_path / "a.parquet", preset="soe-eval", also_exclude_classes="Ball",
                 filters={"min_area_fraction": 0.0})
    assert res.summary["warnings"] == []
    assert res.summary["filters"]["exclude_classes"] == [*OPENIMAGES_EXCLUDED, "Ball"]
    assert {r["category"] for r in read_manifest(res.manifest_path).table.to_pylist()} == {"Cup"}
    cfg = tmp_path / "build.yaml"
    cfg.write_text("preset: soe-eval\nmin_area_fraction: 0\nalso_exclude_classes: [Ball]\n")
    assert main(_cli(oi, tmp_path / "b.parquet", "--config", str(cfg), preset=None)) == 0
    assert main(_cli(oi, tmp_path / "c.parquet", "--min-area-fraction", "0", "--also-exclude-classes", "Ball",
                     preset="soe-eval")) == 0
    for name in ("b.parquet", "c.parquet"):
        assert {r["category"] for r in read_manifest(tmp_path / name).table.to_pylist()} == {"Cup"}
    with pytest.raises(ConfigError, match="--also-exclude-classes: 'Bal' is not a category"):
        _build(oi, tmp_path / "d.parquet", preset="soe-eval", also_exclude_classes="Bal")


# -- 3, 4: box flags ----------------------------------------------------------------------------

def test_a_flag_value_other_than_1_0_or_minus_1_is_named(oi, tmp_path):
    lines = oi.bbox_csv.read_text().splitlines()
    fields = lines[2].split(",")
    fields[9] = "2"  # IsTruncated of the second box, read through the int8 path
    lines[2] = ",".join(fields)
    oi.bbox_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{oi.bbox_csv}: row 2 \(line 3\): column IsTruncated is 2, expected 1, 0 or -1"):
        _build(oi, tmp_path / "a.parquet", filters={"drop_truncated": True})
    with pytest.raises(InputError, match="column IsTruncated is 2"):  # box-only reads the same table
        build_dataset("openimages", tmp_path / "b.parquet", images=oi.images, classes=oi.classes,
                      bbox_csv=oi.bbox_csv, preset="none", plots=False)


def test_a_bbox_csv_of_other_images_is_refused(oi, tmp_path):
    text = oi.bbox_csv.read_text().replace("aaaa", "ffff").replace("bbbb", "eeee")  # another split's images
    other = tmp_path / "other-annotations-bbox.csv"
    other.write_text(text)
    with pytest.raises(InputError, match=rf"--bbox-csv {other} shares no ImageID with --segmentation-csv "
                                         rf"{oi.segmentation_csv}"):
        _build(oi, tmp_path / "a.parquet", bbox_csv=other, preset="soe-eval")
    # a bbox CSV of some of the images still works: the others are kept with the flag unknown (and counted)
    lines = oi.bbox_csv.read_text().splitlines()
    partial = tmp_path / "partial-annotations-bbox.csv"
    partial.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.startswith("aaaa")]) + "\n")
    res = _build(oi, tmp_path / "b.parquet", bbox_csv=partial, filters={"drop_occluded": True})
    assert res.summary["kept"] == 5 and res.summary["unknown_flags"] == {"occluded": 2}


# -- 5: masks of another shape ------------------------------------------------------------------

@pytest.mark.parametrize(("mask", "image", "fits"), [
    ((100, 80), (200, 160), True),  # half size
    ((300, 240), (200, 160), True),  # 1.5 x
    ((333, 250), (1000, 750), True), ((334, 250), (1000, 750), True),  # a third, floor and ceil
    ((149, 100), (450, 300), True), ((150, 101), (450, 300), True),  # off by one pixel on a side
    ((152, 100), (450, 300), True),  # 0.8 px each at a scale of 0.336
    ((153, 100), (450, 300), False),  # no scale puts both sides within a pixel: another shape
    ((80, 100), (200, 160), False), ((480, 640), (640, 480), False),  # transposed
    ((200, 80), (200, 160), False),  # half the height only
])
def test_mask_fits_allows_rounding_to_whole_pixels_only(mask, image, fits):
    assert mask_fits(*mask, *image) is fits


def test_a_mask_of_another_aspect_ratio_is_invalid_not_stretched(oi, tmp_path):
    path = next(oi.masks.glob("aaaa000000000001_m01_*.png"))
    Image.fromarray(np.asarray(Image.open(path)).T.copy()).save(path)  # transposed: 80 x 100 for 200 x 160
    res = _build(oi, tmp_path / "a.parquet")
    assert res.summary["invalid"] == {MASK_MISFIT: 1}
    assert res.summary["invalid_examples"][MASK_MISFIT] == [f"{path.name} (mask 80x100, image 200x160)"]
    assert res.summary["kept"] == 4  # the 1.5 x mask of the Ball (300 x 240) is kept


# -- 6: a wrong --masks or --images -------------------------------------------------------------

def test_a_masks_folder_without_the_masks_is_an_error(oi, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "a.parquet"
    with pytest.raises(InputError, match=rf"all 5 objects that passed the filters were dropped for missing or "
                                         rf"unreadable files \(missing mask file 5\); looked in --images "
                                         rf"{oi.images} and --masks {empty}") as err:
        _build(oi, out, masks=empty)
    assert f"(looked for {empty / 'aaaa000000000001_m01_00000000.png'})" in err.value.message
    assert not out.exists() and not checkpoint.partial_dir(out).exists()
    args = _cli(oi, out)
    args[args.index("--masks") + 1] = str(empty)
    assert main(args) == 2 and f"--masks {empty}" in capsys.readouterr().err


def test_missing_files_are_examples_with_the_path_looked_for(oi, tmp_path):
    (oi.images / "bbbb000000000002.jpg").unlink()
    next(oi.masks.glob("aaaa000000000001_m02_*.png")).unlink()
    res = _build(oi, tmp_path / "a.parquet")
    assert res.summary["kept"] == 2  # some kept: counted, not an error
    images = res.summary["invalid_examples"]["missing image file"]
    assert len(images) == 2 and all(
        e.endswith(f"(looked for {oi.images / 'bbbb000000000002'}.jpg|.jpeg|.png|.JPG|.JPEG|.PNG)") for e in images)
    (mask,) = res.summary["invalid_examples"]["missing mask file"]
    assert mask == f"aaaa000000000001_m02_00000002.png (looked for {oi.masks / 'aaaa000000000001_m02_00000002.png'})"


def test_a_partial_copy_whose_kept_objects_lack_their_files_only_warns(oi, tmp_path, capsys):
    for path in oi.masks.glob("*_m02_*.png"):  # every Ball mask gone, the Cup masks are there
        path.unlink()
    res = _build(oi, tmp_path / "a.parquet", filters={"include_classes": ["Ball"]})
    assert res.num_rows == 0 and res.summary["invalid"] == {"missing mask file": 2}
    assert main(_cli(oi, tmp_path / "b.parquet", "--include-classes", "Ball")) == 0
    assert "the manifest is empty" in capsys.readouterr().err


def test_a_shard_of_a_partial_copy_is_not_an_error_but_a_wrong_folder_is(oi, tmp_path):
    from soebench.mining.split import shard_of

    shards = {k: shard_of(k, "openimages", 4) for k in IMAGES}
    lonely = next(i for i in range(4) if i not in shards.values())  # a shard with no image: nothing reached
    assert _build(oi, tmp_path / "p", num_shards=4, shard_index=lonely).num_rows == 0
    index = shards["bbbb000000000002"]
    (oi.images / "bbbb000000000002.jpg").unlink()  # the shard's every image is missing, others are there
    if shards["aaaa000000000001"] != index:
        res = _build(oi, tmp_path / "q", num_shards=4, shard_index=index)
        assert res.num_rows == 0 and res.summary["invalid"] == {"missing image file": 2}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="dropped for missing or unreadable files"):
        _build(oi, tmp_path / "r", num_shards=4, shard_index=shards["aaaa000000000001"], images=empty)


# -- 7: class list encoding ---------------------------------------------------------------------

def test_a_latin1_class_list_is_an_input_error_naming_the_line(oi, tmp_path):
    oi.classes.write_bytes(oi.classes.read_bytes() + "/m/06,Caf\u00e9 table\n".encode("latin-1"))
    with pytest.raises(InputError, match=rf"{oi.classes}: line 6 is not UTF-8 text \(byte 0xe9"):
        _build(oi, tmp_path / "a.parquet")


# -- 9: mask paths stay inside --masks ----------------------------------------------------------

def test_mask_paths_leaving_the_masks_folder_are_invalid_and_never_opened(oi, tmp_path):
    outside = oi.root / "outside.png"
    Image.fromarray(np.full((80, 100), 255, np.uint8)).save(outside)
    lines = oi.segmentation_csv.read_text().splitlines()
    first, second = lines[1].split(",", 1), lines[2].split(",", 1)
    lines[1] = f"{outside},{first[1]}"  # absolute
    lines[2] = f"sub/../../outside.png,{second[1]}"  # escapes through '..'
    oi.segmentation_csv.write_text("\n".join(lines) + "\n")
    res = _build(oi, tmp_path / "a.parquet")
    assert res.summary["invalid"] == {MASK_PATH_OUTSIDE: 2} and res.summary["kept"] == 3
    assert res.summary["invalid_examples"][MASK_PATH_OUTSIDE] == [str(outside), "sub/../../outside.png"]


# -- minor ----------------------------------------------------------------------------------------

def test_predicted_iou_outside_0_1_is_named(oi, tmp_path):
    lines = oi.segmentation_csv.read_text().splitlines()
    lines[3] = lines[3].replace(",0.9,", ",7.5,")
    oi.segmentation_csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"row 3 \(line 4\): column PredictedIoU is 7.5, expected a number in \[0, 1\]"):
        _build(oi, tmp_path / "a.parquet")


def test_upper_case_image_suffixes_and_spaces_around_csv_fields(oi, tmp_path):
    (oi.images / "aaaa000000000001.jpg").rename(oi.images / "aaaa000000000001.JPEG")
    lines = oi.segmentation_csv.read_text().splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[1], row[2] = f" {row[1]} ", f" {row[2]}"  # ImageID, LabelName as a hand-edited CSV has them
    oi.segmentation_csv.write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    res = _build(oi, tmp_path / "a.parquet", filters={"drop_occluded": True})
    assert res.summary["kept"] == 5 and res.summary["invalid"] == {} and res.summary["unknown_flags"] == {}
    got = read_manifest(res.manifest_path).table.to_pylist()
    assert {r["image_path"] for r in got} == {"aaaa000000000001.JPEG", "bbbb000000000002.jpg"}
    assert {r["category_id"] for r in got} == {"/m/01", "/m/02", "/m/03"}


def test_a_refused_resume_says_what_changed(oi, tmp_path, monkeypatch):
    out = tmp_path / "m.parquet"
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "SAVE_EVERY_S", 0.0)
        _crash_after(patch, 1)
        with pytest.raises(Crash):
            _build(oi, out)
    with pytest.raises(ConfigError, match=r"other inputs, filters or options: filters.min_pixels changed"):
        _build(oi, out, resume=True, filters={"min_pixels": 5})
    elsewhere = tmp_path / "masks-copy"
    elsewhere.mkdir()
    for path in oi.masks.iterdir():
        (elsewhere / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match=r": masks changed"):  # masks are not hashed: their folder is the key
        _build(oi, out, resume=True, masks=elsewhere)
    assert _build(oi, out, resume=True).num_rows == 5
