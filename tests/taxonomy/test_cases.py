"""Validation-case builders: where they change pixels, determinism, recolour targets."""

from __future__ import annotations

import numpy as np
import pytest

from soebench.taxonomy import cases as cs
from soebench.taxonomy.evidence import dilate
from tests.factories import background, draw_object


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = background(160, 120, rng)
    image, mask = draw_object(image, (60, 40, 34, 28), (200, 30, 30))
    return image, mask


@pytest.mark.parametrize("name", sorted(cs.REMOVAL_METHODS))
def test_removals_change_only_the_dilated_hole_and_remove_the_red(name):
    image, mask = _scene()
    out = cs.REMOVAL_METHODS[name](image, mask, np.random.default_rng(0), None)
    changed = (out != image).any(axis=2)
    assert changed.any()
    if name == "spill":  # the fill reaches SPILL_REMOVAL of the side past the mask, no further
        reach = int(round(cs.SPILL_REMOVAL * np.sqrt(mask.sum())))
        assert (changed & ~dilate(mask, reach // 2)).sum() > 0.5 * mask.sum()
        assert not (changed & ~dilate(mask, reach)).any()
    else:
        assert not (changed & ~dilate(mask, 6)).any()
    red = out[mask].astype(int)
    assert np.mean((red[:, 0] - red[:, 1]) > 80) < 0.05  # the red object is gone


@pytest.mark.parametrize("name", sorted(cs.DISTORTION_METHODS))
def test_distortions_change_only_the_mask_and_are_deterministic(name):
    image, mask = _scene(1)
    out = cs.DISTORTION_METHODS[name](image, mask, np.random.default_rng(7))
    again = cs.DISTORTION_METHODS[name](image, mask, np.random.default_rng(7))
    np.testing.assert_array_equal(out, again)
    changed = (out != image).any(axis=2)
    assert changed.sum() > 0.1 * mask.sum()
    assert not (changed & ~mask).any()


def test_recolour_targets_skip_the_colour_and_its_neighbours():
    targets = cs.recolour_targets("red")
    assert "red" not in targets and not set(cs.NEIGHBOURS["red"]) & set(targets)
    assert {"blue", "green"} <= set(targets)


def test_cases_for_object_gives_one_case_per_label_or_every_method(tmp_path):
    image, mask = _scene(2)
    ref = cs.ObjectRef("abc", "val2017", "x.png", "cup", "red", {}, [60, 40, 34, 28])
    one = list(cs.cases_for_object(ref, image, mask, None, seed=3))
    assert [c.label for c in one] == ["ok", "missing", "mismatch", "distortion"]
    every = list(cs.cases_for_object(ref, image, mask, None, seed=3, all_methods=True))
    methods = {c.method for c in every}
    families = (cs.OK_METHODS, cs.REMOVAL_METHODS, cs.DISTORTION_METHODS, cs.EXTRA_DISTORTION_METHODS, cs.EXPOSURE_METHODS)
    assert set().union(*families) <= methods
    extras = set(cs.EXTRA_DISTORTION_METHODS) | set(cs.EXPOSURE_METHODS)
    assert not {c.method for c in one} & extras  # extras only with all_methods
    # two prototype recolours, the hue rotation (a clearly red object) and a tint
    mismatch = sorted(c.method for c in every if c.label == "mismatch")
    assert len(mismatch) == 4 and {"recolour_hue", "recolour_tint"} <= set(mismatch)
    again = list(cs.cases_for_object(ref, image, mask, None, seed=3))
    for a, b in zip(one, again):
        assert a.case_id == b.case_id
        np.testing.assert_array_equal(a.generated, b.generated)
    ok = one[0]
    assert ok.method in cs.OK_METHODS and ok.expected_color == "red"
    assert next(c for c in every if c.method == "original").generated is image


def test_loose_mask_cases_keep_or_remove_the_object_under_a_grown_mask():
    image, mask = _scene(2)
    ref = cs.ObjectRef("abc", "val2017", "x.png", "cup", "red", {}, [60, 40, 34, 28])
    every = {c.method: c for c in cs.cases_for_object(ref, image, mask, None, seed=3, all_methods=True)}
    one = {c.method for c in cs.cases_for_object(ref, image, mask, None, seed=3)}
    assert set(cs.LOOSE_METHODS) <= set(every) and not set(cs.LOOSE_METHODS) & one  # all_methods only
    grow = int(round(cs.LOOSE_MASK * np.sqrt(mask.sum())))
    loose = every["original_loose"]
    assert loose.label == "ok" and loose.generated is image
    np.testing.assert_array_equal(loose.mask, dilate(mask, grow))
    assert loose.mask.sum() > 1.3 * mask.sum()
    for name in cs.LOOSE_REMOVALS:
        case = every[f"{name}_loose"]
        assert case.label == "missing"
        np.testing.assert_array_equal(case.mask, loose.mask)
        red = case.generated[mask].astype(int)
        assert np.mean((red[:, 0] - red[:, 1]) > 80) < 0.05  # removed through the loose mask
    assert every["original"].mask is mask  # the tight cases keep the object's own mask


def _coordinate_image(h: int = 200, w: int = 240) -> np.ndarray:
    """R = x, G = y (in pixels, both < 256): a warp's output tells where each pixel came from."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, np.full_like(xx, 128)], axis=2).astype(np.uint8)


def _measured_displacement(name: str, mask: np.ndarray, seed: int) -> float:
    image = _coordinate_image(*mask.shape)
    out = cs.DISTORTION_METHODS.get(name, cs.EXTRA_DISTORTION_METHODS.get(name))(image, mask, np.random.default_rng(seed))
    yy, xx = np.nonzero(mask)
    src = out[yy, xx].astype(np.float64)
    return float(np.hypot(src[:, 0] - xx, src[:, 1] - yy).mean() / np.sqrt(mask.sum()))


@pytest.mark.parametrize("name", ["elastic", "elastic_mild", "swirl"])
def test_warp_displacement_matches_the_pixels_the_warp_moved(name):
    # independent reference: decode where each output pixel was sampled from
    mask = np.zeros((200, 240), dtype=bool)
    mask[70:120, 90:150] = True
    for seed in (0, 1, 2):
        predicted = cs.warp_displacement(name, mask, np.random.default_rng(seed))
        assert predicted == pytest.approx(_measured_displacement(name, mask, seed), rel=0.03, abs=0.002)


def test_visibility_criterion_separates_the_calibrated_warps_from_the_mild_one():
    rng = np.random.default_rng(5)
    for k in range(6):
        image = background(200, 160, rng)
        w, h = int(rng.integers(26, 60)), int(rng.integers(26, 60))
        _, mask = draw_object(image, (60, 40, w, h), (200, 30, 30))
        assert cs.warp_displacement("elastic", mask, np.random.default_rng(k)) >= cs.VISIBLE_MEAN_DISPLACEMENT
        assert cs.warp_displacement("swirl", mask, np.random.default_rng(k)) >= cs.VISIBLE_MEAN_DISPLACEMENT
        assert cs.warp_displacement("elastic_mild", mask, np.random.default_rng(k)) < cs.VISIBLE_MEAN_DISPLACEMENT
    with pytest.raises(ValueError, match="not a geometric warp"):
        cs.warp_displacement("noise", mask, np.random.default_rng(0))


def _textured_scene(seed: int = 4):
    """A red object with internal structure (stripes and noise) on a textured background."""
    rng = np.random.default_rng(seed)
    image = background(200, 160, rng)
    image, mask = draw_object(image, (60, 40, 60, 48), (200, 40, 40))
    yy, xx = np.nonzero(mask)
    stripes = np.where(((xx // 5) + (yy // 7)) % 2 == 0, 50, -50)
    image[yy, xx] = np.clip(image[yy, xx].astype(int) + stripes[:, None], 0, 255).astype(np.uint8)
    return image, mask


@pytest.mark.parametrize("name", ["redraw_jpeg", "redraw_smooth", "redraw_exposure"])
def test_ok_redraws_change_only_the_mask_and_keep_the_object(name):
    image, mask = _textured_scene()
    out = cs.OK_METHODS[name](image, mask, np.random.default_rng(0))
    changed = (out != image).any(axis=2)
    assert changed[mask].mean() > 0.3 and not (changed & ~mask).any()
    assert cs.smoothing_kept(image, out, mask) > 0.7  # still the object's own structure
    diff = np.abs(out[mask].astype(int) - image[mask].astype(int)).mean()
    assert diff < 25


def test_halo_keeps_the_object_and_blurs_only_around_it():
    image, mask = _textured_scene()
    out = cs.halo(image, mask, np.random.default_rng(0))
    np.testing.assert_array_equal(out[mask], image[mask])
    reach = int(round(cs.SPILL_HALO * np.sqrt(mask.sum())))
    changed = (out != image).any(axis=2)
    assert changed[dilate(mask, reach) & ~mask].mean() > 0.5 and not (changed & ~dilate(mask, reach)).any()


@pytest.mark.parametrize("name", ["melt", "blur_heavy"])
def test_smoothing_distortions_meet_their_visibility_criterion_and_stay_in_the_mask(name):
    image, mask = _textured_scene()
    out = cs.DISTORTION_METHODS[name](image, mask, np.random.default_rng(0))
    assert cs.smoothing_kept(image, out, mask) <= cs.VISIBLE_SMOOTHING_KEPT
    assert not ((out != image).any(axis=2) & ~mask).any()


def test_realistic_recolours_rotate_the_hue_or_tint_to_another_colour():
    from soebench.mining.colour import colour_of_mask

    image, mask = _textured_scene()
    method, out = cs.realistic_recolour(image, mask, np.random.default_rng(1), "red")
    assert method == "recolour_hue"  # a clearly red object
    assert colour_of_mask(out, mask).name not in ("red", *cs.NEIGHBOURS["red"])
    assert not ((out != image).any(axis=2) & ~mask).any()
    grey = image.copy()
    grey[mask] = 128
    method, tinted = cs.realistic_recolour(grey, mask, np.random.default_rng(2), "gray")
    assert method == "recolour_tint"  # a hue rotation cannot recolour a grey object
    assert colour_of_mask(tinted, mask).name not in ("gray", *cs.NEIGHBOURS["gray"])


def test_exposure_cases_change_the_whole_photo():
    image, mask = _scene(2)
    for fn in cs.EXPOSURE_METHODS.values():
        out = fn(image, mask, None)
        assert (out != image).any(axis=2)[~mask].mean() > 0.5
