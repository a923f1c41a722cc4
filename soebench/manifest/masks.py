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
    """A box (x, y, w, h in pixels) rasterised as a mask, for box-only sources."""
    x, y, w, h = bbox
    mask = np.zeros((height, width), dtype=bool)
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
    mask[y0:y1, x0:x1] = True
    return mask
