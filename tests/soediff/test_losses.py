"""Loss terms against explicit reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soediff.losses import denoising_loss, masked_mse, reconstruction_loss


def test_masked_mse_matches_explicit_sum():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 4, 5, 5)), rng.normal(size=(2, 4, 5, 5))
    mask = (rng.random((2, 1, 5, 5)) > 0.7).astype(float)
    ref = sum(((pred[b, c] - target[b, c]) ** 2)[mask[b, 0] > 0].sum() for b in range(2) for c in range(4))
    ref /= mask.sum() * 4
    got = masked_mse(torch.tensor(pred), torch.tensor(target), torch.tensor(mask))
    assert abs(float(got) - ref) < 1e-6  # computed in float32


def test_masked_mse_empty_mask_is_zero():
    assert float(masked_mse(torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.zeros(1, 1, 2, 2))) == 0.0


def test_huber_is_over_the_whole_latent():
    pred, target = torch.tensor([[0.0, 0.05, 1.0]]), torch.zeros(1, 3)
    delta = 0.1
    ref = np.mean([0.0, 0.5 * 0.05**2, delta * (1.0 - 0.5 * delta)])
    got = denoising_loss(pred, target, torch.zeros(1, 3), "huber", delta)
    assert abs(float(got) - ref) < 1e-7


def test_reconstruction_weights_the_mask():
    recon, image = torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = 1.0  # error only at the masked pixel
    mask = torch.zeros(1, 1, 2, 2)
    mask[0, 0, 0, 0] = 1
    # weights 10 at the masked pixel, 1 elsewhere: (3 * 10 * 1) / (3 * (10 + 3))
    assert abs(float(reconstruction_loss(recon, image, mask, 10.0, "l1")) - 30 / 39) < 1e-7
    assert abs(float(reconstruction_loss(recon, image, torch.zeros_like(mask), 10.0, "l2")) - 3 / 12) < 1e-7


@pytest.mark.parametrize("kind", ["L1", "huber", ""])
def test_reconstruction_loss_refuses_unknown_kinds(kind):
    x = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        reconstruction_loss(x, x, torch.zeros(1, 1, 4, 4), kind=kind)
    assert float(reconstruction_loss(x + 1, x, torch.zeros(1, 1, 4, 4), kind="l2")) == 1.0
