"""The adapter contract: requests in, same-size images out, and a typed registry of adapters.

An *inpainter* takes a batch of :class:`InpaintRequest` (sample id, RGB image, object mask,
prompt, seed) and returns one :class:`InpaintResult` per request, in order. A result holds the
generated image (uint8 ``HxWx3`` at the request's size) or an error message for that sample; the
harness records errors per sample and goes on. Optional: ``cache_token()`` (what keys its cached
outputs) and ``check_samples(sample_ids)``, called once before any sample with the run's ids, to
refuse a run that could not produce any of them (the ``folder`` adapter uses it).

Adapters are registered by name with a *typed config* (a dataclass); ``--model-args k=v,k=v`` is
parsed into it by :func:`config_from_args` (types from the annotations, unknown keys rejected
with the list of valid ones).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
import os
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from soebench.errors import ConfigError
from soebench.image_io import rgb_array


@dataclass(frozen=True)
class InpaintRequest:
    """One sample to inpaint: ``image`` uint8 HxWx3 RGB, ``mask`` bool HxW (True = edit here)."""

    sample_id: str
    image: np.ndarray
    mask: np.ndarray
    prompt: str
    seed: int

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the input (and of the expected output)."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True)
class InpaintResult:
    """The output for one request: ``image`` (uint8 HxWx3) or ``error`` (a message), not both."""

    sample_id: str
    image: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.image is not None


@runtime_checkable
class Inpainter(Protocol):
    """What the harness calls. ``name`` goes into the summary; ``cache_token()`` returns a JSON-able
    description of everything that changes the outputs (None: outputs are never cached)."""

    name: str

    def inpaint(self, requests: Sequence[InpaintRequest]) -> Sequence[InpaintResult | np.ndarray | Any]:
        """One output per request, in order: an :class:`InpaintResult`, a uint8 HxWx3 array, a float
        array in [0, 1] or a PIL image of the request's size (see :func:`check_output`)."""
        ...

    def cache_token(self) -> dict[str, Any] | None:
        """A JSON-able description of everything that changes the outputs (it keys the output
        cache); None: outputs are never cached."""
        ...


def check_output(request: InpaintRequest, output: Any) -> InpaintResult:
    """Normalise what an adapter returned for ``request`` (a result, an array or a PIL image) into
    an :class:`InpaintResult`; a wrong size, dtype or shape becomes a per-sample error."""
    if isinstance(output, InpaintResult):
        if output.sample_id != request.sample_id:  # outputs out of order would be scored against other samples
            return InpaintResult(request.sample_id, None, f"adapter returned the result of sample {output.sample_id!r} "
                                 f"for sample {request.sample_id!r} (one result per request, in request order)")
        if output.error is not None:
            return InpaintResult(request.sample_id, None, output.error)
        output = output.image
    if output is None:
        return InpaintResult(request.sample_id, None, "adapter returned no image")
    if hasattr(output, "convert") and hasattr(output, "size"):  # a PIL image
        output = rgb_array(output)
    arr = np.asarray(output)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        return InpaintResult(request.sample_id, None, f"adapter returned an array of shape {arr.shape}, expected HxWx3 RGB")
    if np.issubdtype(arr.dtype, np.floating):
        problem = _float_problem(arr)
        if problem:
            return InpaintResult(request.sample_id, None, problem)
        arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        return InpaintResult(
            request.sample_id, None, f"adapter returned dtype {arr.dtype}; expected uint8 (or float in [0, 1])"
        )
    w, h = request.size
    if arr.shape[:2] != (h, w):
        return InpaintResult(
            request.sample_id, None, f"adapter returned a {arr.shape[1]}x{arr.shape[0]} image; the input is {w}x{h}"
        )
    return InpaintResult(request.sample_id, np.ascontiguousarray(arr), None)


_FLOAT_SLACK = 1e-6  # float outputs a hair outside [0, 1] (rounding of a model's last op) are fine


def _float_problem(arr: np.ndarray) -> str | None:
    """Why a float image is not one in [0, 1], or None. Clipping NaN, negative or > 1 values into
    range would score a broken output (or one in [-1, 1] or [0, 255]) as if it were valid."""
    if arr.size == 0:
        return None
    if not np.isfinite(arr).all():
        return f"adapter returned non-finite values (NaN or inf) in a {arr.dtype} image; expected floats in [0, 1]"
    low, high = float(arr.min()), float(arr.max())
    if low < -_FLOAT_SLACK or high > 1.0 + _FLOAT_SLACK:
        return f"adapter returned {arr.dtype} values in [{low:g}, {high:g}]; expected uint8 (or float in [0, 1])"
    return None


# ----------------------------------------------------------------------------------------------
# --model-args parsing into typed dataclass configs
# ----------------------------------------------------------------------------------------------

_KEY_START = re.compile(r",\s*(?=[A-Za-z_][\w.-]*\s*=)")


def parse_model_args(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """``"k=v,k=v"`` -> ``{"k": "v", ...}`` (a mapping is returned as a dict). A comma only splits
    when a ``key=`` follows, so values may contain commas (``argv=python x.py --a 1,2``)."""
    if text is None:
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    text = text.strip()
    if text.endswith(","):  # "path=x," -- a trailing separator, not part of the last value
        text = text[:-1].rstrip()
    if not text:
        return {}
    out: dict[str, Any] = {}
    for part in _KEY_START.split(text):
        if "=" not in part:
            hint = (f"a python adapter's callable is given as --model-args target={part.strip()}" if ":" in part
                    else "use --model-args k=v,k=v")
            raise ConfigError(f"model argument {part!r} is not of the form key=value", hint=hint)
        key, value = part.split("=", 1)
        key = key.strip().replace("-", "_")
        if key in out:
            raise ConfigError(f"model argument {key!r} given twice")
        out[key] = value.strip()
    return out


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(options) < len(typing.get_args(annotation))
        if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
            return None
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"model argument {key}={value!r} is not valid")
    if annotation is Any:
        return value
    if origin in (list, tuple):
        # a sequence from the Python API (the CLI only gives strings, which other options take)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"model argument {key}={value!r}: expected a list")
        element = next((a for a in typing.get_args(annotation) if a is not Ellipsis), Any)
        items = [_coerce(v, element, key) for v in value]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"model argument {key}={value!r}: expected a boolean (true/false)")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"model argument {key}={value!r}: expected an integer")
        try:
            return int(value) if not isinstance(value, float) or value.is_integer() else _fail_int(key, value)
        except (TypeError, ValueError):
            raise ConfigError(f"model argument {key}={value!r}: expected an integer") from None
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"model argument {key}={value!r}: expected a number") from None
    if annotation is str:
        return str(value)
    if annotation is Path:
        return Path(value)
    if typing.get_origin(annotation) is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"model argument {key}={value!r}: expected one of {', '.join(map(str, allowed))}")
        return value
    return value


def _fail_int(key: str, value: Any) -> int:
    raise ConfigError(f"model argument {key}={value!r}: expected an integer")


C = TypeVar("C")


def config_from_args(config_cls: type[C], args: Mapping[str, Any] | str | None, *, adapter: str = "") -> C:
    """Build the dataclass ``config_cls`` from raw args, converting types from its annotations.
    Unknown keys and missing required keys are :class:`ConfigError` listing the valid keys."""
    raw = parse_model_args(args)
    hints = typing.get_type_hints(config_cls)
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    where = f"adapter {adapter!r}" if adapter else config_cls.__name__
    valid = ", ".join(fields) or "(none)"
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(f"unknown model argument {key!r} for {where}", hint=f"{hint}valid keys: {valid}")
    values = {k: _coerce(v, hints[k], k) for k, v in raw.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where} needs model argument(s) {', '.join(missing)}", hint=f"valid keys: {valid}")
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid model arguments for {where}: {exc}") from exc


def absolute_if_local(value: str | Path | None) -> str | None:
    """``value`` as an absolute path when it names something on disk, else unchanged (a hub id,
    a file still to be written): model arguments are recorded with the run, and a path relative to
    where the command ran would name nothing, or something else, when the run is resumed or read."""
    if value is None:
        return None
    path = Path(os.path.expanduser(str(value)))
    return str(path.resolve()) if path.exists() else str(value)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a config dataclass (paths as strings)."""
    if config is None:
        return {}
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration(Generic[C]):
    """An adapter name, its config dataclass and the factory ``config -> Inpainter``."""

    name: str
    config_cls: type
    factory: Callable[[Any], Inpainter]
    description: str = ""


@dataclass
class Registry:
    """Named adapters. Registering a name twice is an error; an unknown name gets "did you mean"."""

    kind: str = "model"
    _entries: dict[str, Registration] = field(default_factory=dict)

    def register(self, name: str, config_cls: type, factory: Callable[[Any], Inpainter], description: str = "") -> None:
        """Add adapter ``name``: ``factory(config_cls(...))`` builds it from its (dataclass) config.
        ValueError when the name is taken, TypeError when ``config_cls`` is not a dataclass."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if not dataclasses.is_dataclass(config_cls):
            raise TypeError(f"config of {self.kind} {name!r} must be a dataclass, got {config_cls!r}")
        self._entries[name] = Registration(name, config_cls, factory, description)

    def names(self) -> tuple[str, ...]:
        """The registered names, sorted."""
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Registration:
        """The registration of ``name``; :class:`ConfigError` with close matches when unknown."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"unknown {self.kind} {name!r}", hint=f"{hint}known: {', '.join(self.names())}") from None

    def create(self, name: str, args: Mapping[str, Any] | str | None = None) -> Inpainter:
        """Build adapter ``name`` from ``args`` (a mapping or ``"key=value,..."`` text, checked
        against its config dataclass by :func:`config_from_args`)."""
        entry = self.get(name)
        config = config_from_args(entry.config_cls, args, adapter=name)
        return entry.factory(config)
