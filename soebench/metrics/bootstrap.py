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


#: Below this many values an interval is flagged ``small_sample`` and is a Student-t interval. A
#: bootstrap interval of the mean lies inside the range of the data, which holds the true mean with
#: probability ``1 - 2 * 0.5**n`` at best (75 % for 3 values, 94 % for 5): no resampling can make a
#: 95 % interval from so few. The t interval can reach past the data; it assumes roughly normal
#: values and undercovers for skewed ones (see benchmarks/bench_interval_coverage.py).
SMALL_SAMPLE_N = 10

#: what ``method=`` accepts: ``auto`` is ``student-t`` below :data:`SMALL_SAMPLE_N` values and
#: ``bca-expanded`` from there; ``percentile`` is the plain percentile bootstrap (kept for
#: reproducing older numbers: its intervals are too narrow on small samples)
INTERVAL_METHODS = ("auto", "student-t", "bca-expanded", "percentile")
#: the ``method`` of a result without an interval (no value, one value, infinite values)
NO_INTERVAL = "none"


@dataclass(frozen=True)
class BootstrapResult:
    """Mean with a confidence interval; ``n`` finite values used, ``n_nan`` ignored.

    ``method`` names how ``lo``/``hi`` were computed (one of :data:`INTERVAL_METHODS` but
    ``auto``, or :data:`NO_INTERVAL`); ``small_sample`` is True below :data:`SMALL_SAMPLE_N`
    values, where any interval is rough. ``n_resamples`` is the setting (the t interval draws
    none)."""

    mean: float
    lo: float
    hi: float
    n: int
    n_nan: int
    level: float
    n_resamples: int
    method: str = NO_INTERVAL
    small_sample: bool = False

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return asdict(self)


def bootstrap(
    values: Iterable[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95, method: str = "auto"
) -> BootstrapResult:
    """The mean and its ``level`` confidence interval. NaNs are dropped and counted; no values ->
    all NaN; one value -> a zero-width interval (``method`` ``"none"``). ``inf`` values are kept (a
    mean with an infinite member is infinite: PSNR of an untouched background), also with a
    zero-width interval; values holding both ``inf`` and ``-inf`` have no mean: ValueError.

    ``method="auto"`` (the default) picks by sample size, as a simulation of coverage chose
    (benchmarks/bench_interval_coverage.py): a Student-t interval below :data:`SMALL_SAMPLE_N`
    values (the only method tried that comes near the nominal level on 2-5 values), else the
    expanded BCa bootstrap (:func:`bca_expanded_interval`): 88-94 % coverage of a 95 % interval
    at 10 values of normal, skewed or tied data, where the plain percentile bootstrap (``method=
    "percentile"``, soebench's method before) gave 81-90 %. The t interval is symmetric and may
    reach past a bounded metric's range (an SSIM above 1)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    if method not in INTERVAL_METHODS:
        raise ValueError(f"method must be one of {', '.join(INTERVAL_METHODS)}; got {method!r}")
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64).ravel()
    nan = np.isnan(arr)
    kept = arr[~nan]
    n, n_nan = int(kept.size), int(nan.sum())
    small = n < SMALL_SAMPLE_N

    def result(mean: float, lo: float, hi: float, how: str) -> BootstrapResult:
        return BootstrapResult(mean, float(lo), float(hi), n, n_nan, level, n_resamples, how, small)

    if n == 0:
        return result(math.nan, math.nan, math.nan, NO_INTERVAL)
    if np.isposinf(kept).any() and np.isneginf(kept).any():
        raise ValueError(f"values hold both inf and -inf ({n} values): their mean is undefined")
    mean = float(kept.mean())
    if n == 1 or not np.isfinite(kept).all():
        return result(mean, mean, mean, NO_INTERVAL)
    if method == "auto":
        method = "student-t" if small else "bca-expanded"
    if method == "student-t":
        return result(mean, *t_interval(kept, level), method)
    means = resampled_means(kept, n_resamples, seed)
    if method == "percentile":
        alpha = (1.0 - level) / 2.0
        return result(mean, *np.quantile(means, [alpha, 1.0 - alpha]), method)
    return result(mean, *bca_expanded_interval(kept, means, level), method)


def resampled_means(values: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """The means of ``n_resamples`` resamples (with replacement) of ``values``, drawn with
    ``numpy.random.default_rng(seed)`` row by row."""
    n = len(values)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    # Draw in chunks so memory stays ~ 8 MB whatever n is.
    chunk = max(1, (1 << 20) // n)
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def t_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """Student-t interval of the mean: ``mean -+ t(n-1) * s / sqrt(n)`` (exact for normal values;
    zero width when every value is the same)."""
    from scipy import stats

    n = len(values)
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)
    mean = float(values.mean())
    return mean - half, mean + half


def bca_expanded_interval(values: np.ndarray, means: np.ndarray, level: float) -> tuple[float, float]:
    """BCa bootstrap interval of the mean (Efron 1987) with the small-sample expansion of
    Hesterberg's ``resample`` package (``CI.bca(expand = TRUE)``).

    BCa corrects the percentile interval for the bias (``z0``: how many resampled means fall below
    the mean) and skewness (acceleration ``a``, from the jackknife) of the bootstrap distribution.
    The expansion replaces the normal quantile ``z`` by ``sqrt(n / (n - 1)) * t(n - 1)``: the
    bootstrap spread is the ``ddof=0`` standard error, too small by ``sqrt((n - 1) / n)``, and
    the normal quantile ignores that the spread is itself estimated; plain BCa is as narrow as the
    percentile interval on small samples."""
    from scipy import stats

    n, b = len(values), len(means)
    mean = float(values.mean())
    # ties count half, and the fraction is kept off 0 and 1, so z0 stays finite
    below = (np.count_nonzero(means < mean) + 0.5 * np.count_nonzero(means == mean)) / b
    z0 = float(stats.norm.ppf(min(max(below, 0.5 / b), 1.0 - 0.5 / b)))
    jack = (values.sum() - values) / (n - 1)
    d = jack.mean() - jack
    scale = float((d**2).sum()) ** 1.5
    accel = float((d**3).sum()) / (6.0 * scale) if scale > 0 else 0.0
    t = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * math.sqrt(n / (n - 1))
    z = np.array([z0 - t, z0 + t])
    denom = 1.0 - accel * z
    # past 1 / accel the BCa map stops being monotone: take the end of the resampled means there
    probs = np.where(denom > 0, stats.norm.cdf(z0 + z / np.where(denom > 0, denom, 1.0)), (z > 0).astype(float))
    lo, hi = np.quantile(means, probs)
    return float(lo), float(hi)


def bootstrap_ci(
    values: Iterable[float], n_resamples: int = 1000, seed: int = 0, level: float = 0.95, method: str = "auto"
) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of the non-NaN values and its interval (see :func:`bootstrap`)."""
    r = bootstrap(values, n_resamples=n_resamples, seed=seed, level=level, method=method)
    return r.mean, r.lo, r.hi


def bootstrap_by(
    values: Sequence[float],
    keys: Sequence[Hashable],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    order: Sequence[Hashable] | None = None,
    method: str = "auto",
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
    return {k: bootstrap(vals[groups[k]], n_resamples=n_resamples, seed=seed, level=level, method=method)
            for k in names}
