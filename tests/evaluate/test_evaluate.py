"""The evaluation loop: outputs, results contract, per-sample errors, run-folder rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from soebench.errors import ConfigError, MissingWeightsError, OutputExistsError
from soebench.evaluation import evaluate
from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.metrics import background_preservation, size_bucket
from tests.evaluate.conftest import BG

CONTRACT_COLUMNS = {
    "sample_id", "output_path", "prompt", "seed", "error", "clip_score_local", "clip_score_global", "bg_psnr",
    "bg_ssim", "bg_mse", "failure", "failure_evidence", "category", "size_bucket",
}
SUMMARY_KEYS = {"run_name", "model", "manifest", "prompt_key", "metrics", "versions", "git_commit"}


def test_full_run_with_tiny_networks(tmp_path, manifest6, tiny_nets):
    out = tmp_path / "run"
    res = evaluate(manifest6, "opencv-telea", out, batch_size=4, progress=False, **tiny_nets)
    s = res.summary
    frame = pd.read_parquet(out / "samples.parquet")
    man = read_manifest(manifest6)
    rows = man.table.to_pylist()
    # files and contracts
    for name in ("summary.json", "samples.parquet", "report.md", "report.html", "run.json"):
        assert (out / name).is_file(), name
    assert (out / "plots" / "metric_vs_size.png").is_file() and (out / "plots" / "worst_samples.png").is_file()
    assert CONTRACT_COLUMNS <= set(frame.columns)
    assert SUMMARY_KEYS <= set(json.loads((out / "summary.json").read_text()))
    assert list(frame["sample_id"]) == [r["sample_id"] for r in rows]
    assert s["manifest"]["num_samples"] == 6 and len(s["manifest"]["sha256"]) == 64
    assert s["model"] == {"name": "opencv-telea", "args": {"radius": 3.0, "dilate": 2},
                          "cache_token": s["model"]["cache_token"]}
    assert set(s["metrics"]["available"]) == {
        "clip_score_local", "clip_score_global", "fid_crop", "kid_crop", "fid_full", "kid_full", *BG}
    assert s["metrics"]["modes"]["fid_resize"] == "clean"
    assert s["metrics"]["modes"]["clip_preprocess"] == "pad-square-bicubic"
    assert s["errors"]["count"] == 0
    # per-sample values against an independent recomputation from the written files
    for row, rec in zip(frame.itertuples(), rows):
        original = np.asarray(Image.open(man.image_path(rec["image_path"])).convert("RGB"))
        output = np.asarray(Image.open(out / row.output_path).convert("RGB"))
        assert output.shape == original.shape
        ref = background_preservation(original, output, decode_mask(rec["mask_rle"]))
        assert row.bg_ssim == pytest.approx(ref["bg_ssim"]) and row.bg_mse == pytest.approx(ref["bg_mse"])
        assert row.size_bucket == size_bucket(rec["mask_area_fraction"])
        assert row.prompt == rec["prompts"]["color_label"]
        assert 0 <= row.clip_score_local <= 100
    # means and their intervals
    m = s["metrics"]["means"]["bg_ssim"]
    assert m["mean"] == pytest.approx(frame["bg_ssim"].mean()) and m["lo"] <= m["mean"] <= m["hi"]
    assert m["n"] == 6
    cats = s["metrics"]["by_category"]["bg_mse"]
    assert sum(g["n"] for g in cats.values()) == 6
    for cat, g in cats.items():
        assert g["mean"] == pytest.approx(frame.loc[frame.category == cat, "bg_mse"].mean())
    for name in ("fid_crop", "kid_crop", "fid_full", "kid_full"):
        d = s["metrics"]["distances"][name]
        assert d["n_real"] == d["n_fake"] == 6 and math.isfinite(d["value"])
        groups = s["metrics"]["distances_by_size_bucket"][name]
        assert set(groups) == set(frame["size_bucket"])
        assert {g: v["n_real"] for g, v in groups.items()} == frame["size_bucket"].value_counts().to_dict()
    assert "FID/KID by object size" in (out / "report.md").read_text()


def test_original_is_the_oracle(tmp_path, manifest6):
    res = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False)
    frame = res.samples
    assert (frame["bg_mse"] == 0).all() and np.isinf(frame["bg_psnr"]).all() and (frame["bg_ssim"] == 1).all()
    assert res.summary["metrics"]["means"]["bg_psnr"]["n_inf"] == 6
    summary_text = (tmp_path / "run" / "summary.json").read_text()
    assert json.loads(summary_text)["metrics"]["means"]["bg_psnr"]["mean"] == "inf"  # standard JSON, no Infinity
    assert "Infinity" not in summary_text and "NaN" not in summary_text


class Flaky:
    """Raises for one sample, returns a wrong size for another, fine for the rest."""

    name = "flaky"

    def __init__(self, bad_id, small_id):
        self.bad_id, self.small_id = bad_id, small_id

    def cache_token(self):
        return {"adapter": "flaky"}

    def inpaint(self, requests):
        if any(r.sample_id == self.bad_id for r in requests):
            raise RuntimeError("CUDA out of memory (simulated)")
        return [r.image[:8, :8] if r.sample_id == self.small_id else r.image for r in requests]


def test_per_sample_errors_are_recorded_and_the_run_goes_on(tmp_path, manifest6):
    ids = read_manifest(manifest6).table.column("sample_id").to_pylist()
    res = evaluate(manifest6, Flaky(ids[1], ids[4]), tmp_path / "run", metrics=BG, batch_size=3, progress=False)
    frame = res.samples.set_index("sample_id")
    assert "RuntimeError: CUDA out of memory" in frame.loc[ids[1], "error"]
    assert "8x8 image; the input is 96x80" in frame.loc[ids[4], "error"]
    assert frame.loc[[ids[1], ids[4]], "output_path"].isna().all()
    assert (frame.loc[[ids[1], ids[4]], "failure"] == "error").all()
    assert np.isnan(frame.loc[ids[1], "bg_mse"])
    ok = [i for i in ids if i not in (ids[1], ids[4])]
    assert frame.loc[ok, "error"].isna().all() and (frame.loc[ok, "bg_mse"] == 0).all()
    assert not (tmp_path / "run" / "images" / f"{ids[1]}.png").exists()
    assert res.summary["errors"]["count"] == 2 and res.summary["metrics"]["means"]["bg_mse"]["n"] == 4
    assert "8x8" in (tmp_path / "run" / "report.md").read_text()


def test_existing_run_dir_is_refused(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, "mean-fill", out, metrics=BG, progress=False, limit=2, report=False)
    with pytest.raises(OutputExistsError, match="already exists"):
        evaluate(manifest6, "mean-fill", out, metrics=BG, progress=False, limit=2)
    res = evaluate(manifest6, "original", out, metrics=BG, progress=False, limit=3, overwrite=True, report=False)
    assert res.adapter_calls == 3 and len(list((out / "images").iterdir())) == 3
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a soebench run folder"):
        evaluate(manifest6, "original", other, metrics=BG, progress=False, overwrite=True)
    assert (other / "notes.txt").exists()


def test_option_errors(tmp_path, manifest6):
    with pytest.raises(ConfigError, match="unknown prompt key"):
        evaluate(manifest6, "original", tmp_path / "a", prompt_key="colour", metrics=BG)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(manifest6, "original", tmp_path / "a", metrics=["bg_psrn"])
    with pytest.raises(ConfigError, match="exclude each other"):
        evaluate(manifest6, "original", tmp_path / "a", overwrite=True, resume=True)
    with pytest.raises(MissingWeightsError, match="CLIP weights"):
        evaluate(manifest6, "original", tmp_path / "a", metrics=["clip_score_local"],
                 clip_weights=str(tmp_path / "missing.safetensors"))
    assert not (tmp_path / "a").exists()  # nothing is created before the checks pass


def test_default_metrics_skip_those_without_weights(tmp_path, manifest6, tiny_nets, monkeypatch):
    monkeypatch.setenv("SOEBENCH_INCEPTION_WEIGHTS", tiny_nets["inception_weights"])
    for cache in ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # no cached CLIP
        monkeypatch.setenv(cache, str(tmp_path / "empty-cache"))
    res = evaluate(manifest6, "original", tmp_path / "run", clip_model="ViT-B-32", clip_pretrained="openai",
                   progress=False, limit=4, report=False)
    m = res.summary["metrics"]
    assert set(m["skipped"]) == {"clip_score_local", "clip_score_global"}
    assert "--clip-weights" in m["skipped"]["clip_score_local"]
    assert "fid_crop" in m["available"] and "clip_score_local" not in m["means"]
    assert res.samples["clip_score_local"].isna().all()


def test_prompt_key_and_seed_are_recorded(tmp_path, manifest6):
    seen = []

    def record(requests):
        seen.extend((r.prompt, r.seed) for r in requests)
        return [r.image for r in requests]

    a = evaluate(manifest6, record, tmp_path / "a", prompt_key="small_label", metrics=BG, progress=False, report=False)
    rows = read_manifest(manifest6).table.to_pylist()
    assert [p for p, _ in seen] == [r["prompts"]["small_label"] for r in rows]
    assert list(a.samples["seed"]) == [s for _, s in seen]
    assert len(set(s for _, s in seen)) == 6  # one seed per sample
    b = evaluate(manifest6, record, tmp_path / "b", prompt_key="small_label", metrics=BG, progress=False,
                 report=False, batch_size=2)
    assert list(b.samples["seed"]) == list(a.samples["seed"])  # independent of batching
    c = evaluate(manifest6, record, tmp_path / "c", metrics=BG, progress=False, report=False, seed=1)
    assert not set(c.samples["seed"]) & set(a.samples["seed"])


def test_manifest_not_matching_schema_names_the_columns(tmp_path, manifest6):
    import pyarrow.parquet as pq

    from soebench.errors import InputError

    table = pq.read_table(manifest6).drop_columns(["mask_rle", "eval_crop"])
    bad = tmp_path / "bad.parquet"
    pq.write_table(table, bad)
    with pytest.raises(InputError, match="missing columns: .*mask_rle.*eval_crop|missing columns: .*eval_crop.*mask_rle"):
        evaluate(bad, "original", tmp_path / "run", metrics=BG, progress=False)


def test_unreadable_image_is_a_sample_error(tmp_path):
    from tests.factories import make_manifest

    manifest = make_manifest(tmp_path, 3)
    rows = read_manifest(manifest).table.to_pylist()
    (tmp_path / "images" / rows[1]["image_path"]).write_bytes(b"truncated")
    res = evaluate(manifest, "original", tmp_path / "run", metrics=BG, progress=False, report=False)
    errors = res.samples["error"].tolist()
    assert res.samples["error"].isna().tolist() == [True, False, True]
    assert "cannot read image" in errors[1] and rows[1]["image_path"] in errors[1]


def test_size_plot_says_when_every_value_is_infinite(tmp_path, manifest6, monkeypatch):
    """The oracle's bg_psnr is inf in every bucket: its panel says so instead of staying blank."""
    import matplotlib.axes

    res = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False)
    notes = []
    original_text = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda self, x, y, s, *a, **k: notes.append((self.get_title(), s)) or original_text(self, x, y, s, *a, **k))
    from soebench.metrics import SIZE_BUCKET_NAMES
    from soebench.run import plots

    assert plots.metric_vs_size({"oracle": res.summary}, tmp_path / "size.png", SIZE_BUCKET_NAMES).is_file()
    assert [s for _, s in notes] == ["inf in every size bucket\n(background left untouched)"]
