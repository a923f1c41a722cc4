"""Seconds per training step and peak memory of SOEDiff's step, against a plain diffusers-style LoRA step.

Variants, all with the same SO-LoRA adapter on the same UNet and the same batch:

- ``reference``: a minimal diffusers-style inpainting LoRA step written here (VAE-encode image and
  masked image, nearest-resized mask, text encoder, noise, UNet, MSE, backward, AdamW);
- ``a``: soediff's step (:func:`soediff.step.compute_losses`) with distillation and VAE off;
- ``b``: ``a`` + cross-scale score distillation (a second VAE encode pair and a no-grad UNet pass);
- ``c``: ``b`` + VAE decoder fine-tuning (decoder forward/backward on the object crop).

Timings interleave the variants round by round (so load drift on a shared machine hits all
alike) and report the median. Peak memory: ``torch.cuda.max_memory_allocated`` per variant on
CUDA (models + optimizer + activations); on CPU each variant runs again in a fresh subprocess that
reports how far the peak RSS of two steps rises above the RSS before them (the step's working memory).

    python benchmarks/bench_soediff_step.py                         # tiny models, CPU
    python benchmarks/bench_soediff_step.py --sd15 --device cuda    # SD-1.5-sized UNet, 512 px, batch 8, fp16
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("reference", "a", "b", "c")

SD15_UNET = dict(sample_size=64, in_channels=9, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8)
SD15_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
SD15_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                 pad_token_id=49407)


def build_parts(sd15: bool, seed: int = 0):
    """Random-weight UNet/VAE/text encoder/tokenizer/scheduler (tiny, or SD-1.5-sized)."""
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from soediff.tiny import SD_SCHEDULER_CONFIG, build_tiny_inpaint_pipeline

    tiny = build_tiny_inpaint_pipeline(seed)
    if not sd15:
        return tiny.unet, tiny.vae, tiny.text_encoder, tiny.tokenizer, DDPMScheduler.from_config(SD_SCHEDULER_CONFIG)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**SD15_UNET)
    vae = AutoencoderKL(**SD15_VAE)
    text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    return unet, vae, text, tiny.tokenizer, DDPMScheduler.from_config(SD_SCHEDULER_CONFIG)


def make_batch(batch: int, resolution: int, seed: int = 0) -> dict:
    """A batch shaped like soediff.data.ManifestDataset's: a small square object, SOEBench-sized crop."""
    import torch

    g = torch.Generator().manual_seed(seed)
    R = resolution
    L = R // 8
    image = torch.rand(batch, 3, R, R, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, R, R)
    s = max(R // 16, 2)
    mask[:, :, R // 2 - s // 2:R // 2 + s // 2, R // 2 - s // 2:R // 2 + s // 2] = 1
    crop = torch.tensor([[L // 4, L // 4, L // 2]] * batch)
    up = torch.nn.functional.interpolate
    t_image = up(image[:, :, R // 4:3 * R // 4, R // 4:3 * R // 4], size=(R, R), mode="bilinear")
    t_mask = up(mask[:, :, R // 4:3 * R // 4, R // 4:3 * R // 4], size=(R, R), mode="nearest")
    return {"image": image, "mask": mask, "masked_image": image * (1 - mask), "teacher_image": t_image,
            "teacher_mask": t_mask, "teacher_masked_image": t_image * (1 - t_mask), "crop": crop,
            "prompt": ["a photo of a small red cup"] * batch}


class Bench:
    """One variant's models, optimizers and step function."""

    def __init__(self, variant: str, args):
        import torch

        from soediff.config import LoraSettings, TrainConfig
        from soediff.lora import add_so_lora, lora_parameters
        from soediff.step import StepModels

        self.variant, self.args = variant, args
        self.device = torch.device(args.device)
        self.dtype = torch.float16 if args.precision == "fp16" else (
            torch.bfloat16 if args.precision == "bf16" else torch.float32)
        unet, vae, text, tok, sched = build_parts(args.sd15)
        torch.manual_seed(0)
        add_so_lora(unet, LoraSettings(rank=args.rank, alpha=args.rank))
        cast = {} if self.dtype == torch.float32 else {"dtype": self.dtype}
        unet.to(self.device, **cast)
        vae.to(self.device, **cast).requires_grad_(False)
        text.to(self.device, **cast).requires_grad_(False)
        params = lora_parameters(unet)
        for p in params:
            p.data = p.data.float()
        if args.gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        decoder = None
        opt_params = [{"params": params, "lr": 1e-5}]
        if variant == "c":
            decoder = vae.decoder.float().requires_grad_(True)
            opt_params.append({"params": list(decoder.parameters()), "lr": 1e-6})
        self.opt = torch.optim.AdamW(opt_params)
        self.models = StepModels(unet=unet, base_unet=unet, vae=vae, text_encoder=text, tokenizer=tok,
                                 noise_scheduler=sched, vae_scale_factor=8, decoder=decoder)
        self.config = TrainConfig(manifest="-", pretrained="-", resolution=args.resolution)
        self.config.csd.enabled = variant in ("b", "c")
        self.config.vae.enabled = variant == "c"
        self.batch = make_batch(args.batch, args.resolution)
        self.gen = torch.Generator(device=self.device).manual_seed(0)

    def autocast(self):
        import contextlib

        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def step(self) -> float:
        if self.variant == "reference":
            loss = self._reference_loss()
        else:
            from soediff.step import compute_losses

            loss, _ = compute_losses(self.models, self.batch, self.gen, self.config, self.autocast)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    def _reference_loss(self):
        """What a diffusers example script does for an inpainting LoRA step."""
        import torch
        import torch.nn.functional as F

        m, b, dev = self.models, self.batch, self.device
        with torch.no_grad():
            latents = m.vae.encode(b["image"].to(dev, m.vae.dtype)).latent_dist.sample(self.gen)
            latents = latents.float() * m.vae.config.scaling_factor
            masked = m.vae.encode(b["masked_image"].to(dev, m.vae.dtype)).latent_dist.sample(self.gen)
            masked = masked.float() * m.vae.config.scaling_factor
            mask = F.interpolate(b["mask"].to(dev), size=latents.shape[-2:])
            ids = m.tokenizer(b["prompt"], padding="max_length", max_length=m.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(dev)
            text = m.text_encoder(ids)[0]
        noise = torch.randn(latents.shape, generator=self.gen, device=dev)
        t = torch.randint(0, 1000, (latents.shape[0],), generator=self.gen, device=dev)
        noisy = m.noise_scheduler.add_noise(latents, noise, t)
        with self.autocast():
            pred = m.unet(torch.cat([noisy, mask, masked], 1), t, text).sample
        return F.mse_loss(pred.float(), noise)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_variants(args) -> dict[str, dict]:
    import torch

    benches = {v: Bench(v, args) for v in VARIANTS}
    for bench in benches.values():
        for _ in range(args.warmup):
            bench.step()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(args.steps):
        for v, bench in benches.items():
            sync(args.device)
            t0 = time.perf_counter()
            bench.step()
            sync(args.device)
            times[v].append(time.perf_counter() - t0)
    out = {v: {"seconds_per_step": statistics.median(ts)} for v, ts in times.items()}
    if args.device.startswith("cuda"):
        del benches
        for v in VARIANTS:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            bench = Bench(v, args)
            bench.step()
            out[v]["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            del bench
    return out


def _proc_status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_of(variant: str, argv: list[str]) -> float:
    """Peak RSS (GiB) reached during two steps of a fresh process, above its RSS before them
    (models, optimizer state and libraries excluded: the step's own working memory)."""
    proc = subprocess.run([sys.executable, __file__, *argv, "--memory-only", variant], capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_rss_gib"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sd15", action="store_true", help="SD-1.5-sized random UNet/VAE/text encoder (GPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--resolution", type=int, default=None, help="default 512 with --sd15, else 128")
    ap.add_argument("--batch", type=int, default=None, help="default 8 with --sd15, else 4")
    ap.add_argument("--precision", choices=("no", "fp16", "bf16"), default=None,
                    help="default fp16 with --sd15, else no")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 10 sd15, 20 tiny)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (tiny models are latency-bound)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--memory-only", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.resolution = args.resolution or (512 if args.sd15 else 128)
    args.batch = args.batch or (8 if args.sd15 else 4)
    args.precision = args.precision or ("fp16" if args.sd15 else "no")
    args.steps = args.steps or (10 if args.sd15 else 20)

    import torch

    torch.set_num_threads(args.threads)
    if args.memory_only:
        bench = Bench(args.memory_only, args)
        bench.step()  # optimizer state exists from here on
        import gc

        gc.collect()
        before = _proc_status_kib("VmRSS")
        reset = _reset_peak_rss()
        bench.step()
        bench.step()
        peak = _proc_status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"peak_rss_gib": (peak - before) / 2**20}))
        return

    results = time_variants(args)
    if not args.device.startswith("cuda"):
        argv = [a for a in sys.argv[1:]]
        for v in VARIANTS:
            results[v]["step_peak_rss_gib"] = peak_rss_of(v, argv)
    ref = results["reference"]["seconds_per_step"]
    names = {"reference": "diffusers-style LoRA step (reference)", "a": "(a) soediff masked LoRA",
             "b": "(b) + cross-scale distillation", "c": "(c) + VAE decoder fine-tuning"}
    mem_key = "peak_memory_gib" if args.device.startswith("cuda") else "step_peak_rss_gib"
    print(f"device={args.device} sd15={args.sd15} resolution={args.resolution} batch={args.batch} "
          f"precision={args.precision} rank={args.rank} steps={args.steps} threads={args.threads}")
    print(f"{'variant':42s} {'s/step':>9s} {'x ref':>7s} {mem_key:>16s}")
    for v in VARIANTS:
        r = results[v]
        print(f"{names[v]:42s} {r['seconds_per_step']:9.4f} {r['seconds_per_step'] / ref:7.2f} {r[mem_key]:16.3f}")
    a, b, c = (results[v]["seconds_per_step"] for v in ("a", "b", "c"))
    print(f"ratio (a)/reference = {a / ref:.2f} (target <= 1.2)")
    print(f"CSD costs {b / a:.2f}x the masked LoRA step; the VAE decoder adds {c / b:.2f}x on top")


if __name__ == "__main__":
    main()
