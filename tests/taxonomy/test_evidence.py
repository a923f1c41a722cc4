"""Weight-free measurements against exact or independent references."""

from __future__ import annotations

import numpy as np
import pytest

from soebench.taxonomy import evidence as ev


def test_harmonic_fill_reproduces_a_linear_ramp_exactly():
    # a linear function is harmonic (its discrete Laplacian is 0), so the fill must recover it
    yy, xx = np.mgrid[0:40, 0:50].astype(np.float64)
    values = np.stack([2.0 * xx + 3.0 * yy, -xx + 0.5 * yy + 7, np.full_like(xx, 5.0)], axis=-1)
    hole = np.zeros((40, 50), dtype=bool)
    hole[10:30, 12:35] = True
    damaged = values.copy()
    damaged[hole] = 0.0
    filled = ev.harmonic_fill(damaged, hole)
    np.testing.assert_allclose(filled, values, atol=1e-8)


def test_harmonic_fill_satisfies_the_discrete_laplace_equation():
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 100, size=(30, 30, 1))
    hole = np.zeros((30, 30), dtype=bool)
    hole[5:25, 8:20] = True
    filled = ev.harmonic_fill(values, hole)[..., 0]
    ys, xs = np.nonzero(hole)
    lap = filled[ys - 1, xs] + filled[ys + 1, xs] + filled[ys, xs - 1] + filled[ys, xs + 1] - 4 * filled[ys, xs]
    np.testing.assert_allclose(lap, 0.0, atol=1e-8)
    np.testing.assert_array_equal(filled[~hole], values[~hole][:, 0])


def test_energy_distance_matches_its_closed_form_for_point_masses():
    a = np.zeros((50, 3))
    b = np.zeros((60, 3))
    b[:, 0] = 4.0
    # E|a-b| = 4, E|a-a'| = E|b-b'| = 0 -> 2 * 4
    assert ev.energy_distance(a, b) == pytest.approx(8.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    y = rng.normal(size=(400, 3))
    assert abs(ev.energy_distance(x, y)) < 0.1 < ev.energy_distance(x, y + 1.0)


def test_immerkaer_estimates_gaussian_noise_sigma():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    img = 50 + 0.2 * xx + 0.1 * yy + rng.normal(0, 10.0, size=(128, 128)).astype(np.float32)
    sigma = float(ev.immerkaer_map(img)[2:-2, 2:-2].mean())
    assert sigma == pytest.approx(10.0, rel=0.08)


def test_neighbour_correlation_and_fine_to_coarse_tell_noise_from_smooth_structure():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    smooth = (40 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype(np.float32)
    noise = rng.normal(0, 20, size=(64, 64)).astype(np.float32)
    where = np.ones((64, 64), dtype=bool)
    assert ev.neighbour_correlation(smooth, where) > 0.95
    assert abs(ev.neighbour_correlation(noise, where)) < 0.1
    assert ev.fine_to_coarse(noise, where) > 1.5 > 1.0 > ev.fine_to_coarse(smooth, where)


def test_blockiness_finds_a_shuffled_block_grid():
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    smooth = (60 * np.sin(xx / 11.0 + yy / 13.0)).astype(np.float32)
    blocks = smooth.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 8, 8)
    shuffled = blocks[rng.permutation(64)].reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
    where = np.ones((64, 64), dtype=bool)
    assert ev.blockiness(smooth, where) < 1.3
    assert ev.blockiness(shuffled, where) > 2.0


def test_blockiness_does_not_take_one_straight_outline_for_a_grid():
    # a box-like object: flat faces split by one horizontal and one vertical edge (the demo
    # sample's rocket and boxes), plus mild texture; a grid needs repeated steps
    rng = np.random.default_rng(5)
    img = np.full((64, 64), 40.0, dtype=np.float32)
    img[:, 29:] += 50.0
    img[37:, :] += 30.0
    img += rng.normal(0, 1.5, size=img.shape).astype(np.float32)
    where = np.ones((64, 64), dtype=bool)
    assert ev.blockiness(img, where) < 1.5
    # the same edges repeated every 8 px are a grid
    grid = np.full((64, 64), 40.0, dtype=np.float32) + 50.0 * ((np.arange(64) // 8) % 2)[None, :] + 30.0 * ((np.arange(64) // 8) % 2)[:, None]
    grid += rng.normal(0, 1.5, size=grid.shape).astype(np.float32)
    assert ev.blockiness(grid, where) > 3.0


def test_contour_step_is_large_at_an_object_outline_and_zero_on_a_flat_image():
    yy, xx = np.mgrid[0:60, 0:60]
    mask = (yy - 30) ** 2 + (xx - 30) ** 2 <= 12**2
    image = np.where(mask, 80.0, 20.0).astype(np.float32)
    assert ev.contour_step(image, mask) > 5.0
    assert ev.contour_step(np.full((60, 60), 20.0, np.float32), mask) == pytest.approx(0.0, abs=1e-6)


def test_inner_contour_step_finds_the_edge_of_an_object_smaller_than_its_mask():
    yy, xx = np.mgrid[0:80, 0:80]
    disk = lambda r: (yy - 40) ** 2 + (xx - 40) ** 2 <= r**2  # noqa: E731
    obj, mask = disk(14), disk(17)  # the mask is ~3 px (about 0.12 of the side) looser than the object
    image = np.where(obj, 80.0, 20.0).astype(np.float32)
    at_outline = ev.contour_step(image, mask)
    inner = ev.inner_contour_step(image, mask, at_outline)
    assert inner > 5.0 * max(at_outline, 1.0)  # the object's edge is inside the mask, not at it
    assert inner == pytest.approx(ev.contour_step(image, obj), rel=0.5)
    # at a tight mask the outline itself is the best, and nothing larger is invented on a flat image
    tight = ev.contour_step(image, obj)
    assert ev.inner_contour_step(image, obj, tight) == pytest.approx(tight, rel=0.05)
    flat = np.full((80, 80), 20.0, np.float32)
    assert ev.inner_contour_step(flat, mask, 0.0) == pytest.approx(0.0, abs=1e-6)


def test_colour_novelty_counts_colours_the_ring_lacks():
    ring = np.tile([[50.0, 0.0, 0.0]], (200, 1))
    same = ring[:50] + 1.0
    other = np.tile([[50.0, 60.0, 40.0]], (50, 1))
    assert ev.colour_novelty(same, ring)[0] == 0.0
    share, median = ev.colour_novelty(other, ring)
    assert share == 1.0 and median == pytest.approx(np.hypot(60, 40))


def test_measure_returns_plain_floats_and_a_foreground_inside_the_mask():
    rng = np.random.default_rng(5)
    image = np.clip(120 + rng.normal(0, 4, size=(100, 120, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:100, 0:120]
    mask = (yy - 50) ** 2 / 15**2 + (xx - 60) ** 2 / 20**2 <= 1
    with_object = image.copy()
    with_object[mask] = (200, 30, 30)
    values, foreground = ev.measure(image, with_object, mask)
    assert all(isinstance(v, float) for v in values.values())
    assert not (foreground & ~mask).any()
    assert values["foreground_share"] > 0.9
    empty_values, empty_fg = ev.measure(with_object, image, mask)
    assert empty_values["departure_ratio"] < 0.5 * values["departure_ratio"]
    assert empty_values["foreground_share"] < 0.1


def test_sharpness_drops_when_an_object_is_smoothed_but_not_after_a_light_blur():
    import cv2

    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur(rng.uniform(0, 100, size=(120, 120)).astype(np.float32), (0, 0), 1.2)
    where = np.zeros_like(gray, dtype=bool)
    where[20:100, 20:100] = True
    sharp = ev.sharpness(gray, where, 6.0)
    light = ev.sharpness(cv2.GaussianBlur(gray, (0, 0), 1.0), where, 6.0)
    heavy = ev.sharpness(cv2.GaussianBlur(gray, (0, 0), 8.0), where, 6.0)
    assert sharp > 0.5 and light > 0.6 * sharp and heavy < 0.15 * sharp


def test_the_original_ring_is_measured_only_outside_the_mask_and_used_when_the_ring_changed():
    from soebench.taxonomy.rules import derived_features

    rng = np.random.default_rng(6)
    image = np.clip(120 + rng.normal(0, 12, size=(100, 120, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:100, 0:120]
    mask = (yy - 50) ** 2 / 15**2 + (xx - 60) ** 2 / 20**2 <= 1
    same, _ = ev.measure(image, image, mask)
    assert all(same[f"{k}_orig"] == same[k] for k in ev.ORIGINAL_RING_KEYS) and same["ring_change"] == 0.0
    # the original's object pixels never matter
    scribbled = image.copy()
    scribbled[mask] = 0
    assert ev.measure(scribbled, image, mask)[0] == same
    # a fill spilling past the mask: the generated ring is flat, the photo's ring is not
    spilled = image.copy()
    spilled[(yy - 50) ** 2 / 30**2 + (xx - 60) ** 2 / 40**2 <= 1] = 120
    values, _ = ev.measure(image, spilled, mask)
    assert values["ring_texture"] < 0.3 * values["ring_texture_orig"]
    features = derived_features(values)
    gen_only = derived_features({k: v for k, v in values.items() if not k.endswith("_orig")})
    assert features["log_contour_texture_inner"] < gen_only["log_contour_texture_inner"]
    assert features["ring_kept"] < 0.0 == derived_features(same)["ring_kept"]
