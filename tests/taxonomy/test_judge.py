"""Model tier plumbing with the tiny random-weight open_clip model (its numbers mean nothing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.taxonomy import classify
from soebench.taxonomy.clip_judge import ClipJudge, judge_crop
from tests.factories import background, draw_object


@pytest.fixture(scope="module")
def tiny_judge(tmp_path_factory):
    from tests.helpers.tiny_nets import make_tiny_clip

    config, weights = make_tiny_clip(tmp_path_factory.mktemp("clip"))
    return ClipJudge.load(config, None, weights=str(weights))


def _scene():
    rng = np.random.default_rng(0)
    image = background(160, 120, rng)
    return draw_object(image, (60, 40, 34, 28), (30, 60, 200))


def test_judge_crop_is_a_square_around_the_mask():
    image, mask = _scene()
    crop = judge_crop(image, mask)
    # box 34x28 px centred at (77, 54): a 1.5x square spans floor(77-25.5)..ceil(77+25.5)
    assert crop.shape == (52, 52, 3)
    np.testing.assert_array_equal(crop, image[28:80, 51:103])


def test_clip_judge_returns_probabilities_and_classify_records_them(tiny_judge):
    image, mask = _scene()
    verdict = tiny_judge.assess(judge_crop(image, mask), category="cup", expected_color="blue")
    assert 0.0 <= verdict["present"] <= 1.0 and 0.0 <= verdict["distorted"] <= 1.0
    assert 0.0 < verdict["colour_agrees"] <= 1.0 and isinstance(verdict["colour_top"], str)
    result = classify(image, image, mask, expected_color="blue", judge=tiny_judge, category="cup")
    assert result.evidence["tier"] == "model"
    assert result.evidence["judge_present"] == pytest.approx(verdict["present"], abs=1e-6)
    assert "weight_free_presence_score" in result.evidence
    json.dumps(result.evidence)


def test_clip_judge_rejects_an_object_without_encoders():
    with pytest.raises(TypeError):
        ClipJudge(object())


def test_assess_batch_is_assess_per_crop(tiny_judge):
    image, mask = _scene()
    crops = [judge_crop(image, mask), image[:40, :50], image[10:90, 20:60]]
    batch = tiny_judge.assess_batch(crops, categories=["cup", None, "dog"], expected_colors=["blue", None, "red"])
    for crop, cat, col, got in zip(crops, ["cup", None, "dog"], ["blue", None, "red"], batch):
        one = tiny_judge.assess(crop, category=cat, expected_color=col)
        assert got["colour_top"] == one["colour_top"] and (got["colour_agrees"] is None) == (one["colour_agrees"] is None)
        for key in ("present", "distorted"):
            assert got[key] == pytest.approx(one[key], abs=1e-5)
    assert batch[1]["colour_agrees"] is None  # no colour asked for
    assert tiny_judge.assess_batch([], categories=[], expected_colors=[]) == []
    with pytest.raises(ValueError, match="one of each per crop"):
        tiny_judge.assess_batch(crops, categories=["cup"], expected_colors=[None, None, None])


def test_classify_takes_a_verdict_computed_beforehand(tiny_judge):
    image, mask = _scene()
    verdict = {"present": 0.0, "distorted": 0.0, "colour_agrees": None}
    result = classify(image, image, mask, verdict=verdict)
    assert result.label == "missing" and result.evidence["tier"] == "model"
    assert result.evidence["presence_score"] == pytest.approx(0.5 * result.evidence["weight_free_presence_score"])
    with pytest.raises(ValueError, match="not both"):
        classify(image, image, mask, verdict=verdict, judge=tiny_judge)


class _Absent:
    """A judge that never sees an object."""

    def describe(self):
        return {"judge": "absent"}

    def assess(self, crop, *, category=None, expected_color=None):
        return {"present": 0.0, "distorted": 0.0, "colour_agrees": None}


def test_validate_measures_a_judge_and_a_refit_keeps_its_verdicts(tmp_path):
    from soebench.manifest.io import read_manifest
    from soebench.taxonomy.validate import validate
    from tests.factories import make_manifest

    data = read_manifest(make_manifest(tmp_path, n=3, size=(200, 160), seed=3))
    result = validate(data, judge=_Absent())
    assert result.settings["tier"] == "model" and result.settings["judge"] == {"judge": "absent"}
    assert {r.predicted for r in result.rows} == {"missing"}
    assert all("judge_present" in r.evidence for r in result.rows)
    refit = validate(data, judge=_Absent(), refit=True, tuning_split="test")
    assert {r.predicted for r in refit.rows} == {"missing"}  # the judge's 0 still halves every presence score
    plain = validate(data)
    assert plain.settings["tier"] == "weight_free" and {r.predicted for r in plain.rows} != {"missing"}


def test_cli_model_tier(tmp_path, capsys):
    from soebench.cli.app import main
    from tests.factories import make_manifest
    from tests.helpers.tiny_nets import make_tiny_clip

    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "-q", "--taxonomy-tier", "model",
                 "--clip-weights", str(tmp_path / "none.pt")]) == 2
    assert "--taxonomy-tier model needs CLIP weights" in capsys.readouterr().err
    config, weights = make_tiny_clip(tmp_path)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--json", "--taxonomy-tier", "model",
                 "--clip-model", config, "--clip-pretrained", "", "--clip-weights", str(weights)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["tier"] == "model" and report["settings"]["judge"]["judge"] == "clip"
    assert main(["validate-taxonomy", "--manifest", str(manifest), "-q", "--taxonomy-tier", "auto"]) == 2
    assert "'weight-free' or 'model'" in capsys.readouterr().err
