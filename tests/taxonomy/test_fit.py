"""Rule fitting against an independent optimiser, and the rules' decision order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soebench.taxonomy.fit import fit_logistic, fit_rules
from soebench.taxonomy.rules import DEFAULT_RULES, DISTORTION_FEATURES, PRESENCE_FEATURES, LogisticScore, RuleSet, decide


def _objective(theta, x, y, l2):
    n, pos = len(y), y.sum()
    w = np.where(y == 1, n / (2.0 * pos), n / (2.0 * (n - pos)))
    z = x @ theta[:-1] + theta[-1]
    nll = np.sum(w * (np.logaddexp(0, z) - y * z))
    return nll + 0.5 * l2 * np.sum(theta[:-1] ** 2)


def test_fit_logistic_matches_scipy_minimize_of_the_same_objective():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = (x @ np.array([1.5, -2.0, 0.3]) + 0.4 + rng.logistic(size=300) > 0).astype(float)
    w, b = fit_logistic(x, y, l2=1.0)
    ref = minimize(_objective, np.zeros(4), args=(x, y, 1.0), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(np.r_[w, b], ref.x, atol=1e-4)


def test_fit_logistic_refuses_a_single_class():
    with pytest.raises(ValueError):
        fit_logistic(np.zeros((5, 2)), np.ones(5))


def _rules(presence_bias: float, distortion_bias: float, share: float = 0.2) -> RuleSet:
    zero = lambda names: LogisticScore(tuple(names), (0.0,) * len(names), (1.0,) * len(names), (0.0,) * len(names), 0.0)  # noqa: E731
    p, d = zero(PRESENCE_FEATURES), zero(DISTORTION_FEATURES)
    return RuleSet(
        presence=LogisticScore(p.features, p.mean, p.scale, p.weight, presence_bias),
        distortion=LogisticScore(d.features, d.mean, d.scale, d.weight, distortion_bias),
        colour_share_min=share,
    )


FEATS = {name: 0.0 for name in PRESENCE_FEATURES + DISTORTION_FEATURES}
RED = {"colour_named": "red", "colour_expected": "red", "colour_expected_share": 0.9}
BLUE_FOR_RED = {"colour_named": "blue", "colour_expected": "red", "colour_expected_share": 0.05}


def test_decide_applies_missing_then_distortion_then_colour():
    assert decide(FEATS, BLUE_FOR_RED, _rules(-3, 3))[0] == "missing"
    assert decide(FEATS, BLUE_FOR_RED, _rules(3, 3))[0] == "distortion"
    assert decide(FEATS, BLUE_FOR_RED, _rules(3, -3))[0] == "mismatch"
    assert decide(FEATS, RED, _rules(3, -3))[0] == "ok"
    no_colour = {"colour_named": "blue", "colour_expected": None, "colour_expected_share": None}
    assert decide(FEATS, no_colour, _rules(3, -3))[0] == "ok"
    # a share above the threshold is not a mismatch even when another term wins
    close = {"colour_named": "orange", "colour_expected": "red", "colour_expected_share": 0.35}
    assert decide(FEATS, close, _rules(3, -3, share=0.3))[0] == "ok"
    # the expected colour winning the foreground reading is agreement too
    drawn_smaller = {**BLUE_FOR_RED, "colour_named_foreground": "red"}
    assert decide(FEATS, drawn_smaller, _rules(3, -3))[0] == "ok"


def test_a_confident_judge_overturns_a_weak_weight_free_call():
    weak_present = _rules(0.4, -3)  # presence ~0.6
    assert decide(FEATS, RED, weak_present)[0] == "ok"
    label, scores = decide(FEATS, RED, weak_present, judge={"present": 0.0, "distorted": 0.0, "colour_agrees": 1.0})
    assert label == "missing"
    assert scores["weight_free_presence_score"] == pytest.approx(1 / (1 + np.exp(-0.4)))
    assert scores["presence_score"] == pytest.approx(0.5 * scores["weight_free_presence_score"])


def test_fit_rules_separates_synthetic_feature_clouds_and_round_trips_json(tmp_path):
    rng = np.random.default_rng(1)
    feats, colours, labels = [], [], []
    for label, shift in (("ok", (1, 0)), ("missing", (-2, 0)), ("mismatch", (1, 0)), ("distortion", (1, 2))):
        for _ in range(60):
            f = {n: float(rng.normal()) for n in FEATS}
            f["log_departure_ratio"] += shift[0] * 2
            f["excess_noise"] += shift[1] * 2
            feats.append(f)
            wrong = label == "mismatch"
            colours.append({"colour_named": "blue" if wrong else "red", "colour_expected": "red", "colour_expected_share": 0.02 if wrong else 0.8})
            labels.append(label)
    rules = fit_rules(feats, colours, labels, fitted_on="synthetic")
    predicted = [decide(f, c, rules)[0] for f, c in zip(feats, colours)]
    assert np.mean(np.array(predicted) == np.array(labels)) > 0.9
    path = tmp_path / "rules.json"
    path.write_text(rules.to_json())
    assert RuleSet.load(path) == rules
    json.loads(DEFAULT_RULES.to_json())


def test_a_rules_file_whose_score_lengths_disagree_is_a_clear_error(tmp_path):
    from soebench.errors import InputError

    data = json.loads(DEFAULT_RULES.to_json())
    data["presence"]["weight"] = data["presence"]["weight"][:-1]  # one feature without a weight
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"rules.json: not a taxonomy rules file .*one mean, scale and weight per feature"):
        RuleSet.load(path)



def test_colour_threshold_ties_go_to_the_middle_of_the_optimal_interval():
    from soebench.taxonomy.fit import COLOUR_GRID, fit_colour_threshold

    def pair(share, label, named):
        return {"colour_named": named, "colour_expected": "red", "colour_expected_share": share}, label

    # every threshold in (0.10, 0.40] separates these: the middle of that run, not its first value
    pairs = [pair(0.1, "mismatch", "blue"), pair(0.05, "mismatch", "green"), pair(0.4, "ok", "orange"), pair(0.9, "ok", "red")]
    threshold, notes = fit_colour_threshold(pairs)
    assert notes["optimal"] == [0.12, 0.4] and notes["balanced_accuracy"] == 1.0
    assert threshold == pytest.approx(0.26)
    # a case set that cannot tell thresholds apart shows it: the whole grid is optimal
    _, flat = fit_colour_threshold([pair(0.0, "mismatch", "blue"), pair(0.9, "ok", "red")])
    assert flat["optimal"] == [COLOUR_GRID[0], COLOUR_GRID[-1]]


def test_exposure_cases_are_reported_but_not_fitted():
    rng = np.random.default_rng(2)
    feats, colours, labels, methods = [], [], [], []
    for label, method in (("ok", "original"), ("missing", "telea"), ("ok", "exposure_gamma")):
        for _ in range(40):
            f = {n: float(rng.normal()) for n in FEATS}
            f["log_departure_ratio"] += {"ok": 2.0, "missing": -2.0}[label] * (method != "exposure_gamma")
            feats.append(f)
            colours.append({"colour_named": "red", "colour_expected": "red", "colour_expected_share": 0.9})
            labels.append(label)
            methods.append(method)
    # the distortion fit needs both classes among the present cases
    for _ in range(40):
        feats.append({**{n: float(rng.normal()) for n in FEATS}, "excess_noise": 3.0, "log_departure_ratio": 2.0})
        colours.append(colours[0])
        labels.append("distortion")
        methods.append("noise")
    with_exposure = fit_rules(feats, colours, labels, methods=methods, fitted_on="synthetic")
    keep = [i for i, m in enumerate(methods) if m != "exposure_gamma"]
    without = fit_rules([feats[i] for i in keep], [colours[i] for i in keep], [labels[i] for i in keep], methods=[methods[i] for i in keep], fitted_on="synthetic")
    assert with_exposure.presence == without.presence and with_exposure.distortion == without.distortion
    assert "exposure_gamma" in with_exposure.notes["not_fitted_on"]


def test_cross_validation_labels_every_case_once_by_rules_that_never_saw_its_object():
    from soebench.taxonomy import validate as vd

    rng = np.random.default_rng(4)
    rows = []
    raw = {"area_px": 400.0, "ring_texture": 3.0, "ring_spread": 5.0, "edge_region": 4.0, "edge_ring": 4.0, "noise_region": 1.0,
           "noise_ring": 1.0, "fine_coarse_region": 0.8, "fine_coarse_ring": 0.8, "corr_region": 0.9, "corr_ring": 0.9,
           "blockiness": 1.1, "coherence_region": 0.5, "coherence_ring": 0.5, "energy_ratio": 1.0, "energy_region": 1.0,
           "contour_step": 5.0, "contour_step_ring": 2.0, "contour_step_inner": 5.0, "novel_share": 0.1, "novel_median": 3.0,
           "foreground_share": 0.5, "sharpness_region": 0.7, "sharpness_ring": 0.6, "ring_change": 0.0}
    for i in range(60):
        for truth, departure, noise in (("ok", 20.0, 1.0), ("missing", 1.0, 1.0), ("mismatch", 20.0, 1.0), ("distortion", 20.0, 9.0)):
            ev = {**raw, "departure": departure * float(rng.uniform(0.7, 1.3)), "noise_region": noise * float(rng.uniform(0.8, 1.2)),
                  "colour_named": "blue" if truth == "mismatch" else "red", "colour_named_foreground": None, "colour_expected": "red",
                  "colour_confidence": 0.8, "colour_expected_share": 0.01 if truth == "mismatch" else 0.9}
            rows.append(vd.CaseRow(f"s{i}:{truth}", f"s{i}", "val2017", truth, truth, "cup", "?", ev))
    report = vd.cross_validate(rows, folds=4, split="val2017")
    assert report.n == len(rows) and report.role == "4-fold cross-validation"
    assert report.accuracy > 0.95
    assert all(r.predicted == "?" for r in rows)  # the input rows are left alone
    assert len({vd._fold_of(f"s{i}", 4, 0) for i in range(60)}) == 4
    with pytest.raises(ValueError, match="at least 2 folds"):
        vd.cross_validate(rows, folds=1)
