"""The weight-free tier on cases made from real COCO objects, reported on the held-out half.

The shipped rules were fitted on val2017 objects only (``rules.DEFAULT_RULES.fitted_on``); these
tests score train2017 objects, which the fit never saw.

Measured with ``soebench validate-taxonomy --manifest COCO --split train2017`` (694 held-out
objects, one case per label, seed 0, evidence wf-4): accuracy 84.2 %; recall ok 92.7 %, missing
86.5 %, mismatch 98.6 %, distortion 59.2 % (blocks 95.1 %, noise 89.6 %, shuffle 97.1 %, elastic
3.4 %, swirl 0.0 %); 92.8 % of the cases other than warps. The warps are visibly distorted (the classifier-independent
criterion of ``cases.VISIBLE_MEAN_DISPLACEMENT``, checked below on every real object), but keep
natural image statistics, and the weight-free tier does not detect them, so the distortion class --
and the overall accuracy with warps counted -- stays under the issue's target. The strict xfail
below pins that shortfall: it turns red the day it is fixed, so the numbers in the docs get updated.
"""

from __future__ import annotations

import pytest

from soebench.manifest.io import read_manifest
from soebench.taxonomy.cases import LOOSE_METHODS
from soebench.taxonomy.rules import DEFAULT_RULES
from soebench.taxonomy.validate import validate

HELD_OUT = "train2017"
WARPS = ("elastic", "swirl", "elastic_mild")


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


def test_rules_were_fitted_on_the_other_half():
    assert DEFAULT_RULES.fitted_on.startswith("val2017")


def test_held_out_cases_sample(coco_manifest):
    result = validate(coco_manifest, limit=60, seed=1, splits=[HELD_OUT])
    report = _held_out(result)
    assert report.n == 240
    for label in ("ok", "missing", "mismatch"):
        assert report.per_class[label] >= 0.75, (label, report.per_class)
    artefacts = [v for m, v in report.per_method.items() if v["label"] == "distortion" and m not in WARPS]
    assert sum(v["n"] * v["accuracy"] for v in artefacts) / sum(v["n"] for v in artefacts) >= 0.8
    assert _accuracy_without_warps(report) >= 0.85


@pytest.mark.slow
def test_full_held_out_validation_every_method(coco_manifest):
    report = _held_out(validate(coco_manifest, seed=0, splits=[HELD_OUT], all_methods=True))
    for label in ("ok", "missing", "mismatch"):  # the tight-mask cases (the loose ones are below)
        assert _accuracy_without(report, LOOSE_METHODS, label) >= 0.8, (label, report.per_method)
    for method in ("blocks", "noise", "shuffle", "telea", "navier_stokes", "ring_mean", "blur_fill"):
        assert report.per_method[method]["accuracy"] >= 0.85, (method, report.per_method[method])
    assert _accuracy_without_warps(report) >= 0.88
    # loose masks (cases.LOOSE_METHODS; measured 90.8 % of the intact objects called ok, 99.4 % /
    # 50.0 % of the telea / patch removals called missing, seed 0)
    loose = {m: report.per_method[m]["accuracy"] for m in ("original_loose", "telea_loose", "patch_loose")}
    assert loose["original_loose"] >= 0.85 and loose["telea_loose"] >= 0.9 and loose["patch_loose"] >= 0.4, loose


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="weight-free tier does not detect geometric warps (elastic 3.4 %, swirl 0.0 % "
                   "held-out, though visibly distorted): distortion recall 59.2 % and overall accuracy 84.2 % "
                   "stay under the issue's 80 % / 90 % targets")
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
