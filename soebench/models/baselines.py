"""Baselines that need no weights: they bound the benchmark from above and below.

- ``original``: returns the input unchanged -- the oracle (the object is already there, in the
  right colour); every score of a real editor should be read against it.
- ``opencv-telea`` / ``opencv-ns``: classical inpainting (``cv2.inpaint``) that *removes* the
  object -- what a model that ignores the prompt would do.
- ``mean-fill``: fills the mask (dilated like the OpenCV baselines' by default) with the mean
  colour of a ring around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soebench.models.base import InpaintRequest, InpaintResult, config_to_dict


@dataclass(frozen=True)
class NoConfig:
    """Adapters without options."""


# cv2.inpaint rounds its radius to a whole number and clamps it to 1..100 (photo/src/inpaint.cpp),
# so a radius over 100 is silently 100 and inf silently 1: refused rather than recorded as given.
MAX_RADIUS = 100
# The mask is grown with an elliptical kernel of (2n+1)^2 pixels per sample, whose cost grows with
# its area (about 0.6 s at 256 px and 13 s at 1024 px on a 640x480 image; 100000 px needs a 40 GB
# kernel). 256 px already spreads a small object over most of a COCO-sized (640 px) image, so a
# larger growth makes the baseline a whole-image fill, not a remover.
MAX_GROWTH = 256


def _check_growth(name: str, value: int, minimum: int) -> None:
    if not minimum <= value <= MAX_GROWTH:
        raise ValueError(f"{name} must be >= {minimum} and <= {MAX_GROWTH} pixels; got {value}")


@dataclass(frozen=True)
class OpenCVConfig:
    """``radius``: cv2.inpaint neighbourhood radius in pixels (0 < radius <= 100; OpenCV rounds it
    and uses at least 1); ``dilate``: grow the mask by this many pixels first (0..256; covers
    anti-aliased object borders)."""

    radius: float = 3.0
    dilate: int = 2

    def __post_init__(self) -> None:
        if not math.isfinite(self.radius):
            raise ValueError(f"radius must be a finite number of pixels; got {self.radius}")
        if not 0 < self.radius <= MAX_RADIUS:
            raise ValueError(f"radius must be > 0 and <= {MAX_RADIUS} pixels (cv2.inpaint uses at most {MAX_RADIUS}); "
                             f"got {self.radius}")
        _check_growth("dilate", self.dilate, 0)


@dataclass(frozen=True)
class MeanFillConfig:
    """``ring``: width in pixels of the band around the filled region whose mean colour fills it
    (1..256); ``dilate``: grow the mask by this many pixels first (0..256), as the OpenCV baselines
    do (the object's anti-aliased rim lies just outside its polygon; left in place, it outlines the
    fill)."""

    ring: int = 5
    dilate: int = 2

    def __post_init__(self) -> None:
        _check_growth("ring", self.ring, 1)
        _check_growth("dilate", self.dilate, 0)


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """The removers grow the mask with the same kernel as the background metrics' dilation."""
    from soebench.metrics.functional import dilate_mask

    return dilate_mask(mask, pixels, pixels)


class _Baseline:
    name = "baseline"
    version = "1"

    def __init__(self, config: Any = None):
        self.config = config if config is not None else NoConfig()

    def cache_token(self) -> dict[str, Any]:
        return {"adapter": self.name, "version": self.version, "config": config_to_dict(self.config)}

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[InpaintResult]:
        return [InpaintResult(r.sample_id, self.inpaint_one(r)) for r in requests]

    def inpaint_one(self, request: InpaintRequest) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class OriginalBaseline(_Baseline):
    """The oracle upper bound: the input image itself."""

    name = "original"

    def inpaint_one(self, request: InpaintRequest) -> np.ndarray:
        return request.image.copy()


class OpenCVBaseline(_Baseline):
    """``cv2.inpaint`` with the Telea or Navier-Stokes method."""

    def __init__(self, config: OpenCVConfig, method: str):
        super().__init__(config)
        if method not in ("telea", "ns"):
            raise ValueError(f"unknown OpenCV inpainting method {method!r}")
        self.method = method
        self.name = f"opencv-{method}"

    def inpaint_one(self, request: InpaintRequest) -> np.ndarray:
        import cv2

        flag = cv2.INPAINT_TELEA if self.method == "telea" else cv2.INPAINT_NS
        mask = _dilate(request.mask, self.config.dilate).astype(np.uint8) * 255
        bgr = np.ascontiguousarray(request.image[..., ::-1])
        out = cv2.inpaint(bgr, mask, float(self.config.radius), flag)
        return np.ascontiguousarray(out[..., ::-1])


class MeanFillBaseline(_Baseline):
    """Fill the mask (grown by ``dilate``) with the mean colour of a ring of ``ring`` pixels around it."""

    name = "mean-fill"
    version = "2"  # 2: the mask is dilated first (``dilate``, default 2 px)

    def inpaint_one(self, request: InpaintRequest) -> np.ndarray:
        mask = _dilate(request.mask, self.config.dilate)
        ring = _dilate(mask, self.config.ring) & ~mask
        source = ring if ring.any() else ~mask
        out = request.image.copy()
        if source.any() and mask.any():
            colour = request.image[source].reshape(-1, 3).mean(axis=0)
            out[mask] = np.round(colour).astype(np.uint8)
        return out
