"""A tiny random-weight Stable Diffusion inpainting pipeline, built offline, for tests and smoke runs.

It has the real SD-inpainting *shape* at toy widths, so every code path that loads, trains, exports
and evaluates a real ``runwayml/stable-diffusion-inpainting``-style folder runs on it in about a
second on a CPU:

- ``unet``: :class:`~diffusers.UNet2DConditionModel` with ``in_channels=9`` (4 noisy latents, 1 mask,
  4 masked-image latents), two levels (widths 32, 64): ``down_blocks.0`` (plain, highest resolution),
  ``down_blocks.1`` (cross-attention), a cross-attention mid block, ``up_blocks.0`` (cross-attention)
  and ``up_blocks.1`` (plain, highest resolution); ``cross_attention_dim=32``.
- ``vae``: :class:`~diffusers.AutoencoderKL` with four levels, so its scale factor is 8 like SD's
  (a 64x64 image has an 8x8 latent), at widths 8-16.
- ``text_encoder``: a 2-layer :class:`~transformers.CLIPTextModel` of width 32 over CLIP's real
  49,408-token BPE vocabulary; ``tokenizer``: a :class:`~transformers.CLIPTokenizer` whose
  ``vocab.json``/``merges.txt`` are written from open_clip's bundled ``bpe_simple_vocab_16e6.txt.gz``
  (the same merges OpenAI's CLIP uses), so real prompts tokenize as they do for SD.
- ``scheduler``: :class:`~diffusers.DDIMScheduler` with SD's noise schedule.
- no safety checker, no feature extractor.

``diffusers.AutoPipelineForInpainting.from_pretrained(save_tiny_inpaint_pipeline(path))`` loads it.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import Any

TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (8, 8, 16, 16),
    "layers_per_block": 1,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "norm_num_groups": 8,
}

CLIP_VOCAB_SIZE = 49408  # 256 bytes + 256 end-of-word bytes + 48,894 merges + 2 specials

TINY_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": CLIP_VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 77,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 49407,
}

SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def clip_bpe_files(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write CLIP's ``vocab.json`` and ``merges.txt`` into ``folder`` from open_clip's bundled BPE file.

    The vocabulary is built exactly as CLIP's tokenizer builds it: the 256 byte symbols, the same
    with the end-of-word marker ``</w>``, one token per merge, then the two special tokens.
    """
    import open_clip  # noqa: F401 - only to locate its data file

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_symbols = list(_bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def build_tiny_inpaint_pipeline(seed: int = 0):
    """A :class:`~diffusers.StableDiffusionInpaintPipeline` with tiny random weights (seeded, CPU, fp32)."""
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**TINY_VAE_CONFIG)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_CONFIG))
    with tempfile.TemporaryDirectory(prefix="soediff-clip-bpe-") as tmp:
        clip_bpe_files(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tmp, model_max_length=77)
    scheduler = DDIMScheduler(**SD_SCHEDULER_CONFIG)
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_inpaint_pipeline(path: str | os.PathLike, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it to ``path`` (created); return ``path``."""
    path = Path(path)
    pipe = build_tiny_inpaint_pipeline(seed=seed)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    from soediff.outputs import follow_umask

    follow_umask(path.glob("*/*.safetensors"))  # safetensors writes 0600 files (see soediff.outputs)
    return path
