"""Failure taxonomy: one label per generated sample -- ok, missing, mismatch or distortion -- with
the evidence behind it.

``classify(original, generated, mask, expected_color=..., judge=...)`` runs

- the **weight-free tier** (always): measurements of the generated region against a background
  ring and against a harmonic background fill (:mod:`soebench.taxonomy.evidence`), the generated
  object's colour term (:mod:`soebench.mining.colour`), and the fitted rules
  (:mod:`soebench.taxonomy.rules`);
- the **model tier** when a ``judge`` is given (e.g. :class:`soebench.taxonomy.clip_judge.ClipJudge`):
  zero-shot presence, colour and distortion probabilities on the object's crop, averaged with the
  weight-free scores.

The original image is used outside the mask only (see :mod:`soebench.taxonomy.evidence`).
``soebench validate-taxonomy`` measures the accuracy on real objects (:mod:`soebench.taxonomy.validate`).

What the weight-free tier can and cannot see (measured on the held-out train2017 half of the
COCO sample, rules fitted on val2017; ``soebench validate-taxonomy --manifest COCO --split
train2017``, 694 objects, one case per label, seed 0, evidence wf-5, taxonomy version 2:
accuracy 80.3 %, recall ok 87.6 %, missing 86.0 %, mismatch 88.8 %, distortion 58.9 %). The
cases are realistic (:mod:`soebench.taxonomy.cases`): ok = the photo or a re-draw (JPEG q70
85.0 %, sigma-1 smoothing 82.7 %, exposure drift 84.8 %, intact object in a blurred halo
93.6 %, untouched 92.0 %); mismatch = the object's own hue rotated (91.6 %) or tinted (87.5 %);
removals by diffusion/flat/blurred fills, also spilling past the mask (91.8-96.7 %), artefact
damage (blocks 85.0 %, noise 83.3 %, shuffled pixels 94.4 %) and smoothing damage (melted to a
blob 76.8 %, blurred at side/6 65.7 %) are recognised. A background patch copied from elsewhere
in the photo is called present more often than not (39.2 % right: it is textured like an
object); *geometric* warps keep natural image statistics and are almost never called distortion
(elastic 5.5 %, swirl 1.9 %), although the validation's warps are visibly distorted by an
objective criterion (parts moved by >= 10 % of the object's size,
:data:`soebench.taxonomy.cases.VISIBLE_MEAN_DISPLACEMENT`) -- that needs the model tier.
Measurements compare the region with the same photo's background -- as generated or as
photographed, whichever makes the weaker case, so a fill or halo spilling past the mask does
not pass for texture. A region smoother than its surroundings counts as damage only through
the smoothing features (loss of structure between the finest scale and ~1/12 of the object's
size), which a sigma-1 re-draw mostly keeps; a perfectly flat, textureless object on a
textured background reads as smoothed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LABELS = ("ok", "missing", "mismatch", "distortion")
TAXONOMY_VERSION = "2"


def tier_name(judged: bool) -> str:
    """The tier a label (or a run's labels) came from: ``model`` when a judge's verdict went in."""
    return "model" if judged else "weight_free"


@dataclass(frozen=True)
class TaxonomyResult:
    """The label and its evidence (JSON-serialisable floats, strings and None)."""

    label: str
    evidence: dict[str, float | str | None] = field(default_factory=dict)


def _check_inputs(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    original = np.asarray(original)
    generated = np.asarray(generated)
    mask = np.asarray(mask)
    for name, img in (("original", original), ("generated", generated)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"classify: {name} must be an HxWx3 uint8 RGB image, got {img.shape} {img.dtype}")
    if generated.shape != original.shape:
        raise ValueError(f"classify: generated {generated.shape[:2]} and original {original.shape[:2]} differ in size")
    if mask.shape != original.shape[:2]:
        raise ValueError(f"classify: mask {mask.shape} does not match the image {original.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if mask.sum() < 16:
        raise ValueError(f"classify: the mask has {int(mask.sum())} pixels; at least 16 are needed")
    return original, generated, mask


def classify(
    original: np.ndarray,
    generated: np.ndarray,
    mask: np.ndarray,
    *,
    expected_color: str | None = None,
    bbox: Any = None,
    judge: Any = None,
    category: str | None = None,
    rules: Any = None,
    verdict: dict[str, Any] | None = None,
) -> TaxonomyResult:
    """Label ``generated`` (the inpainter's output for the object under ``mask``).

    ``original``: the manifest image (used outside the mask only); ``expected_color``: the
    prompt's colour word (no colour check when None); ``bbox``: the object's box ``[x, y, w, h]``
    (recorded; the region comes from the mask); ``judge``: an optional model-tier object with
    ``assess(crop, category=..., expected_color=...) -> dict`` (see
    :mod:`soebench.taxonomy.clip_judge`); ``category``: the object's name, for the judge;
    ``rules``: a :class:`~soebench.taxonomy.rules.RuleSet` (default: the fitted one);
    ``verdict``: a judge's verdict on this output computed beforehand (``judge.assess_batch`` over
    a batch, as ``evaluate`` does), instead of ``judge``.
    """
    from soebench.taxonomy.evidence import EVIDENCE_VERSION, colour_evidence, measure
    from soebench.taxonomy.rules import DEFAULT_RULES, decide, derived_features

    original, generated, mask = _check_inputs(original, generated, mask)
    rules = rules or DEFAULT_RULES
    raw, foreground = measure(original, generated, mask)
    colour = colour_evidence(generated, mask, foreground, expected_color)
    features = derived_features(raw)
    if judge is not None and verdict is not None:
        raise ValueError("classify: give a judge or its verdict, not both")
    if judge is not None:
        from soebench.taxonomy.clip_judge import judge_crop

        verdict = judge.assess(judge_crop(generated, mask), category=category, expected_color=expected_color)
    label, scores = decide(features, colour, rules, judge=verdict)
    evidence: dict[str, float | str | None] = {
        "tier": tier_name(verdict is not None),
        "evidence_version": EVIDENCE_VERSION,
        "rules": rules.fitted_on,
        **{k: float(v) for k, v in raw.items()},
        **colour,
        **{k: (None if v is None else float(v)) for k, v in scores.items()},
    }
    if verdict is not None:
        evidence.update({f"judge_{k}": (v if isinstance(v, str) or v is None else float(v)) for k, v in verdict.items()})
    if bbox is not None:
        evidence["bbox"] = ",".join(f"{float(v):g}" for v in bbox)
    return TaxonomyResult(label, evidence)


__all__ = ["LABELS", "TaxonomyResult", "classify", "tier_name"]
