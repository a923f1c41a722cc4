"""open_clip models for CLIP-Score, loaded only from local files (never downloaded here).

:class:`ClipSpec` names an architecture (a built-in open_clip name such as ``ViT-B-32``, or a
path to an open_clip model-config JSON), a pretrained tag (``openai``) and optionally a local
weights file or folder. :func:`resolve_clip` finds the weights on disk -- the explicit file or
folder, else the tag's file in the Hugging Face / open_clip caches -- and raises
:class:`MissingWeightsError` saying how to provide them otherwise. open_clip is then always given
a *file path*, so it has no reason to download. The tag's preprocessing constants and QuickGELU
setting are applied to an explicit weights file too (OpenAI's ViT-B-32 needs QuickGELU).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import ConfigError, MissingDependencyError, MissingWeightsError
from soebench.fileio import weights_sha256
from soebench.metrics.preprocess import CLIP_PREPROCESS_MODE, clip_pixels

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "openai"

_CHECKPOINT_PREFERENCE = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
    "model.pth",
)
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to use. ``model``: open_clip architecture name or a model-config JSON path;
    ``pretrained``: open_clip tag whose cached weights to look for (and whose preprocessing and
    QuickGELU setting apply to a ``weights`` file too); ``weights``: a local checkpoint file, or
    a folder holding one (or an ``open_clip_config.json`` + checkpoint, as saved by open_clip)."""

    model: str = DEFAULT_CLIP_MODEL
    pretrained: str | None = DEFAULT_CLIP_PRETRAINED
    weights: str | None = None
    cache_dir: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "pretrained": self.pretrained, "weights": self.weights}


@dataclass(frozen=True)
class ResolvedClip:
    """Everything needed to build the model from disk."""

    model_name: str  # name open_clip knows (a registered config) or "local-dir:<path>"
    checkpoint: Path | None  # None with local-dir (open_clip finds it in the folder)
    tag_cfg: dict[str, Any] = field(default_factory=dict)
    searched: tuple[str, ...] = ()


def _import_open_clip():
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("open_clip is not installed", hint="pip install open_clip_torch") from exc
    return open_clip


def _register_model(open_clip, model: str) -> str:
    """Return the open_clip architecture name for ``model``; a ``.json`` path is registered."""
    path = Path(model)
    if model.endswith(".json"):
        if not path.is_file():
            raise ConfigError(f"CLIP model config {path} does not exist")
        open_clip.add_model_config(path)
        return path.stem
    if open_clip.get_model_config(model) is None:
        import difflib

        close = difflib.get_close_matches(model, open_clip.list_models(), n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise ConfigError(f"unknown CLIP model {model!r}", hint=hint)
    return model


def _checkpoint_in_dir(folder: Path) -> Path | None:
    for name in _CHECKPOINT_PREFERENCE:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _CHECKPOINT_SUFFIXES)
    return found[0] if found else None


def _cached_tag_checkpoint(tag_cfg: dict[str, Any], cache_dir: str | None) -> tuple[Path | None, list[str]]:
    """The tag's weights if a previous download left them in a cache; never downloads."""
    searched: list[str] = []
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            try_to_load_from_cache = None
        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            searched.append(f"Hugging Face cache: {repo_id}/{name}")
            if try_to_load_from_cache is not None:
                hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(hit, str) and Path(hit).is_file():
                    return Path(hit), searched
    url = tag_cfg.get("url", "")
    if url:
        local = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        searched.append(str(local))
        if local.is_file():
            return local, searched
    if "file" in tag_cfg:
        searched.append(str(tag_cfg["file"]))
        if Path(tag_cfg["file"]).is_file():
            return Path(tag_cfg["file"]), searched
    return None, searched


def clip_weights_howto(spec: ClipSpec) -> str:
    how = "pass --clip-weights PATH (an open_clip checkpoint file, e.g. open_clip_model.safetensors, or a folder holding one)"
    if spec.pretrained:
        how += (
            f"; or, on a machine with network access, fetch {spec.model}/{spec.pretrained} into the cache once: "
            f"python -c \"import open_clip; open_clip.create_model('{spec.model}', pretrained='{spec.pretrained}')\""
        )
    return how


def resolve_clip(spec: ClipSpec) -> ResolvedClip:
    """Find the CLIP weights of ``spec`` on disk, or raise :class:`MissingWeightsError`."""
    open_clip = _import_open_clip()
    if spec.weights:
        path = Path(spec.weights).expanduser()
        if not path.exists():
            raise MissingWeightsError(
                f"CLIP weights {path} do not exist", hint=clip_weights_howto(spec)
            )
        if path.is_dir() and (path / "open_clip_config.json").is_file():
            return ResolvedClip(f"local-dir:{path}", None, {}, (str(path),))
        name = _register_model(open_clip, spec.model)
        tag_cfg = _tag_cfg(open_clip, name, spec.pretrained, strict=False)
        checkpoint = _checkpoint_in_dir(path) if path.is_dir() else path
        if checkpoint is None:
            raise MissingWeightsError(
                f"no CLIP checkpoint (*.safetensors, *.bin, *.pth, *.pt) in folder {path}",
                hint=clip_weights_howto(spec),
            )
        return ResolvedClip(name, checkpoint, tag_cfg, (str(path),))
    name = _register_model(open_clip, spec.model)
    if not spec.pretrained:
        raise MissingWeightsError(
            f"no CLIP weights given for {spec.model} (no --clip-weights and no pretrained tag)",
            hint=clip_weights_howto(spec),
        )
    tag_cfg = _tag_cfg(open_clip, name, spec.pretrained, strict=True)
    checkpoint, searched = _cached_tag_checkpoint(tag_cfg, spec.cache_dir)
    if checkpoint is None:
        raise MissingWeightsError(
            f"CLIP weights for {name}/{spec.pretrained} are not on this machine (searched: {'; '.join(searched)})",
            hint=clip_weights_howto(spec),
        )
    return ResolvedClip(name, checkpoint, tag_cfg, tuple(searched))


def _tag_cfg(open_clip, name: str, tag: str | None, *, strict: bool) -> dict[str, Any]:
    if not tag:
        return {}
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg and strict:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"unknown pretrained tag {tag!r} for CLIP model {name}",
            hint=f"known tags: {', '.join(tags) or 'none'}; or pass --clip-weights PATH",
        )
    return dict(cfg)


def clip_available(spec: ClipSpec) -> tuple[bool, str]:
    """(True, where) when :func:`resolve_clip` would succeed, else (False, why + how-to)."""
    try:
        resolved = resolve_clip(spec)
    except (MissingWeightsError, ConfigError) as exc:
        return False, str(exc)
    return True, str(resolved.checkpoint or resolved.model_name)


class ClipEncoder:
    """An open_clip model with its tokenizer and the ``pad-square-bicubic`` preprocessing.

    ``encode_images`` / ``encode_texts`` return L2-normalised float32 torch tensors.
    """

    preprocess_mode = CLIP_PREPROCESS_MODE

    def __init__(self, model, tokenizer, *, image_size: int, mean, std, device="cpu", source: dict | None = None):
        import torch

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.device = torch.device(device)
        self.source = dict(source or {})

    def pixels(self, images: Sequence[np.ndarray]):
        """uint8 HxWx3 images -> normalised ``(N, 3, S, S)`` float tensor on the device."""
        import torch

        batch = np.stack([clip_pixels(img, self.image_size, self.mean) for img in images])
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def encode_images(self, images: Sequence[np.ndarray]):
        import torch

        with torch.inference_mode():
            feats = self.model.encode_image(self.pixels(images))
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def encode_texts(self, texts: Sequence[str]):
        import torch

        if isinstance(texts, str):
            raise TypeError("encode_texts takes a sequence of strings, not one string")
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            feats = self.model.encode_text(tokens)
        return torch.nn.functional.normalize(feats.float(), dim=-1)


def load_clip(
    model: str | ClipSpec = DEFAULT_CLIP_MODEL,
    pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
    *,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    cache_dir: str | None = None,
) -> ClipEncoder:
    """Build the CLIP encoder from local weights (see :class:`ClipSpec`); raises
    :class:`MissingWeightsError` with a how-to when they are not on disk."""
    spec = model if isinstance(model, ClipSpec) else ClipSpec(
        str(model), pretrained, str(weights) if weights is not None else None, cache_dir
    )
    resolved = resolve_clip(spec)
    open_clip = _import_open_clip()
    tag = resolved.tag_cfg
    force_pre = {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}
    try:
        clip_model = open_clip.create_model(
            resolved.model_name,
            pretrained=str(resolved.checkpoint) if resolved.checkpoint else None,
            device=device,
            force_quick_gelu=bool(tag.get("quick_gelu", False)),
            force_preprocess_cfg=force_pre or None,
            pretrained_text=False,
            require_pretrained=True,
        )
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        # torch.load of a file that is no checkpoint at all fails in the unpickler
        raise MissingWeightsError(
            f"could not load CLIP {resolved.model_name} from {resolved.checkpoint}: {exc}",
            hint="check that the checkpoint matches the model architecture (--clip-model)",
        ) from exc
    tokenizer = open_clip.get_tokenizer(resolved.model_name)
    pre = open_clip.get_model_preprocess_cfg(clip_model)
    size = pre.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    source = {
        **spec.describe(),
        "resolved_model": resolved.model_name,
        "checkpoint": str(resolved.checkpoint) if resolved.checkpoint else None,
        "sha256": weights_sha256(resolved.checkpoint),
        "preprocess": CLIP_PREPROCESS_MODE,
        "image_size": int(size),
    }
    return ClipEncoder(clip_model, tokenizer, image_size=size, mean=pre["mean"], std=pre["std"], device=device, source=source)
