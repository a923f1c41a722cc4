"""What a run says about itself: failures are shown and fail the command when nothing was scored;
runs scored on different sample sets or with other taxonomy rules are flagged by compare; the
colour is checked only when the prompt asks for one; a resume after a scoring-code change re-scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.cli.app import main
from soebench.evaluation import evaluate
from tests.factories import make_manifest

BG = "bg_psnr,bg_ssim,bg_mse"
ONE = {"per_sample": True}  # the functions below take one request


@pytest.fixture
def manifest(tmp_path):
    return make_manifest(tmp_path / "data", n=4)


def _fails_on(ids):
    def inpaint(request):
        if request.sample_id in ids:
            raise RuntimeError(f"cannot draw {request.sample_id}")
        out = request.image.copy()
        out[request.mask] = 128
        return out

    return inpaint


def test_every_sample_failing_fails_the_command_and_names_a_reason(manifest, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "failing_adapter.py").write_text(
        "def inpaint(request):\n    raise RuntimeError('no GPU for ' + request.sample_id)\n")
    args = ["evaluate", "-m", str(manifest), "--out", str(tmp_path / "run"), "--model", "python", "--model-args",
            "target=failing_adapter:inpaint,per_sample=true", "--metrics", BG, "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "errors" in captured.out and "4 of 4" in captured.out and "no GPU for" in captured.out
    assert "every one of the 4 samples failed, e.g." in captured.err
    assert (tmp_path / "run" / "summary.json").is_file()  # the record is still written


def _ids(manifest):
    from soebench.manifest.io import read_manifest

    return read_manifest(manifest).table.column("sample_id").to_pylist()


def test_compare_warns_when_runs_stand_on_different_samples(manifest, tmp_path):
    from soebench.run.compare import comparison_table, load_summary

    ids = _ids(manifest)
    evaluate(manifest, _fails_on(set()), tmp_path / "all", metrics=BG, progress=False, report=False, model_args=ONE)
    evaluate(manifest, _fails_on(set(ids[:2])), tmp_path / "half", metrics=BG, progress=False, report=False,
             model_args=ONE)
    summaries = {"all": load_summary(tmp_path / "all"), "half": load_summary(tmp_path / "half")}
    warnings = comparison_table(summaries)[2]
    assert any("failed on different numbers of samples (all: 0 of 4, half: 2 of 4)" in w for w in warnings)
    same = comparison_table({"a": summaries["all"], "b": summaries["all"]})[2]
    assert not any("different numbers of samples" in w for w in same)


def test_compare_warns_when_psnr_means_leave_out_different_untouched_backgrounds(manifest, tmp_path):
    from soebench.run.compare import comparison_table, load_summary

    ids = _ids(manifest)

    def noisy_some(request):
        out = request.image.copy()
        if request.sample_id == ids[0]:  # one background changed, the others untouched (PSNR inf)
            out = np.clip(out.astype(int) + 20, 0, 255).astype(np.uint8)
        out[request.mask] = 128
        return out

    evaluate(manifest, noisy_some, tmp_path / "one", metrics=BG, progress=False, report=False, model_args=ONE)
    evaluate(manifest, "original", tmp_path / "none", metrics=BG, progress=False, report=False)
    warnings = comparison_table({"one": load_summary(tmp_path / "one"), "none": load_summary(tmp_path / "none")})[2]
    assert any("infinite PSNR: one: 3, none: 4" in w for w in warnings)


def test_taxonomy_rules_are_recorded_and_compared(manifest, tmp_path):
    from soebench.run.compare import comparison_table, load_summary

    evaluate(manifest, "mean-fill", tmp_path / "a", metrics=BG, progress=False, report=False)
    evaluate(manifest, "mean-fill", tmp_path / "b", metrics=BG, prompt_key="label", progress=False, report=False)
    a, b = load_summary(tmp_path / "a"), load_summary(tmp_path / "b")
    tax = a["metrics"]["taxonomy"]
    assert tax["tier"] == "weight_free" and tax["version"] and "colour_share_min" in json.dumps(tax["rules"])
    assert tax["colour_checked"] is True and b["metrics"]["taxonomy"]["colour_checked"] is False
    warnings = comparison_table({"a": a, "b": b})[2]
    assert any("different taxonomy rules" in w and "colour not checked" in w for w in warnings)


def test_the_colour_is_checked_only_when_the_prompt_names_one(manifest, tmp_path):
    import pandas as pd

    def recolour(request):  # the object drawn in a colour no manifest object has
        out = request.image.copy()
        out[request.mask] = (255, 0, 255)
        return out

    evaluate(manifest, recolour, tmp_path / "colour", metrics=BG, progress=False, report=False, model_args=ONE)
    evaluate(manifest, recolour, tmp_path / "plain", metrics=BG, prompt_key="label", progress=False, report=False,
             model_args=ONE)
    coloured = pd.read_parquet(tmp_path / "colour" / "samples.parquet")["failure"]
    plain = pd.read_parquet(tmp_path / "plain" / "samples.parquet")["failure"]
    assert (coloured == "mismatch").sum() > 0
    assert (plain == "mismatch").sum() == 0


def test_a_resume_after_a_scoring_code_change_scores_again(manifest, tmp_path, monkeypatch):
    import pandas as pd

    import soebench.taxonomy as taxonomy
    from soebench.taxonomy import TaxonomyResult

    out = tmp_path / "run"
    evaluate(manifest, "mean-fill", out, metrics=BG, progress=False, report=False)
    monkeypatch.setattr(taxonomy, "TAXONOMY_VERSION", taxonomy.TAXONOMY_VERSION + "-next")
    monkeypatch.setattr(taxonomy, "classify", lambda *a, **k: TaxonomyResult("distortion", {}))
    evaluate(manifest, "mean-fill", out, metrics=BG, progress=False, report=False, resume=True)
    assert set(pd.read_parquet(out / "samples.parquet")["failure"]) == {"distortion"}


def test_weight_paths_are_recorded_absolute(manifest, tmp_path, monkeypatch):
    from tests.helpers.tiny_nets import make_tiny_inception

    weights = make_tiny_inception(tmp_path / "nets")
    monkeypatch.chdir(tmp_path)
    rel = weights.relative_to(tmp_path)
    result = evaluate(manifest, "original", tmp_path / "run", metrics="fid_crop", inception_weights=str(rel),
                      progress=False, report=False)
    assert result.summary["metrics"]["inception"]["path"] == str(weights.resolve())


def test_metrics_without_networks_look_for_no_weights():
    import subprocess
    import sys

    code = ("import sys; from soebench.metrics.registry import resolve_metrics; "
            "print(resolve_metrics(['bg_psnr', 'bg_ssim']).available); print('open_clip' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "('bg_psnr', 'bg_ssim')" and out[1] == "False False"


def test_an_adapters_own_check_comes_before_the_networks_load(manifest, tmp_path, monkeypatch):
    from soebench.errors import InputError
    import soebench.evaluation as evaluation

    monkeypatch.setattr(evaluation, "_build_scorer", lambda opts: pytest.fail("networks loaded before the adapter's check"))
    empty = tmp_path / "outputs"
    empty.mkdir()
    (empty / "someone-else.png").write_bytes(b"")
    with pytest.raises(InputError, match="none of"):
        evaluate(manifest, "folder", tmp_path / "run", model_args={"path": str(empty)}, metrics=BG, progress=False)


def test_a_resume_after_the_rules_changed_scores_again(manifest, tmp_path, monkeypatch):
    import dataclasses

    import soebench.taxonomy as taxonomy
    import soebench.taxonomy.rules as rules

    out = tmp_path / "run"
    evaluate(manifest, "mean-fill", out, metrics=BG, progress=False, report=False)
    monkeypatch.setattr(rules, "DEFAULT_RULES", dataclasses.replace(rules.DEFAULT_RULES, colour_share_min=0.5))
    calls = []
    classify = taxonomy.classify
    monkeypatch.setattr(taxonomy, "classify", lambda *a, **k: calls.append(1) or classify(*a, **k))
    result = evaluate(manifest, "mean-fill", out, metrics=BG, progress=False, report=False, resume=True)
    assert result.from_cache == 4 and len(calls) == 4  # outputs reused, labels made again by the new rules
    assert result.summary["metrics"]["taxonomy"]["rules"]["colour_share_min"] == 0.5
