r"""Geometry of cross-scale score distillation: teacher crop <-> latent grids, and consistent noise.

Two views of one training image at one timestep ``t``:

- the **student** sees the whole image resized to ``R x R``; its latent grid is ``L x L`` with
  ``L = R / f`` (``f`` = VAE scale factor, 8 for SD). The object is small.
- the **teacher** (the same UNet with its LoRA adapters disabled) sees the image's ``teacher_crop``
  (manifest column; a square in normalised image coordinates, see :mod:`soebench.mining.crops`)
  upscaled to ``R x R``, so the object is ``k`` times larger; its latent grid is also ``L x L``.

**Snapping.** The crop is snapped to the student's latent grid (:func:`snap_crop`): its side becomes
``n`` latent cells with ``n`` a divisor of ``L`` (so ``k = L / n`` is an integer) and its corner an
integer cell. The teacher image is then cut from the *original* image at exactly that snapped box
(:meth:`LatentCrop.image_box`), so teacher latent cell ``(i, j)`` covers the same image area as the
``k x k``-th part of student cell ``(row0 + i // k, col0 + j // k)``. Snapping moves the crop by at
most half a latent cell (4 px at 512) and changes its side by less than a factor of two only in
degenerate cases (SOEBench crops have side 0.5, i.e. ``n = L / 2``, ``k = 2`` exactly).

**Consistent noise.** The student's noise ``e_s`` is i.i.d. N(0, 1) on ``L x L``. The teacher needs
noise ``e_t`` on its ``L x L`` grid that (a) is itself i.i.d. N(0, 1) -- the only noise the denoiser
was trained on -- and (b) *is* the student's noise over the crop, seen at ``k`` times the
resolution. Treat a latent noise value as the integral of white noise over its cell, normalised to
unit variance: a student cell is the union of ``k x k`` teacher cells, so
``e_s = (1 / k) * sum_{k x k block} e_t`` -- the block *sum* divided by ``k`` (the block mean times
``k``). Two ways to build ``e_t`` from the crop of ``e_s``:

- ``nearest``: repeat each student value over its ``k x k`` block. Every value still has variance 1,
  but the ``k^2`` values of a block are identical (correlation 1): low-frequency noise the model
  never saw at training, and its block mean is ``e_s`` rather than ``e_s / k`` (so the map back is
  the plain block mean). Offered for comparison.
- ``conditional`` (default): sample i.i.d. ``z ~ N(0, 1)`` on the teacher grid and replace each
  block's mean by the student's value scaled to the right variance,
  ``e_t = z - blockmean(z) + up(e_s) / k``. Variance argument: ``blockmean(z)`` has variance
  ``1 / k^2`` and is independent of the residuals ``z - blockmean(z)`` (Gaussian, uncorrelated);
  ``up(e_s) / k`` is an independent N(0, 1 / k^2) value with the same role, so ``e_t`` has exactly the
  law of ``z``: i.i.d. N(0, 1) (per-element variance ``(1 - 1/k^2) + 1/k^2 = 1``; within-block
  covariance ``-1/k^2 + 1/k^2 = 0``). And ``k * blockmean(e_t) = e_s`` exactly. This is the
  conditional sampling of "noise upsampling" (cf. Chang et al., *How I Warped Your Noise*, 2024).

**Mapping the teacher's prediction back.** The teacher predicts ``e_t``; the linear map that sends
``e_t`` to ``e_s`` is ``A = k * avgpool_k`` (``conditional``) or ``avgpool_k`` (``nearest``), so
``A(teacher prediction)`` is the teacher's estimate of the student's noise over the crop. It
supervises the student's prediction inside the object mask (stop-gradient on the teacher):
``L_csd = || m * (eps_student[crop] - sg(A(eps_teacher))) ||^2 / sum(m)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LatentCrop:
    """A square crop of the student latent grid: rows/cols ``[row0, row0+size)``/``[col0, col0+size)``."""

    row0: int
    col0: int
    size: int
    latent_size: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.latent_size % self.size:
            raise ValueError(f"crop size {self.size} must divide the latent size {self.latent_size}")
        if not (0 <= self.row0 <= self.latent_size - self.size and 0 <= self.col0 <= self.latent_size - self.size):
            raise ValueError(f"crop {self} lies outside the {self.latent_size}x{self.latent_size} latent grid")

    @property
    def scale(self) -> int:
        """k: how many times larger the teacher sees the crop."""
        return self.latent_size // self.size

    def normalized_box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in normalised image coordinates."""
        L = self.latent_size
        return (self.col0 / L, self.row0 / L, (self.col0 + self.size) / L, (self.row0 + self.size) / L)

    def image_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in original image pixels (floats): where to cut the teacher view."""
        u0, v0, u1, v1 = self.normalized_box()
        return (u0 * width, v0 * height, u1 * width, v1 * height)

    def pixel_slices(self, factor: int) -> tuple[slice, slice]:
        """Row/column slices of the crop on a pixel grid ``factor`` times finer than the latent grid."""
        return (slice(self.row0 * factor, (self.row0 + self.size) * factor),
                slice(self.col0 * factor, (self.col0 + self.size) * factor))

    def latent_slices(self) -> tuple[slice, slice]:
        return slice(self.row0, self.row0 + self.size), slice(self.col0, self.col0 + self.size)


def _nearest_divisor(n: int, target: float) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - target), -d))


def snap_crop(crop: Sequence[float], width: int, height: int, latent_size: int) -> LatentCrop:
    """Snap an image-pixel crop ``(x0, y0, x1, y1)`` to the student's ``latent_size`` grid.

    The side (mean of the normalised width and height) becomes the divisor of ``latent_size``
    nearest to it in cells; the centre is kept to the nearest cell and the crop shifted inside.
    """
    x0, y0, x1, y1 = (float(v) for v in crop)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty crop {tuple(crop)}")
    side = ((x1 - x0) / width + (y1 - y0) / height) / 2.0
    n = _nearest_divisor(latent_size, side * latent_size)
    cx = (x0 + x1) / 2.0 / width * latent_size
    cy = (y0 + y1) / 2.0 / height * latent_size
    col0 = min(max(int(round(cx - n / 2.0)), 0), latent_size - n)
    row0 = min(max(int(round(cy - n / 2.0)), 0), latent_size - n)
    return LatentCrop(row0=row0, col0=col0, size=n, latent_size=latent_size)


def latent_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel mask (B, 1, H, W) in {0, 1} -> latent mask (B, 1, H/f, W/f): a cell is on if any pixel is.

    "Any coverage" keeps objects smaller than one latent cell (8 px) in the mask.
    """
    return F.max_pool2d(mask.float(), kernel_size=factor, stride=factor)


def block_upsample(x: torch.Tensor, k: int) -> torch.Tensor:
    """Repeat each value of (..., h, w) over a k x k block -> (..., k h, k w)."""
    return x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)


def block_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of each k x k block of (..., k h, k w) -> (..., h, w)."""
    shape = x.shape
    x = x.reshape(*shape[:-2], shape[-2] // k, k, shape[-1] // k, k)
    return x.mean(dim=(-3, -1))


NOISE_MODES = ("conditional", "nearest")


def _check_mode(mode: str) -> None:
    if mode not in NOISE_MODES:
        raise ValueError(f"unknown noise resampling mode {mode!r}; expected one of {NOISE_MODES}")


def teacher_noise(student_noise_crop: torch.Tensor, k: int, mode: str = "conditional",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Teacher-grid noise (..., k n, k n) consistent with the student's noise crop (..., n, n)."""
    _check_mode(mode)
    up = block_upsample(student_noise_crop, k)
    if mode == "nearest" or k == 1:
        return up
    z = torch.randn(up.shape, generator=generator, device=up.device, dtype=up.dtype)
    return z - block_upsample(block_mean(z, k), k) + up / k


def teacher_to_student(teacher_pred: torch.Tensor, k: int, mode: str = "conditional") -> torch.Tensor:
    """The left inverse of :func:`teacher_noise`: teacher-grid noise -> student noise over the crop."""
    _check_mode(mode)
    if k == 1:
        return teacher_pred
    pooled = block_mean(teacher_pred, k)
    return pooled * k if mode == "conditional" else pooled
