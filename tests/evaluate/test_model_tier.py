"""The failure taxonomy's model tier in ``evaluate``: which tier runs, that the judge's verdicts
reach the labels, what is recorded and keyed, and the errors (tiny random CLIP: its numbers mean
nothing, so label-changing checks use a stand-in judge with known verdicts)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.errors import ConfigError, MissingWeightsError
from soebench.evaluation import evaluate
from tests.evaluate.conftest import BG


class _Judge:
    """A judge with fixed verdicts that records what it was shown."""

    def __init__(self, present: float = 0.0, distorted: float = 0.0, token: str = "a"):
        self.present, self.distorted, self.token = present, distorted, token
        self.seen: list[tuple[tuple[int, ...], str | None, str | None]] = []

    def describe(self):
        return {"judge": "stand-in", "token": self.token, "present": self.present}

    def assess_batch(self, crops, *, categories, expected_colors):
        self.seen += [(c.shape, cat, col) for c, cat, col in zip(crops, categories, expected_colors)]
        return [{"present": self.present, "distorted": self.distorted, "colour_agrees": None, "colour_top": "red"}
                for _ in crops]


def _evidence(frame):
    return [json.loads(e) for e in frame["failure_evidence"]]


def test_auto_adds_the_clip_judge_when_the_run_loads_clip(tmp_path, manifest6, tiny_nets):
    from soebench.metrics import load_clip
    from soebench.taxonomy.clip_judge import ClipJudge, judge_crop
    from soebench.manifest.io import read_manifest
    from pycocotools import mask as mask_utils
    from PIL import Image

    res = evaluate(manifest6, "original", tmp_path / "run", metrics=("clip_score_local", *BG), progress=False,
                   report=False, **tiny_nets)
    info = res.summary["metrics"]["taxonomy"]
    assert info["tier"] == "model" and info["requested_tier"] == "auto" and info["judge"]["judge"] == "clip"
    evidence = _evidence(res.samples)
    assert all(e["tier"] == "model" and "weight_free_presence_score" in e for e in evidence)
    assert "evidence_judge_present" in res.samples.columns

    # the recorded verdict is the CLIP judge's on the generated image's crop, recomputed here
    judge = ClipJudge(load_clip(tiny_nets["clip_model"], None, weights=tiny_nets["clip_weights"]))
    man = read_manifest(manifest6)
    row = man.table.slice(0, 1).to_pylist()[0]
    first = res.samples.set_index("sample_id").loc[row["sample_id"]]
    generated = np.asarray(Image.open(tmp_path / "run" / first["output_path"]).convert("RGB"))
    rle = row["mask_rle"]
    mask = mask_utils.decode({"size": list(rle["size"]), "counts": rle["counts"]}).astype(bool)
    verdict = judge.assess(judge_crop(generated, mask), category=row["category"], expected_color=row["color"])
    recorded = json.loads(first["failure_evidence"])
    assert recorded["judge_present"] == pytest.approx(verdict["present"], abs=1e-5)
    assert recorded["judge_colour_top"] == verdict["colour_top"]


def test_weight_free_tier_keeps_the_judge_out(tmp_path, manifest6, tiny_nets):
    res = evaluate(manifest6, "original", tmp_path / "run", metrics=("clip_score_local", *BG), progress=False,
                   report=False, taxonomy_tier="weight-free", **tiny_nets)
    assert res.summary["metrics"]["taxonomy"]["tier"] == "weight_free"
    assert not any(k.startswith("judge_") for e in _evidence(res.samples) for k in e)


def test_auto_without_clip_metrics_is_weight_free_and_model_loads_clip(tmp_path, manifest6, tiny_nets):
    auto = evaluate(manifest6, "original", tmp_path / "auto", metrics=BG, progress=False, report=False, **tiny_nets)
    assert auto.summary["metrics"]["taxonomy"]["tier"] == "weight_free"
    model = evaluate(manifest6, "original", tmp_path / "model", metrics=BG, progress=False, report=False,
                     taxonomy_tier="model", **tiny_nets)
    assert model.summary["metrics"]["taxonomy"]["tier"] == "model"
    assert all("judge_present" in e for e in _evidence(model.samples))


def test_model_tier_without_clip_weights_says_how_to_provide_them(tmp_path, manifest6):
    with pytest.raises(MissingWeightsError) as err:
        evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, taxonomy_tier="model",
                 clip_weights=None, clip_pretrained="openai", clip_model="ViT-B-32")
    assert "--taxonomy-tier model needs CLIP weights" in err.value.message and err.value.hint
    assert not (tmp_path / "run" / "samples.parquet").exists()


def test_the_judges_verdicts_decide_the_labels(tmp_path, manifest6):
    from soebench.manifest.io import read_manifest

    judge = _Judge(present=0.0)
    res = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False, judge=judge,
                   batch_size=4)
    evidence = _evidence(res.samples)
    # presence is the mean of the weight-free score and the judge's 0: below 0.5 whatever the former
    assert set(res.samples["failure"]) == {"missing"}
    for e in evidence:
        assert e["presence_score"] == pytest.approx(0.5 * e["weight_free_presence_score"])
    rows = read_manifest(manifest6).table.to_pylist()
    assert sorted((cat, col) for _, cat, col in judge.seen) == sorted((r["category"], r["color"]) for r in rows)
    assert res.summary["metrics"]["taxonomy"]["judge"] == judge.describe()
    # a judge that sees an object everywhere leaves the oracle's labels to the weight-free scores
    sure = evaluate(manifest6, "original", tmp_path / "sure", metrics=BG, progress=False, report=False,
                    judge=_Judge(present=1.0))
    assert (sure.samples["failure"] == "ok").sum() >= 5


def test_a_judge_with_only_assess_is_called_per_crop(tmp_path, manifest6):
    class OneByOne:
        calls = 0

        def assess(self, crop, *, category=None, expected_color=None):
            OneByOne.calls += 1
            return {"present": 0.0, "distorted": 0.0, "colour_agrees": None}

    res = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False, judge=OneByOne())
    assert OneByOne.calls == 6 and set(res.samples["failure"]) == {"missing"}
    assert "OneByOne" in res.summary["metrics"]["taxonomy"]["judge"]["judge"]


def test_a_judge_that_raises_is_an_error_per_sample_and_the_run_goes_on(tmp_path, manifest6):
    class Broken(_Judge):
        def assess_batch(self, crops, **kwargs):
            raise RuntimeError("detector out of memory")

    res = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False, judge=Broken())
    assert res.samples["failure"].isna().all()
    for e in _evidence(res.samples):
        assert "taxonomy judge (model tier) raised RuntimeError: detector out of memory" in e["classifier_error"]
    assert np.isfinite(res.samples["bg_ssim"]).all()  # the other scores are kept


def test_resume_with_another_judge_rescores_without_regenerating(tmp_path, manifest6):
    first = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False,
                     taxonomy_tier="weight-free")
    assert (first.samples["failure"] == "ok").sum() >= 5
    again = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False,
                     resume=True, judge=_Judge(present=0.0))
    assert again.adapter_calls == 0 and again.from_cache == 6
    assert set(again.samples["failure"]) == {"missing"}
    # the judge's describe() keys the scores: another judge re-scores, the same one reuses them
    other = evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False,
                     resume=True, judge=_Judge(present=1.0, token="b"))
    assert (other.samples["failure"] == "ok").sum() >= 5


def test_tier_and_judge_errors(tmp_path, manifest6):
    with pytest.raises(ConfigError) as err:
        evaluate(manifest6, "original", tmp_path / "a", metrics=BG, taxonomy_tier="weightfree")
    assert "unknown taxonomy tier 'weightfree'" in err.value.message and "weight-free" in err.value.hint
    with pytest.raises(ConfigError, match="weight-free"):
        evaluate(manifest6, "original", tmp_path / "b", metrics=BG, taxonomy_tier="weight-free", judge=_Judge())
    with pytest.raises(ConfigError, match="neither assess_batch"):
        evaluate(manifest6, "original", tmp_path / "c", metrics=BG, judge=object())


def test_compare_tells_runs_labelled_by_other_tiers_apart(tmp_path, manifest6):
    from soebench.run.compare import setup_warnings

    a = evaluate(manifest6, "original", tmp_path / "a", metrics=BG, progress=False, report=False)
    b = evaluate(manifest6, "original", tmp_path / "b", metrics=BG, progress=False, report=False, judge=_Judge())
    warnings = setup_warnings({"a": a.summary, "b": b.summary})
    assert any("taxonomy" in w and "weight_free" in w and "model" in w for w in warnings)


def test_cli_taxonomy_tier_option(tmp_path, manifest6, capsys):
    from soebench.cli.app import main

    out = tmp_path / "run"
    assert main(["evaluate", "--manifest", str(manifest6), "--out", str(out), "--metrics", "bg_mse",
                 "--taxonomy-tier", "weight-free", "-q", "--no-report"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["taxonomy"]["requested_tier"] == "weight-free"
    assert main(["evaluate", "--manifest", str(manifest6), "--out", str(tmp_path / "x"), "--metrics", "bg_mse",
                 "--taxonomy-tier", "nope", "-q"]) == 2
    assert "unknown taxonomy tier 'nope'" in capsys.readouterr().err
