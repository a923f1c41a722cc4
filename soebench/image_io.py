"""Turning any decoded PIL image into the 8-bit RGB array every part of soebench works on.

Why not ``img.convert("RGB")`` alone: Pillow converts high-bit-depth grayscale (16-bit PNGs
open as ``I;16``, 32-bit integer and float images as ``I`` and ``F``) by *clipping* each value
to 0..255, so a 16-bit photograph becomes almost white and its colour words and scores are
wrong without any error. Those modes are scaled to 8 bits here instead; every other mode
(palette, grayscale, CMYK, alpha, 16-bit RGB, which Pillow itself reduces to 8 bits) goes
through Pillow's own conversion.
"""

from __future__ import annotations

import numpy as np

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _gray_to_uint8(img) -> np.ndarray:
    values = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    if img.mode == "F":
        values = values.astype(np.float64)
        finite = values[np.isfinite(values)]
        # float images hold either 0..1 intensities or 0..255 levels
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.nan_to_num(values * scale), 0, 255).round().astype(np.uint8)
    # mode "I": a 16-bit PNG under some Pillow versions, or 8-bit levels stored as int32
    values = values.astype(np.int64)
    if values.size and values.max() > 255:
        return (np.clip(values, 0, 65535) >> 8).astype(np.uint8)
    return np.clip(values, 0, 255).astype(np.uint8)


def rgb_array(img) -> np.ndarray:
    """``img`` (a PIL image) as an (H, W, 3) uint8 array, high bit depths scaled, not clipped."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        gray = _gray_to_uint8(img)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"))


def gray_array(img) -> np.ndarray:
    """``img`` as an (H, W) uint8 array, high bit depths scaled, not clipped (masks)."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        return _gray_to_uint8(img)
    if img.mode in ("L", "1", "P"):
        return np.asarray(img).astype(np.uint8)
    return np.asarray(img.convert("L"))
