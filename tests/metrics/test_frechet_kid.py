"""Fréchet distance and KID against independent reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soebench.metrics.functional import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    frechet_distance_sqrtm,
    kernel_inception_distance,
    low_rank_is_cheaper,
    trace_sqrt_product,
    trace_sqrt_product_from_features,
)


def _structured(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    """Correlated, non-negative features (like post-ReLU pool features); one fixed mixing matrix
    per dimension, so calls with the same shift sample the same distribution."""
    mix = np.random.default_rng(100 + d).normal(size=(d, d)) / math.sqrt(d)
    z = rng.normal(size=(n, d)) @ mix + shift
    return np.abs(z)


@pytest.mark.parametrize("d", [8, 64])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(1)
    f1 = _structured(rng, 4 * d, d)
    f2 = _structured(rng, 3 * d, d, shift=0.3)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    ref = frechet_distance_sqrtm(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert ref > 0.1
    assert got == pytest.approx(ref, rel=1e-6)


def test_trace_sqrt_product_matches_eigenvalues_of_product():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(30, 10))
    b = rng.normal(size=(40, 10))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # eigenvalues of s1 @ s2 are real and non-negative for PSD s1, s2
    ref = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-9)


def test_frechet_identical_sets_is_zero():
    rng = np.random.default_rng(3)
    f = _structured(rng, 300, 32)
    mu, s = feature_statistics(f)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(f, f.copy()) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_gaussians_closed_form():
    # Diagonal covariances: FD = |dmu|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    want = 5.0 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


def test_frechet_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_fewer_than_two_samples_is_nan():
    f = np.ones((1, 4))
    assert math.isnan(fid_from_features(f, np.ones((5, 4))))


def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, written out with explicit loops over pairs."""
    d = x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_direct_mmd():
    rng = np.random.default_rng(4)
    x = _structured(rng, 25, 6)
    y = _structured(rng, 31, 6, shift=0.5)
    kid = kernel_inception_distance(x, y)
    assert kid.num_subsets == 1 and math.isnan(kid.std)  # one exact value: no spread, not a spread of 0
    assert kid.value == pytest.approx(_kid_reference(x, y), rel=1e-10)


def test_kid_subsets_average_subset_mmds():
    rng = np.random.default_rng(5)
    x = _structured(rng, 40, 5)
    y = _structured(rng, 30, 5, shift=0.4)
    kid = kernel_inception_distance(x, y, num_subsets=7, max_subset_size=12, seed=3)
    # Replay the same subsets with the documented sampling (default_rng(seed), no replacement).
    r = np.random.default_rng(3)
    vals = []
    for _ in range(7):
        xs = x[r.choice(40, 12, replace=False)]
        ys = y[r.choice(30, 12, replace=False)]
        vals.append(_kid_reference(xs, ys))
    assert (kid.subset_size_1, kid.subset_size_2) == (12, 12)
    assert kid.value == pytest.approx(np.mean(vals), rel=1e-10)
    assert kid.std == pytest.approx(np.std(vals), rel=1e-8)


def test_kid_small_n_does_not_fail():
    rng = np.random.default_rng(6)
    two = _structured(rng, 2, 4)
    assert math.isfinite(kernel_inception_distance(two, _structured(rng, 3, 4)).value)
    one = kernel_inception_distance(two[:1], two)
    assert math.isnan(one.value)
    empty = kernel_inception_distance(np.zeros((0, 4)), two)
    assert math.isnan(empty.value)


def test_kid_same_distribution_near_zero_different_positive():
    rng = np.random.default_rng(7)
    a, b = _structured(rng, 200, 8), _structured(rng, 200, 8)
    c = _structured(rng, 200, 8, shift=1.0)
    same = kernel_inception_distance(a, b).value
    diff = kernel_inception_distance(a, c).value
    assert abs(same) < 0.05 * diff


def test_singular_covariances_fewer_samples_than_dims():
    """N <= D (typical of small crop sets): Cholesky fails, the symmetric root takes over, and the
    trace still equals sum(sqrt(eig(s1 s2))) computed from the non-symmetric product."""
    rng = np.random.default_rng(8)
    a, b = _structured(rng, 10, 24), _structured(rng, 12, 24, shift=0.2)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(s1)
    ref = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-6)
    assert math.isfinite(fid_from_features(a, b)) and fid_from_features(a, b) > 0


def test_kid_precomputed_kernels_equal_per_subset_kernels(monkeypatch):
    from soebench.metrics import functional

    rng = np.random.default_rng(9)
    x, y = _structured(rng, 60, 7), _structured(rng, 45, 7, shift=0.2)
    fast = kernel_inception_distance(x, y, num_subsets=20, max_subset_size=30, seed=1)
    monkeypatch.setattr(functional, "KID_GRAM_BUDGET", 0)
    direct = kernel_inception_distance(x, y, num_subsets=20, max_subset_size=30, seed=1)
    assert fast.value == pytest.approx(direct.value, rel=1e-10)
    assert fast.std == pytest.approx(direct.std, rel=1e-8)


def _mp_trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """tr(sqrt(cov(a) cov(b))) in 50-digit arithmetic (mpmath): with singular covariances the
    float64 eigenvalues of the product carry ~1e-16 noise on its zero eigenvalues, which their
    square roots turn into ~1e-8 errors -- too coarse to check a 1e-9 agreement against."""
    import mpmath

    mpmath.mp.dps = 50

    def cov(x):
        m = mpmath.matrix(x.tolist())
        n, d = m.rows, m.cols
        means = [mpmath.fsum(m[i, j] for i in range(n)) / n for j in range(d)]
        c = mpmath.matrix(n, d)
        for i in range(n):
            for j in range(d):
                c[i, j] = m[i, j] - means[j]
        return (c.T * c) / (n - 1)

    eig = mpmath.eig(cov(a) * cov(b), left=False, right=False)
    return float(mpmath.fsum(mpmath.sqrt(max(mpmath.re(e), 0)) for e in eig))


@pytest.mark.parametrize("n1, n2, d", [(7, 9, 12), (40, 30, 8)])
def test_trace_sqrt_product_from_rows_matches_high_precision_reference(n1, n2, d):
    """The rows route (nuclear norm of A1 A2^T) against the eigenvalues of the covariance
    product in 50-digit arithmetic, for singular (n < d) and full-rank (n > d) covariances."""
    rng = np.random.default_rng(10)
    a, b = _structured(rng, n1, d), _structured(rng, n2, d, shift=0.3)
    ref = _mp_trace_sqrt_product(a, b)
    assert trace_sqrt_product_from_features(a, b) == pytest.approx(ref, rel=1e-12)
    if n1 < d:  # the covariance route is only good to the noise of the zero eigenvalues
        assert trace_sqrt_product(np.cov(a, rowvar=False), np.cov(b, rowvar=False)) == pytest.approx(ref, rel=1e-6)


def test_fid_from_rows_equals_covariance_route_and_scipy():
    rng = np.random.default_rng(11)
    small_a, small_b = _structured(rng, 12, 48), _structured(rng, 15, 48, shift=0.2)
    assert low_rank_is_cheaper(12, 15, 48)
    mu1, s1 = feature_statistics(small_a)
    mu2, s2 = feature_statistics(small_b)
    assert fid_from_features(small_a, small_b) == pytest.approx(frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
    # full rank: compare the rows formula itself with scipy's sqrtm reference
    big_a, big_b = _structured(rng, 200, 16), _structured(rng, 150, 16, shift=0.3)
    assert not low_rank_is_cheaper(200, 150, 16)
    mu1, s1 = feature_statistics(big_a)
    mu2, s2 = feature_statistics(big_b)
    ref = frechet_distance_sqrtm(mu1, s1, mu2, s2)
    rows = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product_from_features(big_a, big_b)
    assert rows == pytest.approx(ref, rel=1e-9)
    assert fid_from_features(big_a, big_b) == pytest.approx(ref, rel=1e-9)
    assert fid_from_features(small_a, small_a.copy()) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_few_samples_in_many_dimensions_matches_reduced_space_reference():
    """9 samples in 1024-d (a size bucket of Inception features): against the FID computed in the
    span of the centred rows (QR basis, 16-d), where sqrtm-style eigenvalues carry no noise from
    ~1000 zero eigenvalues."""
    rng = np.random.default_rng(12)
    a, b = _structured(rng, 9, 1024), _structured(rng, 9, 1024, shift=0.2)
    q, _ = np.linalg.qr(np.vstack([a - a.mean(0), b - b.mean(0)]).T)
    mu1, s1 = feature_statistics(a @ q)
    mu2, s2 = feature_statistics(b @ q)
    diff = a.mean(0) - b.mean(0)
    ref = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-10)
