"""A Python callable or object as an inpainter.

``--model python --model-args target=package.module:name`` where ``name`` is
- an object (or a zero-argument class) with an ``inpaint(requests)`` method: used as is;
- a function ``f(requests) -> outputs`` (``per_sample=false``, default) or ``f(request) -> image``
  (``per_sample=true``).
Outputs may be :class:`InpaintResult`, uint8 arrays or PIL images. From the Python API, pass the
object or function itself instead of a name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from soebench.errors import ConfigError
from soebench.models.base import InpaintRequest


@dataclass(frozen=True)
class PythonConfig:
    """``target``: ``package.module:attribute``; ``per_sample``: the callable takes one request;
    ``version``: any string you bump when the code changes (part of the cache key)."""

    target: str
    per_sample: bool = False
    version: str = ""


def import_target(target: str) -> Any:
    """``"package.module:attr.sub"`` -> the object."""
    if ":" not in target:
        raise ConfigError(f"python adapter target {target!r} must look like package.module:callable")
    module_name, attr = target.split(":", 1)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"python adapter: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"python adapter: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _qualname(obj: Any) -> str:
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) else type(obj)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


class PythonInpainter:
    """Wraps a function (batched or per sample) in the Inpainter interface."""

    def __init__(self, fn: Callable, *, per_sample: bool = False, name: str | None = None, version: str = ""):
        if not callable(fn):
            raise ConfigError(f"python adapter: {fn!r} is not callable")
        self.fn = fn
        self.per_sample = per_sample
        self.name = name or "python"
        self.version = version
        self.target = _qualname(fn)

    def cache_token(self) -> dict[str, Any]:
        return {"adapter": "python", "target": self.target, "per_sample": self.per_sample, "version": self.version}

    def inpaint(self, requests: Sequence[InpaintRequest]) -> list[Any]:
        if self.per_sample:
            return [self.fn(r) for r in requests]
        return list(self.fn(list(requests)))


class ObjectInpainter:
    """An object with ``inpaint(requests)``; its own ``cache_token()`` is used when it has one."""

    def __init__(self, obj: Any, version: str = ""):
        self.obj = obj
        self.name = str(getattr(obj, "name", type(obj).__name__))
        self.version = version

    def cache_token(self) -> dict[str, Any] | None:
        own = getattr(self.obj, "cache_token", None)
        if callable(own):
            return own()
        return {"adapter": "python", "target": _qualname(self.obj), "version": self.version}

    def inpaint(self, requests: Sequence[InpaintRequest]) -> Sequence[Any]:
        return self.obj.inpaint(requests)


def from_object(obj: Any, *, per_sample: bool = False, version: str = "") -> Any:
    """An adapter for ``obj``: objects with ``inpaint`` are wrapped, classes are instantiated,
    plain callables become :class:`PythonInpainter`."""
    if inspect.isclass(obj):
        try:
            obj = obj()
        except TypeError as exc:
            raise ConfigError(f"python adapter: cannot instantiate {obj.__qualname__} without arguments: {exc}") from exc
    if callable(getattr(obj, "inpaint", None)):
        return obj if callable(getattr(obj, "cache_token", None)) and hasattr(obj, "name") else ObjectInpainter(obj, version)
    if callable(obj):
        return PythonInpainter(obj, per_sample=per_sample, version=version)
    raise ConfigError(f"python adapter: {obj!r} is neither callable nor has an inpaint() method")


def build_python(config: PythonConfig) -> Any:
    return from_object(import_target(config.target), per_sample=config.per_sample, version=config.version)
