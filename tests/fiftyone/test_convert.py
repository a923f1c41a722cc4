"""Pure converters (no database): geometry, sample dicts, run reading and source checks."""

from __future__ import annotations

import hashlib

import json
import shutil

import numpy as np
import pytest

from soebench.errors import InputError
from soebench.fiftyone_export import (
    TAG_ERROR,
    TAG_MISSING_MEDIA,
    default_dataset_name,
    manifest_sample_dicts,
    object_box,
    parse_evidence,
    read_run,
    relative_box,
    resolve_sources,
    run_sample_dicts,
    slice_name,
)
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from tests.factories import make_manifest
from tests.fiftyone.builders import make_run

pytestmark = pytest.mark.fiftyone


def test_object_box_encloses_bbox_and_mask():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:15] = True
    mask[9, 16] = True  # a pixel outside the float bbox below
    assert object_box([10.2, 5.0, 4.5, 3.7], mask) == (10, 5, 17, 10)
    assert relative_box((10, 5, 17, 10), 30, 20) == pytest.approx([10 / 30, 5 / 20, 7 / 30, 5 / 20], abs=1e-6)


def _fiftyone_pixels(rel, width, height):
    """Pixel ``(x0, y0, x1, y1)`` of a relative box as FiftyOne computes them (eta's truncation)."""
    etag = pytest.importorskip("eta.core.geometry")
    x, y, w, h = rel
    tlx, tly, bw, bh = etag.BoundingBox.from_coords(x, y, x + w, y + h).coords_in(frame_size=(width, height))
    return tlx, tly, tlx + bw, tly + bh


def _rendered(label, width, height):
    """The full-image mask FiftyOne renders from a ``ground_truth`` label dict, by its own code."""
    fol = pytest.importorskip("fiftyone.core.labels")
    det = fol.Detection(label=label["label"], bounding_box=label["bounding_box"], mask=label["mask"])
    return det.to_segmentation(frame_size=(width, height)).mask > 0


def test_relative_box_comes_back_to_its_pixels_in_fiftyone():
    """int(W * x) used to land a pixel short for about 1 box in 10 (x0 / W * W < x0)."""
    rng = np.random.default_rng(0)
    cases = [(w, x0, x1) for w in range(1, 301) for x0 in range(w) for x1 in {x0 + 1, w}]
    for w in (640, 1000, 1999, 4096, 10_000, 65_535):  # photo sizes and beyond
        x0 = rng.integers(0, w, 500)
        cases += [(w, int(a), int(rng.integers(a + 1, w + 1))) for a in x0]
    wrong = []
    for w, x0, x1 in cases:
        rel = relative_box((x0, x0, x1, x1), w, w)
        got = _fiftyone_pixels(rel, w, w)
        if got != (x0, x0, x1, x1) or round(rel[0] * w) != x0 or round(rel[2] * w) != x1 - x0:
            wrong.append((w, x0, x1, got))
    assert not wrong, f"{len(wrong)} of {len(cases)} boxes come back elsewhere, e.g. {wrong[:3]}"


def _blob(rng, height, width, box):
    """A random mask filling part of ``box`` and touching all four of its sides."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
    mask[y0, rng.integers(x0, x1)] = mask[y1 - 1, rng.integers(x0, x1)] = True
    mask[rng.integers(y0, y1), x0] = mask[rng.integers(y0, y1), x1 - 1] = True
    return mask


def test_masks_rendered_back_by_fiftyone_equal_the_mask_for_many_box_and_image_sizes():
    rng = np.random.default_rng(1)
    wrong = []
    for i in range(400):
        width, height = (int(v) for v in rng.integers(1, 1500, 2))
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        # small objects mostly (the benchmark's), some up to the image border
        x1 = int(rng.integers(x0 + 1, min(width, x0 + 1 + (60 if i % 4 else width)) + 1))
        y1 = int(rng.integers(y0 + 1, min(height, y0 + 1 + (60 if i % 4 else height)) + 1))
        mask = _blob(rng, height, width, (x0, y0, x1, y1))
        bx0, by0, bx1, by1 = object_box([x0 + 0.3, y0 + 0.1, x1 - x0 - 0.6, y1 - y0 - 0.4], mask)
        label = {"label": "x", "bounding_box": relative_box((bx0, by0, bx1, by1), width, height),
                 "mask": mask[by0:by1, bx0:bx1]}
        if not np.array_equal(_rendered(label, width, height), mask):
            wrong.append((width, height, (x0, y0, x1, y1)))
    assert not wrong, f"{len(wrong)} of 400 masks come back moved or stretched, e.g. {wrong[:3]}"


def test_real_coco_masks_come_back_from_fiftyone_exactly(coco_sample):
    """Every non-crowd val2017 object of the real sample, as manifest_sample_dicts writes it."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(coco_sample / "annotations" / "instances_val2017.json"))
    n, wrong = 0, []
    for ann in coco.loadAnns(coco.getAnnIds(iscrowd=False)):
        info = coco.loadImgs(ann["image_id"])[0]
        width, height = info["width"], info["height"]
        mask = coco.annToMask(ann).astype(bool)
        if not mask.any():
            continue
        x0, y0, x1, y1 = object_box(ann["bbox"], mask)
        label = {"label": "x", "bounding_box": relative_box((x0, y0, x1, y1), width, height),
                 "mask": mask[y0:y1, x0:x1]}
        n += 1
        if not np.array_equal(_rendered(label, width, height), mask):
            wrong.append(ann["id"])
    assert n > 1000 and not wrong, f"{len(wrong)} of {n} COCO masks come back moved, e.g. annotations {wrong[:5]}"


def test_manifest_labels_render_back_to_the_manifest_masks(tmp_path):
    for k, size in enumerate([(96, 80), (333, 251), (641, 479)]):
        man = read_manifest(make_manifest(tmp_path / str(k), 4, size=size, seed=k))
        for d, row in zip(manifest_sample_dicts(man), man.table.to_pylist()):
            full = decode_mask(row["mask_rle"])
            np.testing.assert_array_equal(_rendered(d["labels"]["ground_truth"], row["width"], row["height"]), full)


def test_manifest_dicts_hold_the_cropped_mask_and_fields(tmp_path):
    path = make_manifest(tmp_path, 3)
    man = read_manifest(path)
    dicts = manifest_sample_dicts(man)
    assert [d["sample_id"] for d in dicts] == man.table.column("sample_id").to_pylist()
    for d, row in zip(dicts, man.table.to_pylist()):
        full = decode_mask(row["mask_rle"])
        x, y, w, h = d["labels"]["ground_truth"]["bounding_box"]
        x0, y0 = round(x * row["width"]), round(y * row["height"])
        x1, y1 = x0 + round(w * row["width"]), y0 + round(h * row["height"])
        np.testing.assert_array_equal(d["labels"]["ground_truth"]["mask"], full[y0:y1, x0:x1])
        assert d["labels"]["ground_truth"]["mask"].sum() == full.sum()
        assert d["fields"]["prompt_color_label"] == row["prompts"]["color_label"]
        assert d["fields"]["color"] == row["color"] and d["media_exists"] and d["tags"] == []


def test_missing_original_image_is_tagged(tmp_path):
    path = make_manifest(tmp_path, 2)
    first = read_manifest(path).table.column("image_path")[0].as_py()
    (tmp_path / "images" / first).unlink()
    dicts = manifest_sample_dicts(read_manifest(path))
    assert [d["tags"] for d in dicts] == [[TAG_MISSING_MEDIA], []]


def test_run_dicts_labels_scores_and_tags(tmp_path):
    path = make_manifest(tmp_path, 4)
    ids = read_manifest(path).table.column("sample_id").to_pylist()
    run_dir = make_run(tmp_path / "run", path, name="my run!", errors=(ids[0],), missing_images=(ids[1],))
    run = read_run(run_dir)
    # "my run!" loses characters: a short hash of the name keeps distinct names apart
    assert run.slice == "my-run-" + hashlib.sha1(b"my run!").hexdigest()[:6]
    base = {d["sample_id"]: d for d in manifest_sample_dicts(read_manifest(path))}
    dicts = run_sample_dicts(run, base)
    assert dicts[0]["tags"] == [TAG_ERROR] and dicts[0]["failure"] is None and dicts[0]["fields"]["error"]
    assert dicts[1]["tags"] == [TAG_MISSING_MEDIA]
    for d, row in zip(dicts[2:], run.samples[2:]):
        assert d["tags"] == [] and d["failure"]["label"] == row["failure"]
        assert d["fields"]["bg_mse"] == row["bg_mse"] and d["fields"]["run"] == run.slice
        assert d["failure"]["attributes"]["bad"] is None  # NaN evidence -> None
        assert d["fields"]["category"] == base[d["sample_id"]]["fields"]["category"]


def test_parse_evidence():
    assert parse_evidence(None) == {}
    assert parse_evidence('{"a b": 1.5, "c": "x", "d": [1, 2], "e": NaN}') == {"a_b": 1.5, "c": "x", "d": "[1, 2]",
                                                                               "e": None}
    assert parse_evidence("not json") == {"raw": "not json"}


def test_sources_check_the_manifest_hash(tmp_path):
    a = make_manifest(tmp_path / "a", 3)
    b = make_manifest(tmp_path / "b", 3, seed=5)
    run_a = make_run(tmp_path / "ra", a, name="ra")
    run_b = make_run(tmp_path / "rb", b, name="rb")
    src = resolve_sources([run_a])
    assert src.manifest.path == a.resolve() and [r.name for r in src.runs] == ["ra"]
    with pytest.raises(InputError, match="made from another manifest"):
        resolve_sources([run_a, run_b])
    with pytest.raises(InputError, match="made from another manifest"):
        resolve_sources([b, run_a])
    with pytest.raises(InputError, match="share the run name"):
        shutil.copytree(run_a, tmp_path / "ra2")
        resolve_sources([run_a, tmp_path / "ra2"])
    with pytest.raises(InputError, match="does not exist"):
        resolve_sources([tmp_path / "nope"])


def test_moved_manifest_and_broken_run_are_named(tmp_path):
    a = make_manifest(tmp_path / "a", 2)
    run = make_run(tmp_path / "r", a, name="r")
    moved = tmp_path / "moved.parquet"
    shutil.copy(a, moved)
    a.unlink()
    with pytest.raises(InputError, match="does not exist"):
        resolve_sources([run])
    assert resolve_sources([run], manifest=moved).manifest.path == moved.resolve()
    (run / "summary.json").write_text(json.dumps({"run_name": "r"}))
    with pytest.raises(InputError, match="missing key"):
        read_run(run)


def test_default_name_is_stable():
    assert default_dataset_name("x/coco-val-soebench.parquet", "ab" * 32) == "soebench-coco-val-soebench-abababab"
    assert slice_name("original") == "run-original"


def test_original_and_run_original_get_slices_of_their_own():
    # "original" is the manifest's slice, so the run named so goes to "run-original" (as before);
    # a run literally named "run-original" used to land there too
    assert slice_name("original") == "run-original"
    assert slice_name("run-original") == "run-original-" + hashlib.sha1(b"run-original").hexdigest()[:6]
    names = ["original", "run-original", "run-original-x", "original!", "telea"]
    assert len({slice_name(n) for n in names}) == len(names)
    assert "original" not in {slice_name(n) for n in names}


def test_runs_original_and_run_original_are_two_runs(tmp_path):
    path = make_manifest(tmp_path, 2)
    runs = [make_run(tmp_path / d, path, name=d) for d in ("original", "run-original")]
    src = resolve_sources(runs)
    assert [(r.name, r.slice) for r in src.runs] == [("original", "run-original"),
                                                    ("run-original", slice_name("run-original"))]
    assert src.runs[0].label == "run 'original' (slice 'run-original')"
    assert src.runs[1].label == f"run 'run-original' (slice {slice_name('run-original')!r})"


def test_two_names_meeting_in_one_slice_are_refused_naming_both_runs(tmp_path, monkeypatch):
    import soebench.fiftyone_export as fe

    path = make_manifest(tmp_path, 2)
    a, b = make_run(tmp_path / "a", path, name="alpha"), make_run(tmp_path / "b", path, name="beta")
    monkeypatch.setattr(fe, "slice_name", lambda name: "same")  # what a hash coincidence would do
    with pytest.raises(InputError) as info:
        resolve_sources([a, b])
    msg = str(info.value)
    assert "(run names 'alpha' and 'beta') map to the same FiftyOne slice 'same'" in msg
    assert str(a.resolve()) in msg and str(b.resolve()) in msg
    assert "share the run name" not in msg


def test_a_folder_that_is_neither_run_nor_manifest_says_what_was_expected(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    with pytest.raises(InputError) as info:
        resolve_sources([tmp_path / "notes"])
    msg = str(info.value)
    assert "neither an evaluation run folder (summary.json + samples.parquet) nor a manifest" in msg
    assert "holds no .parquet parts" not in msg and "notes" in msg
    # a folder of manifest parts is still read as a manifest
    parts = tmp_path / "parts"
    make_manifest(parts, 2, name="part-0-of-1.parquet")
    assert len(resolve_sources([parts]).manifest) == 2


def test_an_empty_dataset_name_is_an_error_not_the_default(tmp_path):
    from soebench.fiftyone_export import check_dataset_name, to_fiftyone

    for name in ("", "  "):
        with pytest.raises(InputError, match="dataset name .* is empty"):
            check_dataset_name(name)
        with pytest.raises(InputError, match="is empty"):  # before anything is read or written
            to_fiftyone(tmp_path / "nothing-here", name=name)
    check_dataset_name(None)
    check_dataset_name("x")
