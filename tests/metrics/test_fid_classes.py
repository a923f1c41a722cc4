"""FID / KID stateful classes: sums equal direct statistics, shards merge, small n is handled."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soebench.metrics import FID, KID, load_inception
from soebench.metrics.functional import fid_from_features, kernel_inception_distance
from soebench.metrics.preprocess import FID_RESIZE_MODE, clean_resize


def _feats(seed: int, n: int, d: int = 12, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(rng.normal(size=(n, d)) + shift)


def test_fid_from_sums_equals_direct():
    real, fake = _feats(0, 60), _feats(1, 50, shift=0.4)
    fid = FID()
    for block in np.array_split(real, 4):
        fid.update_features(block, real=True)
    for block in np.array_split(fake, 3):
        fid.update_features(block, real=False)
    mu, sigma = fid.statistics(real=True)
    np.testing.assert_allclose(mu, real.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(real, rowvar=False), rtol=1e-9, atol=1e-12)
    res = fid.compute()
    assert res.value == pytest.approx(fid_from_features(real, fake), rel=1e-9)
    assert (res.n_real, res.n_fake, res.mode, res.metric) == (60, 50, FID_RESIZE_MODE, "fid")
    assert res.reason is None


def test_fid_shards_merge_by_adding_states():
    real, fake = _feats(2, 40), _feats(3, 40, shift=0.2)
    whole = FID()
    whole.update_features(real, real=True)
    whole.update_features(fake, real=False)
    a, b = FID(), FID()
    a.update_features(real[:15], real=True)
    a.update_features(fake[:30], real=False)
    b.update_features(real[15:], real=True)
    b.update_features(fake[30:], real=False)
    assert (a + b).compute().value == pytest.approx(whole.compute().value, rel=1e-10)
    # state_dict round trip: what a multi-process run would sum and reload
    summed = FID()
    summed.load_state_dict(a.state_dict())
    summed.merge(b)
    assert summed.compute().value == pytest.approx(whole.compute().value, rel=1e-10)


def test_fid_few_samples_nan_with_reason():
    fid = FID()
    fid.update_features(_feats(4, 1), real=True)
    fid.update_features(_feats(5, 5), real=False)
    res = fid.compute()
    assert math.isnan(res.value) and "at least 2" in res.reason
    empty = FID().compute()
    assert math.isnan(empty.value) and empty.n_real == 0
    fid.reset()
    assert int(fid.n_real) == 0


def test_fid_singular_covariance_reported():
    fid = FID()
    fid.update_features(_feats(6, 5), real=True)
    fid.update_features(_feats(7, 5), real=False)
    res = fid.compute()
    assert math.isfinite(res.value) and "singular" in res.reason


def test_fid_rejects_changing_dimension():
    fid = FID()
    fid.update_features(_feats(8, 4, d=12), real=True)
    with pytest.raises(ValueError, match="dimension"):
        fid.update_features(_feats(9, 4, d=10), real=True)


def test_kid_class_matches_function_and_merges():
    real, fake = _feats(10, 30), _feats(11, 20, shift=0.3)
    kid = KID()
    kid.update_features(real, real=True)
    kid.update_features(fake, real=False)
    res = kid.compute()
    assert res.value == pytest.approx(kernel_inception_distance(real, fake).value, rel=1e-12)
    a, b = KID(), KID()
    a.update_features(real[:10], real=True)
    b.update_features(real[10:], real=True)
    a.update_features(fake, real=False)
    assert (a + b).compute().value == pytest.approx(res.value, rel=1e-12)


def test_kid_small_n():
    kid = KID()
    kid.update_features(_feats(12, 1), real=True)
    kid.update_features(_feats(13, 1), real=False)
    res = kid.compute()
    assert math.isnan(res.value) and "at least 2" in res.reason
    kid.update_features(_feats(14, 1), real=True)
    kid.update_features(_feats(15, 1), real=False)
    assert math.isfinite(kid.compute().value)


def test_clean_resize_matches_cleanfid():
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    from cleanfid.resize import build_resizer

    img = np.random.default_rng(0).integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    want = build_resizer("clean")(img)
    got = clean_resize(img)
    assert got.shape == (299, 299, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_update_with_images_through_tiny_inception(tiny_inception_path):
    extractor = load_inception(tiny_inception_path)
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8) for _ in range(4)]
    fake = [np.clip(r.astype(int) + 60, 0, 255).astype(np.uint8) for r in real]
    fid, kid = FID(extractor), KID(extractor)
    feats_real = fid.update(real, real=True)
    fid.update(fake, real=False)
    kid.update_features(feats_real, real=True)
    kid.update(fake, real=False)
    assert feats_real.shape == (4, 16)
    want = extractor(np.stack([clean_resize(r) for r in real]))
    np.testing.assert_allclose(feats_real, want, rtol=1e-12)
    assert fid.compute().value > 0 and math.isfinite(kid.compute().value)


def test_add_leaves_operands_unchanged_and_shares_extractor():
    def extractor(x):
        return x.reshape(len(x), -1)[:, :4]

    a, b = FID(extractor), FID(extractor)
    a.update_features(_feats(20, 5, d=4), real=True)
    b.update_features(_feats(21, 6, d=4), real=True)
    before = a.state_dict()
    c = a + b
    assert int(c.n_real) == 11 and int(a.n_real) == 5 and int(b.n_real) == 6
    np.testing.assert_array_equal(a.sum_real, before["sum_real"])
    assert c.extractor is extractor


def _fid_of(real_blocks, fake_blocks) -> FID:
    fid = FID()
    for block in real_blocks:
        fid.update_features(block, real=True)
    for block in fake_blocks:
        fid.update_features(block, real=False)
    return fid


def test_fid_of_small_sets_uses_the_kept_rows(monkeypatch):
    """Fewer rows than dimensions: the value comes from the rows (no D x D decomposition), equals
    the covariance route, and survives a state_dict round trip and a merge."""
    from soebench.metrics import fid as fid_module
    from soebench.metrics.functional import feature_statistics, frechet_distance

    real, fake = _feats(20, 9, d=32), _feats(21, 7, d=32, shift=0.3)
    mu_r, s_r = feature_statistics(real)
    mu_f, s_f = feature_statistics(fake)
    want = frechet_distance(mu_r, s_r, mu_f, s_f)
    whole = _fid_of(np.array_split(real, 3), [fake])

    def no_covariance_route(*args):
        raise AssertionError("the D x D route ran for a small set")

    monkeypatch.setattr(fid_module, "frechet_distance", no_covariance_route)
    assert whole.compute().value == pytest.approx(want, rel=1e-8)
    a, b = _fid_of([real[:4]], [fake[:2]]), _fid_of([real[4:]], [fake[2:]])
    restored = FID()
    restored.load_state_dict(a.state_dict())
    assert restored.merge(b).compute().value == pytest.approx(want, rel=1e-8)


def test_fid_drops_rows_past_the_dimension_and_uses_the_sums(monkeypatch):
    from soebench.metrics import fid as fid_module

    real, fake = _feats(22, 30, d=8), _feats(23, 6, d=8, shift=0.3)
    fid = _fid_of(np.array_split(real, 5), [fake])
    assert fid.rows_real == [] and sum(len(r) for r in fid.rows_fake) == 6
    calls = []
    original = fid_module.frechet_distance
    monkeypatch.setattr(fid_module, "frechet_distance", lambda *a: calls.append(1) or original(*a))
    mu_r, s_r = fid.statistics(real=True)
    mu_f, s_f = fid.statistics(real=False)
    assert fid.compute().value == original(mu_r, s_r, mu_f, s_f)
    assert calls == [1]
    # a merge with a state that kept every row is still incomplete: the sums decide
    merged = _fid_of([real[:3]], [fake[:2]]).merge(fid)
    assert merged.compute().value == pytest.approx(
        fid_from_features(np.vstack([real[:3], real]), np.vstack([fake[:2], fake])), rel=1e-6)
    assert len(calls) == 2
