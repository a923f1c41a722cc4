"""What the reports and the comparison say about how scores were measured, and which samples
they show: runs scored by different networks are flagged, the worst-samples grid is ranked by
its metric, compare's bar plot has every run's metrics, size panels count every scored sample."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from soebench.evaluation import evaluate
from soebench.fileio import sha256_file
from soebench.run import plots
from soebench.run.compare import comparison_table, compare_runs, metric_setup
from soebench.run.report import worst_samples_metric
from tests.evaluate.conftest import BG
from tests.helpers.tiny_nets import make_tiny_inception


def _summary(**metrics):
    base = {"means": {}, "by_size_bucket": {}, "distances": {"fid_crop": {"value": 1.0}},
            "inception": {"path": "/w/a.pt", "sha256": "a" * 64, "found_via": "explicit path"},
            "modes": {"fid_resize": "clean"}}
    return {"run_name": None, "prompt_key": "prompt_short", "manifest": {"sha256": "ab" * 32, "num_samples": 4},
            "metrics": {**base, **metrics}, "taxonomy": {"fractions": {}}, "errors": {"count": 0}}


def test_runs_scored_by_different_inceptions_are_flagged():
    a = _summary()
    b = _summary(inception={"path": "/w/a.pt", "sha256": "b" * 64, "found_via": "explicit path"})
    (warning,) = comparison_table({"A": a, "B": b})[2]
    assert "different FID/KID Inception" in warning and "A: aaaaaaaaaaaa..." in warning and "B: bbbbbbbbbbbb..." in warning
    # the same file under another path is the same network
    moved = _summary(inception={"path": "/elsewhere/a.pt", "sha256": "a" * 64, "found_via": "explicit path"})
    assert comparison_table({"A": a, "C": moved})[2] == []


def test_clip_models_and_modes_are_compared_only_where_scored():
    clip = {"model": "ViT-B-32", "resolved_model": "ViT-B-32", "pretrained": "openai", "checkpoint": "/c/x.bin",
            "sha256": "c" * 64}
    a = _summary(clip=clip)
    b = _summary(clip={**clip, "resolved_model": "ViT-L-14", "sha256": "d" * 64}, modes={"fid_resize": "legacy_pil"})
    warnings = comparison_table({"A": a, "B": b})[2]
    assert any("different CLIP model" in w and "ViT-L-14" in w for w in warnings)
    assert any("different mode fid_resize" in w for w in warnings)
    no_clip = _summary()  # a run without CLIP scores is not a disagreement
    assert comparison_table({"A": a, "N": no_clip})[2] == []
    no_fid = _summary(distances={}, inception={"path": "/w/z.pt", "sha256": "z" * 64})
    assert "FID/KID Inception" not in metric_setup(no_fid)


def test_real_runs_record_the_network_hash_and_compare_flags_it(tmp_path, manifest6, tiny_nets):
    other = make_tiny_inception(tmp_path / "other", dim=16, seed=1)
    opts = dict(metrics=("fid_crop",), progress=False, report=True)
    a = tmp_path / "a"
    evaluate(manifest6, "opencv-telea", a, inception_weights=tiny_nets["inception_weights"], **opts)
    evaluate(manifest6, "opencv-telea", tmp_path / "b", inception_weights=str(other), **opts)
    result = compare_runs([a, tmp_path / "b"])
    assert any("different FID/KID Inception" in w for w in result["warnings"])
    import json

    summary = json.loads((a / "summary.json").read_text())
    assert summary["metrics"]["inception"]["sha256"] == sha256_file(tiny_nets["inception_weights"])
    report = (a / "report.md").read_text()
    assert "**FID Inception**" in report and summary["metrics"]["inception"]["sha256"][:12] in report


def _frame(values, failures=None):
    n = len(values)
    return pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "error": [None] * n,
                         "bg_ssim": values, "failure": failures or ["ok"] * n})


def test_worst_samples_metric_skips_a_score_that_ranks_nothing():
    means = {"bg_ssim": {}, "bg_psnr": {}}
    assert worst_samples_metric(_frame([1.0, 1.0, 1.0]).assign(bg_psnr=[math.inf] * 3), means) is None
    assert worst_samples_metric(_frame([1.0, 0.5, 1.0]).assign(bg_psnr=[math.inf] * 3), means) == "bg_ssim"
    assert worst_samples_metric(_frame([1.0, 1.0, 1.0]).assign(bg_psnr=[30.0, math.inf, 30.0]), means) == "bg_psnr"


def test_worst_samples_grid_is_ranked_by_its_metric(tmp_path, manifest6, monkeypatch):
    from soebench.manifest.io import read_manifest

    run = tmp_path / "run"
    evaluate(manifest6, "original", run, metrics=BG, progress=False, report=False)
    frame = pd.read_parquet(run / "samples.parquet")
    # a failure label must not jump the queue: the grid is "worst by bg_ssim"
    frame["bg_ssim"] = [0.9, 0.2, 0.5, 0.95, 0.7, 0.1]
    frame["failure"] = ["distortion", "ok", "ok", "missing", "ok", "ok"]
    shown = []
    monkeypatch.setattr(plots, "zoom_window", lambda *a, **k: (slice(0, 8), slice(0, 8)))
    real = pd.DataFrame.iterrows

    def spy(self):
        for i, row in real(self):
            shown.append(row["sample_id"])
            yield i, row

    monkeypatch.setattr(pd.DataFrame, "iterrows", spy)
    manifest = read_manifest(manifest6)
    plots.worst_samples(run, frame, manifest, tmp_path / "w.png", metric="bg_ssim", higher_is_better=True, n=3)
    ids = frame["sample_id"].tolist()
    assert shown == [ids[5], ids[1], ids[2]]
    shown.clear()
    plots.worst_samples(run, frame, manifest, tmp_path / "f.png", metric=None)
    assert shown == [ids[3], ids[0]]  # failures only, missing before distortion


def _bucketed(metric, groups, mean=0.5):
    s = _summary(means={metric: {"mean": mean, "lo": mean, "hi": mean, "n": 3}})
    s["metrics"]["by_size_bucket"] = {metric: groups}
    return s


def test_metric_bars_show_metrics_the_first_run_lacks(tmp_path, monkeypatch):
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda self, t, *a, **k: titles.append(t))
    a = _summary(means={})
    b = _summary(means={"bg_ssim": {"mean": 0.9, "lo": 0.8, "hi": 1.0, "n": 3}})
    plots.metric_bars({"A": a, "B": b}, tmp_path / "m.png")
    assert "bg_ssim" in titles and "fid_crop" in titles


def test_size_panel_counts_infinite_values_and_marks_an_infinite_bucket(tmp_path, monkeypatch):
    ticks, notes = [], []
    monkeypatch.setattr("matplotlib.axes.Axes.set_xticks", lambda self, x, labels=None, **k: ticks.append(labels))
    real = plots._pyplot().Axes.annotate

    def note(self, text, *a, **k):
        notes.append(text)
        return real(self, text, *a, **k)

    monkeypatch.setattr("matplotlib.axes.Axes.annotate", note)
    groups = {"tiny": {"mean": 34.0, "lo": 33.0, "hi": 35.0, "n": 1, "n_inf": 7},
              "small": {"mean": "inf", "lo": "inf", "hi": "inf", "n": 2, "n_inf": 2},
              "medium": {"mean": 30.0, "lo": 29.0, "hi": 31.0, "n": 3}}
    plots.metric_vs_size({"A": _bucketed("bg_psnr", groups)}, tmp_path / "s.png", ["tiny", "small", "medium"])
    assert ticks[0] == ["tiny\nn=8", "small\nn=2", "medium\nn=3"]
    assert notes == ["inf"]


# -- user mistakes around the metric networks and outputs ----------------------------------------


def test_an_explicit_weights_path_that_does_not_exist_is_an_error(tmp_path, manifest6):
    from soebench.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="do not exist"):
        evaluate(manifest6, "original", tmp_path / "a", inception_weights=str(tmp_path / "typo.pt"), progress=False)
    with pytest.raises(MissingWeightsError):
        evaluate(manifest6, "original", tmp_path / "b", clip_weights=str(tmp_path / "typo.pt"), progress=False)
    assert not (tmp_path / "a" / "summary.json").exists()


def test_clip_weights_that_are_no_checkpoint(tmp_path, manifest6, tiny_nets):
    from soebench.errors import MissingWeightsError

    junk = tmp_path / "x.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(MissingWeightsError, match="could not load CLIP"):
        evaluate(manifest6, "original", tmp_path / "run", clip_model=tiny_nets["clip_model"], clip_pretrained=None,
                 clip_weights=str(junk), metrics=("clip_score_local",), progress=False)


def test_metrics_as_one_comma_string(tmp_path, manifest6):
    result = evaluate(manifest6, "original", tmp_path / "run", metrics="bg_psnr, bg_ssim", progress=False, report=False)
    assert list(result.summary["metrics"]["means"]) == ["bg_psnr", "bg_ssim"]


def test_compare_out_that_is_a_file(tmp_path, manifest6, capsys):
    from soebench.cli.app import main

    run = tmp_path / "run"
    evaluate(manifest6, "original", run, metrics=BG, progress=False, report=False)
    (tmp_path / "x.png").write_bytes(b"png")
    assert main(["compare", str(run), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "is a file; a comparison is written into a folder" in err and "Traceback" not in err


def test_progress_bars_write_to_stderr(monkeypatch):
    from soebench.run.progress import progress_bar

    seen = {}
    import rich.progress

    real = rich.progress.Progress.__init__

    def spy(self, *a, **k):
        seen["stderr"] = k["console"].stderr
        real(self, *a, **k)

    monkeypatch.setattr(rich.progress.Progress, "__init__", spy)
    with progress_bar(True, 1, "x") as advance:
        advance(1)
    assert seen["stderr"] is True


def test_a_second_evaluate_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, manifest6):
    from soebench.errors import OutputExistsError

    out = tmp_path / "run"
    seen = []

    def model(requests):
        if not seen:  # a second run started while this one generates (its folder holds only run.json)
            with pytest.raises(OutputExistsError, match="another soebench process is writing run folder"):
                evaluate(manifest6, "original", out, metrics=BG, progress=False, report=False)
            seen.append(True)
        return [r.image for r in requests]

    evaluate(manifest6, model, out, metrics=BG, progress=False, report=False)
    assert seen and not (tmp_path / ".run.lock").exists()
    evaluate(manifest6, "original", out, metrics=BG, progress=False, report=False, overwrite=True)  # free again


def test_a_device_model_argument_is_checked_before_any_sample(tmp_path, manifest6):
    from soebench.errors import ConfigError

    (tmp_path / "pipe").mkdir()  # loaded lazily: the device must be refused before any load
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    import torch

    cases = [("nodevice", "model-args device= 'nodevice' is not a torch device"), ("meta", "meta device")]
    cases += [] if torch.cuda.is_available() else [("cuda", "CUDA is not available")]
    for device, message in cases:
        with pytest.raises(ConfigError, match=message):
            evaluate(manifest6, "diffusers", tmp_path / "run", model_args={"path": str(tmp_path / "pipe"),
                                                                           "device": device}, progress=False)


def test_a_killed_runs_temp_files_are_removed_on_resume(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, "original", out, metrics=BG, progress=False, report=False)
    stale = out / ".summary.json.k1ll3d.tmp"
    stale.write_bytes(b"")
    evaluate(manifest6, "original", out, metrics=BG, progress=False, report=False, resume=True)
    assert not stale.exists()
