"""Time soebench's Fréchet distance against scipy's sqrtm reference on the same 2048-d statistics.

    python benchmarks/bench_frechet.py [--n 5000] [--dim 2048] [--repeats 1] [--kid-n 2000] [--bucket-n 10]

With ``--kid-n N`` it also times KID (100 subsets of 1000) with precomputed kernel matrices
against the per-subset kernels of clean-fid's recipe, on N x 2048 float32 features per set.

``--bucket-n N`` (default 10) also times the FID of two N-sample sets (one size bucket of a
small run: singular covariances) from the rows against the D x D covariance route.

Features are random but structured like Inception pool features: non-negative, correlated
(a random low-rank-plus-diagonal mixing), two sets with slightly different distributions.
Prints both timings, the speed-up ratio and the relative difference of the two values.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from soebench.metrics import functional
from soebench.metrics.functional import feature_statistics, fid_from_features, frechet_distance, frechet_distance_sqrtm


def structured_features(rng: np.random.Generator, n: int, dim: int, rank: int, shift: float) -> np.ndarray:
    basis = np.random.default_rng(12345).normal(size=(rank, dim)) / np.sqrt(rank)
    z = rng.normal(size=(n, rank)) @ basis + 0.3 * rng.normal(size=(n, dim)) + shift
    return np.maximum(z, 0.0) * 2.0  # ReLU-like, Inception features are >= 0


def best_time(fn, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="samples per set")
    ap.add_argument("--dim", type=int, default=2048, help="feature dimension")
    ap.add_argument("--rank", type=int, default=256, help="rank of the shared correlation structure")
    ap.add_argument("--repeats", type=int, default=1, help="timing repeats (best is reported)")
    ap.add_argument("--kid-n", type=int, default=0, help="also time KID on this many samples per set")
    ap.add_argument("--bucket-n", type=int, default=10, help="also time FID of two sets this small (0: skip)")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    f1 = structured_features(rng, args.n, args.dim, args.rank, shift=0.0)
    f2 = structured_features(rng, args.n, args.dim, args.rank, shift=0.05)
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    print(f"features: 2 x {args.n} x {args.dim} (rank-{args.rank} structure), float64 statistics")

    t_fast, v_fast = best_time(lambda: frechet_distance(mu1, s1, mu2, s2), args.repeats)
    t_ref, v_ref = best_time(lambda: frechet_distance_sqrtm(mu1, s1, mu2, s2), args.repeats)
    rel = abs(v_fast - v_ref) / abs(v_ref)
    print(f"scipy.linalg.sqrtm reference : {t_ref:8.3f} s   FD = {v_ref:.10f}")
    print(f"soebench cholesky+eigvalsh  : {t_fast:8.3f} s   FD = {v_fast:.10f}")
    print(f"speed-up: {t_ref / t_fast:.1f}x   relative difference: {rel:.2e}")

    if args.bucket_n >= 2:
        b1, b2 = f1[: args.bucket_n], f2[: args.bucket_n]
        bm1, bs1 = feature_statistics(b1)
        bm2, bs2 = feature_statistics(b2)
        t_cov, v_cov = best_time(lambda: frechet_distance(bm1, bs1, bm2, bs2), args.repeats)
        t_rows, v_rows = best_time(lambda: fid_from_features(b1, b2), args.repeats)
        print(f"FID of 2 x {args.bucket_n} samples (singular covariances):")
        print(f"covariance route (D x D)    : {t_cov:8.3f} s   FD = {v_cov:.10f}")
        print(f"rows route (nuclear norm)   : {t_rows:8.3f} s   FD = {v_rows:.10f}")
        print(f"speed-up: {t_cov / t_rows:.0f}x   relative difference: {abs(v_cov - v_rows) / abs(v_rows):.2e}")

    if args.kid_n:
        k1 = f1[: args.kid_n].astype(np.float32) if args.kid_n <= args.n else None
        k2 = f2[: args.kid_n].astype(np.float32) if args.kid_n <= args.n else None
        if k1 is None:
            k1 = structured_features(rng, args.kid_n, args.dim, args.rank, 0.0).astype(np.float32)
            k2 = structured_features(rng, args.kid_n, args.dim, args.rank, 0.05).astype(np.float32)
        t_gram, kid_gram = best_time(lambda: functional.kernel_inception_distance(k1, k2).value, args.repeats)
        budget = functional.KID_GRAM_BUDGET
        functional.KID_GRAM_BUDGET = 0  # force the per-subset path
        try:
            t_sub, kid_sub = best_time(lambda: functional.kernel_inception_distance(k1, k2).value, args.repeats)
        finally:
            functional.KID_GRAM_BUDGET = budget
        rel_kid = abs(kid_gram - kid_sub) / abs(kid_sub)
        print(f"KID {args.kid_n} x {args.dim}, 100 subsets of 1000:")
        print(f"per-subset kernels (clean-fid): {t_sub:8.3f} s   KID = {kid_sub:.10e}")
        print(f"precomputed kernel matrices   : {t_gram:8.3f} s   KID = {kid_gram:.10e}")
        print(f"speed-up: {t_sub / t_gram:.1f}x   relative difference: {rel_kid:.2e}")


if __name__ == "__main__":
    main()
