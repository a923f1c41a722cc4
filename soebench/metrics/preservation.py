"""Background preservation: how much an edit changed the image *outside* the edited object.

Per sample, the object mask is dilated (OpenCV's elliptical kernel of ``radius_at_512`` px at the
protocol's 512x512 frame, i.e. radii ``r*H/512`` by ``r*W/512`` in image pixels; see
:func:`~soebench.metrics.functional.dilate_mask`) and PSNR, SSIM and MSE are
measured on the remaining pixels (:mod:`soebench.metrics.functional`). The state is per-metric
sums and counts of finite values, so shards merge by adding.

Both images of a sample must have the same dtype: uint8 in [0, 255], or float in
[0, ``data_range``] (default 1.0); anything else is an error, not a silently rescaled score
(:func:`~soebench.metrics.functional.image_data_range`). ``evaluate`` passes uint8.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from soebench.errors import InputError
from soebench.metrics._state import SummableMetric
from soebench.metrics.functional import (
    DEFAULT_DILATION_AT_512,
    background_keep_mask,
    masked_mse,
    masked_psnr,
    masked_ssim,
)

PRESERVATION_METRICS = ("bg_psnr", "bg_ssim", "bg_mse")


def background_preservation(
    original: np.ndarray,
    generated: np.ndarray,
    object_mask: np.ndarray,
    *,
    radius_at_512: float = DEFAULT_DILATION_AT_512,
    data_range: float | None = None,
) -> dict[str, float]:
    """``{"bg_psnr", "bg_ssim", "bg_mse"}`` for one sample (HxWx3 images of one dtype, uint8 or
    float in [0, ``data_range``]; HxW bool mask). TypeError for mixed or unsupported dtypes,
    ValueError for float values outside [0, ``data_range``]."""
    keep = background_keep_mask(np.asarray(object_mask, dtype=bool), radius_at_512)
    return {
        "bg_psnr": masked_psnr(original, generated, keep, data_range=data_range),
        "bg_ssim": masked_ssim(original, generated, keep, data_range=data_range),
        "bg_mse": masked_mse(original, generated, keep, data_range=data_range),
    }


class BackgroundPreservation(SummableMetric):
    """Mean bg_psnr / bg_ssim / bg_mse over samples.

    Infinite PSNR (background untouched) is counted separately (``n_inf_psnr``) and left out of
    the PSNR mean, which would otherwise be infinite for any run containing one such sample;
    NaN values (no background pixel left) are counted in ``n_nan``.

    ``data_range`` is that of float images (default 1.0; uint8 images are always [0, 255]). The
    scores are range-normalised, so it is not part of the merge settings.
    """

    _state_names = (
        "sum_bg_psnr", "n_bg_psnr", "sum_bg_ssim", "n_bg_ssim", "sum_bg_mse", "n_bg_mse", "n_inf_psnr", "n_nan",
    )

    def __init__(self, *, radius_at_512: float = DEFAULT_DILATION_AT_512, data_range: float | None = None):
        self.radius_at_512 = float(radius_at_512)
        self.data_range = data_range
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"radius_at_512": self.radius_at_512}

    def reset(self) -> None:
        """Forget every sample."""
        for name in PRESERVATION_METRICS:
            setattr(self, f"sum_{name}", np.array(0.0))
            setattr(self, f"n_{name}", np.array(0, dtype=np.int64))
        self.n_inf_psnr = np.array(0, dtype=np.int64)
        self.n_nan = np.array(0, dtype=np.int64)

    def update(
        self, original: np.ndarray, generated: np.ndarray, object_mask: np.ndarray, *, sample_id: str | None = None
    ) -> dict[str, float]:
        """Measure one sample and add it to the state; returns its three values. Raises
        :class:`InputError` naming ``sample_id`` when the sizes disagree, TypeError / ValueError
        (naming it too) when the dtypes differ or float values leave [0, ``data_range``]."""
        o, g, m = np.asarray(original), np.asarray(generated), np.asarray(object_mask)
        where = f"sample {sample_id}: " if sample_id else ""
        if o.shape != g.shape:
            raise InputError(
                f"{where}generated image is {g.shape[1]}x{g.shape[0]} but the original is {o.shape[1]}x{o.shape[0]}",
                hint="outputs must have the input image's size",
            )
        if m.shape != o.shape[:2]:
            raise InputError(f"{where}object mask is {m.shape[1]}x{m.shape[0]} but the image is {o.shape[1]}x{o.shape[0]}")
        try:  # the dtype / range check inside, its error naming the sample (same type)
            values = background_preservation(o, g, m, radius_at_512=self.radius_at_512, data_range=self.data_range)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}{exc}") from None
        self.update_values(values)
        return values

    def update_values(self, values: dict[str, float]) -> None:
        """Add one sample's already computed ``{"bg_psnr", "bg_ssim", "bg_mse"}`` (e.g. restored
        from a results table). Infinite PSNR and NaN values are counted, not averaged."""
        if any(math.isnan(values[k]) for k in PRESERVATION_METRICS):
            self.n_nan = self.n_nan + 1
        for name in PRESERVATION_METRICS:
            v = float(values[name])
            if math.isnan(v):
                continue
            if math.isinf(v):
                self.n_inf_psnr = self.n_inf_psnr + 1
                continue
            setattr(self, f"sum_{name}", getattr(self, f"sum_{name}") + v)
            setattr(self, f"n_{name}", getattr(self, f"n_{name}") + 1)

    def compute(self) -> dict[str, float]:
        """Mean of each metric over its finite values (NaN when there are none; ``bg_psnr`` is
        inf when every counted background was untouched), plus ``n_inf_psnr`` and ``n_nan``."""
        out: dict[str, float] = {}
        for name in PRESERVATION_METRICS:
            n = int(getattr(self, f"n_{name}"))
            out[name] = float(getattr(self, f"sum_{name}") / n) if n else math.nan
        if int(self.n_bg_psnr) == 0 and int(self.n_inf_psnr) > 0:
            out["bg_psnr"] = math.inf  # every background was left untouched
        out["n_inf_psnr"] = int(self.n_inf_psnr)
        out["n_nan"] = int(self.n_nan)
        return out
