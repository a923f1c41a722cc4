"""Crop geometry shared by the manifest, the evaluator (FID crops) and the trainer (teacher view).

Both crops are squares in *normalised* image coordinates, i.e. squares in pixels once the image
is resized to the SOEBench protocol's 512x512; in original pixels they have the image's aspect.
All boxes returned are ``(x0, y0, x1, y1)`` floats in original image pixels, half-open.
"""

from __future__ import annotations

from collections.abc import Sequence

TEACHER_HALF_SIZE = 0.25
EVAL_HALF_SIZE = 0.125


def _centre(bbox: Sequence[float], width: int, height: int) -> tuple[float, float]:
    x, y, w, h = bbox
    return (x + w / 2.0) / width, (y + h / 2.0) / height


def _to_pixels(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def teacher_crop(bbox: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """The cross-scale (teacher) view: a square of half-size 0.25 around the object centre when the
    centre lies in the central region ``[0.25, 0.75]^2`` (so the square fits in the image), else the
    image quadrant that contains the centre -- the rule of the public SOEDiff code.
    """
    cx, cy = _centre(bbox, width, height)
    h = TEACHER_HALF_SIZE
    if h <= cx <= 1 - h and h <= cy <= 1 - h:
        box = (cx - h, cy - h, cx + h, cy + h)
    else:
        qx = 0.0 if cx < 0.5 else 0.5
        qy = 0.0 if cy < 0.5 else 0.5
        box = (qx, qy, qx + 0.5, qy + 0.5)
    return _to_pixels(box, width, height)


def eval_crop(bbox: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """The SOEBench FID crop: a square of half-size 0.125 around the box centre, shifted (not
    shrunk) so that it lies inside the image."""
    cx, cy = _centre(bbox, width, height)
    h = EVAL_HALF_SIZE
    x0 = min(max(cx - h, 0.0), 1.0 - 2 * h)
    y0 = min(max(cy - h, 0.0), 1.0 - 2 * h)
    return _to_pixels((x0, y0, x0 + 2 * h, y0 + 2 * h), width, height)


def crop_to_int(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Round a float crop to integer pixel bounds inside the image (for slicing arrays)."""
    x0, y0, x1, y1 = box
    ix0 = max(0, min(width - 1, int(round(x0))))
    iy0 = max(0, min(height - 1, int(round(y0))))
    ix1 = max(ix0 + 1, min(width, int(round(x1))))
    iy1 = max(iy0 + 1, min(height, int(round(y1))))
    return ix0, iy0, ix1, iy1
