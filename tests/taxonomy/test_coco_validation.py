"""The weight-free tier on cases made from real COCO objects, reported on the held-out half.

The shipped rules were fitted on val2017 objects only (``rules.DEFAULT_RULES.fitted_on``); these
tests score train2017 objects, which the fit never saw. (Design decisions up to evidence wf-4
were made looking at train2017 numbers; from wf-5 on they are made on a cross-validation of
val2017, see ``soebench.taxonomy.fit``.)

Measured with ``soebench validate-taxonomy --manifest COCO --split train2017`` (694 held-out
objects, one case per label, seed 0, evidence wf-5, taxonomy version 2): accuracy 80.3 %; recall
ok 87.6 %, missing 86.0 %, mismatch 88.8 %, distortion 58.9 % (blocks 85.0 %, noise 83.3 %,
shuffle 94.4 %, melt 76.8 %, blur_heavy 65.7 %, elastic 5.5 %, swirl 1.9 %). The ok cases are
realistic re-draws and halos, the mismatch cases realistic recolours, so the figures are lower
than wf-4's (84.2 %), whose ok cases were the untouched photo and whose recolours wrote the colour
namer's own prototype colour. The warps are visibly distorted (the classifier-independent
criterion of ``cases.VISIBLE_MEAN_DISPLACEMENT``, checked below on every real object), but keep
natural image statistics, and the weight-free tier does not detect them, so the distortion class --
and the overall accuracy -- stays under the issue's target. The strict xfail below pins that
shortfall: it turns red the day it is fixed, so the numbers in the docs get updated.
"""

from __future__ import annotations

import pytest

from soebench.manifest.io import read_manifest
from soebench.taxonomy.cases import LOOSE_METHODS
from soebench.taxonomy.rules import DEFAULT_RULES
from soebench.taxonomy.validate import validate

HELD_OUT = "train2017"
WARPS = ("elastic", "swirl", "elastic_mild")
#: Regression floors, each a few points under what the shipped wf-5 rules measure (stated beside
#: it). ``sample``: ``validate(limit=60, seed=1)`` on the held-out half, 240 cases.
PINNED = {
    "sample_damage": 0.75,  # non-warp distortions of the sample: 78.0 % (32 of 41)
    "sample_without_warps": 0.80,  # every case but the warps: 83.7 %
}


@pytest.fixture(scope="module")
def coco_manifest(coco_sample, tmp_path_factory):
    from tests.taxonomy.coco_manifest import build_coco_manifest

    return read_manifest(build_coco_manifest(coco_sample, tmp_path_factory.mktemp("coco") / "coco.parquet"))


def _held_out(result):
    (report,) = [s for s in result.splits if s.split == HELD_OUT]
    assert report.role == "held-out"
    return report


def _accuracy_without(report, left_out=WARPS, label: str | None = None) -> float:
    kept = [v for m, v in report.per_method.items() if m not in left_out and label in (None, v["label"])]
    return sum(v["n"] * v["accuracy"] for v in kept) / sum(v["n"] for v in kept)


def _accuracy_without_warps(report) -> float:
    return _accuracy_without(report, WARPS + LOOSE_METHODS)


@pytest.mark.parametrize(
    ("split", "method", "low", "high"),
    [
        ("val2017", "elastic", 0.95, 1.0), ("val2017", "swirl", 0.85, 1.0), ("val2017", "elastic_mild", 0.0, 0.02),
        ("train2017", "elastic", 0.95, 1.0), ("train2017", "swirl", 0.82, 1.0), ("train2017", "elastic_mild", 0.0, 0.02),
    ],
)
def test_warp_cases_meet_the_visibility_criterion(coco_manifest, split, method, low, high):
    """The label-quality check of the distortion cases (classifier-independent): the share of real
    objects whose warp moves the object's pixels by >= VISIBLE_MEAN_DISPLACEMENT of its side, with
    the random numbers each case is built with (cases.py states 97.0 / 88.5 / 0.0 % on val2017 and
    97.7 / 85.2 / 0.3 % on train2017)."""
    from soebench.manifest.masks import decode_mask
    from soebench.taxonomy import cases as cs

    refs = cs.objects_of(coco_manifest, seed=0, splits=[split])
    shares = [
        cs.warp_displacement(method, mask, cs._rng(0, ref.sample_id, method)) >= cs.VISIBLE_MEAN_DISPLACEMENT
        for ref in refs
        if (mask := decode_mask(ref.mask_rle)).sum() >= 16
    ]
    assert len(shares) > 300
    assert low <= sum(shares) / len(shares) <= high


@pytest.mark.slow
def test_smoothing_cases_meet_their_visibility_criterion(coco_manifest):
    """Label quality of the smoothing distortions (classifier-independent): the share of val2017
    objects whose melt / heavy blur keeps at most VISIBLE_SMOOTHING_KEPT of the interior's
    gradient (cases.py states 80.8 % / 77.8 %), and the sigma-1 re-draw (an ok case) almost never."""
    import numpy as np

    from soebench.manifest.masks import decode_mask
    from soebench.taxonomy import cases as cs

    shares: dict[str, list[bool]] = {"melt": [], "blur_heavy": [], "redraw_smooth": []}
    for ref, cases in cs.iter_cases(coco_manifest, cs.objects_of(coco_manifest, seed=0, splits=["val2017"])):
        image, mask = cases[0].original, decode_mask(ref.mask_rle)
        for name in shares:
            damaged = (cs.DISTORTION_METHODS.get(name) or cs.OK_METHODS[name])(image, mask, np.random.default_rng(0))
            shares[name].append(cs.smoothing_kept(image, damaged, mask) <= cs.VISIBLE_SMOOTHING_KEPT)
    rates = {k: sum(v) / len(v) for k, v in shares.items()}
    assert len(shares["melt"]) > 300
    assert 0.78 <= rates["melt"] <= 0.84 and 0.75 <= rates["blur_heavy"] <= 0.81 and rates["redraw_smooth"] <= 0.01, rates


def test_rules_were_fitted_on_the_other_half():
    assert DEFAULT_RULES.fitted_on.startswith("val2017")


def test_held_out_cases_sample(coco_manifest):
    result = validate(coco_manifest, limit=60, seed=1, splits=[HELD_OUT])
    report = _held_out(result)
    assert report.n == 240
    for label in ("ok", "missing", "mismatch"):
        assert report.per_class[label] >= 0.75, (label, report.per_class)
    damage = [v for m, v in report.per_method.items() if v["label"] == "distortion" and m not in WARPS]
    assert sum(v["n"] * v["accuracy"] for v in damage) / sum(v["n"] for v in damage) >= PINNED["sample_damage"]
    assert _accuracy_without_warps(report) >= PINNED["sample_without_warps"]


@pytest.mark.slow
def test_full_held_out_validation_every_method(coco_manifest):
    """Every case family on the held-out half (``--all-methods``; measured with the shipped wf-5
    rules, seed 0, the figure beside each floor). The families no score is fitted on
    (fit.NOT_FITTED_METHODS: exposure changes, prototype recolours) are reported, not held to a
    floor here except where stated."""
    from soebench.taxonomy.fit import NOT_FITTED_METHODS

    report = _held_out(validate(coco_manifest, seed=0, splits=[HELD_OUT], all_methods=True))
    fitted_tight = LOOSE_METHODS + NOT_FITTED_METHODS
    # tight-mask, fitted families: ok 87.4 %, missing 85.3 %, mismatch 88.1 %
    for label in ("ok", "missing", "mismatch"):
        assert _accuracy_without(report, fitted_tight, label) >= 0.8, (label, report.per_method)
    floors = {  # measured: 96.4 / 95.1 / 94.1 / 94.5 / 94.0 / 93.1 / 95.8 / 79.3 / 76.2 / 71.2 / 65.4 / 91.6 / 87.0 / 88.0 / 83.1 %
        "blur_fill": 0.9, "navier_stokes": 0.9, "ring_mean": 0.9, "telea": 0.9, "spill": 0.9, "halo": 0.9, "shuffle": 0.9,
        "blocks": 0.75, "noise": 0.72, "melt": 0.66, "blur_heavy": 0.6, "recolour_hue": 0.87, "recolour_tint": 0.83,
        "redraw_jpeg": 0.84, "redraw_smooth": 0.79,
    }
    for method, floor in floors.items():
        assert report.per_method[method]["accuracy"] >= floor, (method, report.per_method[method])
    # every fitted family but the warps: 83.9 %
    assert _accuracy_without(report, WARPS + fitted_tight) >= 0.81
    # loose masks (cases.LOOSE_METHODS; measured 91.1 % of the intact objects called ok, 98.9 % /
    # 46.4 % of the telea / patch removals called missing, seed 0)
    loose = {m: report.per_method[m]["accuracy"] for m in ("original_loose", "telea_loose", "patch_loose")}
    assert loose["original_loose"] >= 0.85 and loose["telea_loose"] >= 0.9 and loose["patch_loose"] >= 0.4, loose
    # whole-photo exposure changes (reported, not fitted): x1.4 75.4 %, x0.6 68.3 %, gamma 1.8 49.4 %
    # called ok; the floors only catch a collapse
    assert report.per_method["exposure_up"]["accuracy"] >= 0.65 and report.per_method["exposure_gamma"]["accuracy"] >= 0.4


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="weight-free tier does not detect geometric warps (elastic 5.5 %, swirl 1.9 % "
                   "held-out, though visibly distorted): with realistic wf-5 cases, distortion recall 58.9 % and overall "
                   "accuracy 80.3 % stay under the issue's 80 % / 90 % targets")
def test_issue_targets_on_held_out_half(coco_manifest):
    report = _held_out(validate(coco_manifest, seed=0, splits=[HELD_OUT]))
    assert report.accuracy >= 0.9
    assert min(report.per_class.values()) >= 0.8


def test_shipped_removal_baselines_are_called_missing(coco_manifest):
    """The bundled removers (mean-fill, opencv-telea) on real held-out objects: the object is gone,
    so the label is missing. mean-fill filled the exact mask until it dilated it like the OpenCV
    baselines: the object's rim, left around a flat fill, read as an object (31 of 120 val
    objects called ok, 49 mismatch)."""
    from soebench.models import MODELS, InpaintRequest
    from soebench.taxonomy import cases as cs
    from soebench.taxonomy import classify

    refs = cs.objects_of(coco_manifest, seed=0, splits=[HELD_OUT])[:40]
    for name in ("mean-fill", "opencv-telea"):
        model = MODELS.create(name, "")
        labels = []
        for ref, cases in cs.iter_cases(coco_manifest, refs, seed=0):
            image, mask = cases[0].original, cases[0].mask
            (out,) = model.inpaint([InpaintRequest(ref.sample_id, image, mask, "", 0)])
            labels.append(classify(image, out.image, mask, expected_color=ref.color).label)
        assert labels.count("missing") >= 0.9 * len(labels), (name, labels)
