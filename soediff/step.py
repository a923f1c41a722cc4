"""One SOEDiff training step's losses: masked denoising + cross-scale distillation + VAE decoder.

:func:`compute_losses` is the whole method in one place; the trainer only adds optimisation,
logging and checkpoints around it. Randomness (VAE posterior samples, noise, timesteps, teacher
noise) comes from one ``torch.Generator`` whose state is checkpointed, so resuming is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from soediff.geometry import LatentCrop, latent_mask, teacher_noise, teacher_to_student
from soediff.lora import adapters_disabled
from soediff.losses import denoising_loss, masked_mse, reconstruction_loss


@dataclass
class StepModels:
    """What a step needs. ``unet`` may be wrapped (DDP); ``base_unet`` is the same module unwrapped,
    used for the teacher pass with its adapters disabled. ``decoder`` is the (wrapped) VAE decoder
    when it is being fine-tuned, else None."""

    unet: Any
    base_unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    vae_scale_factor: int
    decoder: Any = None


def encode_prompts(tokenizer, text_encoder, prompts: list[str], device) -> torch.Tensor:
    ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        return text_encoder(ids)[0]


def _encode(vae, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Unscaled latent sample of the frozen encoder."""
    with torch.no_grad():
        return vae.encode(images.to(dtype=vae.dtype)).latent_dist.sample(generator=generator)


def _crops(batch: dict, latent_size: int) -> list[LatentCrop]:
    return [LatentCrop(int(r), int(c), int(n), latent_size) for r, c, n in batch["crop"].tolist()]


def compute_losses(models: StepModels, batch: dict, generator: torch.Generator, config,
                   autocast: Callable[[], Any] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss (with graph) and every term as floats: ``denoise``, ``csd``, ``vae``, ``loss``."""
    import contextlib

    autocast = autocast or contextlib.nullcontext
    device = generator.device
    sf = models.vae.config.scaling_factor
    f = models.vae_scale_factor
    sched = models.noise_scheduler

    image = batch["image"].to(device)
    raw = _encode(models.vae, image, generator)
    latents = raw.float() * sf
    masked_latents = _encode(models.vae, batch["masked_image"].to(device), generator).float() * sf
    mask = latent_mask(batch["mask"].to(device), f)
    text = encode_prompts(models.tokenizer, models.text_encoder, batch["prompt"], device)

    B = latents.shape[0]
    noise = torch.randn(latents.shape, generator=generator, device=device)
    t = torch.randint(0, sched.config.num_train_timesteps, (B,), generator=generator, device=device)
    noisy = sched.add_noise(latents, noise, t)
    with autocast():
        pred = models.unet(torch.cat([noisy, mask, masked_latents], dim=1), t, text).sample.float()
    if sched.config.prediction_type == "v_prediction":
        target = sched.get_velocity(latents, noise, t)
    else:
        target = noise
    loss_denoise = denoising_loss(pred, target, mask, config.loss, config.huber_delta)
    total = loss_denoise
    logs = {"denoise": float(loss_denoise.detach())}

    crops = _crops(batch, latents.shape[-1])
    if config.csd.enabled:
        loss_csd = _csd_loss(models, batch, generator, config, crops, noise, pred, mask, t, text, autocast)
        total = total + config.csd.weight * loss_csd
        logs["csd"] = float(loss_csd.detach())
    if models.decoder is not None:
        loss_vae = _decoder_loss(models, raw, image, batch["mask"].to(device), crops, config, autocast)
        total = total + loss_vae
        logs["vae"] = float(loss_vae.detach())
    logs["loss"] = float(total.detach())
    return total, logs


def _csd_loss(models: StepModels, batch, generator, config, crops, noise, pred, mask, t, text, autocast):
    """Teacher = base UNet (adapters off) on the upscaled crop with consistent noise; see soediff.geometry."""
    device = generator.device
    sf = models.vae.config.scaling_factor
    mode = config.csd.noise_resampling
    with torch.no_grad():
        t_latents = _encode(models.vae, batch["teacher_image"].to(device), generator).float() * sf
        t_masked = _encode(models.vae, batch["teacher_masked_image"].to(device), generator).float() * sf
        t_mask = latent_mask(batch["teacher_mask"].to(device), models.vae_scale_factor)
        t_noise = torch.stack([
            teacher_noise(noise[i][(slice(None), *c.latent_slices())], c.scale, mode, generator)
            for i, c in enumerate(crops)
        ])
        t_noisy = models.noise_scheduler.add_noise(t_latents, t_noise, t)
        with adapters_disabled(models.base_unet), autocast():
            t_pred = models.base_unet(torch.cat([t_noisy, t_mask, t_masked], dim=1), t, text).sample.float()
    student, target, weight = [], [], []
    for i, c in enumerate(crops):
        rows, cols = c.latent_slices()
        student.append(pred[i, :, rows, cols].reshape(-1))
        target.append(teacher_to_student(t_pred[i], c.scale, mode).reshape(-1))
        weight.append(mask[i, :, rows, cols].expand(pred.shape[1], -1, -1).reshape(-1))
    return masked_mse(torch.cat(student), torch.cat(target).detach(), torch.cat(weight))


def _decoder_loss(models: StepModels, raw, image, pixel_mask, crops, config, autocast):
    """Decode the latent crop around the object (1/k^2 of the image: the small region is what the
    decoder must learn) and compare with the image there, mask-weighted."""
    f = models.vae_scale_factor
    post_quant = models.vae.post_quant_conv
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(crops):
        groups.setdefault(c.size, []).append(i)
    total, count = 0.0, 0
    for _, idx in groups.items():
        z = torch.stack([raw[i][(slice(None), *crops[i].latent_slices())] for i in idx]).detach()
        img = torch.stack([image[i][(slice(None), *crops[i].pixel_slices(f))] for i in idx])
        msk = torch.stack([pixel_mask[i][(slice(None), *crops[i].pixel_slices(f))] for i in idx])
        with autocast():
            if post_quant is not None:
                z = post_quant(z)
            recon = models.decoder(z)
        loss = reconstruction_loss(recon, img, msk, config.vae.mask_weight, config.vae.loss)
        total = total + loss * len(idx)
        count += len(idx)
    return total / count
