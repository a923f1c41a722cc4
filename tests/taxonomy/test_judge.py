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
