"""Evidence → label: two small logistic scores and one colour rule, applied in a fixed order.

1. ``presence`` = sigmoid(w · presence features): below 0.5 the sample is ``missing``.
2. ``distortion`` = sigmoid(w · artefact features): above 0.5 it is ``distortion`` (a damaged
   object is a distortion whatever its colour).
3. the colour rule: when the prompt names a colour, the generated object is a ``mismatch`` if
   that colour got less than ``colour_share_min`` of the colour votes and won neither reading
   (whole mask, foreground pixels; see :func:`soebench.taxonomy.evidence.colour_evidence`).
4. otherwise ``ok``.

Features are logs of the evidence ratios (region against background ring), standardised with
the tuning set's mean and spread; the weights are fitted by :func:`soebench.taxonomy.fit.fit_rules`
on the **val2017** half of the real COCO sample only, and reported on the train2017 half
(``soebench validate-taxonomy``). The numbers below are that fit's output, pasted verbatim, with
the command that produced them; change them only by refitting.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PRESENCE_FEATURES = (
    "log_departure_ratio",
    "novel_share",
    "log_edge_ratio",
    "foreground_share",
    "log_contour_ratio_inner",
    "log_energy_ratio",
    "log_noise_ratio",
    "log_contour_texture_inner",
    "log_novel_median",
    "log_departure_spread",
    "log_energy_region",
    "ring_kept",
)
#: Every feature :func:`derived_features` computes: the names a rules file's scores may use.
DERIVED_FEATURES = (
    "log_departure_ratio",
    "novel_share",
    "log_edge_ratio",
    "foreground_share",
    "log_contour_ratio",
    "log_contour_ratio_inner",
    "log_energy_ratio",
    "log_noise_ratio",
    "log_contour_texture",
    "log_contour_texture_inner",
    "log_novel_median",
    "log_departure_spread",
    "log_energy_region",
    "ring_kept",
    "excess_noise",
    "excess_fine",
    "excess_edges",
    "corr_drop",
    "coherence_drop",
    "log_blockiness",
    "blur_loss",
    "flatness",
)
#: Artefact features count only in the "worse than the background" direction: a region that is
#: smoother or cleaner than the photo around it is no evidence of *artefact* damage (diffusion
#: outputs are usually smoother than the JPEG photo they are pasted into), so those are clipped
#: at 0. Smoothing damage -- an object melted to a blob or blurred at a fraction of its size --
#: has its own features: ``flatness``, how far the region's structure between the finest scale and
#: ~1/12 of the object's side (:func:`soebench.taxonomy.evidence.sharpness`) falls below
#: :data:`SHARPNESS_REFERENCE` (and below the background ring's, so a flat scene does not count),
#: and ``blur_loss``, how far it falls below the background ring's (evidence wf-5). A sigma-1 re-draw keeps most of that structure.
DISTORTION_FEATURES = (
    "excess_noise",
    "excess_fine",
    "corr_drop",
    "coherence_drop",
    "log_blockiness",
    "excess_edges",
    "blur_loss",
    "flatness",
)

#: The :func:`~soebench.taxonomy.evidence.sharpness` of a photographed object, roughly: the
#: median over the val2017 objects of the COCO sample is 0.62 (10th percentile 0.19; melted
#: objects -0.07, objects blurred at side/6 -0.03, sigma-1 re-draws 0.48). ``flatness`` counts
#: only what falls below it, so sharper-than-usual regions (noise, blocks) do not offset the
#: artefact features.
SHARPNESS_REFERENCE = 0.6


def _ring(e: dict[str, Any], key: str, pick: Any) -> float:
    """``pick`` (max or min) of a ring measurement as generated and as photographed (the
    ``_orig`` key, evidence wf-5; older evidence has only the generated one)."""
    return float(pick(e[key], e.get(f"{key}_orig", e[key])))


def derived_features(evidence: dict[str, Any]) -> dict[str, float]:
    """The rules' inputs from the raw evidence of :func:`soebench.taxonomy.evidence.measure`.

    Each comparison with the background ring uses the ring as generated *or* as photographed,
    whichever makes the weaker case for what the feature measures (the larger texture for
    presence and artefacts, the smoother ring for smoothing): a fill or halo that spills past
    the mask smooths the generated ring, which would otherwise make a removal's leftover
    texture look like an object, and an intact object look noisy beside its blurred halo."""
    e = evidence
    ring_texture = _ring(e, "ring_texture", max)
    edge_ring = _ring(e, "edge_ring", max)
    noise_ring = _ring(e, "noise_ring", max)
    step_ring = _ring(e, "contour_step_ring", max)
    ring_spread = _ring(e, "ring_spread", max)
    fine_coarse = math.log(max(e["fine_coarse_region"], 1e-6) / max(_ring(e, "fine_coarse_ring", max), 1e-6))
    edge_ratio = (e["edge_region"] + 0.5) / (edge_ring + 0.5)
    noise_ratio = (e["noise_region"] + 0.25) / (noise_ring + 0.25)
    sharp_ring = _ring(e, "sharpness_ring", min) if "sharpness_ring" in e else None
    texture_orig = float(e.get("ring_texture_orig", e["ring_texture"]))
    return {
        "log_departure_ratio": math.log(e["departure"] / (ring_texture + 1.0) + 1e-3),
        "novel_share": float(e["novel_share"]),
        "log_edge_ratio": math.log(edge_ratio),
        "foreground_share": float(e["foreground_share"]),
        "log_contour_ratio": math.log((e["contour_step"] + 0.5) / (step_ring + 0.5)),
        # the mask's outline or one inside it, where an object smaller than its mask has its edge
        "log_contour_ratio_inner": math.log((e["contour_step_inner"] + 0.5) / (step_ring + 0.5)),
        "log_energy_ratio": math.log(e["energy_ratio"]),
        "log_noise_ratio": math.log(noise_ratio),
        "log_contour_texture": math.log((e["contour_step"] + 0.5) / (ring_texture + 0.5)),
        "log_contour_texture_inner": math.log((e["contour_step_inner"] + 0.5) / (ring_texture + 0.5)),
        "log_novel_median": math.log(e["novel_median"] + 1.0),
        "log_departure_spread": math.log((e["departure"] + 0.5) / (ring_spread + 0.5)),
        "log_energy_region": math.log(e["energy_region"] + 0.5),
        # 0 when the generated ring is the photo's own; negative as the fill spills past the mask
        "ring_kept": -math.log1p(float(e.get("ring_change", 0.0)) / (texture_orig + 1.0)),
        "excess_noise": max(0.0, math.log(noise_ratio)),
        "excess_fine": max(0.0, fine_coarse),
        "excess_edges": max(0.0, math.log(edge_ratio)),
        "corr_drop": max(0.0, float(_ring(e, "corr_ring", min) - e["corr_region"])),
        "coherence_drop": max(0.0, float(_ring(e, "coherence_ring", min) - e["coherence_region"])),
        "log_blockiness": math.log(e["blockiness"]),
        "blur_loss": 0.0 if sharp_ring is None else max(0.0, sharp_ring - float(e["sharpness_region"])),
        # smoother than a photographed object *and* than the photo around it: a flat object in
        # a flat (clean or out-of-focus) scene is not evidence of smoothing
        "flatness": 0.0 if sharp_ring is None else max(0.0, min(SHARPNESS_REFERENCE, sharp_ring) - float(e["sharpness_region"])),
    }


@dataclass(frozen=True)
class LogisticScore:
    """sigmoid(bias + Σ weight_i · (x_i - mean_i) / scale_i) over named features."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weight: tuple[float, ...]
    bias: float

    def __post_init__(self) -> None:
        # zip() would silently drop the features past the shortest tuple
        lengths = {len(self.features), len(self.mean), len(self.scale), len(self.weight)}
        if len(lengths) != 1:
            raise ValueError(
                f"a logistic score needs one mean, scale and weight per feature; got {len(self.features)} features, "
                f"{len(self.mean)} means, {len(self.scale)} scales, {len(self.weight)} weights"
            )

    def logit(self, x: dict[str, float]) -> float:
        z = self.bias
        for name, m, s, w in zip(self.features, self.mean, self.scale, self.weight):
            z += w * (x[name] - m) / s
        return z

    def __call__(self, x: dict[str, float]) -> float:
        z = max(-60.0, min(60.0, self.logit(x)))
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class RuleSet:
    """Everything that turns evidence into a label; saved with results (``describe``)."""

    presence: LogisticScore
    distortion: LogisticScore
    colour_share_min: float = 0.2
    fitted_on: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "") -> RuleSet:
        """Build from the dict :meth:`to_json` writes, checking every field (known keys and
        features, finite numbers, positive scales, a share in [0, 1]); a problem raises
        :class:`RulesFieldError` naming the field (prefixed with ``where``, e.g. ``"rules."``)."""
        data = _mapping(data, where, RULES_REQUIRED, RULES_OPTIONAL, what="rules")
        fitted_on = data.get("fitted_on", "")
        if not isinstance(fitted_on, str):
            raise RulesFieldError(f"field {where + 'fitted_on'!r} must be a string, got {_shown(fitted_on)}")
        notes = data.get("notes", {})
        if not isinstance(notes, dict):
            raise RulesFieldError(f"field {where + 'notes'!r} must be a JSON object, got {_shown(notes)}")
        share = _number(data["colour_share_min"], where + "colour_share_min")
        if not 0.0 <= share <= 1.0:
            raise RulesFieldError(f"field {where + 'colour_share_min'!r} is a share of the colour votes, between 0 and 1; got {share:g}")
        return cls(
            presence=_score(data["presence"], where + "presence"),
            distortion=_score(data["distortion"], where + "distortion"),
            colour_share_min=share,
            fitted_on=fitted_on,
            notes=dict(notes),
        )

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        """Read a rules JSON: the ``rules`` block of a validation.json, or a whole validation.json
        (its ``rules`` block is used). Any problem is an :class:`~soebench.errors.InputError`
        naming the file and the field."""
        from soebench.errors import InputError

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"{path}: cannot read the rules file ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a taxonomy rules file (not UTF-8 text: {exc.reason} at byte {exc.start})") from exc
        except ValueError as exc:
            raise InputError(f"{path}: not a taxonomy rules file (not valid JSON: {exc})") from exc
        where = ""
        if isinstance(data, dict) and "rules" in data and "presence" not in data:
            data, where = data["rules"], "rules."  # a whole validation.json
        try:
            return cls.from_dict(data, where=where)
        except RulesFieldError as exc:
            raise InputError(f"{path}: not a taxonomy rules file ({exc})") from exc


class RulesFieldError(ValueError):
    """A rules dict's field is missing or invalid; the message names the field."""


RULES_REQUIRED = ("presence", "distortion", "colour_share_min")
RULES_OPTIONAL = ("fitted_on", "notes")
SCORE_FIELDS = ("features", "mean", "scale", "weight", "bias")


def _shown(value: Any, width: int = 40) -> str:
    """A value for a message: its type for containers, a short repr otherwise."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'list'}"
    text = "null" if value is None else repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _mapping(data: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = (), *, what: str) -> dict[str, Any]:
    """``data`` as a dict with no unknown and no missing key (named in the message)."""
    import difflib

    known = (*required, *optional)
    if not isinstance(data, dict):
        name = f"field {where.rstrip('.')!r} must be" if where else "expected"
        raise RulesFieldError(f"{name} a JSON object of {what} fields {', '.join(known)}; got {_shown(data)}")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            guess = f"did you mean {where + close[0]!r}? " if close else ""
            raise RulesFieldError(f"unknown field {where + str(key)!r}; {guess}{what} fields: {', '.join(known)}")
    for key in required:
        if key not in data:
            raise RulesFieldError(f"required field {where + key!r} is missing; required {what} fields: {', '.join(required)}")
    return data


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RulesFieldError(f"field {name!r} must be a number, got {_shown(value)}")
    if not math.isfinite(value):
        raise RulesFieldError(f"field {name!r} must be a finite number, got {value}")
    return float(value)


def _numbers(value: Any, name: str, n: int, *, positive: bool = False) -> tuple[float, ...]:
    """A list of ``n`` finite numbers (each > 0 when ``positive``), one per feature."""
    if not isinstance(value, list):
        raise RulesFieldError(f"field {name!r} must be a list of numbers, one per feature, got {_shown(value)}")
    if len(value) != n:
        raise RulesFieldError(f"field {name!r} has {len(value)} values for {n} features; a score needs one mean, scale and weight per feature")
    numbers = tuple(_number(v, f"{name}[{i}]") for i, v in enumerate(value))
    for i, v in enumerate(numbers):
        if positive and v <= 0:
            raise RulesFieldError(f"field {f'{name}[{i}]'!r} must be positive, as features are divided by their scale; got {v:g}")
    return numbers


def _features(value: Any, name: str) -> tuple[str, ...]:
    """A non-empty list of distinct names from :data:`DERIVED_FEATURES`."""
    import difflib

    if not isinstance(value, list) or not value:
        raise RulesFieldError(f"field {name!r} must be a non-empty list of feature names, got {_shown(value)}")
    for i, feature in enumerate(value):
        if feature not in DERIVED_FEATURES:
            close = difflib.get_close_matches(str(feature), DERIVED_FEATURES, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            raise RulesFieldError(
                f"field {f'{name}[{i}]'!r}: unknown feature {_shown(feature)}; {guess}known features: {', '.join(DERIVED_FEATURES)}"
            )
        if feature in value[:i]:
            raise RulesFieldError(f"field {f'{name}[{i}]'!r}: feature {feature!r} is listed twice")
    return tuple(value)


def _score(data: Any, where: str) -> LogisticScore:
    """One :class:`LogisticScore` from its dict, every field checked."""
    data = _mapping(data, where + ".", SCORE_FIELDS, what="score")
    features = _features(data["features"], f"{where}.features")
    n = len(features)
    return LogisticScore(
        features,
        _numbers(data["mean"], f"{where}.mean", n),
        _numbers(data["scale"], f"{where}.scale", n, positive=True),
        _numbers(data["weight"], f"{where}.weight", n),
        _number(data["bias"], f"{where}.bias"),
    )


def decide(
    features: dict[str, float],
    colour: dict[str, Any],
    rules: RuleSet,
    *,
    judge: dict[str, float] | None = None,
) -> tuple[str, dict[str, float]]:
    """(label, scores). ``judge`` (model tier), when given, holds probabilities ``present``,
    ``distorted`` and ``colour_agrees``; each is averaged with the weight-free score of the same
    check, so a judge can overturn a confident weight-free call only when it is confident too."""
    presence = rules.presence(features)
    distortion = rules.distortion(features)
    share = colour.get("colour_expected_share")
    expected = colour.get("colour_expected")
    colour_agrees = None
    if expected is not None and share is not None:
        # 1 when the expected term wins, else how far its share is from the threshold (0.5 at it)
        if expected in (colour.get("colour_named"), colour.get("colour_named_foreground")):
            colour_agrees = 1.0
        else:
            colour_agrees = float(min(1.0, 0.5 * share / max(rules.colour_share_min, 1e-6)))
    scores = {"presence_score": presence, "distortion_score": distortion}
    if judge:
        scores.update({f"weight_free_{k}": v for k, v in list(scores.items())})
        if judge.get("present") is not None:
            presence = 0.5 * (presence + float(judge["present"]))
        if judge.get("distorted") is not None:
            distortion = 0.5 * (distortion + float(judge["distorted"]))
        if colour_agrees is not None and judge.get("colour_agrees") is not None:
            colour_agrees = 0.5 * (colour_agrees + float(judge["colour_agrees"]))
        scores.update({"presence_score": presence, "distortion_score": distortion})
    scores["colour_agreement"] = colour_agrees
    if presence < 0.5:
        return "missing", scores
    if distortion >= 0.5:
        return "distortion", scores
    if colour_agrees is not None and colour_agrees < 0.5:
        return "mismatch", scores
    return "ok", scores


#: Fitted by ``soebench validate-taxonomy --manifest VAL --split val2017 --all-methods --refit --cv 5``
#: (the rules it writes to validation.json) on the val2017 objects only; train2017 is the held-out
#: half. Refitted for evidence wf-5 (original-ring references, sharpness) on every case family
#: but :data:`soebench.taxonomy.fit.NOT_FITTED_METHODS` and the warps (:mod:`soebench.taxonomy.fit`
#: says why). ``ring_kept`` is offered to presence but gets weight 0: the spill removals are
#: recognised through the original-ring references already.
DEFAULT_RULES = RuleSet(
    presence=LogisticScore(
        features=('log_departure_ratio', 'novel_share', 'log_edge_ratio', 'foreground_share', 'log_contour_ratio_inner', 'log_energy_ratio', 'log_noise_ratio', 'log_contour_texture_inner', 'log_novel_median', 'log_departure_spread', 'log_energy_region', 'ring_kept'),
        mean=(0.685193, 0.115558, -0.425162, 0.563711, 0.4212, 1.69339, -0.216533, 1.517999, 1.243247, -0.322117, 2.086959, -0.139955),
        scale=(0.823558, 0.252478, 1.210408, 0.327524, 1.045226, 1.193798, 1.183571, 1.028859, 0.868168, 0.758947, 1.143339, 0.463554),
        weight=(0.0, 0.076867, 0.0, 0.0, 1.857349, 0.0, 0.0, 3.088321, 0.0, 0.0, 0.0, 0.0),
        bias=1.415409,
    ),
    distortion=LogisticScore(
        features=('excess_noise', 'excess_fine', 'corr_drop', 'coherence_drop', 'log_blockiness', 'excess_edges', 'blur_loss', 'flatness'),
        mean=(0.588117, 0.203041, 0.172684, 0.11367, 0.323139, 0.32991, 0.172675, 0.125136),
        scale=(0.86272, 0.338869, 0.265053, 0.149501, 0.318264, 0.433835, 0.30695, 0.238179),
        weight=(0.830406, 0.747769, 0.277728, 1.105754, 1.267615, 0.0, 0.168417, 2.266815),
        bias=-0.970344,
    ),
    colour_share_min=0.38,
    fitted_on='val2017 half of the COCO 2017 sample: 401 objects x every case family (all methods), seed 0, evidence wf-5',
    notes={'cases': {'distortion': 3208, 'mismatch': 1294, 'missing': 3208, 'ok': 3609}, 'l2': 1.0, 'distortion_not_fitted_on': ['elastic', 'swirl', 'elastic_mild'], 'not_fitted_on': ['exposure_up', 'exposure_down', 'exposure_gamma', 'recolour'], 'colour_fit': {'balanced_accuracy': 0.97917, 'optimal': [0.38, 0.38], 'pairs': 2898}},
)
