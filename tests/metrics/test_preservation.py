"""Background preservation metrics against numpy formulas and skimage's SSIM map."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from soebench.errors import InputError
from soebench.metrics.functional import (
    background_keep_mask,
    dilate_mask,
    dilation_radii,
    masked_mse,
    masked_psnr,
    masked_ssim,
)
from soebench.metrics.preservation import BackgroundPreservation, background_preservation


def _pair(seed: int = 0, h: int = 64, w: int = 80):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 3 % 256, yy * 4 % 256, (xx + yy) * 2 % 256], axis=2).astype(np.float64)
    orig = np.clip(base + rng.normal(0, 10, size=base.shape), 0, 255).astype(np.uint8)
    gen = np.clip(orig + rng.normal(0, 6, size=base.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    mask[20:34, 30:50] = True
    gen[mask] = 255  # the "edit" inside the object
    return orig, gen, mask


def test_mse_psnr_match_numpy():
    orig, gen, mask = _pair()
    keep = ~mask
    diff = (orig.astype(np.float64) - gen.astype(np.float64)) / 255.0
    want_mse = float(np.mean(diff[keep] ** 2))
    assert masked_mse(orig, gen, keep) == pytest.approx(want_mse, rel=1e-12)
    assert masked_psnr(orig, gen, keep) == pytest.approx(10 * np.log10(1.0 / want_mse), rel=1e-12)
    # the edit inside the mask is ignored: changing it further changes nothing
    gen2 = gen.copy()
    gen2[mask] = 0
    assert masked_mse(orig, gen2, keep) == masked_mse(orig, gen, keep)


def test_ssim_matches_skimage_full_map_over_kept_pixels():
    orig, gen, mask = _pair(1)
    keep = background_keep_mask(mask, radius_at_512=40)
    composite = np.where(keep[..., None], gen, orig)  # the documented treatment of the object region
    _, smap = structural_similarity(
        orig, composite, channel_axis=2, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255, full=True,
    )
    want = float(smap[keep].mean())  # mean over kept pixels and channels
    assert masked_ssim(orig, gen, keep) == pytest.approx(want, rel=1e-9)


def test_ssim_ignores_the_edit_inside_the_mask():
    orig, gen, mask = _pair(4)
    keep = background_keep_mask(mask)
    other = gen.copy()
    other[~keep] = 0  # a different edit in the excluded region
    assert masked_ssim(orig, other, keep) == masked_ssim(orig, gen, keep)
    assert masked_ssim(orig, gen, keep) < 1.0  # the background noise still counts


def test_identical_background_gives_perfect_scores():
    orig, gen, mask = _pair(2)
    same = orig.copy()
    same[mask] = 0
    v = background_preservation(orig, same, mask)
    assert v["bg_mse"] == 0.0 and math.isinf(v["bg_psnr"])
    assert v["bg_ssim"] == pytest.approx(1.0, abs=1e-9)


def test_no_kept_pixels_is_nan():
    orig, gen, _ = _pair(3)
    none = np.zeros(orig.shape[:2], dtype=bool)
    assert math.isnan(masked_mse(orig, gen, none))
    assert math.isnan(masked_psnr(orig, gen, none))
    assert math.isnan(masked_ssim(orig, gen, none))


def test_dilation_scales_with_image_size_per_axis():
    assert dilation_radii(512, 512, 8) == (8, 8)
    assert dilation_radii(256, 1024, 8) == (4, 16)
    mask = np.zeros((41, 41), dtype=bool)
    mask[20, 20] = True
    grown = dilate_mask(mask, 3, 5)
    ys, xs = np.nonzero(grown)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (17, 23, 15, 25)
    assert dilate_mask(mask, 0, 0).sum() == 1


def test_keep_mask_excludes_dilated_object():
    mask = np.zeros((512, 512), dtype=bool)
    mask[200:220, 300:330] = True
    keep = background_keep_mask(mask)  # default 8 px at 512
    assert not keep[200:220, 300:330].any()
    assert not keep[195, 310] and not keep[210, 336]  # within 8 px
    assert keep[190, 310] and keep[210, 340]  # beyond 8 px


def test_class_accumulates_and_merges():
    samples = [_pair(s) for s in range(4)]
    whole = BackgroundPreservation()
    per = [whole.update(o, g, m) for o, g, m in samples]
    a, b = BackgroundPreservation(), BackgroundPreservation()
    for o, g, m in samples[:2]:
        a.update(o, g, m)
    for o, g, m in samples[2:]:
        b.update(o, g, m)
    merged = (a + b).compute()
    got = whole.compute()
    for k in ("bg_psnr", "bg_ssim", "bg_mse"):
        assert got[k] == pytest.approx(np.mean([p[k] for p in per]), rel=1e-12)
        assert merged[k] == pytest.approx(got[k], rel=1e-12)


def test_class_counts_infinite_psnr_separately():
    orig, gen, mask = _pair(5)
    metric = BackgroundPreservation()
    metric.update(orig, orig, mask)
    assert math.isinf(metric.compute()["bg_psnr"])
    finite = metric.update(orig, gen, mask)
    out = metric.compute()
    assert out["n_inf_psnr"] == 1 and out["bg_psnr"] == pytest.approx(finite["bg_psnr"])


def test_size_mismatch_names_sample():
    orig, gen, mask = _pair(6)
    with pytest.raises(InputError, match="sample s1: generated image is 40x64"):
        BackgroundPreservation().update(orig, gen[:, :40], mask, sample_id="s1")
    with pytest.raises(InputError, match="sample s2: object mask is 10x10"):
        BackgroundPreservation().update(orig, gen, mask[:10, :10], sample_id="s2")


def test_merge_refuses_different_settings():
    with pytest.raises(ValueError, match="different settings"):
        BackgroundPreservation(radius_at_512=8).merge(BackgroundPreservation(radius_at_512=4))
