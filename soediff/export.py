"""A run's checkpoint -> diffusers-format LoRA (``load_lora_weights``) + fine-tuned VAE decoder weights.

Output folder::

    pytorch_lora_weights.safetensors   the UNet LoRA ("unet." + PEFT key names), LoraConfig in its metadata
    vae_decoder.safetensors            the decoder's weights with AutoencoderKL key names ("decoder.*")
    export.json                        which run/checkpoint/step it came from, LoRA rank/alpha, code versions
    pipeline/                          (with ``pipeline=True``) the base pipeline with the fine-tuned VAE:
                                       vae/ written anew, every other file hard-linked (or copied) from the base

Use: ``pipe.load_lora_weights(OUT)`` and ``pipe.vae.load_state_dict(load_file(OUT/vae_decoder.safetensors),
strict=False)`` (:func:`load_exported` does both). ``soebench evaluate --model diffusers --model-args
path=BASE,lora=OUT`` scores LoRA *and* decoder (the adapter finds ``vae_decoder.safetensors`` beside
the LoRA; ``vae_decoder=none`` scores the LoRA alone); ``path=OUT/pipeline`` is the same model as one folder.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soebench.errors import InputError, SoebenchError
from soebench.fileio import refuse_existing, write_text_atomic
from soebench.models.diffusers_inpaint import DECODER_WEIGHT_NAME, load_decoder_weights

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
PIPELINE_DIR = "pipeline"
LORA_KEYS = ("rank", "alpha", "dropout", "target_modules")  # what lora_config.json holds and an export reads


@dataclass
class ExportResult:
    out_dir: Path
    lora: Path
    vae_decoder: Path | None
    checkpoint: Path
    step: int
    pipeline: Path | None = None


@dataclass
class CheckpointContents:
    """What an export reads of a checkpoint, read (and checked) before anything is written."""

    path: Path
    step: int
    lora_config: dict[str, Any]
    decoder: Path | None  # vae_decoder.safetensors; None: the run did not train the decoder


def find_checkpoint(run: Path, checkpoint: str | os.PathLike | None = None) -> Path:
    from soediff.trainer import list_checkpoints

    if checkpoint is not None:
        path = Path(checkpoint)
        path = path if path.is_absolute() or path.exists() else run / "checkpoints" / str(checkpoint)
        if not path.is_dir():
            raise InputError(f"checkpoint {checkpoint}: there is no folder {path}", hint=_complete_hint(run))
        return path
    found = list_checkpoints(run)
    if not found:
        raise InputError(f"run folder {run} has no checkpoints (expected {run / 'checkpoints' / 'checkpoint-*'})",
                         hint="train first: soediff train ... --out " + str(run))
    return found[-1]


def _complete_hint(run: Path, but: Path | None = None) -> str:
    """The checkpoints an export could take instead (those with a trainer_state.json, ``but`` excepted)."""
    from soediff.trainer import list_checkpoints

    names = [p.name for p in list_checkpoints(run) if but is None or p.resolve() != but.resolve()]
    if not names:
        return f"run {run} has no other checkpoint to export"
    return f"other checkpoints of {run}: {', '.join(names)} (export one with --checkpoint NAME)"


def read_checkpoint(ckpt: Path, run: Path) -> CheckpointContents:
    """Every file an export reads, checked present and readable: a checkpoint whose process was
    stopped while saving (trainer_state.json is written last) or whose files were damaged is an
    InputError naming it and each problem -- before the export writes anything."""
    problems: list[str] = []
    state = _read_json_file(ckpt / "trainer_state.json", problems)
    lora_config = _read_json_file(ckpt / "lora_config.json", problems)
    if state is not None and not isinstance(state.get("step"), int):
        problems.append("trainer_state.json is not readable (no integer step)")
    missing_keys = [k for k in LORA_KEYS if lora_config is not None and k not in lora_config]
    if missing_keys:
        problems.append(f"lora_config.json is not readable (no {', '.join(missing_keys)})")
    _check_safetensors(ckpt / "lora.safetensors", problems)
    decoder = ckpt / "vae_decoder.safetensors"
    if decoder.exists() or _run_trains_decoder(run):
        _check_safetensors(decoder, problems)
    if problems:
        raise InputError(f"checkpoint {ckpt} is incomplete: {'; '.join(problems)}", hint=_complete_hint(run, ckpt))
    return CheckpointContents(path=ckpt, step=state["step"], lora_config=lora_config,
                              decoder=decoder if decoder.exists() else None)


def _read_json_file(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name} is not readable ({exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} is not readable (not a JSON object)")
        return None
    return data


def _check_safetensors(path: Path, problems: list[str]) -> None:
    """The file exists and its header describes exactly its bytes (a truncated file does not)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return
    try:
        with safe_open(str(path), framework="pt") as fh:
            fh.keys()
    except (OSError, SafetensorError) as exc:
        problems.append(f"{path.name} is not readable ({exc})")


def _run_trains_decoder(run: Path) -> bool:
    """Whether the run's config trains the VAE decoder (then every checkpoint holds one)."""
    from soediff.config import TrainConfig

    return (run / "config.yaml").exists() and TrainConfig.from_yaml(run / "config.yaml").vae.enabled


def export_run(run: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str | None = None,
               overwrite: bool = False, pipeline: bool = False,
               pretrained: str | os.PathLike | None = None) -> ExportResult:
    """Write the diffusers LoRA and the decoder weights of ``run``'s latest (or given) checkpoint.

    ``pipeline``: also write ``OUT/pipeline``, the base pipeline (``pretrained``, default: the one the
    run was trained from) with the fine-tuned decoder in its VAE.
    """
    from soebench.compat import ensure_torchvision_ops

    from soediff.outputs import check_out_folder, follow_umask, save_safetensors
    from soediff.trainer import code_versions

    run, out = Path(run), check_out_folder(out)
    if not run.is_dir():
        raise InputError(f"run folder {run} does not exist")
    contents = read_checkpoint(find_checkpoint(run, checkpoint), run)
    ckpt, lora_cfg = contents.path, contents.lora_config
    lora_file = out / LORA_WEIGHT_NAME
    refuse_existing(lora_file, overwrite, what="exported LoRA")
    base = None
    if pipeline:
        if contents.decoder is None:
            raise InputError(f"checkpoint {ckpt} has no fine-tuned VAE decoder (vae.enabled was off), so there is "
                             "no pipeline to export", hint="export without --pipeline; evaluate with path=BASE,lora=OUT")
        base = _base_pipeline(run, pretrained)
        refuse_existing(out / PIPELINE_DIR, overwrite, what="exported pipeline")
    ensure_torchvision_ops()
    from diffusers import StableDiffusionInpaintPipeline
    from peft import LoraConfig
    from safetensors.torch import load_file

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
    follow_umask([tmp_dir / LORA_WEIGHT_NAME])  # safetensors writes 0600 files (see soediff.outputs)
    os.replace(tmp_dir / LORA_WEIGHT_NAME, lora_file)
    tmp_dir.rmdir()
    decoder_out = None
    if contents.decoder is not None:
        decoder_out = out / DECODER_WEIGHT_NAME
        save_safetensors(load_file(str(contents.decoder)), decoder_out)
    pipeline_out = write_pipeline(base, decoder_out, out / PIPELINE_DIR) if base is not None else None
    write_text_atomic(out / "export.json", json.dumps({
        "run": str(run.resolve()), "checkpoint": ckpt.name, "step": contents.step, "lora": LORA_WEIGHT_NAME,
        "vae_decoder": DECODER_WEIGHT_NAME if decoder_out else None, "lora_rank": lora_cfg["rank"],
        "lora_alpha": lora_cfg["alpha"], "pipeline": PIPELINE_DIR if pipeline_out else None,
        "base_pipeline": str(base.resolve()) if base is not None else None, **code_versions()}, indent=2))
    return ExportResult(out_dir=out, lora=lora_file, vae_decoder=decoder_out, checkpoint=ckpt, step=contents.step,
                        pipeline=pipeline_out)


def _base_pipeline(run: Path, pretrained: str | os.PathLike | None) -> Path:
    """The pipeline folder the run was trained from, or ``pretrained``; checked. The run's is the
    absolute path it recorded (:func:`soediff.trainer.load_run_config`), whatever the working directory."""
    from soediff.models import check_pretrained
    from soediff.trainer import load_run_config

    if pretrained is None:
        if not (run / "config.yaml").exists():
            raise InputError(f"run folder {run} has no config.yaml naming its base pipeline",
                             hint="pass --pretrained DIR")
        pretrained = load_run_config(run).pretrained
    return check_pretrained(pretrained)


def write_pipeline(base: Path, decoder_file: Path, out: Path) -> Path:
    """``base`` with the decoder of ``decoder_file`` in its VAE, as a diffusers pipeline folder at ``out``.

    Only vae/ is written anew; the other parts are hard links to the base files (copies across file
    systems), so the folder costs one VAE of disk. Built beside ``out`` and renamed into place.
    """
    from diffusers import AutoencoderKL

    from soediff.outputs import follow_umask

    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(base, tmp, copy_function=_link_or_copy,
                    ignore=lambda folder, names: ["vae"] if Path(folder) == base else [])
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
    try:
        load_decoder_weights(vae, decoder_file)
    except SoebenchError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    vae.save_pretrained(tmp / "vae", safe_serialization=True)
    # The folders (copytree gave them the base's modes) and vae/'s new files (safetensors writes
    # 0600) get the umask's modes; the linked files are the base's own: a chmod would change the base.
    follow_umask([tmp, *(p for p in tmp.rglob("*") if p.is_dir()), *(tmp / "vae").iterdir()])
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def load_exported(pipe, export_dir: str | os.PathLike) -> None:
    """Apply an export to a loaded inpainting pipeline: LoRA via load_lora_weights, then the decoder."""
    export_dir = Path(export_dir)
    pipe.load_lora_weights(str(export_dir), weight_name=LORA_WEIGHT_NAME)
    decoder = export_dir / DECODER_WEIGHT_NAME
    if decoder.exists():
        load_decoder_weights(pipe.vae, decoder)
