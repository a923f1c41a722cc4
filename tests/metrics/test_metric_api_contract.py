"""The metrics' library contract: input checks with precise errors, states that merge in any
order (an empty shard included), and a documented, discoverable public API."""

from __future__ import annotations

import subprocess
import sys
import typing

import numpy as np
import pytest

from soebench.metrics import FID, KID, BackgroundPreservation, CLIPScore, clip_score
from soebench.metrics.fid import canonical_row_order
from soebench.metrics.functional import (
    background_keep_mask,
    kernel_inception_distance,
    masked_mse,
    masked_psnr,
    masked_ssim,
    ssim_map,
)


def _sum_states(first: dict, second: dict) -> dict:
    """What a multi-process run does: add two state dicts key by key (lists concatenate)."""
    return {k: first[k] if k == "_config" else first[k] + second[k] for k in first}


# ----------------------------------------------------------------------------------------------
# background preservation: one dtype per pair, floats within [0, data_range]
# ----------------------------------------------------------------------------------------------


def _images(seed: int = 0, size: int = 48):
    rng = np.random.default_rng(seed)
    orig = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    gen = np.clip(orig.astype(int) + rng.integers(-3, 4, orig.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((size, size), dtype=bool)
    mask[15:30, 15:30] = True
    return orig, gen, mask


@pytest.mark.parametrize("fn", [masked_mse, masked_psnr, masked_ssim])
def test_background_scores_reject_mixed_dtypes(fn):
    """A uint8 original against a float [0, 1] output used to be scored with the uint8 range:
    an identical image got PSNR 4.8 dB."""
    orig, _, mask = _images()
    keep = background_keep_mask(mask)
    with pytest.raises(TypeError, match="same dtype, got uint8 and float32"):
        fn(orig, orig.astype(np.float32) / 255, keep)


def test_preservation_update_names_the_sample_of_a_dtype_error():
    orig, _, mask = _images()
    with pytest.raises(TypeError, match="^sample s7: original and generated images must have the same dtype"):
        BackgroundPreservation().update(orig, orig.astype(np.float64) / 255, mask, sample_id="s7")


def test_float_images_outside_the_default_range_are_an_error():
    """Float [0, 255] images read with the default range 1 gave PSNR 0 for a 1-level change."""
    orig, gen, mask = _images()
    with pytest.raises(ValueError, match=r"outside \[0, 1\].*data_range=255.*uint8"):
        BackgroundPreservation().update(orig.astype(np.float32), gen.astype(np.float32), mask)
    with pytest.raises(ValueError, match="generated image has values"):
        masked_mse(orig / 255.0, gen / 255.0 + 0.5, ~mask)
    with pytest.raises(ValueError, match="outside"):
        ssim_map(orig / 255.0, np.full(orig.shape, np.nan))


def test_uint8_takes_no_other_range_and_other_dtypes_are_refused():
    orig, gen, mask = _images()
    with pytest.raises(ValueError, match="uint8 images span"):
        masked_mse(orig, gen, ~mask, data_range=1.0)
    with pytest.raises(TypeError, match="uint8 or floating point, got int64"):
        masked_mse(orig.astype(np.int64), gen.astype(np.int64), ~mask)


def test_float_images_in_range_score_as_their_uint8_originals():
    orig, gen, mask = _images()
    want = BackgroundPreservation().update(orig, gen, mask)
    unit = BackgroundPreservation().update(orig / 255.0, gen / 255.0, mask)
    wide = BackgroundPreservation(data_range=255).update(orig.astype(np.float32), gen.astype(np.float32), mask)
    for got in (unit, wide):
        assert got == {k: pytest.approx(v, rel=1e-9) for k, v in want.items()}


# ----------------------------------------------------------------------------------------------
# KID: the value of the set of rows, whatever the update or merge order
# ----------------------------------------------------------------------------------------------


def _kid(real: np.ndarray, fake: np.ndarray, **kwargs) -> KID:
    kid = KID(**kwargs)
    kid.update_features(real, real=True)
    kid.update_features(fake, real=False)
    return kid


def test_kid_merge_is_independent_of_order():
    """Subsets are drawn by row position; b + a used to draw other rows than a + b (0.107 vs 0.188)."""
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 0.1
    kw = dict(max_subset_size=5)
    a, b = _kid(real[:10], fake[:10], **kw), _kid(real[10:], fake[10:], **kw)
    whole = _kid(real, fake, **kw).compute().value
    assert (a + b).compute().value == (b + a).compute().value == whole
    perm = rng.permutation(20)
    assert _kid(real[perm], fake[perm[::-1]], **kw).compute().value == whole
    loaded = KID(**kw)
    loaded.load_state_dict(_sum_states(b.state_dict(), a.state_dict()))
    assert loaded.compute().value == whole


def test_kid_draws_its_subsets_over_the_canonical_order():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(30, 6)), rng.normal(size=(25, 6))
    want = kernel_inception_distance(
        real[canonical_row_order(real)], fake[canonical_row_order(fake)], num_subsets=10, max_subset_size=8, seed=2
    )
    got = _kid(real, fake, num_subsets=10, max_subset_size=8, seed=2).compute()
    assert (got.value, got.std) == (want.value, want.std)


def test_canonical_row_order_depends_on_values_only():
    rows = np.random.default_rng(2).normal(size=(50, 4))
    rows[7] = rows[3]  # equal rows are interchangeable
    rows[9, 1] = -0.0
    shuffled = rows[::-1].copy()
    shuffled[(shuffled == 0) & np.signbit(shuffled)] = 0.0  # -0.0 sorts as 0.0
    np.testing.assert_array_equal(rows[canonical_row_order(rows)], shuffled[canonical_row_order(shuffled)])
    np.testing.assert_array_equal(canonical_row_order(rows.astype(np.float32)),
                                  canonical_row_order(rows.astype(np.float32).astype(np.float64)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(num_subsets=0), "`num_subsets` expected to be an integer >= 1, but got 0"),
        (dict(num_subsets=2.5), "`num_subsets` expected to be an integer >= 1, but got 2.5"),
        (dict(max_subset_size=1), "`max_subset_size` expected to be an integer >= 2, but got 1"),
        (dict(max_subset_size=-5), "`max_subset_size` expected to be an integer >= 2, but got -5"),
    ],
)
def test_kid_settings_are_checked_up_front(kwargs, message):
    """These used to be accepted and give NaN with no reason at compute time."""
    with pytest.raises(ValueError, match=message):
        KID(**kwargs)
    with pytest.raises(ValueError, match=message):
        kernel_inception_distance(np.ones((4, 2)), np.ones((4, 2)), **kwargs)


def test_kid_smallest_valid_settings_give_a_value():
    rng = np.random.default_rng(3)
    res = _kid(rng.normal(size=(6, 3)), rng.normal(size=(6, 3)), num_subsets=1, max_subset_size=2).compute()
    assert np.isfinite(res.value) and res.extra["num_subsets"] == 1


# ----------------------------------------------------------------------------------------------
# FID: the documented "sum the state dicts, load the sum" route, an empty shard included
# ----------------------------------------------------------------------------------------------


def _fid(real: np.ndarray | None = None, fake: np.ndarray | None = None) -> FID:
    fid = FID()
    for block, is_real in ((real, True), (fake, False)):
        if block is not None:
            fid.update_features(block, real=is_real)
    return fid


@pytest.mark.parametrize("empty_first", [True, False])
def test_fid_state_dicts_sum_with_an_empty_shard(empty_first):
    """An empty FID's sums were shaped (0,) / (0, 0) and did not broadcast against (D,) / (D, D)."""
    rng = np.random.default_rng(4)
    full = _fid(rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 0.2)
    parts = [FID().state_dict(), full.state_dict()]
    loaded = FID()
    loaded.load_state_dict(_sum_states(*parts) if empty_first else _sum_states(*parts[::-1]))
    assert loaded.compute().value == full.compute().value
    assert (FID() + full).compute().value == (full + FID()).compute().value == full.compute().value


def test_fid_state_dicts_sum_with_a_shard_that_has_one_side_only():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(12, 4)), rng.normal(size=(12, 4)) + 0.3
    loaded = FID()
    loaded.load_state_dict(_sum_states(_fid(real=real).state_dict(), _fid(fake=fake).state_dict()))
    assert loaded.compute().value == pytest.approx(_fid(real, fake).compute().value, rel=1e-12)


def test_fid_loads_an_empty_state_saved_with_the_old_shapes():
    old_empty = FID().state_dict()
    for side in ("real", "fake"):
        old_empty.update({f"sum_{side}": np.zeros((0,)), f"outer_{side}": np.zeros((0, 0))})
    restored = FID()
    restored.load_state_dict(old_empty)
    rng = np.random.default_rng(6)
    full = _fid(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)))
    assert restored.merge(full).compute().value == full.compute().value


# ----------------------------------------------------------------------------------------------
# non-finite features are named where they enter
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [FID, KID])
@pytest.mark.parametrize("real", [True, False])
def test_non_finite_features_name_the_side_and_row(cls, real):
    """FID died with a bare LinAlgError and KID returned NaN with no reason."""
    feats = np.random.default_rng(7).normal(size=(6, 5))
    feats[4, 1] = np.inf
    side = "real" if real else "fake"
    metric = cls()
    with pytest.raises(ValueError, match=f"^{side} features must be finite, but row 4 of this update holds inf"):
        metric.update_features(feats, real=real)
    assert metric.compute().n_real == metric.compute().n_fake == 0  # nothing was added


def test_non_finite_features_from_an_extractor_are_rejected_in_update():
    def broken(batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 4), np.nan, dtype=np.float32)

    images = [np.zeros((8, 8, 3), dtype=np.uint8)] * 2
    for cls in (FID, KID):
        with pytest.raises(ValueError, match="^fake features must be finite, but row 0"):
            cls(broken).update(images, real=False)


# ----------------------------------------------------------------------------------------------
# CLIPScore: one string is not a sequence of prompts
# ----------------------------------------------------------------------------------------------


class _RecordingEncoder:
    def __init__(self) -> None:
        self.texts: list = []

    def encode_images(self, images):
        return np.ones((len(images), 4))

    def encode_texts(self, texts):
        self.texts.append(texts)
        return np.ones((len(texts), 4))


def test_clip_score_update_rejects_a_single_string():
    """'cup' for three images was scored as the prompts 'c', 'u', 'p'."""
    encoder = _RecordingEncoder()
    images = [np.zeros((16, 16, 3), dtype=np.uint8)] * 3
    metric = CLIPScore(encoder, region="global")
    with pytest.raises(TypeError, match=r"not one string; pass \[text\] \* len\(images\)"):
        metric.update(images, "cup")
    assert encoder.texts == [] and int(metric.count) == 0
    assert metric.update(images, ["cup"] * 3).shape == (3,)


# ----------------------------------------------------------------------------------------------
# discoverable, documented API
# ----------------------------------------------------------------------------------------------


def test_dir_of_the_package_lists_the_lazy_api_without_importing_it():
    code = (
        "import sys, soebench\n"
        "names = dir(soebench)\n"
        "lazy = {'evaluate', 'build_dataset', 'read_manifest', 'write_manifest', 'to_fiftyone', 'SoebenchError'}\n"
        "assert lazy <= set(names), names\n"
        "assert '__version__' in names and names == sorted(names)\n"
        "assert 'soebench.evaluation' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _documented():
    from soebench.metrics import inception_available
    from soebench.models import Inpainter, Registry

    return [
        Registry.register, Registry.get, Registry.create, Registry.names,
        FID.compute, FID.update_features, FID.reset, FID.load_state_dict, KID.compute, KID.reset,
        CLIPScore.update_features, CLIPScore.update_scores, CLIPScore.std, CLIPScore.reset,
        BackgroundPreservation.compute, BackgroundPreservation.update_values, BackgroundPreservation.reset,
        Inpainter.inpaint, Inpainter.cache_token, inception_available,
    ]


@pytest.mark.parametrize("obj", _documented(), ids=lambda o: o.__qualname__)
def test_public_methods_have_docstrings(obj):
    assert (obj.__doc__ or "").strip()


def test_clip_score_and_encoder_have_resolvable_type_hints():
    hints = typing.get_type_hints(clip_score)
    assert {"image_feats", "text_feats", "return"} <= set(hints)
    assert "encoder" in typing.get_type_hints(CLIPScore.__init__)
    assert {"image_feats", "text_feats"} <= set(typing.get_type_hints(CLIPScore.update_features))


def test_sum_of_shards_and_merge_copies():
    import numpy as np

    from soebench.metrics import FID, KID

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(12, 4)), rng.normal(size=(12, 4)) + 0.5
    parts = []
    for k in range(3):
        fid = FID()
        fid.update_features(real[4 * k:4 * k + 4], real=True)
        fid.update_features(fake[4 * k:4 * k + 4], real=False)
        parts.append(fid)
    whole = FID()
    whole.update_features(real, real=True)
    whole.update_features(fake, real=False)
    assert sum(parts).compute().value == pytest.approx(whole.compute().value, rel=1e-12)
    a, b = KID(), KID()
    a.update_features(real[:6], real=True)
    b.update_features(real[6:], real=True)
    a.merge(b)
    for block in b.feats_real:  # editing b's kept rows in place must not reach into a
        block[...] = 0
    assert np.array_equal(np.concatenate(a.feats_real), real)
