"""The model tier: zero-shot CLIP checks on the generated object's crop.

A *judge* is any object with::

    assess(crop: np.ndarray[HxWx3 uint8], *, category: str | None, expected_color: str | None)
        -> dict with keys "present", "distorted", "colour_agrees" (probabilities in [0, 1] or None)
           and optionally "colour_top" (the best colour term, a string)

so a detector or a VQA model can plug in the same way. :func:`soebench.taxonomy.classify`
averages each probability with the weight-free score of the same check.

:class:`ClipJudge` implements it with an open_clip encoder (:class:`soebench.metrics.clip_model.ClipEncoder`
or anything with ``encode_images`` / ``encode_texts`` returning L2-normalised features):

- ``present``: softmax over "a photo of a {category}" against background-only prompts;
- ``distorted``: softmax of "a distorted, garbled image of a {category}" against the clean prompt;
- ``colour_agrees``: the expected colour's probability over the best colour's, among
  "a photo of a {colour} {category}" for every basic colour term.

The temperature is CLIP's usual logit scale (100). With random weights (tests) the numbers carry
no meaning; only the plumbing is tested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BACKGROUND_PROMPTS = (
    "a photo of an empty background",
    "a photo of a blank surface",
    "a blurry patch of background with nothing in it",
)
LOGIT_SCALE = 100.0


def judge_crop(image: np.ndarray, mask: np.ndarray, *, context: float = 1.5) -> np.ndarray:
    """A square crop centred on the mask's box, ``context`` times its longer side (clipped to the
    image), the view a zero-shot model needs to see the object with a little surrounding."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    cy, cx = (rows[0] + rows[-1] + 1) / 2.0, (cols[0] + cols[-1] + 1) / 2.0
    half = max(rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]) * context / 2.0
    h, w = mask.shape
    y0, y1 = int(max(0, np.floor(cy - half))), int(min(h, np.ceil(cy + half)))
    x0, x1 = int(max(0, np.floor(cx - half))), int(min(w, np.ceil(cx + half)))
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max()
    e = np.exp(z)
    return e / e.sum()


class ClipJudge:
    """Zero-shot presence / colour / distortion checks with a CLIP encoder (see module docstring)."""

    def __init__(self, encoder: Any, *, logit_scale: float = LOGIT_SCALE) -> None:
        if not (hasattr(encoder, "encode_images") and hasattr(encoder, "encode_texts")):
            raise TypeError("ClipJudge needs an encoder with encode_images and encode_texts")
        self.encoder = encoder
        self.logit_scale = float(logit_scale)
        self._text_cache: dict[tuple[str, ...], np.ndarray] = {}

    @classmethod
    def load(cls, model: str = "ViT-B-32", pretrained: str | None = "openai", *, weights: str | None = None, device: str = "cpu") -> ClipJudge:
        """Load CLIP from local weights (:func:`soebench.metrics.load_clip`; raises
        MissingWeightsError with a how-to when they are not on disk)."""
        from soebench.metrics.clip_model import load_clip

        return cls(load_clip(model, pretrained, weights=weights, device=device))

    def describe(self) -> dict[str, Any]:
        return {"judge": "clip", "source": dict(getattr(self.encoder, "source", {}) or {})}

    def _texts(self, prompts: tuple[str, ...]) -> np.ndarray:
        if prompts not in self._text_cache:
            feats = self.encoder.encode_texts(list(prompts))
            self._text_cache[prompts] = np.asarray(feats.detach().cpu() if hasattr(feats, "detach") else feats, dtype=np.float64)
        return self._text_cache[prompts]

    def _probs(self, image_feat: np.ndarray, prompts: tuple[str, ...]) -> np.ndarray:
        return _softmax(self.logit_scale * (self._texts(prompts) @ image_feat))

    def assess(self, crop: np.ndarray, *, category: str | None = None, expected_color: str | None = None) -> dict[str, Any]:
        return self.assess_batch([crop], categories=[category], expected_colors=[expected_color])[0]

    def assess_batch(self, crops: Sequence[np.ndarray], *, categories: Sequence[str | None],
                     expected_colors: Sequence[str | None]) -> list[dict[str, Any]]:
        """:meth:`assess` for many crops, with one image-encoder pass (what ``evaluate`` calls per batch)."""
        if not len(crops) == len(categories) == len(expected_colors):
            raise ValueError(f"assess_batch: {len(crops)} crops, {len(categories)} categories and "
                             f"{len(expected_colors)} expected colours; one of each per crop")
        if not len(crops):
            return []
        feats = self.encoder.encode_images(list(crops))
        image_feats = np.asarray(feats.detach().cpu() if hasattr(feats, "detach") else feats, dtype=np.float64)
        return [self._verdict(f, category, colour) for f, category, colour in zip(image_feats, categories, expected_colors)]

    def _verdict(self, image_feat: np.ndarray, category: str | None, expected_color: str | None) -> dict[str, Any]:
        from soebench.mining.colour import COLOUR_TERMS

        thing = category or "object"
        present = self._probs(image_feat, (f"a photo of a {thing}", *BACKGROUND_PROMPTS))
        distorted = self._probs(image_feat, (f"a photo of a {thing}", f"a distorted, garbled, glitchy image of a {thing}"))
        colours = self._probs(image_feat, tuple(f"a photo of a {c} {thing}" for c in COLOUR_TERMS))
        top = int(np.argmax(colours))
        agrees = float(colours[COLOUR_TERMS.index(expected_color)] / colours[top]) if expected_color in COLOUR_TERMS else None
        return {"present": float(present[0]), "distorted": float(distorted[1]), "colour_agrees": agrees,
                "colour_top": COLOUR_TERMS[top]}
