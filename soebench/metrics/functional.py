"""Pure metric functions: numbers in, numbers out, no models and no state.

Conventions
- Feature matrices are ``(N, D)`` arrays; statistics are computed in float64.
- Images are ``HxWx3`` arrays, uint8 in [0, 255] or float in [0, ``data_range``] (default 1);
  the two images of a pair must share their dtype (see :func:`image_data_range`).
- ``keep_mask`` is a boolean ``HxW`` array, True on the pixels that count (the background
  outside the dilated object mask, see :func:`background_keep_mask`).
- Values that cannot be computed (too few samples, no kept pixels, a zero feature vector, float64
  overflow on features of absurd magnitude) are NaN; the stateful classes attach the reason. Malformed input (fewer than 2 feature rows for statistics, mismatched
  shapes, float images outside [0, ``data_range``], impossible KID settings) raises ValueError;
  images of different or unsupported dtypes raise TypeError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# SSIM constants of Wang et al. (2004), the settings skimage documents for reproducing the paper.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # 3.5 sigma -> an 11x11 window at sigma 1.5, as in skimage's gaussian_weights
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# Default dilation of the object mask before measuring preservation, in pixels at the protocol's
# 512x512 resolution (scaled per axis to the image's real size).
DEFAULT_DILATION_AT_512 = 8


# ----------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, ``ddof=1``) covariance of an ``(N, D)`` feature matrix, float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {f.shape}")
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows for a covariance; got {f.shape[0]}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative
    round-off eigenvalues are clipped to zero)."""
    w, v = np.linalg.eigh(sigma)
    w = np.sqrt(np.clip(w, 0.0, None))
    return (v * w) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr(sqrtm(sigma1 @ sigma2))`` for symmetric PSD matrices, without a general sqrtm.

    With ``sigma1 = R R^T`` (Cholesky factor, or the symmetric square root when ``sigma1`` is
    singular), ``sigma1 @ sigma2`` is similar to the symmetric PSD ``R^T sigma2 R``: same
    eigenvalues, so the trace of its principal square root is ``sum(sqrt(eig(R^T sigma2 R)))``.
    A Cholesky factorisation and one symmetric eigenvalue solve (no eigenvectors) replace
    scipy's Schur-based sqrtm of a non-symmetric matrix; this is much faster and stays well
    defined when the covariances are singular (N <= D), where sqrtm returns complex noise.

    NaN when the products overflow float64 (features of magnitude ~1e77 and up: the product is
    of the fourth power of the features), where the eigenvalue solver would raise a bare
    LinAlgError.
    """
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
        return math.nan
    s1 = (s1 + s1.T) / 2.0
    s2 = (s2 + s2.T) / 2.0
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            root1 = np.linalg.cholesky(s1)
        except np.linalg.LinAlgError:  # singular (fewer samples than dimensions): symmetric root
            root1 = _psd_sqrt(s1)
        middle = root1.T @ s2 @ root1
        middle = (middle + middle.T) / 2.0
    if not np.isfinite(middle).all():
        return math.nan
    eig = np.linalg.eigvalsh(middle)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (the FID formula):
    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrt(sigma1 sigma2))``, float64.

    Equals clean-fid / pytorch-fid's scipy ``sqrtm`` computation to ~1e-9 relative on full-rank
    covariances (see ``benchmarks/bench_frechet.py`` and the tests), several times faster.
    NaN when the statistics are too large for float64 arithmetic (see :func:`trace_sqrt_product`).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))
    return _distance(value)


def _distance(value: float) -> float:
    """A computed FID as returned: NaN when the arithmetic overflowed (inf, or inf - inf), and
    never below zero (identical inputs give a round-off sized negative number)."""
    return max(value, 0.0) if math.isfinite(value) else math.nan


def frechet_distance_sqrtm(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The reference computation of clean-fid / pytorch-fid (``scipy.linalg.sqrtm`` of the
    product, real part of its trace). Slow; kept for tests and the benchmark."""
    from scipy import linalg

    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if isinstance(covmean, tuple):  # scipy < 1.14 returned (sqrtm, errest) with disp=False
        covmean = covmean[0]
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def trace_sqrt_product_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """``tr(sqrt(sigma1 @ sigma2))`` of the two sets' unbiased covariances, from the rows.

    With centred rows ``A1`` (n1 x D) and ``A2`` (n2 x D), ``sigma1 @ sigma2 = A1^T (A1 A2^T) A2 / c``
    with ``c = (n1 - 1)(n2 - 1)``; its non-zero eigenvalues are those of ``M M^T / c`` for the
    n1 x n2 matrix ``M = A1 A2^T``, so the trace of the square root is the sum of the singular
    values of ``M`` over ``sqrt(c)``. Exact, and O(n1 n2 D) instead of O(D^3): the way to go when
    a set has fewer rows than dimensions (small crop sets, size buckets), where the covariances
    are singular anyway."""
    a1 = np.asarray(features1, dtype=np.float64)
    a2 = np.asarray(features2, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        a1 = a1 - a1.mean(axis=0)
        a2 = a2 - a2.mean(axis=0)
        cross = a1 @ a2.T
    if not np.isfinite(cross).all():  # overflow: the SVD would raise a bare LinAlgError
        return math.nan
    singular = np.linalg.svd(cross, compute_uv=False)
    return float(singular.sum() / math.sqrt((len(a1) - 1) * (len(a2) - 1)))


def low_rank_is_cheaper(n1: int, n2: int, dim: int) -> bool:
    """Whether :func:`fid_from_features` from rows costs less than the D x D route."""
    return n1 * n2 * (dim + min(n1, n2)) < dim**3


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets; NaN when either has fewer than 2 rows (or the arithmetic
    overflows float64, see :func:`trace_sqrt_product`). Small sets (fewer rows
    than dimensions, roughly) go through :func:`trace_sqrt_product_from_features`; larger ones
    through the covariances and :func:`frechet_distance` -- the same value either way."""
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    if len(f1) < 2 or len(f2) < 2:
        return math.nan
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D; got {f1.shape} and {f2.shape}")
    n1, n2, dim = len(f1), len(f2), f1.shape[1]
    if not low_rank_is_cheaper(n1, n2, dim):
        mu1, s1 = feature_statistics(f1)
        mu2, s2 = feature_statistics(f2)
        return frechet_distance(mu1, s1, mu2, s2)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = f1.mean(axis=0) - f2.mean(axis=0)
        trace1 = float(((f1 - f1.mean(axis=0)) ** 2).sum() / (n1 - 1))
        trace2 = float(((f2 - f2.mean(axis=0)) ** 2).sum() / (n2 - 1))
        value = float(diff @ diff) + trace1 + trace2 - 2.0 * trace_sqrt_product_from_features(f1, f2)
    return _distance(value)


# ----------------------------------------------------------------------------------------------
# Kernel Inception Distance
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KIDValue:
    """KID estimate: mean of the unbiased MMD^2 over subsets, its std over the subsets (NaN from
    a single subset: one value has no spread), and how it was sampled."""

    value: float
    std: float
    subset_size_1: int
    subset_size_2: int
    num_subsets: int


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel ``k(x, y) = (x.y / d + 1)^3`` (Bińkowski et al. 2018)."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 between samples x (m rows) and y (n rows) under :func:`polynomial_kernel`."""
    return _subset_mmd2(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


# Largest total size (elements) of the three kernel matrices KID precomputes: 32M float64 = 256 MB.
KID_GRAM_BUDGET = 32 * 1024 * 1024


def _subset_mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = kxx.shape[0], kyy.shape[0]
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.sum() / (m * n))


def check_kid_settings(num_subsets: int, max_subset_size: int) -> None:
    """Raise ValueError for KID settings that cannot give a value: at least one subset, and at
    least 2 rows per subset (the unbiased MMD^2 averages over pairs of distinct rows)."""
    # bool is an int subclass; True would silently mean 1 subset
    if isinstance(num_subsets, bool) or not isinstance(num_subsets, (int, np.integer)) or num_subsets < 1:
        raise ValueError(f"Argument `num_subsets` expected to be an integer >= 1, but got {num_subsets!r}")
    if isinstance(max_subset_size, bool) or not isinstance(max_subset_size, (int, np.integer)) or max_subset_size < 2:
        raise ValueError(f"Argument `max_subset_size` expected to be an integer >= 2, but got {max_subset_size!r}")


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    *,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = 0,
) -> KIDValue:
    """KID: unbiased polynomial-kernel MMD^2, averaged over random subsets.

    As clean-fid's ``kernel_distance`` (and Bińkowski et al.'s recipe): the kernel
    ``(x.y / d + 1)^3``, subsets drawn without replacement, defaults of 100 subsets of at most
    1000 rows. One difference: each set is subsampled to its *own* ``min(len(set),
    max_subset_size)`` rows, where clean-fid draws one common size ``min(n1, n2,
    max_subset_size)`` for both. Both are unbiased estimates of the same MMD^2 (the unbiased
    estimator allows unequal sizes); using every row of the larger set has the lower variance.
    With equal counts, as in ``soebench evaluate`` (one generated image per original), the two
    draw the same sizes. When both sets fit in one subset, every subset would be the whole set,
    so the MMD^2 is computed once, exactly, and ``std`` is NaN (a single value has no spread; a
    0 would read as certainty). With fewer than 2 rows in either set the value is NaN (the
    unbiased estimator needs two); it is NaN too when the kernel overflows float64 (features of
    magnitude ~1e51 and up: the kernel is of their sixth power).

    The subsets are drawn with ``numpy.random.default_rng(seed)``: for each subset, the rows of
    set 1, then those of set 2. When the full kernel matrices fit in :data:`KID_GRAM_BUDGET`
    they are computed once and each subset's sums read from them (same values, far fewer
    flops than 3 products per subset); otherwise each subset's kernels are computed directly.
    The draws pick row *positions*, so the value depends on the order of the rows as given (the
    :class:`~soebench.metrics.fid.KID` class orders them canonically first).
    Raises ValueError for ``num_subsets < 1`` or ``max_subset_size < 2``.
    """
    check_kid_settings(num_subsets, max_subset_size)
    f1 = np.asarray(features1)
    f2 = np.asarray(features2)
    n1, n2 = len(f1), len(f2)
    m1, m2 = min(n1, max_subset_size), min(n2, max_subset_size)
    if m1 < 2 or m2 < 2:
        return KIDValue(math.nan, math.nan, m1, m2, 0)
    f1 = f1.astype(np.float64)
    f2 = f2.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # absurd magnitudes overflow: NaN, see above
        if m1 == n1 and m2 == n2:
            return KIDValue(_finite_or_nan(mmd2_unbiased(f1, f2)), math.nan, m1, m2, 1)
        values = _subset_mmd2s(f1, f2, m1, m2, num_subsets, seed)
    if num_subsets == 1:
        return KIDValue(_finite_or_nan(float(values[0])), math.nan, m1, m2, 1)
    if not np.isfinite(values).all():
        return KIDValue(math.nan, math.nan, m1, m2, num_subsets)
    return KIDValue(float(values.mean()), float(values.std()), m1, m2, num_subsets)


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _subset_mmd2s(f1: np.ndarray, f2: np.ndarray, m1: int, m2: int, num_subsets: int, seed: int) -> np.ndarray:
    """The unbiased MMD^2 of ``num_subsets`` random subsets (see :func:`kernel_inception_distance`)."""
    n1, n2 = len(f1), len(f2)
    rng = np.random.default_rng(seed)
    subsets = [(rng.choice(n1, m1, replace=False), rng.choice(n2, m2, replace=False)) for _ in range(num_subsets)]
    values = np.empty(num_subsets)
    if n1 * n1 + n2 * n2 + n1 * n2 <= KID_GRAM_BUDGET:
        kxx, kyy, kxy = polynomial_kernel(f1, f1), polynomial_kernel(f2, f2), polynomial_kernel(f1, f2)
        for i, (ix, iy) in enumerate(subsets):
            values[i] = _subset_mmd2(kxx[np.ix_(ix, ix)], kyy[np.ix_(iy, iy)], kxy[np.ix_(ix, iy)])
    else:
        for i, (ix, iy) in enumerate(subsets):
            values[i] = mmd2_unbiased(f1[ix], f2[iy])
    return values


# ----------------------------------------------------------------------------------------------
# CLIP score
# ----------------------------------------------------------------------------------------------


def clip_score(image_feats: ArrayLike, text_feats: ArrayLike) -> ArrayLike:
    """Per-pair CLIP-Score ``max(100 * cos(image, text), 0)`` for row-aligned feature matrices.

    Accepts numpy arrays or torch tensors of shape ``(N, D)`` (normalised or not). Two numpy
    arrays give a float64 numpy array of shape ``(N,)``; anything else goes through torch and
    gives a float32 tensor on the image features' device. (The hint is ``ArrayLike``, which torch
    tensors satisfy, because this module must not import torch.)

    A pair with an all-zero feature vector has no angle: its score is NaN in both (no warning),
    not the 0.0 of ``torch.nn.functional.cosine_similarity``'s epsilon, which would pass a
    broken encoder's output as a poor but valid score. The per-sample tables and their means
    drop and count NaNs (``n_nan``).
    """
    if isinstance(image_feats, np.ndarray) and isinstance(text_feats, np.ndarray):
        a = np.asarray(image_feats, dtype=np.float64)
        b = np.asarray(text_feats, dtype=np.float64)
        if a.shape != b.shape:
            raise ValueError(f"image and text features differ in shape: {a.shape} vs {b.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero row: 0 / 0 = NaN, its score
            a = a / np.abs(a).max(axis=-1, keepdims=True)
            b = b / np.abs(b).max(axis=-1, keepdims=True)
            cos = (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        return np.clip(100.0 * cos, 0.0, None)
    import torch

    a = torch.as_tensor(image_feats, dtype=torch.float32)
    b = torch.as_tensor(text_feats, dtype=torch.float32, device=a.device)
    if a.shape != b.shape:
        raise ValueError(f"image and text features differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    # scaled by the largest entry first, so that no norm underflows in float32 (a tiny vector
    # keeps its angle, as in the float64 numpy branch); a zero row becomes NaN, its score
    a = a / a.abs().amax(dim=-1, keepdim=True)
    b = b / b.abs().amax(dim=-1, keepdim=True)
    cos = (a * b).sum(dim=-1) / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1))
    return (100.0 * cos).clamp(min=0.0)


# ----------------------------------------------------------------------------------------------
# Background preservation
# ----------------------------------------------------------------------------------------------


def dilation_radii(height: int, width: int, radius_at_512: float = DEFAULT_DILATION_AT_512) -> tuple[int, int]:
    """Dilation radii ``(ry, rx)`` in pixels for an image of this size.

    The SOEBench protocol works at 512x512, so a radius of r pixels there is an ellipse of
    radii ``r*H/512`` by ``r*W/512`` in the image's own pixels.
    """
    return int(round(radius_at_512 * height / 512.0)), int(round(radius_at_512 * width / 512.0))


def dilate_mask(mask: np.ndarray, radius_y: int, radius_x: int | None = None) -> np.ndarray:
    """Binary dilation of ``mask`` with OpenCV's elliptical structuring element
    (``cv2.MORPH_ELLIPSE``) of size ``(2*rx + 1, 2*ry + 1)``. That kernel is the digital ellipse
    OpenCV draws, a few pixels larger than the set ``(x/rx)^2 + (y/ry)^2 <= 1`` (e.g. 231 vs 219
    pixels for radii 7 x 10): a reference computation must use the same kernel."""
    radius_x = radius_y if radius_x is None else radius_x
    mask = np.asarray(mask, dtype=bool)
    if radius_y <= 0 and radius_x <= 0:
        return mask.copy()
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_x + 1, 2 * radius_y + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def background_keep_mask(object_mask: np.ndarray, radius_at_512: float = DEFAULT_DILATION_AT_512) -> np.ndarray:
    """Pixels that should be preserved: outside the object mask dilated by ``radius_at_512``."""
    h, w = object_mask.shape[:2]
    ry, rx = dilation_radii(h, w, radius_at_512)
    return ~dilate_mask(object_mask, ry, rx)


def image_data_range(orig: np.ndarray, gen: np.ndarray, data_range: float | None = None) -> float:
    """The value range of an image pair, checked: both images must have the same dtype, uint8
    (range 255; ``data_range`` may only be None or 255) or float with every value in
    ``[0, data_range]`` (``data_range`` defaults to 1.0).

    The scores divide by this range, so a wrong one gives plausible but wrong numbers rather than
    an error: a float [0, 1] image against a uint8 one, or float [0, 255] images read as [0, 1].
    Hence mixed dtypes raise TypeError and out-of-range floats ValueError.
    """
    a, b = np.asarray(orig), np.asarray(gen)
    if a.dtype != b.dtype:
        raise TypeError(
            f"original and generated images must have the same dtype, got {a.dtype} and {b.dtype}; "
            "convert both to uint8 (range [0, 255]) or both to float in [0, data_range]"
        )
    if a.dtype == np.uint8:
        if data_range is not None and float(data_range) != 255.0:
            raise ValueError(f"uint8 images span [0, 255]; data_range must be None or 255, got {data_range!r}")
        return 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"images must be uint8 or floating point, got {a.dtype}")
    r = 1.0 if data_range is None else float(data_range)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    for name, img in (("original", a), ("generated", b)):
        _check_float_range(name, img, r, data_range is None)
    return r


def _check_float_range(name: str, img: np.ndarray, r: float, default_range: bool) -> None:
    if img.size == 0:
        return
    lo, hi = float(np.min(img)), float(np.max(img))  # NaN propagates, so one check covers it
    if lo >= 0.0 and hi <= r:
        return
    problem = f"{name} image has values in [{lo:g}, {hi:g}]"
    if default_range:  # the usual cause: float images in [0, 255]
        raise ValueError(
            f"{problem}, outside [0, 1] (the default data_range=1.0); float images must lie in "
            "[0, data_range]: pass data_range=255 for float images in [0, 255], or give uint8 images"
        )
    raise ValueError(f"{problem}, outside [0, {r:g}] (data_range={r:g}); float images must lie in [0, data_range]")


def _check_pair(
    orig: np.ndarray, gen: np.ndarray, keep_mask: np.ndarray, data_range: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    a = np.asarray(orig)
    b = np.asarray(gen)
    keep = np.asarray(keep_mask, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"original and generated images differ in shape: {a.shape} vs {b.shape}")
    if keep.shape != a.shape[:2]:
        raise ValueError(f"keep_mask shape {keep.shape} does not match image size {a.shape[:2]}")
    return a, b, keep, image_data_range(a, b, data_range)


def masked_mse(orig: np.ndarray, gen: np.ndarray, keep_mask: np.ndarray, *, data_range: float | None = None) -> float:
    """Mean squared error over the kept pixels (all channels), with values scaled to [0, 1] by
    the range of :func:`image_data_range` (255 for uint8; ``data_range``, default 1, for float).
    NaN when no pixel is kept."""
    a, b, keep, r = _check_pair(orig, gen, keep_mask, data_range)
    if not keep.any():
        return math.nan
    diff = (a[keep].astype(np.float64) - b[keep].astype(np.float64)) / r
    return float(np.mean(diff**2))


def masked_psnr(orig: np.ndarray, gen: np.ndarray, keep_mask: np.ndarray, *, data_range: float | None = None) -> float:
    """PSNR in dB over the kept pixels: ``10 log10(1 / MSE)`` on [0, 1]-scaled values.
    ``inf`` when the kept pixels are identical; NaN when no pixel is kept."""
    mse = masked_mse(orig, gen, keep_mask, data_range=data_range)
    if math.isnan(mse):
        return math.nan
    if mse == 0.0:
        return math.inf
    return float(10.0 * math.log10(1.0 / mse))


def ssim_map(
    orig: np.ndarray,
    gen: np.ndarray,
    *,
    data_range: float | None = None,
    sigma: float = SSIM_SIGMA,
) -> np.ndarray:
    """Per-pixel SSIM map (Gaussian window, sigma 1.5, population covariances, K1=0.01,
    K2=0.03 -- Wang et al. 2004), averaged over channels. Same map as
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, full=True)``; borders use reflected padding. The images are
    checked by :func:`image_data_range` (same dtype, floats in [0, ``data_range``])."""
    from scipy.ndimage import gaussian_filter

    a = np.asarray(orig)
    b = np.asarray(gen)
    r = image_data_range(a, b, data_range)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1 = (SSIM_K1 * r) ** 2
    c2 = (SSIM_K2 * r) ** 2
    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]

        def blur(img: np.ndarray) -> np.ndarray:
            return gaussian_filter(img, sigma=sigma, truncate=SSIM_TRUNCATE, mode="reflect")

        ux, uy = blur(x), blur(y)
        vx = blur(x * x) - ux * ux
        vy = blur(y * y) - uy * uy
        vxy = blur(x * y) - ux * uy
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        maps.append(num / den)
    return np.mean(maps, axis=0)


def masked_ssim(orig: np.ndarray, gen: np.ndarray, keep_mask: np.ndarray, *, data_range: float | None = None) -> float:
    """SSIM over the kept pixels.

    The excluded pixels of ``gen`` are first replaced by ``orig``'s, then the full-image SSIM
    map (:func:`ssim_map`) is averaged over the kept pixels. The replacement makes the score
    independent of the edit itself: a kept pixel whose 11x11 window reaches into the (dilated)
    object would otherwise be penalised for the intended change there. NaN when no pixel is kept.

    With every pixel kept this is the mean of skimage's *full* SSIM map (``full=True``), border
    pixels included (they use reflected padding), not skimage's scalar result: that one leaves a
    border of ``(win_size - 1) // 2`` = 5 pixels out of its mean (e.g. 0.98749 here vs 0.98756).
    Dropping the border through ``keep_mask`` does not give skimage's number either, because
    the dropped pixels of ``gen`` are replaced by ``orig``'s first.
    """
    a, b, keep, _ = _check_pair(orig, gen, keep_mask, data_range)
    if not keep.any():
        return math.nan
    composite = np.where(keep[..., None] if b.ndim == 3 else keep, b, a)
    return float(ssim_map(a, composite, data_range=data_range)[keep].mean())
