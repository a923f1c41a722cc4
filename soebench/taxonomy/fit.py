"""Fitting the rules' numbers on labelled cases (the tuning split only).

Plain L2-regularised logistic regression by Newton's method (a handful of features, a few
thousand cases: exact and deterministic), with classes weighted to balance, so the score does
not lean towards whichever label the case set happens to hold more of. The colour threshold is
the grid value with the best balanced accuracy on ok-vs-mismatch cases; when several grid values
tie (a run of equally good thresholds), the middle of that interval, never its first value (which
used to be the grid's floor, 0.02, whenever the case set could not tell thresholds apart).

Design decisions (which features, which case families to fit on) are made on a cross-validation
of the fitting half (:func:`soebench.taxonomy.validate.cross_validate`, folds of val2017 objects),
not on the held-out half, from evidence wf-5 on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from soebench.taxonomy.rules import DISTORTION_FEATURES, PRESENCE_FEATURES, LogisticScore, RuleSet


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    *,
    l2: float = 1.0,
    sample_weight: np.ndarray | None = None,
    nonnegative: bool = False,
    iterations: int = 50,
) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-penalised logistic regression (x already standardised).
    Default sample weights balance the two classes. ``nonnegative``: every weight >= 0 (each
    feature may only push towards the positive class), solved with L-BFGS-B."""
    n, d = x.shape
    pos = y.sum()
    if pos == 0 or pos == n:
        raise ValueError("both classes are needed to fit a score")
    if sample_weight is None:
        sample_w = np.where(y == 1, n / (2.0 * pos), n / (2.0 * (n - pos)))
    else:
        sample_w = np.asarray(sample_weight, dtype=np.float64) * n / float(np.sum(sample_weight))
    xb = np.hstack([x, np.ones((n, 1))])
    theta = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    if nonnegative:
        return _fit_bounded(xb, y, sample_w, penalty)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -60, 60)))
        grad = xb.T @ (sample_w * (p - y)) + penalty * theta
        hess = (xb * (sample_w * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def _fit_bounded(xb: np.ndarray, y: np.ndarray, sample_w: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ theta
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        value = float(np.sum(sample_w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * np.sum(penalty * theta * theta))
        return value, xb.T @ (sample_w * (p - y)) + penalty * theta

    bounds = [(0.0, None)] * (xb.shape[1] - 1) + [(None, None)]
    result = minimize(objective, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds, options={"gtol": 1e-10, "maxiter": 2000})
    return result.x[:-1], float(result.x[-1])


def fit_score(
    rows: Sequence[dict[str, float]],
    y: np.ndarray,
    features: Sequence[str],
    *,
    l2: float = 1.0,
    groups: Sequence[str] | None = None,
) -> LogisticScore:
    """Fit one score; ``groups`` (e.g. the true labels) get equal total weight when given."""
    x = np.array([[r[f] for f in features] for r in rows], dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # rules are stored to 6 decimals: a smaller spread would be saved as a scale of 0
    scale[scale < 1e-6] = 1.0
    sample_weight = None
    if groups is not None:
        names, inverse, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
        sample_weight = 1.0 / counts[inverse]
    weight, bias = fit_logistic((x - mean) / scale, y.astype(np.float64), l2=l2, sample_weight=sample_weight, nonnegative=True)
    return LogisticScore(
        tuple(features),
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
        tuple(round(float(v), 6) for v in weight),
        round(bias, 6),
    )


#: Distortion methods the weight-free distortion score is *not* fitted on: geometric warps keep
#: natural image statistics. The elastic and swirl cases are visibly distorted (the criterion in
#: :mod:`soebench.taxonomy.cases`), but no weight-free feature tried separates them from real
#: objects well enough: fitting on them drags the threshold into the ok class and costs more ok
#: cases than it gains warps. Measured on the held-out train2017 half (one case per label, seed 0,
#: evidence wf-3, as shipped then: accuracy 84.7 %, ok 93.1 %, distortion 59.1 %): fitted with the warps,
#: 83.9 %, ok 88.0 %, distortion 61.4 % (elastic 8.4 %, swirl 1.4 %); with orientation-change-
#: along-edges (two scales) and object-scale coherence-drop features added, 84.0 %, ok 85.0 %,
#: distortion 66.0 % (elastic 24.4 %, swirl 16.3 %). ``elastic_mild`` (below the visibility criterion) is
#: never a fitting target. All three are still reported, per method.
#:
#: Honesty note: the comparisons above (and the wf-4 note below) were made on the *held-out*
#: train2017 half, so the wf-3/wf-4 design choices were informed by held-out numbers and the
#: 84.2 % reported for wf-4 was not a clean held-out figure. From evidence wf-5 on, design
#: decisions are made on a 5-fold cross-validation of the val2017 objects
#: (:func:`soebench.taxonomy.validate.cross_validate`, ``validate-taxonomy --refit --cv 5``),
#: and train2017 is looked at only to report the shipped rules. The wf-5 decisions, by that
#: cross-validation (401 val2017 objects, every case family, seed 0; accuracy per family):
#:
#: - smoothing features: with ``flatness`` and ``blur_loss``, melt 71.1 %, blur_heavy 62.1 %,
#:   original 91.5 %, redraw_smooth 86.5 %, noise 78.3 %; with neither, melt 4.0 %, blur_heavy
#:   2.0 %, original 94.8 %, redraw_smooth 91.8 %, noise 88.0 %. Kept: the smoothing families go
#:   from undetectable to mostly detected at a cost of 3-5 points on the ok families and ~10 on
#:   noise. ``flatness`` capped by the ring's sharpness (a flat object in a flat scene is no
#:   evidence) was no worse than uncapped on these (melt 71.1 vs 70.1 %) and keeps a flat object
#:   on a flat background ``ok``.
#: - ``ring_kept`` (from ``ring_change``) is offered to presence; the fit gives it weight 0,
#:   because the original-ring references already call 94.3 % of the spill removals missing.
#: - prototype recolours left out of the fits (:data:`NOT_FITTED_METHODS`): with them fitted on
#:   (and ``blur_loss`` the only smoothing feature) the smoothing cases stayed undetected (melt
#:   16.2 %, blur_heavy 10.5 %; prototype recolours 81.5 %, hue rotations 94.5 %), since a
#:   "mismatch" family with its structure erased counts against any smoothing evidence. Left out
#:   (and with ``flatness`` added, so the two changes were not measured apart): melt 70.1 %,
#:   blur_heavy 59.6 %, prototype recolours 48.0 % (called distortion), hue rotations 91.2 %.
#: - balancing the case families within each label (instead of the labels only) changed no
#:   family by more than 2.5 points (noise 80.8 %); not adopted.
NOT_FITTED_DISTORTIONS = ("elastic", "swirl", "elastic_mild")

#: Case families reported but fitted on by no score: whole-photo exposure changes of an intact
#: object (:data:`soebench.taxonomy.cases.EXPOSURE_METHODS`), a stress test of the colour rule
#: (the neighbouring term moves: grey to black under gamma 1.8), not a target.
NOT_FITTED_OK = ("exposure_up", "exposure_down", "exposure_gamma")

#: Every case family no score is fitted on (by :func:`soebench.taxonomy.cases.method_family`):
#: the exposure changes above, and the prototype recolour (``recolour``, to the namer's own
#: prototype colour; ``all_methods`` only). The prototype recolour caps the object's lightness
#: spread at 4-8 L* and so erases its structure as well as its colour (sharpness median 0.07 on
#: the val2017 objects, against 0.62 for the photographed ones and -0.07 for melted ones): a
#: mismatch and a smoothing at once, with no single right label. The realistic recolours
#: (``recolour_hue``, ``recolour_tint``) keep the object's own texture and are the fitted ones.
NOT_FITTED_METHODS = NOT_FITTED_OK + ("recolour",)


#: Why presence reads the outline *inside* the mask too (evidence wf-4, ``contour_step_inner``):
#: with only the mask's own outline, an object drawn smaller than its mask looked removed. On the
#: held-out train2017 half (all methods, seed 0), the wf-3 rules called 60.5 % of the loose-mask
#: objects (:data:`soebench.taxonomy.cases.LOOSE_METHODS`) ok; fitting them on the loose cases
#: as well reached 82.3 % only by calling 18.0 % of the patch removals missing (42.2 % before).
#: With the inner outlines and the loose cases fitted: loose-mask objects 90.8 %, patch removals
#: 43.1 %, at 84.2 % instead of 84.7 % held-out accuracy (one case per label). A feature that
#: rewarded an edge *at* the mask's outline over just inside it did the opposite (patch 53.3 %,
#: loose-mask objects 30.0 %) and is not used.


def fit_rules(
    features: Sequence[dict[str, float]],
    colours: Sequence[dict[str, Any]],
    labels: Sequence[str],
    *,
    fitted_on: str,
    methods: Sequence[str] | None = None,
    l2: float = 1.0,
    presence_features: Sequence[str] = PRESENCE_FEATURES,
    distortion_features: Sequence[str] = DISTORTION_FEATURES,
) -> RuleSet:
    """Fit presence on every case (missing vs the rest), distortion on the present ones
    (distortion vs ok + mismatch, leaving out :data:`NOT_FITTED_DISTORTIONS` when ``methods`` is
    given), and the colour threshold on ok vs mismatch (:func:`fit_colour_threshold`); the
    families of :data:`NOT_FITTED_METHODS` take part in no fit. ``presence_features`` and
    ``distortion_features`` replace the shipped feature lists (to compare designs by
    cross-validation). Each true label weighs the same in
    each fit, so ok (the hard, low-contrast class) is not outvoted by the easy recolours.

    Weights are constrained to be >= 0: every feature is built so that more of it means "more
    object" (presence) or "more damage" (distortion). Without the constraint, correlated features
    get large opposite weights that fit the tuning set and extrapolate wildly (a flat yellow
    object on a clean background was called missing)."""
    labels_arr = np.asarray(labels)
    methods_arr = np.asarray(methods) if methods is not None else np.full(len(labels_arr), "")
    from soebench.taxonomy.cases import method_family

    fitted = np.array([method_family(str(m)) not in NOT_FITTED_METHODS for m in methods_arr], dtype=bool)
    labels_fit = labels_arr[fitted]
    presence = fit_score(
        [f for f, keep in zip(features, fitted) if keep], (labels_fit != "missing").astype(int), presence_features, l2=l2,
        groups=labels_fit,
    )
    present = [
        i for i, lab in enumerate(labels_arr)
        if lab != "missing" and methods_arr[i] not in NOT_FITTED_DISTORTIONS and fitted[i]
    ]
    distortion = fit_score(
        [features[i] for i in present],
        (labels_arr[present] == "distortion").astype(int),
        distortion_features,
        l2=l2,
        groups=labels_arr[present],
    )
    pairs = [
        (colours[i], labels_arr[i]) for i in range(len(labels_arr))
        if labels_arr[i] in ("ok", "mismatch") and fitted[i]
    ]
    colour_share_min, colour_fit = fit_colour_threshold(pairs)
    counts = {str(lab): int((labels_arr == lab).sum()) for lab in np.unique(labels_arr)}
    notes = {
        "cases": counts,
        "l2": l2,
        "distortion_not_fitted_on": list(NOT_FITTED_DISTORTIONS) if methods is not None else [],
        "not_fitted_on": list(NOT_FITTED_METHODS) if methods is not None else [],
        "colour_fit": colour_fit,
    }
    return RuleSet(presence, distortion, colour_share_min=colour_share_min, fitted_on=fitted_on, notes=notes)


#: The colour threshold's grid: shares of the colour votes.
COLOUR_GRID = tuple(float(v) for v in np.round(np.arange(0.02, 0.92, 0.02), 2))


def fit_colour_threshold(pairs: Sequence[tuple[dict[str, Any], str]]) -> tuple[float, dict[str, Any]]:
    """(threshold, notes): the :data:`COLOUR_GRID` value with the best balanced accuracy on
    (colour evidence, "ok" | "mismatch") pairs; ties go to the middle of the longest run of
    optimal grid values. The notes record the optimal interval, so a fit that could not tell
    thresholds apart shows it (an interval spanning the whole grid)."""
    scores = []
    for threshold in COLOUR_GRID:
        hits: dict[str, list[bool]] = {"ok": [], "mismatch": []}
        for colour, label in pairs:
            share = colour.get("colour_expected_share")
            named = (colour.get("colour_named"), colour.get("colour_named_foreground"))
            flagged = share is not None and colour.get("colour_expected") not in named and share < threshold
            hits[str(label)].append(flagged == (label == "mismatch"))
        scores.append(0.5 * (np.mean(hits["ok"]) + np.mean(hits["mismatch"])) if hits["ok"] and hits["mismatch"] else -1.0)
    scores_arr = np.asarray(scores)
    if scores_arr.max() < 0:
        return 0.2, {"balanced_accuracy": None, "optimal": None, "pairs": len(pairs)}
    optimal = np.flatnonzero(scores_arr >= scores_arr.max() - 1e-12)
    runs = np.split(optimal, np.flatnonzero(np.diff(optimal) > 1) + 1)
    longest = max(runs, key=len)
    chosen = COLOUR_GRID[int(longest[(len(longest) - 1) // 2])]
    notes = {
        "balanced_accuracy": round(float(scores_arr.max()), 6),
        "optimal": [COLOUR_GRID[int(longest[0])], COLOUR_GRID[int(longest[-1])]],
        "pairs": len(pairs),
    }
    return chosen, notes
