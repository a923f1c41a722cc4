"""FID and KID over Inception features of real (original) and fake (generated) images.

``FID`` keeps running sums (count, feature sum, sum of outer products, float64) per side, so
shards merge by adding. While a side has at most as many rows as feature dimensions it also keeps
the rows themselves (bounded: at most D x D values per side): such covariances are singular, and
the FID of small sets (a few crops, one size bucket) is computed exactly and far faster from the
rows (:func:`~soebench.metrics.functional.fid_from_features`) than from the D x D sums. A side
with no rows yet has 0-d zero sums (no feature dimension yet), which add to any ``(D,)`` /
``(D, D)`` sums: so state dicts can be summed key by key, an empty shard's included.

``KID`` needs the features themselves (its unbiased MMD is a kernel over sample pairs), so its
state is the list of feature blocks per side; merging concatenates. Its subsets are drawn by row
position, so ``compute`` first puts each side's rows in a canonical order that depends only on
the rows themselves (see :func:`canonical_row_order`): the value is that of the *set* of rows,
whatever the order of updates, shards or merges (``a + b`` equals ``b + a`` bit for bit).

Features must be finite: ``update_features`` rejects a NaN or inf row, naming the side and row
(a broken extractor or input; FID's linear algebra and KID's kernels would only give NaN or an
opaque LinAlgError later). Finite features so large that the float64 arithmetic overflows (FID
from magnitudes ~1e77, KID from ~1e51; Inception features are of order 1) give a NaN value whose
``reason`` says so.

The feature extractor is injected: any callable mapping float32 ``(N, 299, 299, 3)`` images in
[0, 255] to ``(N, D)`` features (:func:`soebench.metrics.features.load_inception`, or a stand-in in
tests). ``update(images, real=...)`` resizes uint8 images with the ``clean`` mode first; callers
that already hold features use ``update_features``. Results carry the resize mode's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from soebench.metrics._state import SummableMetric
from soebench.metrics.functional import (
    check_kid_settings,
    fid_from_features,
    frechet_distance,
    kernel_inception_distance,
    low_rank_is_cheaper,
)
from soebench.metrics.preprocess import FID_RESIZE_MODE, clean_resize

FeatureExtractor = Callable[[np.ndarray], np.ndarray]


def extract_features(
    extractor: FeatureExtractor, images: Sequence[np.ndarray], *, mode: str = FID_RESIZE_MODE
) -> np.ndarray:
    """Resize uint8 images with ``mode`` and run them through ``extractor`` -> ``(N, D)`` features
    (in the extractor's float dtype; float32 for the Inception)."""
    if mode != FID_RESIZE_MODE:
        raise ValueError(f"unknown FID resize mode {mode!r}; supported: {FID_RESIZE_MODE!r}")
    if len(images) == 0:
        return np.zeros((0, 0))
    batch = np.stack([clean_resize(img) for img in images])
    feats = np.asarray(extractor(batch))
    if not np.issubdtype(feats.dtype, np.floating):
        feats = feats.astype(np.float64)
    if feats.ndim != 2 or feats.shape[0] != len(images):
        raise ValueError(f"feature extractor returned shape {feats.shape} for {len(images)} images")
    return feats


@dataclass(frozen=True)
class DistanceResult:
    """A FID or KID value with what it was computed from. ``value`` is NaN when it could not be
    computed and ``reason`` then says why."""

    metric: str
    value: float
    n_real: int
    n_fake: int
    mode: str
    std: float | None = None
    reason: str | None = None
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (``extra`` left out when None)."""
        d = asdict(self)
        if d["extra"] is None:
            d.pop("extra")
        return d


def check_features(features: np.ndarray, *, real: bool) -> np.ndarray:
    """``features`` as an ``(N, D)`` float array (integers become float64); ValueError when it is
    not 2-D or a row holds NaN or inf, naming the side and the first such row."""
    f = np.asarray(features)
    if not np.issubdtype(f.dtype, np.floating):
        f = f.astype(np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {f.shape}")
    finite = np.isfinite(f).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        row = int(bad[0])
        side = "real" if real else "fake"
        raise ValueError(
            f"{side} features must be finite, but row {row} of this update holds "
            f"{f[row][~np.isfinite(f[row])][0]} ({len(bad)} of {len(f)} rows are not finite); "
            "check the feature extractor and its input images"
        )
    return f


def canonical_row_order(features: np.ndarray) -> np.ndarray:
    """A permutation that sorts the rows of ``features`` into an order fixed by their values alone.

    Rows are compared by the bytes of their float64 values (-0.0 counted as 0.0), a total order
    that is cheap for wide rows (a comparison stops at the first differing byte); equal rows are
    interchangeable, so ties cannot change a result. The order itself means nothing: it only has
    to be the same for the same set of rows, however they arrived.
    """
    f = np.ascontiguousarray(features, dtype=np.float64)
    if f.shape[0] < 2:
        return np.arange(f.shape[0])
    negative_zero = (f == 0.0) & np.signbit(f)
    if negative_zero.any():  # equal values must compare equal: copy only when needed (f may be large)
        f = np.where(negative_zero, 0.0, f)
    rows = f.view(np.dtype((np.void, f.dtype.itemsize * f.shape[1]))).ravel()
    return np.argsort(rows, kind="stable")


class _FeatureSides(SummableMetric):
    def __init__(self, extractor: FeatureExtractor | None = None, *, mode: str = FID_RESIZE_MODE):
        if mode != FID_RESIZE_MODE:
            raise ValueError(f"unknown FID resize mode {mode!r}; supported: {FID_RESIZE_MODE!r}")
        self.extractor = extractor
        self.mode = mode
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"mode": self.mode}

    def update(self, images: Sequence[np.ndarray], *, real: bool) -> np.ndarray:
        """Add uint8 ``HxWx3`` images (any size) to the real or fake side; returns their features."""
        if self.extractor is None:
            raise ValueError(f"{type(self).__name__} has no feature extractor; use update_features()")
        feats = extract_features(self.extractor, images, mode=self.mode)
        if len(feats):
            self.update_features(feats, real=real)
        return feats

    def update_features(self, features: np.ndarray, *, real: bool) -> None:  # pragma: no cover - abstract
        """Add ``(N, D)`` features to the real or fake side."""
        raise NotImplementedError


class FID(_FeatureSides):
    """Fréchet Inception Distance, states as sums (see module docstring)."""

    _state_names = ("n_real", "sum_real", "outer_real", "n_fake", "sum_fake", "outer_fake", "rows_real", "rows_fake")

    _sum_names = ("sum_real", "outer_real", "sum_fake", "outer_fake")

    def reset(self) -> None:
        """Forget every sample. The sums start as 0-d zeros: the feature dimension is not known
        until the first update, and a 0-d zero adds to sums of any dimension, so an empty
        state can be summed with (or merged into) a full one."""
        for side in ("real", "fake"):
            setattr(self, f"n_{side}", np.array(0, dtype=np.int64))
            setattr(self, f"sum_{side}", np.zeros((), dtype=np.float64))
            setattr(self, f"outer_{side}", np.zeros((), dtype=np.float64))
            setattr(self, f"rows_{side}", [])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load a state (one from ``state_dict()``, or the key-by-key sum of several)."""
        super().load_state_dict(state)
        for name in self._sum_names:
            if getattr(self, name).size == 0:  # saved before empty sums were 0-d: shapes (0,), (0, 0)
                setattr(self, name, np.zeros((), dtype=np.float64))

    def update_features(self, features: np.ndarray, *, real: bool) -> None:
        """Add ``(N, D)`` features (finite; any float or integer dtype, summed in float64) to the
        real or fake side. D must match the side's earlier updates (and the two sides must agree
        by ``compute``)."""
        f = check_features(features, real=real).astype(np.float64, copy=False)
        if f.shape[0] == 0:
            return  # nothing to add (and no dimension to fix yet)
        side = "real" if real else "fake"
        s, o = getattr(self, f"sum_{side}"), getattr(self, f"outer_{side}")
        if s.ndim and s.shape[0] != f.shape[1]:
            raise ValueError(f"feature dimension {f.shape[1]} differs from earlier updates ({s.shape[0]})")
        n = int(getattr(self, f"n_{side}"))
        rows = getattr(self, f"rows_{side}")
        if self._rows_complete(side) and n + f.shape[0] <= f.shape[1]:
            rows.append(np.array(features, copy=True))
        elif rows:  # past D rows the covariance route is the cheap one: drop the kept rows
            setattr(self, f"rows_{side}", [])
        with np.errstate(over="ignore", invalid="ignore"):  # absurd magnitudes: compute() says so
            setattr(self, f"sum_{side}", s + f.sum(axis=0))
            setattr(self, f"outer_{side}", o + f.T @ f)
        setattr(self, f"n_{side}", n + f.shape[0])

    def _rows_complete(self, side: str) -> bool:
        """Whether the kept rows are every row of ``side`` (false once any was dropped)."""
        return sum(len(r) for r in getattr(self, f"rows_{side}")) == int(getattr(self, f"n_{side}"))

    def statistics(self, *, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance of one side, from the sums (needs >= 2 samples)."""
        side = "real" if real else "fake"
        n = int(getattr(self, f"n_{side}"))
        if n < 2:
            raise ValueError(f"{side} side has {n} sample(s); a covariance needs 2")
        s, o = getattr(self, f"sum_{side}"), getattr(self, f"outer_{side}")
        mu = s / n
        sigma = (o - n * np.outer(mu, mu)) / (n - 1)
        return mu, (sigma + sigma.T) / 2.0

    def compute(self) -> DistanceResult:
        """FID of the real vs the fake side. From the kept rows when every row of both sides was
        kept and that is cheaper, else from the sums; the same value either way. NaN with a
        ``reason`` below 2 samples per side; a ``reason`` also flags fewer samples than feature
        dimensions (singular covariances, FID biased upward)."""
        n_real, n_fake = int(self.n_real), int(self.n_fake)
        if n_real < 2 or n_fake < 2:
            return DistanceResult(
                "fid", math.nan, n_real, n_fake, self.mode,
                reason=f"FID needs at least 2 real and 2 generated samples (got {n_real} and {n_fake})",
            )
        if self.sum_real.shape != self.sum_fake.shape:
            raise ValueError(f"real and fake feature dimensions differ: {self.sum_real.shape} vs {self.sum_fake.shape}")
        dim = self.sum_real.shape[0]
        if self._rows_complete("real") and self._rows_complete("fake") and low_rank_is_cheaper(n_real, n_fake, dim):
            value = fid_from_features(np.concatenate(self.rows_real), np.concatenate(self.rows_fake))
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow: NaN, reported below
                mu_r, s_r = self.statistics(real=True)
                mu_f, s_f = self.statistics(real=False)
            value = frechet_distance(mu_r, s_r, mu_f, s_f)
        reason = None
        if math.isnan(value):
            reason = overflow_reason("FID", self._largest_feature())
        elif min(n_real, n_fake) <= dim:
            reason = (
                f"fewer samples than feature dimensions ({min(n_real, n_fake)} <= {dim}): "
                "covariances are singular and FID is biased upward"
            )
        return DistanceResult("fid", value, n_real, n_fake, self.mode, reason=reason)

    def _largest_feature(self) -> float:
        """The largest feature magnitude the state shows: the root of the largest mean square
        (inf when even the sums overflowed)."""
        with np.errstate(over="ignore", invalid="ignore"):
            sides = ((self.outer_real, self.n_real), (self.outer_fake, self.n_fake))
            squares = [np.diag(outer).max() / int(n) for outer, n in sides]
        return math.sqrt(max(squares))


class KID(_FeatureSides):
    """Kernel Inception Distance (unbiased polynomial MMD^2 averaged over subsets of
    ``min(max_subset_size, n)`` samples; see :func:`~soebench.metrics.functional.kernel_inception_distance`).

    The value is that of the sets of rows, independent of update and merge order: ``compute``
    sorts each side with :func:`canonical_row_order` before drawing subsets. ValueError for
    ``num_subsets < 1`` or ``max_subset_size < 2``."""

    _state_names = ("feats_real", "feats_fake")

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        *,
        mode: str = FID_RESIZE_MODE,
        num_subsets: int = 100,
        max_subset_size: int = 1000,
        seed: int = 0,
    ):
        check_kid_settings(num_subsets, max_subset_size)  # else compute gives NaN with no reason
        self.num_subsets = num_subsets
        self.max_subset_size = max_subset_size
        self.seed = seed
        super().__init__(extractor, mode=mode)

    def _config(self) -> dict[str, Any]:
        return {"mode": self.mode, "num_subsets": self.num_subsets, "max_subset_size": self.max_subset_size, "seed": self.seed}

    def reset(self) -> None:
        """Forget every sample."""
        self.feats_real: list[np.ndarray] = []
        self.feats_fake: list[np.ndarray] = []

    def update_features(self, features: np.ndarray, *, real: bool) -> None:
        """Keep a copy of the (finite) features in their float dtype (float32 Inception features
        stay float32: half the memory, no loss); the MMD is computed in float64."""
        f = np.array(check_features(features, real=real), copy=True)
        blocks = self.feats_real if real else self.feats_fake
        dims = {b.shape[1] for b in self.feats_real + self.feats_fake if len(b)}
        if len(f) and dims and f.shape[1] not in dims:
            raise ValueError(f"feature dimension {f.shape[1]} differs from earlier updates ({dims.pop()})")
        blocks.append(f)

    @staticmethod
    def _stack(blocks: list[np.ndarray]) -> np.ndarray:
        """One side's rows in canonical order, float64. Subsets are drawn by row position, so
        in update order ``a + b`` and ``b + a`` (or shards in any order) would draw different
        subsets; sorted by value, the draw depends on the set of rows only."""
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return np.zeros((0, 0))
        rows = np.concatenate(blocks, axis=0).astype(np.float64, copy=False)
        return rows[canonical_row_order(rows)]

    def compute(self) -> DistanceResult:
        """KID of the real vs the fake side (``std`` over the subsets; ``extra`` gives the subset
        sizes and count). NaN with a ``reason`` below 2 samples per side. When a single subset was
        computed (both sides fit in ``max_subset_size``, or ``num_subsets=1``), ``std`` is NaN and
        ``reason`` says there is no spread estimate, as FID's flags too few samples."""
        real, fake = self._stack(self.feats_real), self._stack(self.feats_fake)
        n_real, n_fake = len(real), len(fake)
        if n_real < 2 or n_fake < 2:
            return DistanceResult(
                "kid", math.nan, n_real, n_fake, self.mode, std=math.nan,
                reason=f"KID needs at least 2 real and 2 generated samples (got {n_real} and {n_fake})",
            )
        kid = kernel_inception_distance(
            real, fake, num_subsets=self.num_subsets, max_subset_size=self.max_subset_size, seed=self.seed
        )
        if math.isnan(kid.value):
            reason = overflow_reason("KID", float(max(np.abs(real).max(), np.abs(fake).max())))
        else:
            reason = self._single_subset_reason(n_real, n_fake, kid.num_subsets)
        return DistanceResult(
            "kid", kid.value, n_real, n_fake, self.mode, std=kid.std, reason=reason,
            extra={"subset_size_real": kid.subset_size_1, "subset_size_fake": kid.subset_size_2, "num_subsets": kid.num_subsets},
        )

    def _single_subset_reason(self, n_real: int, n_fake: int, num_subsets: int) -> str | None:
        """Why a KID has no std: it is one MMD^2 value (None when it averages several subsets)."""
        if num_subsets > 1:
            return None
        if n_real <= self.max_subset_size and n_fake <= self.max_subset_size:
            return (f"{n_real} real and {n_fake} generated samples fit in one subset of {self.max_subset_size}: "
                    "KID is one MMD^2 over all of them, with no spread estimate (std n/a); "
                    "on few samples it scatters widely around its expectation")
        return "one subset (num_subsets=1): KID is a single MMD^2 draw, with no spread estimate (std n/a)"


def overflow_reason(metric: str, largest: float) -> str:
    """The ``reason`` of a FID/KID that is NaN because its float64 arithmetic overflowed."""
    size = f" of magnitude ~{largest:.3g}" if math.isfinite(largest) else " too large even to sum in float64"
    return (f"{metric} could not be computed: the float64 arithmetic overflowed on features{size} "
            "(Inception features are of order 1); check the feature extractor and its input images")
