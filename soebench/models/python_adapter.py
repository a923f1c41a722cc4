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
import os
import sys
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


@dataclass(frozen=True)
class ObjectConfig:
    """The arguments an adapter object or function passed to the API takes: ``version`` (part
    of the cache key) and, for a function, ``per_sample``."""

    per_sample: bool = False
    version: str = ""


def _import_module(module_name: str) -> Any:
    """Import ``module_name``, also from the current folder. ``python -m soebench`` puts the
    current folder on ``sys.path`` but the ``soebench`` console script does not, so
    ``target=mod:fn`` next to ``mod.py`` would work one way and not the other. The folder goes
    last, so a local file never shadows an installed package."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module_name.split(".")[0]
        on_path = {os.path.abspath(p or ".") for p in sys.path}
        if exc.name != top or cwd in on_path:
            raise
        sys.path.append(cwd)
        importlib.invalidate_caches()
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as again:
            if again.name == top:  # not here either: leave sys.path as it was
                sys.path.remove(cwd)
            raise


def import_target(target: str) -> Any:
    """``"package.module:attr.sub"`` -> the object (modules are found on ``sys.path``, then in the
    current folder)."""
    if ":" not in target:
        raise ConfigError(f"python adapter target {target!r} must look like package.module:callable")
    module_name, attr = target.split(":", 1)
    try:
        obj: Any = _import_module(module_name)
    except ImportError as exc:
        not_found = isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]
        hint = "looked on sys.path and in the current folder; for a module elsewhere set PYTHONPATH=DIR" if not_found else None
        raise ConfigError(f"python adapter: cannot import module {module_name!r}: {exc}", hint=hint) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"python adapter: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _qualname(obj: Any) -> str:
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) else type(obj)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


def _code_digest(h, code) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):  # nested functions, lambdas, comprehensions
            _code_digest(h, const)
        else:
            h.update(repr(const).encode())


def _function_digest(h, fn: Any) -> None:
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:  # a builtin or C function: its name is all there is
        h.update(repr(fn).encode())
        return
    _code_digest(h, code)
    h.update(repr((fn.__defaults__, fn.__kwdefaults__)).encode())
    for cell in fn.__closure__ or ():
        try:
            h.update(repr(cell.cell_contents).encode())
        except ValueError:  # an empty cell
            h.update(b"<empty>")


def fingerprint(obj: Any) -> str:
    """A digest of what a function or object computes with: the code of the function (or of the
    object's ``inpaint``/``__call__``), its defaults and closure values, and the object's
    attributes (by repr). Two lambdas, or two instances with other settings, differ, so a resumed
    run never reuses another callable's outputs. Values whose repr holds a memory address differ
    in every process (a cache miss, never a stale hit); state that repr does not show (a torch
    model's weights) is not seen: give such objects a ``cache_token()`` or a ``version``."""
    import hashlib

    h = hashlib.sha256()
    if inspect.ismethod(obj):
        _function_digest(h, obj.__func__)
        obj = obj.__self__
    elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
        _function_digest(h, obj)
        return h.hexdigest()[:16]
    method = getattr(type(obj), "inpaint", None) or getattr(type(obj), "__call__", None)
    if method is not None:
        _function_digest(h, method)
    state = getattr(obj, "__dict__", None)
    h.update(repr(sorted(state.items(), key=lambda kv: kv[0]) if state else None).encode())
    return h.hexdigest()[:16]


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
        return {"adapter": "python", "target": self.target, "code": fingerprint(self.fn), "per_sample": self.per_sample,
                "version": self.version}

    def inpaint(self, requests: Sequence[InpaintRequest]) -> Any:
        if self.per_sample:
            return [self.fn(r) for r in requests]
        return self.fn(list(requests))  # as returned: the harness checks it is a list of outputs


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
        return {"adapter": "python", "target": _qualname(self.obj), "code": fingerprint(self.obj), "version": self.version}

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
