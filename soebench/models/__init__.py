"""Model adapters ("any inpainter") and their registry.

``MODELS`` maps a name to a typed config dataclass and a factory; :func:`build_model` turns a
name plus ``--model-args`` (or an adapter object, or a plain function) into an
:class:`~soebench.models.base.Inpainter`. Built-ins: ``diffusers``, ``python``, ``command``,
``folder`` and the weight-free baselines ``original``, ``opencv-telea``, ``opencv-ns``,
``mean-fill``. Importing this package imports neither torch nor diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soebench.errors import ConfigError
from soebench.models.base import (
    InpaintRequest,
    Inpainter,
    InpaintResult,
    Registry,
    check_output,
    config_from_args,
    config_to_dict,
    parse_model_args,
)
from soebench.models.baselines import (
    MeanFillBaseline,
    MeanFillConfig,
    NoConfig,
    OpenCVBaseline,
    OpenCVConfig,
    OriginalBaseline,
)
from soebench.models.command import CommandConfig, CommandInpainter
from soebench.models.diffusers_inpaint import DiffusersConfig, DiffusersInpainter
from soebench.models.folder import FolderConfig, FolderInpainter
from soebench.models.python_adapter import ObjectConfig, PythonConfig, build_python, from_object

MODELS = Registry(kind="model")
MODELS.register("diffusers", DiffusersConfig, DiffusersInpainter, "diffusers inpainting pipeline (+ optional LoRA)")
MODELS.register("python", PythonConfig, build_python, "a Python callable or object: target=package.module:name")
MODELS.register("command", CommandConfig, CommandInpainter, "an external program reading a JSONL of requests")
MODELS.register("folder", FolderConfig, FolderInpainter, "precomputed outputs: path=DIR with <sample_id>.png")
MODELS.register("original", NoConfig, OriginalBaseline, "oracle upper bound: returns the input image")
MODELS.register("opencv-telea", OpenCVConfig, lambda c: OpenCVBaseline(c, "telea"), "cv2.inpaint Telea: removes the object")
MODELS.register("opencv-ns", OpenCVConfig, lambda c: OpenCVBaseline(c, "ns"), "cv2.inpaint Navier-Stokes: removes the object")
MODELS.register("mean-fill", MeanFillConfig, MeanFillBaseline, "fills the mask with the mean colour around it")


def build_model(
    model: str | Any, args: Mapping[str, Any] | str | None = None, *, device: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """``(adapter, model_args_dict)`` for a registered name (with ``args``) or an object/function.

    ``device`` fills the adapter's ``device`` argument when it has one and it was not given."""
    if isinstance(model, str):
        entry = MODELS.get(model)
        raw = parse_model_args(args)
        fields = getattr(entry.config_cls, "__dataclass_fields__", {})
        if device is not None and "device" in fields and "device" not in raw:
            raw["device"] = device
        config = config_from_args(entry.config_cls, raw, adapter=model)
        return entry.factory(config), config_to_dict(config)
    raw = parse_model_args(args) if args else {}
    unknown = sorted(set(raw) - {"version", "per_sample"})
    if unknown:
        raise ConfigError(f"model argument(s) {', '.join(unknown)} are only used with a registered model name",
                          hint="an adapter object or function takes version= (part of the cache key) and per_sample=")
    config = config_from_args(ObjectConfig, raw, adapter="python")
    adapter = from_object(model, per_sample=config.per_sample, version=config.version)
    return adapter, {k: getattr(config, k) for k in sorted(raw)}  # converted, as for a registered name


__all__ = [
    "MODELS",
    "CommandConfig",
    "CommandInpainter",
    "DiffusersConfig",
    "DiffusersInpainter",
    "FolderConfig",
    "FolderInpainter",
    "InpaintRequest",
    "InpaintResult",
    "Inpainter",
    "MeanFillBaseline",
    "MeanFillConfig",
    "OpenCVBaseline",
    "OpenCVConfig",
    "OriginalBaseline",
    "PythonConfig",
    "Registry",
    "build_model",
    "check_output",
    "config_from_args",
    "parse_model_args",
]
