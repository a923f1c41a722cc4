"""CLIP-Score of edited objects: local (tight box crop, the SOEBench protocol) or global.

``max(100 * cos(image, text), 0)`` per sample with an injected :class:`ClipEncoder`
(:func:`soebench.metrics.features.load_clip`). The state is the running sum, sum of squares
and count, so shards merge by adding; ``update`` also returns the per-sample scores for the
per-sample table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike

from soebench.metrics._state import SummableMetric
from soebench.metrics.functional import clip_score
from soebench.metrics.preprocess import CLIP_PREPROCESS_MODE, as_rgb_uint8, bbox_xywh_to_xyxy, crop_box

REGIONS = ("local", "global")


def region_pixels(image: np.ndarray, region: str, bbox_xywh: Sequence[float] | None = None) -> np.ndarray:
    """The pixels CLIP scores: the tight ``bbox`` crop (``local``) or the whole image (``global``)."""
    arr = as_rgb_uint8(image)
    if region == "global":
        return arr
    if region != "local":
        raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
    if bbox_xywh is None:
        raise ValueError("local CLIP-Score needs the object's bbox [x, y, w, h]")
    try:
        return crop_box(arr, bbox_xywh_to_xyxy(bbox_xywh))
    except ValueError as exc:  # crop_box names the corner form; the caller gave [x, y, w, h]
        raise ValueError(f"bbox [x, y, w, h] = {list(bbox_xywh)}: {exc}") from exc


class ImageTextEncoder(Protocol):
    """What CLIPScore needs of an encoder (:class:`~soebench.metrics.clip_model.ClipEncoder`, or a
    stand-in): row-aligned ``(N, D)`` features, numpy arrays or torch tensors."""

    def encode_images(self, images: Sequence[np.ndarray]) -> ArrayLike: ...

    def encode_texts(self, texts: Sequence[str]) -> ArrayLike: ...


class CLIPScore(SummableMetric):
    """Mean CLIP-Score over samples. ``region='local'`` crops each image to its object's box
    before encoding; ``'global'`` encodes the whole image."""

    _state_names = ("total", "total_sq", "count")

    def __init__(self, encoder: ImageTextEncoder | None = None, *, region: str = "local"):
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
        self.encoder = encoder
        self.region = region
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"region": self.region, "preprocess": CLIP_PREPROCESS_MODE}

    def reset(self) -> None:
        """Forget every sample."""
        self.total = np.array(0.0)
        self.total_sq = np.array(0.0)
        self.count = np.array(0, dtype=np.int64)

    def update(
        self,
        images: Sequence[np.ndarray],
        texts: Sequence[str],
        bboxes: Sequence[Sequence[float]] | None = None,
    ) -> np.ndarray:
        """Score ``images`` (uint8 HxWx3) against ``texts``; ``bboxes`` ([x, y, w, h] pixels, one per
        image) are required for the local region. Returns the per-sample scores. TypeError when
        ``texts`` is one string."""
        if self.encoder is None:
            raise ValueError("CLIPScore has no encoder; pass one or use update_features()")
        # A str is a Sequence[str] of its letters: len() and list() would score 'cup' as 'c', 'u', 'p'.
        if isinstance(texts, str):
            raise TypeError(
                "CLIPScore.update takes a sequence of texts, one per image, not one string; "
                "pass [text] * len(images) to score every image against the same text"
            )
        if len(images) != len(texts):
            raise ValueError(f"got {len(images)} images but {len(texts)} texts")
        if bboxes is not None and len(bboxes) != len(images):
            raise ValueError(f"got {len(images)} images but {len(bboxes)} bboxes")
        if len(images) == 0:
            return np.zeros(0)
        crops = [region_pixels(img, self.region, None if bboxes is None else bboxes[i]) for i, img in enumerate(images)]
        image_feats = self.encoder.encode_images(crops)
        text_feats = self.encoder.encode_texts(list(texts))
        return self.update_features(image_feats, text_feats)

    def update_features(self, image_feats: ArrayLike, text_feats: ArrayLike) -> np.ndarray:
        """Score row-aligned ``(N, D)`` image and text features (numpy or torch, normalised or
        not; see :func:`~soebench.metrics.functional.clip_score`), add the scores to the state
        and return them as float64 numpy."""
        scores = clip_score(image_feats, text_feats)
        scores = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
        scores = scores.astype(np.float64)
        self.update_scores(scores)
        return scores

    def update_scores(self, scores: Sequence[float]) -> None:
        """Add already computed per-sample scores (e.g. restored from a results table)."""
        s = np.asarray(scores, dtype=np.float64)
        self.total = self.total + s.sum()
        self.total_sq = self.total_sq + (s**2).sum()
        self.count = self.count + s.size

    def compute(self) -> float:
        """Mean score; NaN before any update."""
        n = int(self.count)
        return float(self.total / n) if n else math.nan

    def std(self) -> float:
        """Sample standard deviation (``ddof=1``) of the scores from the running sums; NaN below
        2 samples."""
        n = int(self.count)
        if n < 2:
            return math.nan
        var = (float(self.total_sq) - float(self.total) ** 2 / n) / (n - 1)
        return math.sqrt(max(var, 0.0))
