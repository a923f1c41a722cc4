"""Baselines that need no weights: they bound the benchmark from above and below.

- ``original``: returns the input unchanged -- the oracle (the object is already there, in the
  right colour); every score of a real editor should be read against it.
- ``opencv-telea`` / ``opencv-ns``: classical inpainting (``cv2.inpaint``) that *removes* the
  object -- what a model that ignores the prompt would do.
- ``mean-fill``: fills the mask (dilated like the OpenCV baselines' by default) with the mean
  colour of a ring around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soebench.models.base import InpaintRequest, InpaintResult, config_to_dict


@dataclass(frozen=True)
class NoConfig:
    """Adapters without options."""


@dataclass(frozen=True)
class OpenCVConfig:
    """``radius``: cv2.inpaint neighbourhood radius in pixels; ``dilate``: grow the mask by this
    many pixels first (covers anti-aliased object borders)."""

    radius: float = 3.0
    dilate: int = 2

    def __post_init__(self) -> None:
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0 pixels; got {self.radius}")
        if self.dilate < 0:
            raise ValueError(f"dilate must be >= 0 pixels; got {self.dilate}")


@dataclass(frozen=True)
class MeanFillConfig:
    """``ring``: width in pixels of the band around the filled region whose mean colour fills it;
    ``dilate``: grow the mask by this many pixels first, as the OpenCV baselines do (the object's
    anti-aliased rim lies just outside its polygon; left in place, it outlines the fill)."""

    ring: int = 5
    dilate: int = 2

    def __post_init__(self) -> None:
        if self.ring < 1:
            raise ValueError(f"ring must be >= 1 pixel; got {self.ring}")
        if self.dilate < 0:
            raise ValueError(f"dilate must be >= 0 pixels; got {self.dilate}")


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
