"""Manifest and runs -> a real FiftyOne dataset on a real mongod: counts, masks, labels, views,
idempotent re-export, hash checks, real evaluation runs through the CLI."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import soebench
from soebench.cli.app import main
from soebench.errors import InputError
from soebench.fiftyone_export import ORIGINAL_SLICE, TAG_ERROR, TAG_MISSING_MEDIA, resolve_sources
from soebench.fo.views import view_name
from soebench.fo.writer import export
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.metrics import size_bucket
from tests.factories import make_manifest
from tests.fiftyone.builders import make_run

pytestmark = pytest.mark.fiftyone


def _slice(ds, name):
    return ds.select_group_slices(name)


def test_manifest_alone_coco(coco_fixture, dataset_name):
    man = read_manifest(coco_fixture["manifest"])
    ds = soebench.to_fiftyone(coco_fixture["manifest"], name=dataset_name)
    assert ds.persistent and ds.media_type == "group" and ds.group_slices == [ORIGINAL_SLICE]
    assert len(ds) == len(man) == 12
    rows = {r["sample_id"]: r for r in man.table.to_pylist()}
    for sample in ds.iter_samples():
        row = rows[sample["sample_id"]]
        full = decode_mask(row["mask_rle"])
        det = sample["ground_truth"]
        x, y, w, h = det.bounding_box
        x0, y0 = round(x * row["width"]), round(y * row["height"])
        x1, y1 = x0 + round(w * row["width"]), y0 + round(h * row["height"])
        mask = np.asarray(det.mask).astype(bool)
        np.testing.assert_array_equal(mask, full[y0:y1, x0:x1])
        assert mask.sum() == full.sum()  # the crop loses no mask pixel
        assert x0 <= row["bbox"][0] + 1 and x1 >= row["bbox"][0] + row["bbox"][2] - 1
        assert det.label == sample["category"] == row["category"]
        assert sample["color"] == row["color"] and sample["split"] == "val2017"
        assert sample["prompt_color_label"] == row["prompts"]["color_label"]
        assert sample["size_bucket"] == size_bucket(row["mask_area_fraction"])
        assert sample.filepath == str(man.image_path(row["image_path"])) and not sample.tags


def test_two_runs_labels_scores_tags_views(coco_fixture, dataset_name):
    src = resolve_sources([coco_fixture["manifest"], *coco_fixture["runs"]])
    result = export(src, name=dataset_name)
    ds = result.dataset
    assert sorted(ds.group_slices) == sorted([ORIGINAL_SLICE, "model-a", "model-b"])
    assert len(ds.select_group_slices()) == 3 * 12
    reports = {r.slice: r for r in result.slices}
    assert (reports["model-a"].errors, reports["model-a"].missing_media) == (1, 1)
    assert (reports["model-b"].errors, reports["model-b"].missing_media) == (0, 0)
    ids = coco_fixture["ids"]
    for run_dir in coco_fixture["runs"]:
        frame = pd.read_parquet(run_dir / "samples.parquet").set_index("sample_id")
        name = run_dir.name
        view = _slice(ds, name)
        assert len(view) == len(frame)
        for sample in view.iter_samples():
            row = frame.loc[sample["sample_id"]]
            assert sample["model"] == f"fixture-{name[-1]}"
            if pd.notna(row["error"]):
                assert TAG_ERROR in sample.tags and sample["failure"] is None and sample["error"] == row["error"]
                continue
            assert sample["failure"].label == row["failure"]
            assert math.isclose(sample["failure"]["presence_score"], json.loads(row["failure_evidence"])["presence_score"])
            for k in ("clip_score_local", "clip_score_global", "bg_psnr", "bg_ssim", "bg_mse"):
                assert sample[k] == pytest.approx(row[k])
            assert sample.filepath == str(run_dir.resolve() / row["output_path"])
        # the same group holds the original and the model's output of one object
        g = ds.get_group(view.first().group.id)
        assert {s["sample_id"] for s in g.values()} == {view.first()["sample_id"]}
    a = _slice(ds, "model-a")
    assert a.match_tags(TAG_MISSING_MEDIA).values("sample_id") == [ids[1]]
    assert a.match_tags(TAG_ERROR).values("sample_id") == [ids[0]]

    # saved views: each failure label per model, worst local CLIP-Score, largest background change
    saved = set(ds.list_saved_views())
    for run in ("model-a", "model-b"):
        frame = pd.read_parquet(coco_fixture["folder"] / "reports" / run / "samples.parquet")
        for label in ("ok", "missing", "mismatch", "distortion"):
            name = view_name(run, f"failure-{label}")
            assert name in saved
            assert sorted(ds.load_saved_view(name).values("sample_id")) == sorted(
                frame.loc[frame["failure"] == label, "sample_id"])
        worst = ds.load_saved_view(view_name(run, "worst-clip-local")).values("clip_score_local")
        scored = frame["clip_score_local"].dropna()
        assert worst == sorted(worst) and worst[0] == pytest.approx(scored.min()) and len(worst) == len(scored)
        bg = ds.load_saved_view(view_name(run, "largest-bg-change")).values("bg_mse")
        assert bg == sorted(bg, reverse=True) and bg[0] == pytest.approx(frame["bg_mse"].max())


def test_reexport_updates_without_duplicates_and_keeps_human_tags(tmp_path, dataset_name):
    manifest = make_manifest(tmp_path, 5)
    run = make_run(tmp_path / "reports" / "m", manifest, name="m", seed=4)
    src = resolve_sources([run])
    first = export(src, name=dataset_name)
    ds = first.dataset
    assert [(r.slice, r.added, r.updated) for r in first.slices] == [("original", 5, 0), ("m", 5, 0)]
    sample = _slice(ds, "m").first()
    sample.tags.append("human:missing")
    sample.save()
    tagged = sample["sample_id"]

    again = export(resolve_sources([manifest, run]), name=dataset_name)
    assert [(r.slice, r.added, r.updated, r.removed) for r in again.slices] == [("original", 0, 5, 0), ("m", 0, 5, 0)]
    assert len(ds.select_group_slices()) == 10
    assert _slice(ds, "m").match_tags("human:missing").values("sample_id") == [tagged]

    # the run is evaluated again, into another folder, on fewer samples: with --overwrite the slice follows it
    run2 = make_run(tmp_path / "reports" / "m2", manifest, name="m", seed=9, limit=3)
    third = export(resolve_sources([run2]), name=dataset_name, overwrite=True)
    assert [(r.slice, r.added, r.updated, r.removed) for r in third.slices][1] == ("m", 0, 3, 2)
    assert len(_slice(ds, "m")) == 3 and len(_slice(ds, ORIGINAL_SLICE)) == 5
    new = pd.read_parquet(run2 / "samples.parquet")
    assert sorted(_slice(ds, "m").values("failure.label")) == sorted(new["failure"])


def test_dataset_of_another_manifest_is_refused(tmp_path, dataset_name):
    a = make_manifest(tmp_path / "a", 2)
    b = make_manifest(tmp_path / "b", 2, seed=3)
    export(resolve_sources([a]), name=dataset_name)
    with pytest.raises(InputError, match="holds manifest"):
        export(resolve_sources([b]), name=dataset_name)
    rc = main(["inspect", str(b), "--name", dataset_name, "--no-launch", "-q"])
    assert rc == 2


def test_real_evaluation_runs_through_the_cli(tmp_path, dataset_name, capsys):
    from soebench.evaluation import evaluate

    manifest = make_manifest(tmp_path, 4)
    runs = []
    for model in ("original", "opencv-telea"):
        res = evaluate(manifest, model, tmp_path / "reports" / model, metrics=("bg_psnr", "bg_ssim", "bg_mse"),
                       progress=False, report=False)
        runs.append(res.run_dir)
    rc = main(["inspect", *map(str, runs), "--name", dataset_name, "--no-launch", "-q"])
    assert rc == 0
    captured = capsys.readouterr()
    assert dataset_name in captured.out and "opencv-telea" in captured.out
    # evaluated without CLIP: no worst-CLIP view, and the command says so
    assert f"no saved view {view_name('opencv-telea', 'worst-clip-local')}" in captured.err
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    assert sorted(ds.group_slices) == ["opencv-telea", "original", "run-original"]
    for slice_, run in (("run-original", runs[0]), ("opencv-telea", runs[1])):
        frame = pd.read_parquet(run / "samples.parquet")
        view = _slice(ds, slice_)
        got = dict(zip(*view.values(["sample_id", "bg_mse"])))
        assert got == pytest.approx(dict(zip(frame["sample_id"], frame["bg_mse"])))
        assert frame["failure"].notna().all()  # the taxonomy labels every sample of a real run
        labels = dict(zip(*view.values(["sample_id", "failure.label"])))
        assert labels == dict(zip(frame["sample_id"], frame["failure"]))
    # the oracle leaves the background untouched: PSNR is +inf and survives the database
    assert all(math.isinf(v) for v in _slice(ds, "run-original").values("bg_psnr"))


def test_cli_manifest_alone_under_its_default_name(fo_db, tmp_path, capsys):
    import fiftyone as fo

    from soebench.fiftyone_export import default_dataset_name, manifest_sha256

    manifest = make_manifest(tmp_path, 3, seed=11)
    name = default_dataset_name(manifest, manifest_sha256(manifest))
    try:
        assert main(["inspect", str(manifest), "--no-launch", "-q"]) == 0
        assert main(["inspect", str(manifest), "--no-launch", "-q"]) == 0
        assert name in capsys.readouterr().out
        ds = fo.load_dataset(name)
        assert len(ds) == 3 and ds.group_slices == [ORIGINAL_SLICE] and ds.persistent
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)


def test_missing_originals_are_kept_tagged_counted_and_reported(tmp_path, dataset_name, capsys):
    manifest = make_manifest(tmp_path, 4, seed=6)
    man = read_manifest(manifest)
    lost = man.table.column("image_path").to_pylist()[1:3]
    for rel in lost:
        man.image_path(rel).unlink()
    assert main(["inspect", str(manifest), "--name", dataset_name, "--no-launch", "-q"]) == 0
    captured = capsys.readouterr()
    assert "2 of 4 image(s) not found" in captured.err and str(man.image_path(lost[0])) in captured.err
    assert " no media " in captured.out
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    assert len(ds) == 4  # nothing is dropped
    tagged = ds.match_tags(TAG_MISSING_MEDIA)
    assert sorted(tagged.values("filepath")) == sorted(str(man.image_path(r)) for r in lost)
    assert all(s["ground_truth"] is not None for s in tagged)  # the labels are there all the same


def test_run_without_clip_scores_skips_that_view_says_why_and_keeps_run_scores(tmp_path, dataset_name, capsys):
    manifest = make_manifest(tmp_path, 4, seed=7)
    run = make_run(tmp_path / "reports" / "noclip", manifest, name="noclip", seed=5)
    frame = pd.read_parquet(run / "samples.parquet")
    frame["clip_score_local"] = None
    frame["clip_score_global"] = None
    frame.to_parquet(run / "samples.parquet", index=False)
    summary = json.loads((run / "summary.json").read_text())
    summary["metrics"] = {
        "skipped": {"clip_score_local": "CLIP weights for ViT-B-32/openai are not on this machine\nHint: ..."},
        "distances": {"fid_crop": {"metric": "fid", "value": 42.5, "n_real": 4}, "kid_crop": {"value": -0.01}},
    }
    (run / "summary.json").write_text(json.dumps(summary))

    assert main(["inspect", str(run), "--name", dataset_name, "--no-launch", "-q"]) == 0
    err = capsys.readouterr().err
    worst = view_name("noclip", "worst-clip-local")
    assert f"no saved view {worst}" in err and "CLIP weights for ViT-B-32/openai are not on this machine" in err
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    saved = ds.list_saved_views()
    assert worst not in saved and view_name("noclip", "largest-bg-change") in saved
    recorded = ds.info["soebench"]["runs"]["noclip"]
    assert recorded["distances"] == {"fid_crop": 42.5, "kid_crop": -0.01}
    assert recorded["skipped_metrics"] == {"clip_score_local": "CLIP weights for ViT-B-32/openai are not on this machine"}

    # the run is evaluated again with CLIP: the view appears on re-export
    frame["clip_score_local"] = np.linspace(20.0, 30.0, len(frame))
    frame.to_parquet(run / "samples.parquet", index=False)
    export(resolve_sources([run]), name=dataset_name)
    assert ds.load_saved_view(worst).values("clip_score_local") == pytest.approx(sorted(frame["clip_score_local"]))


def test_list_cells_of_a_run_become_list_fields(tmp_path, dataset_name):
    manifest = make_manifest(tmp_path, 2, seed=8)
    run = make_run(tmp_path / "reports" / "lists", manifest, name="lists", seed=6)
    frame = pd.read_parquet(run / "samples.parquet")
    frame["crop_box"] = [[1, 2, 3, 4], [5, 6, 7, 8]]
    frame.to_parquet(run / "samples.parquet", index=False)
    ds = export(resolve_sources([run]), name=dataset_name).dataset
    got = dict(zip(*_slice(ds, "lists").values(["sample_id", "crop_box"])))
    assert got == {frame["sample_id"][0]: [1, 2, 3, 4], frame["sample_id"][1]: [5, 6, 7, 8]}


def test_a_run_of_the_same_name_never_takes_over_a_slice_silently(tmp_path, dataset_name, capsys):
    from soebench.errors import OutputExistsError

    manifest = make_manifest(tmp_path, 4)
    telea = make_run(tmp_path / "A" / "telea", manifest, name="telea", model="opencv-telea", seed=1)
    ds = export(resolve_sources([telea]), name=dataset_name).dataset
    sids = sorted(_slice(ds, "telea").values("sample_id"))
    for sample in _slice(ds, "telea").iter_samples(autosave=True):
        sample.tags = sample.tags + ["human:ok"]
    other = make_run(tmp_path / "B" / "telea", manifest, name="telea", model="mean-fill", seed=2)
    with pytest.raises(OutputExistsError, match=r"slice 'telea' .* holds run 'telea' from .*A/telea \(model opencv-telea\)"):
        export(resolve_sources([other]), name=dataset_name)
    with pytest.raises(OutputExistsError) as info:  # the Python API says how to overwrite in its own terms
        soebench.to_fiftyone(other, name=dataset_name)
    assert "overwrite=True (--overwrite)" in info.value.hint
    assert main(["inspect", str(other), "--name", dataset_name, "--no-launch", "-q"]) == 2
    assert "--run-name" in capsys.readouterr().err
    assert len(_slice(ds, "telea").match_tags("human:ok")) == 4  # nothing changed

    # replaced on purpose: the judgements of opencv-telea's images do not move to mean-fill's
    frame = pd.read_parquet(other / "samples.parquet")
    frame.loc[frame["sample_id"] == sids[0], "output_key"] = f"opencv-telea:1:{sids[0]}"  # the same image
    frame.to_parquet(other / "samples.parquet", index=False)
    ds = soebench.to_fiftyone(other, name=dataset_name, overwrite=True)
    assert ds.info["soebench"]["runs"]["telea"]["run_dir"] == str(other.resolve())
    assert _slice(ds, "telea").match_tags("human:ok").values("sample_id") == [sids[0]]
    assert set(_slice(ds, "telea").values("model")) == {"mean-fill"}



def test_a_name_whose_slug_is_taken_is_a_one_line_error(tmp_path, dataset_name, capsys):
    path = make_manifest(tmp_path, 2)
    assert main(["inspect", str(path), "--name", dataset_name, "--no-launch"]) == 0
    assert main(["inspect", str(path), "--name", dataset_name.upper(), "--no-launch"]) == 2
    err = capsys.readouterr().err
    assert "FiftyOne cannot create dataset" in err and "Traceback" not in err


def test_distinct_run_names_get_distinct_slices():
    from soebench.fiftyone_export import slice_name

    names = ["ünï run", "ûnï run", "telea v1.0", "telea v1+0", "模型一", "模型二", "telea"]
    slices = [slice_name(n) for n in names]
    assert len(set(slices)) == len(names) and slices[-1] == "telea"
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", s) for s in slices)


def test_runs_named_original_and_run_original_keep_slices_apart(tmp_path, dataset_name, capsys):
    from soebench.fiftyone_export import slice_name

    manifest = make_manifest(tmp_path, 3)
    ids = read_manifest(manifest).table.column("sample_id").to_pylist()
    oracle = make_run(tmp_path / "reports" / "original", manifest, name="original", model="original", seed=1)
    other = make_run(tmp_path / "reports" / "run-original", manifest, name="run-original", model="telea", seed=2,
                     missing_images=(ids[0],))
    assert main(["inspect", str(oracle), str(other), "--name", dataset_name, "--no-launch", "-q"]) == 0
    err = capsys.readouterr().err
    second = slice_name("run-original")
    # the warning names the run by its own name, and its slice
    assert f"run 'run-original' (slice '{second}'): 1 of 3 image(s) not found" in err
    import fiftyone as fo

    ds = fo.load_dataset(dataset_name)
    assert sorted(ds.group_slices) == sorted([ORIGINAL_SLICE, "run-original", second])
    assert set(_slice(ds, "run-original").values("model")) == {"original"}
    assert set(_slice(ds, second).values("model")) == {"telea"}
    runs = ds.info["soebench"]["runs"]
    assert (runs["run-original"]["run_name"], runs[second]["run_name"]) == ("original", "run-original")
    # agreement's --run takes the run name, or the slice name as the App shows it
    for run in ("run-original", second):
        assert main(["agreement", "--name", dataset_name, "--run", run, "--json"]) == 0
        assert list(json.loads(capsys.readouterr().out)) == [second]
    assert main(["agreement", "--name", dataset_name, "--run", "original", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)) == ["run-original"]


def test_an_empty_name_is_refused_and_writes_nothing(fo_db, tmp_path, capsys):
    import fiftyone as fo

    manifest = make_manifest(tmp_path, 2, seed=12)
    before = set(fo.list_datasets())
    assert main(["inspect", str(manifest), "--name", "", "--no-launch", "-q"]) == 2
    assert "dataset name '' is empty" in capsys.readouterr().err
    assert set(fo.list_datasets()) == before  # not written under the default name either


def test_a_busy_port_is_found_before_the_dataset_is_written(tmp_path, dataset_name, capsys):
    import socket

    import fiftyone as fo

    manifest = make_manifest(tmp_path, 2, seed=13)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = main(["inspect", str(manifest), "--name", dataset_name, "--port", str(port), "-q"])
    assert rc != 0
    assert f"cannot start the FiftyOne App on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not fo.dataset_exists(dataset_name)
