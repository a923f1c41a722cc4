"""Load the parts of a Stable Diffusion inpainting pipeline folder, checking it first."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soebench.errors import InputError, MissingWeightsError

# The weight file names each part's library loads: diffusers models (unet, vae) read
# diffusion_pytorch_model.*, transformers models (text_encoder) model.* / pytorch_model.bin.
DIFFUSERS_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                          "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.fp16.bin")
TRANSFORMERS_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.fp16.safetensors",
                             "pytorch_model.fp16.bin")
PART_WEIGHT_FILES = {"unet": DIFFUSERS_WEIGHT_FILES, "vae": DIFFUSERS_WEIGHT_FILES,
                     "text_encoder": TRANSFORMERS_WEIGHT_FILES}
# The CLIP tokenizer's vocabulary: the fast tokenizer's one file, or the BPE pair. Without them
# transformers still builds a tokenizer -- of the special tokens alone, every word unknown.
TOKENIZER_FILE = "tokenizer.json"
BPE_FILES = ("vocab.json", "merges.txt")


#: Bytes read from each end of every weight file by :func:`pretrained_fingerprint`.
FINGERPRINT_BYTES = 1 << 20


def pretrained_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a pipeline's trained weights: sha256 over each part's weight files'
    names, sizes and first and last MiB (the safetensors header and the first and last tensors),
    plus its config. Two different checkpoints of one architecture (other seed, fine-tuned) differ
    there; hashing gigabytes of SD weights on every start would cost seconds for little more."""
    import hashlib

    path = Path(os.path.expanduser(str(path)))
    digest = hashlib.sha256()
    for part in sorted(PART_WEIGHT_FILES):
        folder = path / part
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"))
        for f in files:
            size = f.stat().st_size
            digest.update(f"{part}/{f.name}:{size}\n".encode())
            with open(f, "rb") as fh:
                digest.update(fh.read(FINGERPRINT_BYTES))
                if size > 2 * FINGERPRINT_BYTES:
                    fh.seek(-FINGERPRINT_BYTES, os.SEEK_END)
                    digest.update(fh.read())
    return digest.hexdigest()


def check_pretrained(path: str | os.PathLike) -> Path:
    """A diffusers inpainting pipeline folder: model_index.json, weights, a tokenizer vocabulary and a
    9-channel UNet."""
    path = Path(os.path.expanduser(str(path)))
    if not path.exists():
        raise MissingWeightsError(
            f"pretrained pipeline {path} does not exist",
            hint="pass --pretrained DIR: a diffusers Stable Diffusion inpainting folder "
                 "(e.g. a local copy of stable-diffusion-inpainting saved with save_pretrained)",
        )
    if not (path / "model_index.json").exists():
        raise InputError(f"{path} is not a diffusers pipeline folder (no model_index.json)")
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (path / part).is_dir():
            raise InputError(f"pipeline {path} has no {part}/ folder")
    for part, names in PART_WEIGHT_FILES.items():
        sharded = [f"{n}.index.json" for n in names]  # large checkpoints: an index over shards
        if not any((path / part / f).exists() for f in (*names, *sharded)):
            raise MissingWeightsError(f"missing weights: {path / part} holds no weight file ({' or '.join(names[:2])})",
                                      hint="download or copy the full pipeline, not only its configs")
    _check_vocabulary(path / "tokenizer")
    cfg = _read_json(path / "unet" / "config.json")
    if cfg.get("in_channels") != 9:
        raise InputError(
            f"{path} is not an inpainting pipeline: its UNet has in_channels={cfg.get('in_channels')}, "
            "inpainting needs 9 (4 noisy latents + 1 mask + 4 masked-image latents)",
            hint="use a Stable Diffusion *inpainting* checkpoint, e.g. stable-diffusion-inpainting",
        )
    return path


def _check_vocabulary(folder: Path) -> None:
    """The tokenizer folder holds a vocabulary; else a MissingWeightsError naming the missing files."""
    if (folder / TOKENIZER_FILE).is_file():
        return
    missing = [n for n in BPE_FILES if not (folder / n).is_file()]
    if missing:
        raise MissingWeightsError(
            f"missing vocabulary: {folder} has no {TOKENIZER_FILE} and no {' or '.join(missing)} "
            f"(the tokenizer needs {TOKENIZER_FILE}, or {' and '.join(BPE_FILES)})",
            hint="download or copy the full pipeline, tokenizer files included")


def vae_scale_factor(path: str | os.PathLike) -> int:
    """Pixels per latent of a checked pipeline's VAE, from its config (no weights loaded), as
    :attr:`SDParts.vae_scale_factor` computes it from the loaded VAE."""
    config = _read_json(Path(os.path.expanduser(str(path))) / "vae" / "config.json")
    channels = config.get("block_out_channels") or [64]  # diffusers' AutoencoderKL default
    return 2 ** (len(channels) - 1)


def _read_json(file: Path) -> dict[str, Any]:
    """A model config: a JSON object, or an InputError naming the file and where it is broken."""
    if not file.is_file():
        raise InputError(f"pipeline part {file.parent} has no {file.name}",
                         hint="download or copy the full pipeline folder")
    from soebench.fileio import read_json_object

    return read_json_object(file, what="a JSON object of config fields")


@dataclass
class SDParts:
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    noise_scheduler: Any
    path: Path

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)


def load_parts(path: str | os.PathLike) -> SDParts:
    """UNet, VAE, text encoder, tokenizer and a DDPM training scheduler from a checked folder (fp32)."""
    from soebench.compat import ensure_torchvision_ops

    path = check_pretrained(path)
    ensure_torchvision_ops()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError, EnvironmentError) as exc:
        raise MissingWeightsError(f"cannot load the pipeline in {path}: {exc}") from exc
    return SDParts(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, noise_scheduler=scheduler,
                   path=path)
