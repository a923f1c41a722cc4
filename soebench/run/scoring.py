"""Per-batch scoring of generated images: per-sample metrics, taxonomy and set-level states.

:class:`Scorer` holds the chosen metrics (from :mod:`soebench.metrics`) with their injected
networks. ``score(batch)`` runs each network once per batch -- CLIP on every local crop and
whole image together, the Inception on the eval crops and full images of both the originals
and the outputs together -- and returns one dict of per-sample values per sample.
``state_dict()`` / ``merge_states()`` carry the set-level (FID/KID) states between shards:
they are sums (KID: kept features), so shards merge by adding.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soebench.metrics import MetricAvailability
from soebench.run.gate import OPEN, ComputeGate

log = logging.getLogger(__name__)

CLIP_METRICS = ("clip_score_local", "clip_score_global")
BG_METRICS = ("bg_psnr", "bg_ssim", "bg_mse")
DISTANCE_METRICS = ("fid_crop", "kid_crop", "fid_full", "kid_full")
PER_SAMPLE_METRICS = CLIP_METRICS + BG_METRICS


@dataclass
class ScoredSample:
    """What scoring needs of one sample (the original is decoded once, by the caller)."""

    sample_id: str
    original: np.ndarray
    generated: np.ndarray
    mask: np.ndarray
    prompt: str
    bbox: Sequence[float]  # [x, y, w, h]
    eval_crop: Sequence[float]  # [x0, y0, x1, y1]
    color: str | None = None
    index: int = 0  # position in the manifest (orders merged shards)
    group: str = ""  # size bucket, for the per-bucket FID/KID
    category: str | None = None  # the object's name, for the taxonomy's model tier


@dataclass
class Scorer:
    """The metrics of one run. ``clip`` / ``inception`` are the loaded networks (None when their
    metrics are not chosen); ``classify`` is :func:`soebench.taxonomy.classify` or None;
    ``judge`` the taxonomy's model tier (:class:`soebench.taxonomy.clip_judge.ClipJudge`, or any
    object with its ``assess_batch``), None for the weight-free tier alone."""

    chosen: MetricAvailability
    clip: Any = None
    inception: Any = None
    classify: Any = None
    judge: Any = None
    bg_radius_at_512: float | None = None
    states: dict[str, Any] = field(default_factory=dict)
    #: closed around the network passes (:mod:`soebench.run.gate`); never closes by default
    gate: ComputeGate = OPEN

    def __post_init__(self) -> None:
        from soebench.metrics import FID, KID, BackgroundPreservation

        names = set(self.chosen.available)
        if names & set(CLIP_METRICS) and self.clip is None:
            raise ValueError("CLIP metrics chosen but no CLIP encoder given")
        if names & set(DISTANCE_METRICS) and self.inception is None:
            raise ValueError("FID/KID chosen but no Inception network given")
        bg_kwargs = {} if self.bg_radius_at_512 is None else {"radius_at_512": self.bg_radius_at_512}
        self.bg = BackgroundPreservation(**bg_kwargs)
        self.states = {}
        self.last_features: list = []
        self.grouped: list = []  # every feature block with its samples' indices and size buckets
        for name in DISTANCE_METRICS:
            if name in names:
                self.states[name] = FID() if name.startswith("fid") else KID()

    @property
    def names(self) -> tuple[str, ...]:
        return self.chosen.available

    def score(self, batch: Sequence[ScoredSample]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{m: math.nan for m in PER_SAMPLE_METRICS} for _ in batch]
        self.last_features: list = []
        if not batch:
            return rows
        names = set(self.names)
        if names & set(CLIP_METRICS):
            self._clip(batch, rows, names)
        if names & set(BG_METRICS):
            for row, s in zip(rows, batch):
                values = self.bg.update(s.original, s.generated, s.mask, sample_id=s.sample_id)
                row.update({k: v for k, v in values.items() if k in names})
        if self.states:
            self._distances(batch)
        verdicts = self._verdicts(batch)
        for row, s, verdict in zip(rows, batch, verdicts):
            row.update(self._taxonomy(s, verdict))
        return rows

    def _verdicts(self, batch: Sequence[ScoredSample]) -> list[dict[str, Any] | Exception | None]:
        """The model tier's verdicts, one encoder pass per batch (None each: weight-free only; the
        exception for each sample when the judge raised, so their labels are errors, not quietly
        weight-free ones)."""
        if self.judge is None or self.classify is None:
            return [None] * len(batch)
        from soebench.taxonomy.clip_judge import judge_crop

        try:
            with self.gate.compute():
                crops = [judge_crop(s.generated, s.mask) for s in batch]
                if callable(getattr(self.judge, "assess_batch", None)):
                    verdicts = self.judge.assess_batch(crops, categories=[s.category for s in batch],
                                                       expected_colors=[s.color for s in batch])
                else:  # a judge with only the one-crop assess()
                    verdicts = [self.judge.assess(c, category=s.category, expected_color=s.color) for c, s in zip(crops, batch)]
        except Exception as exc:  # noqa: BLE001 - recorded per sample like a classifier failure
            return [exc] * len(batch)
        if len(verdicts) != len(batch):
            return [RuntimeError(f"the judge returned {len(verdicts)} verdicts for {len(batch)} crops")] * len(batch)
        return list(verdicts)

    def _clip(self, batch: Sequence[ScoredSample], rows: list[dict[str, Any]], names: set[str]) -> None:
        from soebench.metrics import clip_score, region_pixels

        regions = [r for r in ("local", "global") if f"clip_score_{r}" in names]
        pixels = [region_pixels(s.generated, region, s.bbox) for region in regions for s in batch]
        with self.gate.compute():
            image_feats = self.clip.encode_images(pixels)
            text_feats = self.clip.encode_texts([s.prompt for s in batch])
        n = len(batch)
        for k, region in enumerate(regions):
            scores = clip_score(image_feats[k * n : (k + 1) * n], text_feats)
            scores = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
            for row, value in zip(rows, scores):
                row[f"clip_score_{region}"] = float(value)

    def _distances(self, batch: Sequence[ScoredSample]) -> None:
        from soebench.metrics import crop_box, extract_features

        views = []  # (state names, real?, images)
        if "fid_crop" in self.states or "kid_crop" in self.states:
            for real in (True, False):
                views.append((("fid_crop", "kid_crop"), real, [crop_box(s.original if real else s.generated, s.eval_crop) for s in batch]))
        if "fid_full" in self.states or "kid_full" in self.states:
            for real in (True, False):
                views.append((("fid_full", "kid_full"), real, [s.original if real else s.generated for s in batch]))
        with self.gate.compute():
            feats = extract_features(self.inception, [img for _, _, imgs in views for img in imgs])
        index = np.array([s.index for s in batch], dtype=np.int64)
        groups = [s.group for s in batch]
        start, blocks = 0, []
        for state_names, real, imgs in views:
            blocks.append((state_names, real, feats[start : start + len(imgs)], index, groups))
            start += len(imgs)
        self.add_features(blocks)
        self.last_features = blocks

    def add_features(self, blocks: Sequence[tuple]) -> None:
        """Add Inception feature blocks ``(state names, real?, (N, D) features, sample indices,
        size buckets)`` to the FID/KID states (also how a resumed run restores the batches it
        had already scored)."""
        for state_names, real, block, *_ in blocks:
            for name in state_names:
                if name in self.states and len(block):
                    self.states[name].update_features(block, real=real)
        self.grouped.extend(blocks)

    def _taxonomy(self, s: ScoredSample, verdict: dict[str, Any] | Exception | None = None) -> dict[str, Any]:
        if self.classify is None:
            return {"failure": None, "failure_evidence": None}
        if isinstance(verdict, Exception):
            return _classifier_error(s, f"taxonomy judge (model tier) raised {type(verdict).__name__}: {verdict}")
        extra = {} if verdict is None else {"verdict": verdict, "category": s.category}
        try:
            result = self.classify(s.original, s.generated, s.mask, expected_color=s.color, bbox=list(s.bbox), **extra)
        except Exception as exc:  # noqa: BLE001 - a classifier failure on one sample must not end the run
            return _classifier_error(s, f"taxonomy classifier raised {type(exc).__name__}: {exc}")
        evidence = {k: _plain(v) for k, v in dict(result.evidence).items()}
        return {"failure": str(result.label), "failure_evidence": json.dumps(evidence, sort_keys=True), "_evidence": evidence}

    # -- set-level states ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**{name: m.state_dict() for name, m in self.states.items()}, "_grouped": list(self.grouped)}

    def load_merged(self, states: Sequence[dict[str, Any]]) -> None:
        """Replace the set-level states by the sum of ``states`` (one per shard)."""
        from soebench.metrics import FID, KID

        for name in self.states:
            total = FID() if name.startswith("fid") else KID()
            total.load_state_dict(_empty_state(total))
            for state in states:
                part = FID() if name.startswith("fid") else KID()
                part.load_state_dict(state[name])
                total.merge(part)
            self.states[name] = total
        self.grouped = [block for state in states for block in state.get("_grouped", [])]

    def distances(self) -> dict[str, dict[str, Any]]:
        """FID from its summed state; KID from the features in manifest order (its subsets are
        random draws over positions, so order must not depend on batches or shards)."""
        from soebench.metrics import KID

        out = {}
        for name in DISTANCE_METRICS:
            if name not in self.states:
                continue
            if name.startswith("fid"):
                out[name] = self.states[name].compute().to_dict()
                continue
            kid, sides = KID(), self._sides(name)
            for real, (feats, _) in sides.items():
                kid.update_features(feats, real=real)
            out[name] = kid.compute().to_dict()
        return out

    def _sides(self, name: str) -> dict[bool, tuple[np.ndarray, np.ndarray]]:
        """``{real?: (features, size buckets)}`` of metric ``name`` in manifest order."""
        sides = {}
        for real in (True, False):
            blocks = [b for b in self.grouped if name in b[0] and b[1] is real and len(b[2])]
            if not blocks:
                continue
            index = np.concatenate([b[3] for b in blocks])
            perm = np.argsort(index, kind="stable")
            feats = np.concatenate([b[2] for b in blocks])[perm]
            groups = np.array([g for b in blocks for g in b[4]])[perm]
            sides[real] = (feats, groups)
        return sides

    def distances_by_group(self, order: Sequence[str] = ()) -> dict[str, dict[str, dict[str, Any]]]:
        """FID/KID within each size bucket: ``{metric: {bucket: result dict}}`` (small buckets give
        biased FIDs; the result's ``reason`` says so)."""
        from soebench.metrics import FID, KID

        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name in DISTANCE_METRICS:
            sides = self._sides(name) if name in self.states else {}
            if len(sides) < 2:
                continue
            present = list(dict.fromkeys(sides[True][1].tolist()))
            names = [g for g in order if g in present] + sorted(g for g in present if g not in order)
            per_group = {}
            for g in names:
                metric = FID() if name.startswith("fid") else KID()
                for real, (feats, groups) in sides.items():
                    metric.update_features(feats[groups == g], real=real)
                per_group[g] = metric.compute().to_dict()
            out[name] = per_group
        return out


def _empty_state(metric: Any) -> dict[str, Any]:
    metric.reset()
    return metric.state_dict()


def _plain(value: Any) -> Any:
    """JSON-able evidence values (numpy scalars -> Python)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _classifier_error(s: ScoredSample, message: str) -> dict[str, Any]:
    log.warning("sample %s: %s", s.sample_id, message)
    return {"failure": None, "failure_evidence": json.dumps({"classifier_error": message})}
