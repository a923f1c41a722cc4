"""Cross-scale geometry: crop snapping, crop -> latent -> image box, consistent noise, the map back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soebench.mining.crops import teacher_crop
from soediff.geometry import (
    LatentCrop,
    block_mean,
    block_upsample,
    latent_mask,
    snap_crop,
    teacher_noise,
    teacher_to_student,
)


def test_grid_aligned_crop_snaps_to_itself_and_back():
    # 640x480 image, latent 64: the crop x in [160, 480), y in [120, 360) is 16..48 cells
    crop = snap_crop((160.0, 120.0, 480.0, 360.0), 640, 480, 64)
    assert crop == LatentCrop(row0=16, col0=16, size=32, latent_size=64)
    assert crop.scale == 2
    assert crop.image_box(640, 480) == (160.0, 120.0, 480.0, 360.0)
    assert crop.normalized_box() == (0.25, 0.25, 0.75, 0.75)


@pytest.mark.parametrize("bbox", [(300, 200, 20, 10), (5, 5, 10, 10), (620, 460, 15, 15), (100, 400, 30, 30)])
def test_soebench_teacher_crops_snap_within_half_a_cell(bbox):
    width, height, L = 640, 480, 64
    box = teacher_crop(bbox, width, height)
    crop = snap_crop(box, width, height, L)
    assert crop.size == 32 and crop.scale == 2
    snapped = crop.image_box(width, height)
    cell_w, cell_h = width / L, height / L
    for a, b, cell in zip(snapped, box, (cell_w, cell_h, cell_w, cell_h)):
        assert abs(a - b) <= cell / 2 + 1e-9
    # the object's centre stays inside the snapped crop
    cx, cy = bbox[0] + bbox[2] / 2, bbox[1] + bbox[3] / 2
    assert snapped[0] <= cx <= snapped[2] and snapped[1] <= cy <= snapped[3]


def test_latent_slices_and_pixel_slices_agree():
    crop = LatentCrop(row0=3, col0=4, size=4, latent_size=8)
    rows, cols = crop.latent_slices()
    prow, pcol = crop.pixel_slices(8)
    assert (rows.start * 8, rows.stop * 8, cols.start * 8, cols.stop * 8) == (prow.start, prow.stop, pcol.start, pcol.stop)
    with pytest.raises(ValueError):
        LatentCrop(row0=6, col0=0, size=4, latent_size=8)
    with pytest.raises(ValueError):
        LatentCrop(row0=0, col0=0, size=3, latent_size=8)


def test_crop_to_latent_and_back_through_the_dataset(tmp_path):
    """With an image already at the training resolution, the teacher mask is exactly the student mask's
    crop region repeated k x k (box filter, integer scale): image crop -> latent crop -> image box agree."""
    from PIL import Image

    from soebench.manifest.io import read_manifest
    from soediff.data import ManifestDataset
    from tests.factories import make_manifest

    path = make_manifest(tmp_path, n=3, size=(64, 64))
    ds = ManifestDataset(read_manifest(path), resolution=64, vae_scale_factor=8, prompt_key="label")
    for i in range(len(ds)):
        item = ds[i]
        r0, c0, n = item["crop"].tolist()
        k = 8 // n
        crop = LatentCrop(r0, c0, n, 8)
        prow, pcol = crop.pixel_slices(8)
        expected = block_upsample(item["mask"][:, prow, pcol], k)
        assert torch.equal(item["teacher_mask"], expected)
        # the latent mask of the teacher view, pooled back by k, is the student's latent mask in the crop
        student_lat = latent_mask(item["mask"][None], 8)[0][:, r0:r0 + n, c0:c0 + n]
        teacher_lat = latent_mask(item["teacher_mask"][None], 8)[0]
        assert torch.equal(torch.nn.functional.max_pool2d(teacher_lat[None], k)[0], student_lat)
        assert item["mask"].sum() > 0 and item["teacher_mask"].sum() == item["mask"][:, prow, pcol].sum() * k * k
        assert Image.open(ds.row(i).image_path).size == (64, 64)


def test_conditional_noise_is_consistent_exactly():
    g = torch.Generator().manual_seed(0)
    eps_s = torch.randn(4, 16, 16, generator=g)
    for k in (2, 4):
        eps_t = teacher_noise(eps_s, k, "conditional", generator=g)
        assert eps_t.shape == (4, 16 * k, 16 * k)
        torch.testing.assert_close(k * block_mean(eps_t, k), eps_s, rtol=0, atol=1e-5)
        torch.testing.assert_close(teacher_to_student(eps_t, k, "conditional"), eps_s, rtol=0, atol=1e-5)
    nearest = teacher_noise(eps_s, 2, "nearest")
    assert torch.equal(teacher_to_student(nearest, 2, "nearest"), eps_s)


def test_conditional_noise_is_iid_unit_variance_but_nearest_is_not():
    """Empirical moments against the derivation: variance 1, zero covariance inside a k x k block."""
    g = torch.Generator().manual_seed(1)
    k, n_samples = 2, 20000
    eps_s = torch.randn(n_samples, 1, 1, generator=g)  # one student cell per sample
    cond = teacher_noise(eps_s, k, "conditional", generator=g).reshape(n_samples, k * k).numpy()
    near = teacher_noise(eps_s, k, "nearest").reshape(n_samples, k * k).numpy()
    cov = np.cov(cond, rowvar=False)
    assert np.allclose(np.diag(cov), 1.0, atol=0.05)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.05
    assert abs(float(np.mean(cond))) < 0.03
    corr_near = np.corrcoef(near, rowvar=False)
    assert np.allclose(corr_near, 1.0)  # nearest: unit variance, but every value of a block is the same


def test_latent_mask_any_coverage():
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 9, 2] = 1  # a single pixel
    lat = latent_mask(mask, 8)
    assert lat.shape == (1, 1, 2, 2)
    assert lat[0, 0].tolist() == [[0.0, 0.0], [1.0, 0.0]]


@pytest.mark.parametrize("k", [1, 2])
def test_noise_mappings_refuse_unknown_modes(k):
    x = torch.zeros(1, 4, 2 * k, 2 * k)
    with pytest.raises(ValueError, match="unknown noise resampling mode"):
        teacher_noise(x[..., :2, :2], k, mode="conditonal")
    with pytest.raises(ValueError, match="unknown noise resampling mode"):
        teacher_to_student(x, k, mode="conditonal")
