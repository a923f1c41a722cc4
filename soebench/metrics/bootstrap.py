"""Confidence intervals for per-sample metrics, and the object-size buckets used in breakdowns."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Buckets of ``mask_area_fraction`` (object mask area / image area); a value falls in the first
# bucket whose upper edge it is below. The SOEBench COCO list keeps boxes covering
# (1/16)^2 = 0.39% .. (1/6)^2 = 2.78% of the image, so masks mostly land in tiny..large.
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("tiny", 0.005),  # < 0.5 %
    ("small", 0.01),  # 0.5 % .. 1 %
    ("medium", 0.02),  # 1 % .. 2 %
    ("large", 0.03),  # 2 % .. 3 %
    ("above", math.inf),  # >= 3 %
)
SIZE_BUCKET_NAMES: tuple[str, ...] = tuple(name for name, _ in SIZE_BUCKETS)
#: what the buckets cut, in the words the reports use
SIZE_BUCKET_BASIS = "mask area fraction (object mask area / image area)"


def size_bucket_edges() -> dict[str, tuple[float, float | None]]:
    """``{name: (lower, upper)}``: a bucket holds ``lower <= fraction < upper``; the last bucket's
    upper edge is ``None`` (none: it takes everything above)."""
    edges, lower = {}, 0.0
    for name, upper in SIZE_BUCKETS:
        edges[name] = (lower, upper if math.isfinite(upper) else None)
        lower = upper
    return edges


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def size_bucket_range(name: str) -> str:
    """The range of bucket ``name`` as a reader wants it: ``<0.5%``, ``0.5–1%``, ``≥3%``."""
    lower, upper = size_bucket_edges()[name]
    if upper is None:
        return f"≥{_percent(lower)}"
    if lower == 0.0:
        return f"<{_percent(upper)}"
    return f"{_percent(lower).removesuffix('%')}–{_percent(upper)}"


def size_buckets_note() -> str:
    """One line defining every bucket, for under a table that is broken down by size (all of them,
    so a reader also learns of the buckets the table leaves out for want of samples)."""
    ranges = ", ".join(f"{name} {size_bucket_range(name)}" for name in SIZE_BUCKET_NAMES)
    return f"Size buckets by {SIZE_BUCKET_BASIS}: {ranges}; a bucket without samples is not shown."


def size_bucket(mask_area_fraction: float) -> str:
    """The size bucket name of an object covering ``mask_area_fraction`` (0..1) of its image."""
    f = float(mask_area_fraction)
    if not math.isfinite(f) or f < 0.0 or f > 1.0:
        raise ValueError(f"mask_area_fraction must be in [0, 1]; got {mask_area_fraction!r}")
    for name, upper in SIZE_BUCKETS:
        if f < upper:
            return name
    return SIZE_BUCKETS[-1][0]


@dataclass(frozen=True)
class BootstrapResult:
    """Mean with a percentile-bootstrap interval; ``n`` finite values used, ``n_nan`` ignored."""

    mean: float
    lo: float
    hi: float
    n: int
    n_nan: int
    level: float
    n_resamples: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def bootstrap(
    values: Iterable[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> BootstrapResult:
    """Percentile bootstrap of the mean. NaNs are dropped and counted; no values -> all NaN;
    one value -> a zero-width interval. ``inf`` values are kept (a mean with an infinite
    member is infinite: PSNR of an untouched background)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    nan = np.isnan(arr)
    kept = arr[~nan]
    n, n_nan = int(kept.size), int(nan.sum())
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, n_nan, level, n_resamples)
    mean = float(kept.mean())
    if n == 1 or not np.isfinite(kept).all():
        return BootstrapResult(mean, mean, mean, n, n_nan, level, n_resamples)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Draw in chunks so memory stays ~ 8 MB whatever n is.
    chunk = max(1, (1 << 20) // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = kept[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return BootstrapResult(mean, float(lo), float(hi), n, n_nan, level, n_resamples)


def bootstrap_ci(
    values: Iterable[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of the non-NaN values and its percentile-bootstrap interval."""
    r = bootstrap(values, n_resamples=n_resamples, seed=seed, level=level)
    return r.mean, r.lo, r.hi


def bootstrap_by(
    values: Sequence[float],
    keys: Sequence[Hashable],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    order: Sequence[Hashable] | None = None,
) -> dict[Hashable, BootstrapResult]:
    """Bootstrap the mean of ``values`` within each group of ``keys`` (e.g. size bucket or
    category). Groups come out in ``order`` when given (missing groups are skipped), else sorted
    by key. Each group uses the same seed, so a group's interval does not depend on the others."""
    vals = np.asarray(values, dtype=np.float64)
    if len(vals) != len(keys):
        raise ValueError(f"values ({len(vals)}) and keys ({len(keys)}) differ in length")
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    names = [k for k in order if k in groups] if order is not None else sorted(groups, key=str)
    return {k: bootstrap(vals[groups[k]], n_resamples=n_resamples, seed=seed, level=level) for k in names}
