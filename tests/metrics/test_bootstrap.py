"""Bootstrap intervals and size buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soebench.metrics.bootstrap import SIZE_BUCKET_NAMES, bootstrap, bootstrap_by, bootstrap_ci, size_bucket


def test_interval_contains_mean_and_is_deterministic():
    values = np.random.default_rng(0).normal(10, 2, size=200)
    mean, lo, hi = bootstrap_ci(values, n_resamples=500, seed=1)
    assert mean == pytest.approx(values.mean())
    assert lo < mean < hi
    assert bootstrap_ci(values, n_resamples=500, seed=1) == (mean, lo, hi)
    assert bootstrap_ci(values, n_resamples=500, seed=2) != (mean, lo, hi)


def test_percentile_interval_matches_reference_resampling():
    values = np.random.default_rng(3).exponential(size=50)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 50, size=(300, 50))
    ref = np.quantile(values[idx].mean(axis=1), [0.05, 0.95])
    _, lo, hi = bootstrap_ci(values, n_resamples=300, seed=7, level=0.90, method="percentile")
    assert (lo, hi) == pytest.approx(tuple(ref), rel=1e-12)


def test_interval_width_is_about_normal_theory():
    values = np.random.default_rng(4).normal(0, 1, size=400)
    _, lo, hi = bootstrap_ci(values, n_resamples=2000, seed=0)
    se = values.std(ddof=1) / math.sqrt(len(values))
    assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_nans_are_ignored_and_counted():
    r = bootstrap([1.0, float("nan"), 3.0, float("nan")], n_resamples=100)
    assert r.n == 2 and r.n_nan == 2 and r.mean == 2.0
    empty = bootstrap([float("nan")])
    assert math.isnan(empty.mean) and empty.n == 0
    single = bootstrap([5.0])
    assert (single.mean, single.lo, single.hi) == (5.0, 5.0, 5.0)


def test_breakdown_by_key():
    values = [1.0, 2.0, 3.0, 10.0, 11.0]
    keys = ["a", "a", "a", "b", "b"]
    out = bootstrap_by(values, keys, n_resamples=200)
    assert list(out) == ["a", "b"]
    assert out["a"].mean == 2.0 and out["b"].n == 2
    ordered = bootstrap_by(values, keys, order=["b", "missing", "a"], n_resamples=10)
    assert list(ordered) == ["b", "a"]
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap_by(values, keys[:-1])


@pytest.mark.parametrize(
    ("fraction", "bucket"),
    [(0.0, "tiny"), (0.0049, "tiny"), (0.005, "small"), (0.0099, "small"), (0.01, "medium"),
     (0.02, "large"), (0.0299, "large"), (0.03, "above"), (1.0, "above")],
)
def test_size_bucket_edges(fraction, bucket):
    assert size_bucket(fraction) == bucket
    assert bucket in SIZE_BUCKET_NAMES


def test_size_bucket_rejects_bad_values():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="mask_area_fraction"):
            size_bucket(bad)
