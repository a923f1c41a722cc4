"""Any diffusers inpainting pipeline (local folder or Hugging Face hub id already in the cache).

The SOEBench protocol runs the model at ``resolution x resolution`` (512 by default): the image is
resized with bicubic filtering (a non-square image is squashed, not padded) and the mask with
"any coverage" (bilinear, then > 0, so a tiny object never vanishes from the mask), and the
output is resized back to the input size.

``paste_back=false`` (default) keeps that raw output, as the protocol scores it: every pixel,
the background included, went through the 512 round trip and the pipeline's VAE, so the
background metrics measure that round trip as well as the edit (an identity pipeline scores
about 29-37 dB background PSNR on COCO images). ``paste_back=true`` composites the input image
back outside the mask grown by :func:`paste_margin` (the reach of the resampling blur at the
mask edge: 3 px at the model's resolution, plus 2): beyond that margin every pixel is the
input's own, so the background metrics (which skip 8 px at 512 around the mask) no longer
measure the round trip (at ``resolution=512``: an identity pipeline scores exactly; only on
images under about 200 px, or at a lower ``resolution``, is the margin wider than that ring).

Each sample gets its own ``torch.Generator`` seeded with the sample's seed, on the CPU, so the
initial noise does not depend on the batch or the device. The same seed in the same batch
composition gives the same output; across batch sizes (or batch neighbours) outputs agree only
up to float rounding (a level or two of 255), because batched arithmetic differs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import ConfigError, MissingWeightsError, SoebenchError
from soebench.fileio import tree_mtime
from soebench.models.base import InpaintRequest, InpaintResult, absolute_if_local, config_to_dict

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
    pipeline's safety checker (off by default: it blanks outputs, which would read as failures);
    ``paste_back``: paste the input image back outside the (slightly grown) mask (see the module
    docstring; off by default: the protocol scores the raw output)."""

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
    paste_back: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", absolute_if_local(self.path))
        object.__setattr__(self, "lora", absolute_if_local(self.lora))
        if self.vae_decoder not in ("auto", "none"):
            object.__setattr__(self, "vae_decoder", absolute_if_local(self.vae_decoder))
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8; got {self.resolution}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1; got {self.steps}")
        if not 0.0 < self.strength <= 1.0:  # diffusers' own check fires per call, i.e. per sample
            raise ValueError(f"strength must lie in (0, 1]; got {self.strength}")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0; got {self.guidance}")
        if not math.isfinite(self.lora_scale):
            raise ValueError(f"lora_scale must be a finite number; got {self.lora_scale}")


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


def paste_margin(width: int, height: int, resolution: int = 512) -> tuple[int, int]:
    """``(ry, rx)``: how far, in the image's own pixels, the 512 round trip spreads a change at the
    mask edge: 3 px at the model's resolution (the any-coverage mask reaches past the object, the
    bicubic kernel on the way back 2 px more) plus 2 px for the downscaling kernel of small
    images. Measured on masks of many shapes and sizes, nothing changed reaches beyond it."""
    return math.ceil(3 * height / resolution) + 2, math.ceil(3 * width / resolution) + 2


def paste_input_back(request: InpaintRequest, generated: np.ndarray, resolution: int = 512) -> np.ndarray:
    """``generated`` inside the grown mask, the input image everywhere else."""
    from soebench.metrics.functional import dilate_mask

    w, h = request.size
    ry, rx = paste_margin(w, h, resolution)
    keep = ~dilate_mask(request.mask, ry, rx)
    out = generated.copy()
    out[keep] = request.image[keep]
    return out


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
        # the device is not keyed (the noise is drawn on the CPU: devices agree up to float
        # rounding), but the precision is: dtype=auto is float16 on CUDA and float32 elsewhere, and
        # a resume on another device must not reuse outputs of another precision
        token.pop("device", None)
        token["dtype"] = self._dtype_name(self._device_name())
        token["adapter"] = self.name
        decoder = decoder_weights(self.config)
        token["vae_decoder"] = None if decoder is None else str(decoder)  # what "auto" resolved to
        for key in ("path", "lora", "vae_decoder"):
            p = token.get(key)
            if p and Path(os.path.expanduser(p)).exists():
                token[f"{key}_mtime"] = tree_mtime(Path(os.path.expanduser(p)))
        return token

    def _device_name(self) -> str:
        if self.config.device:
            return self.config.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _dtype_name(self, device: str) -> str:
        if self.config.dtype == "auto":
            return "float16" if device.startswith("cuda") else "float32"
        return self.config.dtype

    def load(self):
        """The pipeline, loaded once. Any failure to load is a :class:`SoebenchError`: the harness
        retries other exceptions sample by sample, which would reload the pipeline per sample and
        end with every sample failed instead of one clear message."""
        if self._pipe is not None:
            return self._pipe
        device = self._device_name()
        path = os.path.expanduser(self.config.path)
        try:
            pipe = self._load_on(device, path)
        except SoebenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA missing, a bad device string, out of memory
            raise ConfigError(f"cannot load diffusers pipeline {path} on device {device!r}: {type(exc).__name__}: {exc}",
                              hint="check --device / --model-args device= and dtype=") from exc
        self._pipe, self._device = pipe, device
        log.info("loaded diffusers pipeline %s on %s", path, device)
        return pipe

    def _load_on(self, device: str, path: str):
        from soebench.compat import ensure_torchvision_ops

        ensure_torchvision_ops()
        import torch
        from diffusers import AutoPipelineForInpainting

        if torch.device(device).type == "meta":  # loads "fine", then every sample fails: weights hold no data there
            raise ConfigError(f"diffusers pipeline cannot run on device {device!r} (tensors there hold no data)",
                              hint="use cpu, cuda or mps")
        kwargs: dict[str, Any] = {"torch_dtype": getattr(torch, self._dtype_name(device))}
        if not self.config.safety_checker:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            with warnings.catch_warnings(), _quiet_loading():  # newer diffusers rename torch_dtype -> dtype
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
        return [InpaintResult(r.sample_id, self._finish(r, arr)) for r, arr in zip(requests, out)]

    def _finish(self, request: InpaintRequest, arr: Any) -> np.ndarray:
        """The pipeline's float output at the model's resolution -> uint8 at the input size."""
        from PIL import Image

        img = Image.fromarray(np.clip(np.round(np.asarray(arr, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8))
        generated = np.asarray(img.resize(request.size, Image.BICUBIC))
        return paste_input_back(request, generated, self.config.resolution) if self.config.paste_back else generated


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


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading pipeline components" / "Loading weights" bars: evaluate draws its own progress
    (and prints nothing with --quiet); the libraries' settings are restored afterwards."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    restore = [(mod.enable_progress_bar if mod.is_progress_bar_enabled() else None)
               for mod in (diffusers_logging, transformers_logging)]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for enable in restore:
            if enable is not None:
                enable()
