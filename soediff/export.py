"""A run's checkpoint -> diffusers-format LoRA (``load_lora_weights``) + fine-tuned VAE decoder weights.

Output folder::

    pytorch_lora_weights.safetensors   the UNet LoRA ("unet." + PEFT key names), LoraConfig in its metadata
    vae_decoder.safetensors            the decoder's weights with AutoencoderKL key names ("decoder.*")
    export.json                        which run/checkpoint/step it came from, LoRA rank/alpha

Use: ``pipe.load_lora_weights(OUT)`` and ``pipe.vae.load_state_dict(load_file(OUT/vae_decoder.safetensors),
strict=False)``; ``soebench evaluate --model diffusers --model-args path=BASE,lora=OUT`` scores it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from soebench.errors import InputError
from soebench.fileio import refuse_existing, write_text_atomic

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
DECODER_WEIGHT_NAME = "vae_decoder.safetensors"


@dataclass
class ExportResult:
    out_dir: Path
    lora: Path
    vae_decoder: Path | None
    checkpoint: Path
    step: int


def find_checkpoint(run: Path, checkpoint: str | os.PathLike | None = None) -> Path:
    from soediff.trainer import list_checkpoints

    if checkpoint is not None:
        path = Path(checkpoint)
        path = path if path.is_absolute() or path.exists() else run / "checkpoints" / str(checkpoint)
        if not (path / "lora.safetensors").exists():
            raise InputError(f"checkpoint {path} holds no lora.safetensors")
        return path
    found = list_checkpoints(run)
    if not found:
        raise InputError(f"run folder {run} has no checkpoints (expected {run / 'checkpoints' / 'checkpoint-*'})",
                         hint="train first: soediff train ... --out " + str(run))
    return found[-1]


def export_run(run: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str | None = None,
               overwrite: bool = False) -> ExportResult:
    """Write the diffusers LoRA and the decoder weights of ``run``'s latest (or given) checkpoint."""
    from soebench.compat import ensure_torchvision_ops

    run, out = Path(run), Path(out)
    if not run.is_dir():
        raise InputError(f"run folder {run} does not exist")
    ckpt = find_checkpoint(run, checkpoint)
    lora_file = out / LORA_WEIGHT_NAME
    refuse_existing(lora_file, overwrite, what="exported LoRA")
    ensure_torchvision_ops()
    from diffusers import StableDiffusionInpaintPipeline
    from peft import LoraConfig
    from safetensors.torch import load_file, save_file

    lora_cfg = json.loads((ckpt / "lora_config.json").read_text())
    # PEFT key names (``...to_q.lora_A.weight``), which load_lora_weights reads natively. Not passed
    # through diffusers' convert_state_dict_to_diffusers: that renames only attention keys to the old
    # ``lora.down/up`` names and leaves resnet/conv keys in PEFT form, and load_lora_weights then
    # silently drops the attention adapters of such a mixed file (diffusers 0.42; caught by the tests).
    state = load_file(str(ckpt / "lora.safetensors"))
    metadata = LoraConfig(r=lora_cfg["rank"], lora_alpha=lora_cfg["alpha"], lora_dropout=lora_cfg["dropout"],
                          target_modules=lora_cfg["target_modules"]).to_dict()
    out.mkdir(parents=True, exist_ok=True)
    # save_lora_weights writes its own file; write beside and rename for atomicity
    tmp_dir = out / ".export-tmp"
    tmp_dir.mkdir(exist_ok=True)
    StableDiffusionInpaintPipeline.save_lora_weights(tmp_dir, unet_lora_layers=state, safe_serialization=True,
                                                     unet_lora_adapter_metadata=metadata)
    os.replace(tmp_dir / LORA_WEIGHT_NAME, lora_file)
    tmp_dir.rmdir()
    decoder_out = None
    if (ckpt / "vae_decoder.safetensors").exists():
        decoder_out = out / DECODER_WEIGHT_NAME
        tmp = out / f".{DECODER_WEIGHT_NAME}.tmp"
        save_file(load_file(str(ckpt / "vae_decoder.safetensors")), str(tmp))
        os.replace(tmp, decoder_out)
    step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    write_text_atomic(out / "export.json", json.dumps({
        "run": str(run.resolve()), "checkpoint": ckpt.name, "step": step, "lora": LORA_WEIGHT_NAME,
        "vae_decoder": DECODER_WEIGHT_NAME if decoder_out else None, "lora_rank": lora_cfg["rank"],
        "lora_alpha": lora_cfg["alpha"]}, indent=2))
    return ExportResult(out_dir=out, lora=lora_file, vae_decoder=decoder_out, checkpoint=ckpt, step=step)


def load_exported(pipe, export_dir: str | os.PathLike) -> None:
    """Apply an export to a loaded inpainting pipeline: LoRA via load_lora_weights, then the decoder."""
    from safetensors.torch import load_file

    export_dir = Path(export_dir)
    pipe.load_lora_weights(str(export_dir), weight_name=LORA_WEIGHT_NAME)
    decoder = export_dir / DECODER_WEIGHT_NAME
    if decoder.exists():
        state = load_file(str(decoder))
        missing, unexpected = pipe.vae.load_state_dict(state, strict=False)
        if unexpected:
            raise InputError(f"{decoder}: keys the VAE lacks (first: {unexpected[0]})")
