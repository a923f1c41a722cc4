"""Named image preprocessing for the feature networks; the mode names are recorded with scores.

FID/KID: ``clean`` -- clean-fid's "clean" mode (Parmar et al. 2022): each channel of the uint8
image is converted to float32 and resized separately with PIL's antialiased bicubic filter to
299x299, clipped to [0, 255] and *not* re-quantised (clean-fid's ``make_resizer("PIL", False,
"bicubic", (299, 299))``). Crops and full images are resized straight to 299x299 (aspect not
kept, as in clean-fid; SOEBench's eval crops are squares in the 512x512 protocol frame).

CLIP: ``pad-square-bicubic`` -- the crop (a tight object box, or the whole image) is padded to a
square with the model's mean colour (so padding normalises to zero) and resized with PIL bicubic
to the model's input size. Tiny box crops are thus upsampled whole: no part of a thin object is
cut away (the usual resize-shorter-side + centre-crop would drop the ends of an elongated box)
and nothing is distorted (a plain resize would squash it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FID_RESIZE_MODE = "clean"
FID_RESIZE_DESCRIPTION = (
    "clean-fid 'clean': PIL bicubic (antialiased) per float32 channel to 299x299, clip [0,255], no re-quantisation"
)
FID_INPUT_SIZE = 299

CLIP_PREPROCESS_MODE = "pad-square-bicubic"
CLIP_PREPROCESS_DESCRIPTION = "pad to square with the model mean colour, PIL bicubic resize to the model input size"


def as_rgb_uint8(image: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Check an ``HxWx3`` uint8 RGB array (also accepts ``HxWx4`` by dropping alpha)."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise ValueError(f"{what} must be an HxWx3 uint8 RGB array; got shape {arr.shape}, dtype {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{what} is empty: shape {arr.shape}")
    return arr[..., :3]


def clean_resize(image: np.ndarray, size: int = FID_INPUT_SIZE) -> np.ndarray:
    """clean-fid 'clean' resize: uint8 ``HxWx3`` -> float32 ``size x size x 3`` in [0, 255]."""
    from PIL import Image

    arr = as_rgb_uint8(image)
    channels = []
    for c in range(3):
        plane = Image.fromarray(arr[:, :, c].astype(np.float32), mode="F")
        plane = plane.resize((size, size), resample=Image.BICUBIC)
        channels.append(np.asarray(plane, dtype=np.float32).clip(0, 255))
    return np.stack(channels, axis=2)


#: how far (pixels) a box may lie beyond the image and still be clamped to its edge: the rounding
#: slack the manifest check allows a bbox (``soebench.manifest.schema.BOX_TOLERANCE_PX``)
BOX_OUTSIDE_TOLERANCE_PX = 1.0


def crop_box(image: np.ndarray, box_xyxy: Sequence[float]) -> np.ndarray:
    """Pixels of ``image`` inside the float box ``(x0, y0, x1, y1)``, rounded outward (floor of the
    start, ceil of the end) so the whole box is included, clamped to the image, at least 1 px.

    A box partly outside the image is clamped to it; one that lies wholly outside (beyond
    :data:`BOX_OUTSIDE_TOLERANCE_PX` of rounding slack) raises ValueError naming the box and the
    image size: clamping it would score a 1-pixel corner of the image as if it were the object."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"invalid box {tuple(box_xyxy)} (need x0 < x1, y0 < y1)")
    tol = BOX_OUTSIDE_TOLERANCE_PX
    if x1 <= -tol or y1 <= -tol or x0 >= w + tol or y0 >= h + tol:
        raise ValueError(
            f"box (x0, y0, x1, y1) = {tuple(box_xyxy)} lies outside the {w}x{h} (width x height) image; "
            "boxes are in the image's own pixels"
        )
    ix0 = min(max(int(math.floor(x0)), 0), w - 1)
    iy0 = min(max(int(math.floor(y0)), 0), h - 1)
    ix1 = max(min(int(math.ceil(x1)), w), ix0 + 1)
    iy1 = max(min(int(math.ceil(y1)), h), iy0 + 1)
    return image[iy0:iy1, ix0:ix1]


def bbox_xywh_to_xyxy(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` (the manifest's ``bbox``) -> ``(x0, y0, x1, y1)``."""
    x, y, w, h = (float(v) for v in bbox)
    return x, y, x + w, y + h


def pad_to_square(image: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """Centre ``image`` on a square canvas of side ``max(H, W)`` filled with ``fill`` (RGB)."""
    h, w = image.shape[:2]
    side = max(h, w)
    if h == w:
        return image
    canvas = np.empty((side, side, 3), dtype=image.dtype)
    canvas[...] = np.asarray(fill, dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image[..., :3]
    return canvas


def clip_pixels(image: np.ndarray, size: int, mean: Sequence[float]) -> np.ndarray:
    """``pad-square-bicubic``: uint8 ``HxWx3`` -> uint8 ``size x size x 3`` ready for normalisation."""
    from PIL import Image

    arr = as_rgb_uint8(image)
    fill = [int(round(255 * m)) for m in mean]
    square = pad_to_square(arr, fill)
    if square.shape[0] != size:
        square = np.asarray(Image.fromarray(square).resize((size, size), resample=Image.BICUBIC))
    return square
