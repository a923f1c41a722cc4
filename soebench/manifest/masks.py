"""Instance masks <-> the manifest's COCO compressed RLE column."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Binary HxW mask -> ``{"size": [h, w], "counts": str}`` (COCO compressed RLE)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """Manifest RLE -> boolean HxW mask."""
    counts = rle["counts"]
    coco = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(coco).astype(bool)


def box_mask(bbox, width: int, height: int) -> np.ndarray:
    """A box (x, y, w, h in pixels) rasterised as a mask, for box-only sources: its edges
    rounded to the nearest pixel boundary (an 80 x 60 box whose coordinates went through 6
    decimals is 80 x 60 pixels, not 81 x 61), at least one pixel each way."""
    x, y, w, h = bbox
    mask = np.zeros((height, width), dtype=bool)
    x0, y0 = min(max(0, int(np.floor(x + 0.5))), width - 1), min(max(0, int(np.floor(y + 0.5))), height - 1)
    x1, y1 = min(width, max(x0 + 1, int(np.floor(x + w + 0.5)))), min(height, max(y0 + 1, int(np.floor(y + h + 0.5))))
    mask[y0:y1, x0:x1] = True
    return mask
