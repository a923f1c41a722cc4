"""The three loss terms, as pure functions of tensors: each returns a scalar tensor.

- :func:`denoising_loss`: the student's noise prediction against the true noise, either L2 inside
  the latent mask (``masked_mse``) or Huber over the whole latent (``huber``).
- :func:`masked_mse`: the cross-scale distillation term uses it with the teacher's mapped-back
  prediction as target (see :mod:`soediff.geometry`).
- :func:`reconstruction_loss`: the VAE decoder's output against the image, per-pixel weights
  ``1 + (mask_weight - 1) * mask`` so the small object dominates, normalised by the weight sum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the elements where ``mask`` (broadcast over channels) is 1.

    Zero (with gradient) when the mask is empty, so a sample without mask cells adds nothing.
    """
    pred, target = pred.float(), target.float()
    weight = mask.float().expand_as(pred)
    return ((pred - target) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)


def denoising_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "masked_mse",
                   huber_delta: float = 0.1) -> torch.Tensor:
    if kind == "masked_mse":
        return masked_mse(pred, target, mask)
    if kind == "huber":
        return F.huber_loss(pred.float(), target.float(), delta=huber_delta, reduction="mean")
    raise ValueError(f"unknown denoising loss {kind!r}")


#: per-pixel error of a reconstruction difference, by the config's name for it
_RECONSTRUCTION_ERRORS = {"l1": torch.abs, "l2": torch.square}


def reconstruction_loss(recon: torch.Tensor, image: torch.Tensor, mask: torch.Tensor, mask_weight: float = 10.0,
                        kind: str = "l1") -> torch.Tensor:
    """Mask-weighted reconstruction error of images in [-1, 1], shape (B, 3, H, W); mask (B, 1, H, W)."""
    if kind not in _RECONSTRUCTION_ERRORS:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {sorted(_RECONSTRUCTION_ERRORS)}")
    err = _RECONSTRUCTION_ERRORS[kind](recon.float() - image.float())
    weight = (1.0 + (mask_weight - 1.0) * mask.float()).expand_as(err)
    return (err * weight).sum() / weight.sum()
