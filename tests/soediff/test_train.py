"""Training on the tiny pipeline: what changes, losses fall, resume is exact, export round-trips."""

from __future__ import annotations

import math

import pytest
import torch

from soediff.trainer import list_checkpoints, train


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_steps_change_only_lora_and_decoder(make_config, tiny_pipe_dir):
    from soediff.models import load_parts

    result = train(make_config(max_steps=2), progress=False, keep_models=True)
    assert result.step == 2 and result.checkpoint == list_checkpoints(result.out_dir)[-1]
    base = load_parts(tiny_pipe_dir)
    trained = result.models
    unet_base, unet_new = _state(base.unet), _state(trained.unet)
    changed = {k for k, v in unet_new.items() if k in unet_base and not torch.equal(v, unet_base[k])}
    assert not changed, f"base UNet weights changed: {sorted(changed)[:3]}"
    lora_keys = [k for k in unet_new if "lora_" in k]
    init = train_lora_init(make_config, tiny_pipe_dir)
    assert any(not torch.equal(unet_new[k], init[k]) for k in lora_keys)
    vae_base, vae_new = _state(base.vae), _state(trained.vae)
    moved = {k.split(".")[0] for k in vae_new if not torch.equal(vae_new[k], vae_base[k])}
    assert moved == {"decoder"}
    te_base, te_new = _state(base.text_encoder), _state(trained.text_encoder)
    assert all(torch.equal(te_new[k], te_base[k]) for k in te_base)
    for term in ("loss", "denoise", "csd", "vae"):
        assert math.isfinite(result.losses[term])
    lines = result.log_csv.read_text().splitlines()
    assert lines[0].startswith("step,epoch,loss,denoise,csd,vae") and len(lines) == 3


def train_lora_init(make_config, tiny_pipe_dir):
    """LoRA weights as the trainer initialises them (same seed), for the 'did they move' check."""
    from soediff.config import LoraSettings
    from soediff.lora import add_so_lora
    from soediff.models import load_parts

    parts = load_parts(tiny_pipe_dir)
    cfg = make_config()
    torch.manual_seed(cfg.seed)
    add_so_lora(parts.unet, LoraSettings(**vars(cfg.lora)))
    return _state(parts.unet)


@pytest.mark.parametrize(("csd_weight", "falling"), [(1.0, ("loss", "denoise", "vae")), (50.0, ("loss", "csd"))])
def test_losses_fall_when_overfitting_one_sample(make_config, tiny_pipe_dir, csd_weight, falling):
    """Same sample, same noise and timestep every step: the combined loss falls. The denoising and
    distillation targets disagree (random-weight teacher), so each of those falls when it dominates."""
    from soebench.manifest.io import read_manifest
    from soediff.data import ManifestDataset
    from soediff.lora import add_so_lora, lora_parameters
    from soediff.models import load_parts
    from soediff.step import StepModels, compute_losses

    cfg = make_config()
    cfg.vae.learning_rate = 1e-3
    cfg.csd.weight = csd_weight
    parts = load_parts(tiny_pipe_dir)
    torch.manual_seed(0)
    add_so_lora(parts.unet, cfg.lora)
    parts.vae.requires_grad_(False)
    parts.text_encoder.requires_grad_(False)
    decoder = parts.vae.decoder.requires_grad_(True)
    models = StepModels(unet=parts.unet, base_unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder,
                        tokenizer=parts.tokenizer, noise_scheduler=parts.noise_scheduler, vae_scale_factor=8,
                        decoder=decoder)
    ds = ManifestDataset(read_manifest(cfg.manifest), resolution=64, vae_scale_factor=8, prompt_key="label")
    batch = torch.utils.data.default_collate([ds[0]])
    opt = torch.optim.Adam([{"params": lora_parameters(parts.unet), "lr": 3e-3},
                            {"params": decoder.parameters(), "lr": 1e-3}])
    history = []
    for _ in range(25):
        loss, logs = compute_losses(models, batch, torch.Generator().manual_seed(123), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(logs)
    first, last = history[0], history[-1]
    assert all(math.isfinite(v) for logs in history for v in logs.values())
    for term in falling:
        assert last[term] < 0.7 * first[term], (term, first[term], last[term])


def test_resume_is_exact(make_config, tmp_path):
    """5 steps straight == 3 steps + resume + 2 steps. 5 training rows, batch 2: 2 batches per epoch,
    so the resume lands in the middle of the second epoch (set_epoch + skipped batches)."""
    straight = train(make_config(out=str(tmp_path / "a"), max_steps=5), progress=False)
    first = train(make_config(out=str(tmp_path / "b"), max_steps=3), progress=False)
    resumed = train(make_config(out=str(tmp_path / "b"), max_steps=5), resume=True, progress=False)
    assert [r["step"] for r in resumed.history] == [4, 5]
    assert [r["epoch"] for r in straight.history] == [0, 0, 1, 1, 2]
    for ref, got in zip(straight.history[3:], resumed.history):
        for term in ("loss", "denoise", "csd", "vae"):
            assert got[term] == pytest.approx(ref[term], rel=1e-5, abs=1e-7), term
    assert [r["loss"] for r in first.history] == pytest.approx([r["loss"] for r in straight.history[:3]], rel=1e-6)
    from safetensors.torch import load_file

    for name in ("lora.safetensors", "vae_decoder.safetensors"):
        a = load_file(str(straight.checkpoint / name))
        b = load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-7)
    rows = (tmp_path / "b" / "logs" / "losses.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4", "5"]



def test_bf16_keeps_trained_parameters_fp32(make_config):
    import torch

    result = train(make_config(max_steps=1, mixed_precision="bf16", checkpointing_steps=1), progress=False,
                   keep_models=True)
    unet = result.models.unet
    dtypes = {("lora" if "lora_" in n else "base"): p.dtype for n, p in unet.named_parameters()}
    assert dtypes == {"lora": torch.float32, "base": torch.bfloat16}
    assert {p.dtype for p in result.models.decoder.parameters()} == {torch.float32}
    assert {p.dtype for p in result.models.vae.encoder.parameters()} == {torch.bfloat16}
    assert all(math.isfinite(result.losses[k]) for k in ("loss", "denoise", "csd", "vae"))


def test_gradient_accumulation_spans_epochs_and_resumes_exactly(make_config, tmp_path):
    """3 micro-batches per step with 2 batches per epoch: every step takes exactly 3 (accumulation
    continues over the epoch end), so step s ends in epoch (3 s - 1) // 2, and resuming mid-epoch
    continues the same data and gives the same losses."""
    cfg = dict(gradient_accumulation_steps=3, checkpointing_steps=1)
    straight = train(make_config(out=str(tmp_path / "a"), max_steps=3, **cfg), progress=False)
    assert [r["epoch"] for r in straight.history] == [1, 2, 4]
    train(make_config(out=str(tmp_path / "b"), max_steps=1, **cfg), progress=False)
    resumed = train(make_config(out=str(tmp_path / "b"), max_steps=3, **cfg), resume=True, progress=False)
    assert [r["step"] for r in resumed.history] == [2, 3]
    for ref, got in zip(straight.history[1:], resumed.history):
        assert got["epoch"] == ref["epoch"]
        for term in ("loss", "denoise", "csd", "vae"):
            assert got[term] == pytest.approx(ref[term], rel=1e-5, abs=1e-7), term


def test_options_off_limits_validation_and_tensorboard(make_config, tiny_pipe_dir):
    """csd and vae off, gradient checkpointing on, a checkpoint every step with a limit of 2,
    validation images every 2 steps, TensorBoard scalars."""
    import numpy as np
    from PIL import Image

    from soediff.export import export_run
    from soediff.models import load_parts

    cfg = make_config(max_steps=3, checkpointing_steps=1, checkpoints_total_limit=2, validation_steps=2,
                      validation_rows=2, gradient_checkpointing=True, report_to="tensorboard")
    cfg.csd.enabled = False
    cfg.vae.enabled = False
    result = train(cfg, progress=False, keep_models=True)
    out = result.out_dir
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-00000002", "checkpoint-00000003"]
    assert not any((p / "vae_decoder.safetensors").exists() for p in list_checkpoints(out))
    assert result.models.unet.is_gradient_checkpointing and result.models.decoder is None
    base_vae = load_parts(tiny_pipe_dir).vae.state_dict()
    assert all(torch.equal(v, base_vae[k]) for k, v in result.models.vae.state_dict().items())
    assert set(result.losses) >= {"loss", "denoise"} and not {"csd", "vae"} & set(result.losses)
    assert result.losses["loss"] == pytest.approx(result.losses["denoise"])
    assert [p.name for p in result.validation_images] == ["step-00000002.png", "step-00000003.png"]
    grid = np.asarray(Image.open(result.validation_images[-1]))
    assert grid.shape == (2 * 64, 2 * 64, 3)  # 2 held-out rows of masked input | output
    events = list((out / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert {"loss/loss", "loss/denoise"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss/denoise")] == [1, 2, 3]
    exported = export_run(out, out / "export")
    assert exported.vae_decoder is None and exported.step == 3 and exported.pipeline is None
    from soebench.errors import InputError

    with pytest.raises(InputError, match="no fine-tuned VAE decoder"):
        export_run(out, out / "export", overwrite=True, pipeline=True)
