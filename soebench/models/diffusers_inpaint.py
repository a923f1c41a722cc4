"""Any diffusers inpainting pipeline (local folder or Hugging Face hub id already in the cache).

The SOEBench protocol runs the model at ``resolution x resolution`` (512 by default): the image is
resized with bicubic filtering and the mask with "any coverage" (bilinear, then > 0, so a tiny
object never vanishes from the mask), and the output is resized back to the input size. Each
sample gets its own ``torch.Generator`` seeded with the sample's seed, on the CPU, so an output
does not depend on the batch it was in, nor on the device.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import ConfigError, MissingWeightsError
from soebench.fileio import tree_mtime
from soebench.models.base import InpaintRequest, InpaintResult, config_to_dict

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class DiffusersConfig:
    """``path``: a saved pipeline folder or a hub id in the local cache; ``lora``: LoRA weights
    (folder or .safetensors) for ``load_lora_weights``; ``lora_scale``: their strength;
    ``vae_decoder``: fine-tuned VAE decoder weights (a safetensors file with AutoencoderKL key
    names ``decoder.*``, as ``soediff export`` writes); ``auto`` (default) uses
    ``vae_decoder.safetensors`` beside the LoRA weights when there is one, ``none`` never;
    ``steps``/``guidance``/``strength``/``negative_prompt``: sampler settings; ``resolution``:
    the square size the model runs at; ``dtype``: auto (float16 on CUDA, else float32) or a
    torch dtype name; ``device``: defaults to the run's ``--device``; ``safety_checker``: keep the
    pipeline's safety checker (off by default: it blanks outputs, which would read as failures)."""

    path: str
    lora: str | None = None
    lora_scale: float = 1.0
    vae_decoder: str = "auto"
    steps: int = 20
    guidance: float = 7.5
    strength: float = 1.0
    negative_prompt: str = ""
    resolution: int = 512
    dtype: str = "auto"
    device: str | None = None
    safety_checker: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8; got {self.resolution}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")
        if not 0.0 < self.strength <= 1.0:  # diffusers' own check fires per call, i.e. per sample
            raise ValueError(f"strength must lie in (0, 1]; got {self.strength}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be >= 0; got {self.guidance}")


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _looks_local(path: str) -> bool:
    """A path rather than a hub id ``org/name``."""
    return path.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(path)


DECODER_WEIGHT_NAME = "vae_decoder.safetensors"  # what ``soediff export`` writes beside the LoRA


def decoder_weights(config: DiffusersConfig) -> Path | None:
    """The fine-tuned decoder file to load, or None (see :class:`DiffusersConfig`)."""
    if config.vae_decoder == "none":
        return None
    if config.vae_decoder != "auto":
        return Path(os.path.expanduser(config.vae_decoder))
    if config.lora is None:
        return None
    lora = Path(os.path.expanduser(config.lora))
    candidate = (lora if lora.is_dir() else lora.parent) / DECODER_WEIGHT_NAME
    return candidate if candidate.is_file() else None


def _check_lora_folder(lora: str | None) -> None:
    """A LoRA folder must hold LoRA weights; a soediff run folder (checkpoints, no export) is the
    common mistake and gets its own hint."""
    if lora is None:
        return
    folder = Path(os.path.expanduser(lora))
    if not folder.is_dir() or any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
        return
    if (folder / "checkpoints").is_dir():
        raise MissingWeightsError(f"{lora} is a soediff run folder, not exported LoRA weights",
                                  hint=f"export it first: soediff export {lora} --out DIR, then lora=DIR")
    raise MissingWeightsError(f"{lora} holds no LoRA weights (no *.safetensors or *.bin file)",
                              hint="pass lora=DIR with pytorch_lora_weights.safetensors, or the .safetensors file")


def check_weights(config: DiffusersConfig) -> str:
    """Where the pipeline weights are (``"local"`` or ``"hub-cache"``), else MissingWeightsError."""
    how = (
        "pass --model-args path=DIR with a folder saved by pipeline.save_pretrained(DIR), or, on a machine "
        "with network access, download a hub pipeline once (huggingface-cli download ORG/NAME) so it is in the cache"
    )
    path = os.path.expanduser(config.path)
    if config.lora is not None and not Path(os.path.expanduser(config.lora)).exists():
        raise MissingWeightsError(
            f"LoRA weights {config.lora} do not exist",
            hint="pass --model-args lora=DIR (a folder with pytorch_lora_weights.safetensors) or a .safetensors file",
        )
    _check_lora_folder(config.lora)
    decoder = decoder_weights(config)
    if decoder is not None and not decoder.is_file():
        raise MissingWeightsError(
            f"VAE decoder weights {decoder} do not exist",
            hint="pass --model-args vae_decoder=FILE (vae_decoder.safetensors from soediff export), or vae_decoder=none",
        )
    if Path(path).is_dir():
        if not (Path(path) / "model_index.json").is_file():
            raise MissingWeightsError(f"{path} is not a saved diffusers pipeline (no model_index.json)", hint=how)
        return "local"
    if _looks_local(config.path):
        raise MissingWeightsError(f"diffusers pipeline folder {path} does not exist", hint=how)
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(config.path, "model_index.json")
    if not isinstance(hit, str):
        raise MissingWeightsError(f"hub pipeline {config.path!r} is not in the local Hugging Face cache (offline)", hint=how)
    return "hub-cache"


class DiffusersInpainter:
    """``AutoPipelineForInpainting`` with optional LoRA; loaded on the first batch."""

    name = "diffusers"

    def __init__(self, config: DiffusersConfig):
        self.config = config
        self.source = check_weights(config)
        self._pipe = None
        self._device = None

    def cache_token(self) -> dict[str, Any]:
        token = config_to_dict(self.config)
        token.pop("device", None)  # the seed's generator lives on the CPU: same output on any device
        token["adapter"] = self.name
        decoder = decoder_weights(self.config)
        token["vae_decoder"] = None if decoder is None else str(decoder)  # what "auto" resolved to
        for key in ("path", "lora", "vae_decoder"):
            p = token.get(key)
            if p and Path(os.path.expanduser(p)).exists():
                token[f"{key}_mtime"] = tree_mtime(Path(os.path.expanduser(p)))
        return token

    def _torch_dtype(self, device: str):
        import torch

        if self.config.dtype == "auto":
            return torch.float16 if device.startswith("cuda") else torch.float32
        return getattr(torch, self.config.dtype)

    def load(self):
        if self._pipe is not None:
            return self._pipe
        from soebench.compat import ensure_torchvision_ops

        ensure_torchvision_ops()
        import torch
        from diffusers import AutoPipelineForInpainting

        device = self.config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"torch_dtype": self._torch_dtype(device)}
        if not self.config.safety_checker:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        path = os.path.expanduser(self.config.path)
        try:
            with warnings.catch_warnings():  # newer diffusers rename torch_dtype -> dtype; both work
                warnings.simplefilter("ignore", FutureWarning)
                pipe = AutoPipelineForInpainting.from_pretrained(path, local_files_only=True, **kwargs)
        except (OSError, EnvironmentError) as exc:
            raise MissingWeightsError(f"cannot load diffusers pipeline {path}: {exc}") from exc
        except ValueError as exc:
            raise ConfigError(f"{path} is not an inpainting pipeline AutoPipelineForInpainting can load: {exc}") from exc
        if self.config.lora:
            try:
                pipe.load_lora_weights(os.path.expanduser(self.config.lora), adapter_name="soebench")
            except (OSError, ValueError) as exc:
                raise MissingWeightsError(f"cannot load LoRA weights {self.config.lora}: {exc}") from exc
            if self.config.lora_scale != 1.0:
                pipe.set_adapters(["soebench"], adapter_weights=[self.config.lora_scale])
        decoder = decoder_weights(self.config)
        if decoder is not None:
            load_decoder_weights(pipe.vae, decoder)
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        self._pipe, self._device = pipe, device
        log.info("loaded diffusers pipeline %s on %s", path, device)
        return pipe

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[InpaintResult]:
        import torch
        from PIL import Image

        if not requests:
            return []
        pipe = self.load()
        res = self.config.resolution
        images = [Image.fromarray(r.image).resize((res, res), Image.BICUBIC) for r in requests]
        masks = [
            Image.fromarray((np.asarray(Image.fromarray(r.mask.astype(np.uint8) * 255).resize((res, res), Image.BILINEAR)) > 0)
                            .astype(np.uint8) * 255)
            for r in requests
        ]
        generators = [torch.Generator(device="cpu").manual_seed(int(r.seed)) for r in requests]
        with torch.inference_mode():
            out = pipe(
                prompt=[r.prompt for r in requests],
                negative_prompt=[self.config.negative_prompt] * len(requests) if self.config.negative_prompt else None,
                image=images,
                mask_image=masks,
                height=res,
                width=res,
                strength=self.config.strength,
                num_inference_steps=self.config.steps,
                guidance_scale=self.config.guidance,
                generator=generators,
                output_type="np",
            ).images
        results = []
        for r, arr in zip(requests, out):
            img = Image.fromarray(np.clip(np.round(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8))
            results.append(InpaintResult(r.sample_id, np.asarray(img.resize(r.size, Image.BICUBIC))))
        return results


def load_decoder_weights(vae, path: str | os.PathLike) -> None:
    """Fine-tuned decoder weights (``decoder.*`` keys, as ``soediff export`` writes them) into an
    ``AutoencoderKL``; every key must be a decoder key of that VAE and every decoder key present."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise MissingWeightsError(f"cannot read VAE decoder weights {path}: {exc}") from exc
    wrong = [k for k in state if not k.startswith("decoder.")]
    if wrong:
        raise ConfigError(f"{path}: not VAE decoder weights (key {wrong[0]!r} outside 'decoder.')")
    missing, unexpected = vae.load_state_dict(state, strict=False)
    if unexpected or any(k.startswith("decoder.") for k in missing):
        bad = unexpected[0] if unexpected else next(k for k in missing if k.startswith("decoder."))
        raise ConfigError(f"{path}: decoder weights do not fit this VAE (key {bad!r})")
