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
    "log_contour_ratio",
    "log_energy_ratio",
    "log_noise_ratio",
    "log_contour_texture",
    "log_novel_median",
    "log_departure_spread",
    "log_energy_region",
)
#: Artefact features count only in the "worse than the background" direction: a region that is
#: smoother or cleaner than the photo around it is no evidence of damage (diffusion outputs are
#: usually smoother than the JPEG photo they are pasted into), so those are clipped at 0.
DISTORTION_FEATURES = (
    "excess_noise",
    "excess_fine",
    "corr_drop",
    "coherence_drop",
    "log_blockiness",
    "excess_edges",
)


def derived_features(evidence: dict[str, Any]) -> dict[str, float]:
    """The rules' inputs from the raw evidence of :func:`soebench.taxonomy.evidence.measure`."""
    e = evidence
    fine_coarse = math.log(max(e["fine_coarse_region"], 1e-6) / max(e["fine_coarse_ring"], 1e-6))
    return {
        "log_departure_ratio": math.log(e["departure_ratio"] + 1e-3),
        "novel_share": float(e["novel_share"]),
        "log_edge_ratio": math.log(e["edge_ratio"]),
        "foreground_share": float(e["foreground_share"]),
        "log_contour_ratio": math.log(e["contour_ratio"]),
        "log_energy_ratio": math.log(e["energy_ratio"]),
        "log_noise_ratio": math.log(e["noise_ratio"]),
        "log_contour_texture": math.log((e["contour_step"] + 0.5) / (e["ring_texture"] + 0.5)),
        "log_novel_median": math.log(e["novel_median"] + 1.0),
        "log_departure_spread": math.log((e["departure"] + 0.5) / (e["ring_spread"] + 0.5)),
        "log_energy_region": math.log(e["energy_region"] + 0.5),
        "excess_noise": max(0.0, math.log(e["noise_ratio"])),
        "excess_fine": max(0.0, fine_coarse),
        "excess_edges": max(0.0, math.log(e["edge_ratio"])),
        "corr_drop": max(0.0, float(e["corr_ring"] - e["corr_region"])),
        "coherence_drop": max(0.0, float(e["coherence_ring"] - e["coherence_region"])),
        "log_blockiness": math.log(e["blockiness"]),
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
    def from_dict(cls, data: dict[str, Any]) -> RuleSet:
        def score(d: dict[str, Any]) -> LogisticScore:
            return LogisticScore(
                tuple(d["features"]), tuple(d["mean"]), tuple(d["scale"]), tuple(d["weight"]), float(d["bias"])
            )

        return cls(
            presence=score(data["presence"]),
            distortion=score(data["distortion"]),
            colour_share_min=float(data["colour_share_min"]),
            fitted_on=str(data.get("fitted_on", "")),
            notes=dict(data.get("notes", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        from soebench.errors import InputError

        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path}: not a taxonomy rules file ({exc})") from exc


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


#: Fitted by ``soebench validate-taxonomy --manifest COCO_SAMPLE --all-methods --refit --split val2017``
#: (the rules it writes to validation.json) on the val2017 objects only; train2017 is the held-out
#: half. Refitted for evidence wf-3 (blockiness leaves a phase's strongest grid line out) and
#: the recalibrated, visible elastic warp.
DEFAULT_RULES = RuleSet(
    presence=LogisticScore(
        features=PRESENCE_FEATURES,
        mean=(0.81785, 0.190357, -0.530354, 0.601696, 0.50661, 1.922404, -0.084145, 1.604909, 1.461157, -0.18229, 2.349925),
        scale=(0.919646, 0.34583, 1.378036, 0.344886, 1.19187, 1.401616, 1.279261, 1.176787, 1.102872, 0.86431, 1.309275),
        weight=(0.0, 0.0, 0.511987, 0.0, 2.290501, 0.0, 0.98973, 3.559644, 0.0, 0.0, 0.0),
        bias=1.94439,
    ),
    distortion=LogisticScore(
        features=DISTORTION_FEATURES,
        mean=(0.900514, 0.337631, 0.30103, 0.177409, 0.399822, 0.381253),
        scale=(1.055051, 0.417483, 0.320448, 0.177976, 0.413662, 0.459363),
        weight=(2.941079, 1.442623, 1.040967, 1.683222, 3.666108, 0.0),
        bias=0.211954,
    ),
    colour_share_min=0.02,
    fitted_on='val2017 half of the COCO 2017 sample: 401 objects x 14 cases (all methods), seed 0, evidence wf-3',
    notes={'cases': {'distortion': 2406, 'mismatch': 802, 'missing': 2005, 'ok': 401}, 'distortion_not_fitted_on': ['elastic', 'swirl', 'elastic_mild'], 'l2': 1.0},
)
