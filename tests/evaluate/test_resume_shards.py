"""Caching, resume after an interruption, no stale reuse, shard merge, compare and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from soebench.cli.app import main
from soebench.evaluation import evaluate
from soebench.run.compare import compare_runs
from tests.evaluate.conftest import BG


class Counting:
    """Darkens the masked pixels by ``offset``; counts samples; can be interrupted after k."""

    name = "counting"

    def __init__(self, offset=40, interrupt_after=None):
        self.offset, self.interrupt_after, self.calls = offset, interrupt_after, 0

    def cache_token(self):
        return {"adapter": "counting", "offset": self.offset}

    def inpaint(self, requests):
        out = []
        for r in requests:
            if self.interrupt_after is not None and self.calls >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls += 1
            img = r.image.copy()
            img[r.mask] = np.clip(img[r.mask].astype(int) - self.offset, 0, 255)
            out.append(img)
        return out


def _images(run):
    return {p.name: np.asarray(Image.open(p)) for p in sorted((run / "images").iterdir())}


def test_resume_after_interrupt_computes_only_the_rest(tmp_path, manifest6):
    out = tmp_path / "run"
    first = Counting(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        evaluate(manifest6, first, out, metrics=BG, batch_size=1, progress=False)
    assert first.calls == 4
    assert not (out / "summary.json").exists()
    second = Counting()
    res = evaluate(manifest6, second, out, metrics=BG, batch_size=1, progress=False, resume=True)
    assert second.calls == 2 and res.from_cache == 4
    fresh = evaluate(manifest6, Counting(), tmp_path / "fresh", metrics=BG, batch_size=1, progress=False)
    pd.testing.assert_frame_equal(res.samples, fresh.samples)
    assert res.summary["metrics"]["means"] == fresh.summary["metrics"]["means"]
    again = Counting()
    evaluate(manifest6, again, out, metrics=BG, progress=False, resume=True)
    assert again.calls == 0  # a finished run recomputes nothing


def test_resume_rescores_nothing_done(tmp_path, manifest6, tiny_nets, monkeypatch):
    """Scored batches are checkpointed: a resumed run scores only the new ones and restores the
    FID/KID states of the others exactly."""
    from soebench.run.scoring import Scorer

    metrics = ["fid_crop", "kid_full", "bg_ssim"]
    opts = dict(metrics=metrics, batch_size=2, progress=False, report=False, **tiny_nets)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        evaluate(manifest6, Counting(interrupt_after=4), out, **opts)
    scored = []
    original_score = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda self, batch: scored.append(len(batch)) or original_score(self, batch))
    resumed = evaluate(manifest6, Counting(), out, resume=True, **opts)
    assert scored == [2]  # only the third batch
    monkeypatch.setattr(Scorer, "score", original_score)
    fresh = evaluate(manifest6, Counting(), tmp_path / "fresh", **opts)
    pd.testing.assert_frame_equal(resumed.samples, fresh.samples)
    for name in ("fid_crop", "kid_full"):
        assert resumed.summary["metrics"]["distances"][name] == fresh.summary["metrics"]["distances"][name]


def test_changed_config_never_reuses_stale_outputs(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, Counting(offset=40), out, metrics=BG, progress=False, report=False)
    before = _images(out)
    changed = Counting(offset=90)
    evaluate(manifest6, changed, out, metrics=BG, progress=False, resume=True, report=False)
    assert changed.calls == 6
    after = _images(out)
    assert all(not np.array_equal(before[k], after[k]) for k in before)
    reseeded = Counting(offset=90)
    evaluate(manifest6, reseeded, out, metrics=BG, progress=False, resume=True, report=False, seed=7)
    assert reseeded.calls == 6  # the seed is part of the key
    reprompted = Counting(offset=90)
    evaluate(manifest6, reprompted, out, metrics=BG, progress=False, resume=True, report=False, prompt_key="label")
    assert reprompted.calls == 6
    same = Counting(offset=40)
    evaluate(manifest6, same, out, metrics=BG, progress=False, resume=True, report=False)
    assert same.calls == 0  # the first configuration's outputs are still cached, under their own keys
    assert all(np.array_equal(before[k], v) for k, v in _images(out).items())


def test_damaged_cache_entry_is_recomputed(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, Counting(), out, metrics=BG, progress=False, report=False, limit=2)
    entry = next((out / "cache").rglob("*.png"))
    entry.write_bytes(b"garbage")
    again = Counting()
    evaluate(manifest6, again, out, metrics=BG, progress=False, report=False, limit=2, resume=True)
    assert again.calls == 1


def test_two_shards_merged_equal_one_run(tmp_path, manifest6, tiny_nets):
    opts = dict(batch_size=2, progress=False, **tiny_nets)
    single = evaluate(manifest6, "mean-fill", tmp_path / "single", **opts)
    sharded = tmp_path / "sharded"
    rank1 = evaluate(manifest6, "mean-fill", sharded, shard=(1, 2), **opts)
    assert rank1.summary is None and rank1.shard_path.is_file() and rank1.adapter_calls == 3
    # rank 0 joins the folder rank 1 already wrote to (in a real launch rank 0 claims it first)
    rank0 = evaluate(manifest6, "mean-fill", sharded, shard=(0, 2), resume=True, shard_timeout=0, **opts)
    assert rank0.adapter_calls == 3
    # the taxonomy's model tier reads CLIP features too: its evidence agrees up to float32 rounding
    evidence = [(json.loads(x), json.loads(y)) for x, y in zip(rank0.samples["failure_evidence"],
                                                               single.samples["failure_evidence"])]
    for x, y in evidence:
        assert x.keys() == y.keys() and x["tier"] == y["tier"] == "model"
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=1e-5, abs=1e-7), key
            else:
                assert x[key] == y[key], key
    pd.testing.assert_frame_equal(rank0.samples.drop(columns="failure_evidence"),
                                  single.samples.drop(columns="failure_evidence"))
    a, b = rank0.summary["metrics"], single.summary["metrics"]
    # CLIP runs in float32 on differently composed batches: equal up to float32 rounding
    for key in ("means", "by_size_bucket", "by_category"):
        assert json.dumps(a[key], sort_keys=True).count("mean") == json.dumps(b[key], sort_keys=True).count("mean")
    for name, d in b["means"].items():
        for stat in ("mean", "lo", "hi", "n"):
            assert a["means"][name][stat] == pytest.approx(d[stat], rel=1e-6), (name, stat)
    for name, groups in b["by_size_bucket"].items():
        for group, d in groups.items():
            assert a["by_size_bucket"][name][group]["mean"] == pytest.approx(d["mean"], rel=1e-6)
    for name, d in b["distances"].items():
        assert a["distances"][name]["n_real"] == d["n_real"] == 6
        assert a["distances"][name]["value"] == pytest.approx(d["value"], rel=1e-6, abs=1e-9)
    assert rank0.summary["world_size"] == 2
    by_a, by_b = a["distances_by_size_bucket"], b["distances_by_size_bucket"]
    assert by_a.keys() == by_b.keys() and by_a["kid_crop"] == by_b["kid_crop"]
    for name, groups in by_b.items():
        for g, d in groups.items():
            assert by_a[name][g]["n_real"] == d["n_real"]
            if d["value"] is not None and math.isfinite(d["value"]):
                assert by_a[name][g]["value"] == pytest.approx(d["value"], rel=1e-6, abs=1e-9)


def test_missing_shard_is_an_error(tmp_path, manifest6):
    from soebench.errors import InputError

    with pytest.raises(InputError, match="shard\\(s\\) 1 of 2 are missing"):
        evaluate(manifest6, "original", tmp_path / "run", shard=(0, 2), shard_timeout=0, metrics=BG, progress=False)


def test_compare_two_runs(tmp_path, manifest6):
    a, b = tmp_path / "telea", tmp_path / "original"
    evaluate(manifest6, "opencv-telea", a, metrics=BG, progress=False)
    evaluate(manifest6, "original", b, metrics=BG, progress=False)
    result = compare_runs([a, b], tmp_path / "cmp")
    assert result["header"] == ["metric", "telea", "original"]
    rows = {r[0]: r[1:] for r in result["rows"]}
    assert rows["bg_mse"][1].startswith("0 ") and rows["errors"] == ["0", "0"]
    # the oracle leaves every background untouched (infinite PSNR), the remover none
    assert result["warnings"] == ["bg_psnr means leave out different numbers of untouched backgrounds (infinite "
                                  "PSNR: telea: 0, original: 6); compare bg_mse and bg_ssim, which count every sample"]
    for f in result["files"]:
        assert f.is_file()
    assert "| bg_ssim |" in (tmp_path / "cmp" / "compare.md").read_text()
    with pytest.raises(Exception, match="already exists"):
        compare_runs([a, b], tmp_path / "cmp")


def test_cli_evaluate_and_compare(tmp_path, manifest6, capsys):
    run = tmp_path / "run"
    args = ["evaluate", "-m", str(manifest6), "--out", str(run), "--model", "mean-fill", "--model-args", "ring=3",
            "--metrics", ",".join(BG), "--limit", "3", "--quiet", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"]["args"] == {"ring": 3, "dilate": 2} and summary["manifest"]["num_samples"] == 3
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(args[:-2] + ["--resume", "--quiet"]) == 0
    assert "3 came from the cache, 0 failed" in capsys.readouterr().out
    assert main(["evaluate", "-m", str(manifest6), "--out", str(tmp_path / "x"), "--model", "opencv-tela"]) == 2
    assert "did you mean opencv-telea" in capsys.readouterr().err
    assert main(["compare", str(run), "--out", str(tmp_path / "cmp")]) == 0
    assert "bg_ssim" in capsys.readouterr().out
    assert main(["compare", str(run), str(run)]) == 2  # the same run twice is refused
    assert "is given twice" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "x")]) == 2
    assert "x does not exist" in capsys.readouterr().err
