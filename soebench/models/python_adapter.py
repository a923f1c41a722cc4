"""A Python callable or object as an inpainter.

``--model python --model-args target=package.module:name`` where ``name`` is
- an object (or a zero-argument class) with an ``inpaint(requests)`` method: used as is;
- a function ``f(requests) -> outputs`` (``per_sample=false``, default) or ``f(request) -> image``
  (``per_sample=true``).
Outputs may be :class:`InpaintResult`, uint8 arrays or PIL images. From the Python API, pass the
object or function itself instead of a name.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from soebench.errors import ConfigError, SoebenchError
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


def _raised_at(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` was raised: the offending line for a SyntaxError, else the
    innermost frame outside the import machinery (whose frames say nothing about the user's code)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else None


def _describe_failure(exc: BaseException) -> str:
    """``raised Type: message (at file:line)`` for an exception raised by the user's code."""
    if isinstance(exc, SystemExit):
        what = f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"
    else:
        message = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)  # str() repeats file and line
        what = f"raised {type(exc).__name__}: {message}" if message else f"raised {type(exc).__name__}"
    where = _raised_at(exc)
    return f"{what} (at {where})" if where else what


def import_target(target: str) -> Any:
    """``"package.module:attr.sub"`` -> the object (modules are found on ``sys.path``, then in the
    current folder). Whatever importing or looking up the attribute raises, short of a soebench
    error or Ctrl-C, is a :class:`ConfigError` naming the target and where it was raised: the
    user's module is at fault, not soebench, so a traceback into soebench helps nobody."""
    module_name, _, attr = target.partition(":")
    if not module_name or module_name.startswith(".") or not attr or "" in attr.split("."):
        raise ConfigError(f"python adapter target {target!r} must look like package.module:callable")
    try:
        obj: Any = _import_module(module_name)
    except ImportError as exc:
        not_found = isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]
        hint = "looked on sys.path and in the current folder; for a module elsewhere set PYTHONPATH=DIR" if not_found else None
        where = None if not_found else _raised_at(exc)
        raise ConfigError(f"python adapter: cannot import module {module_name!r}: {exc}"
                          + (f" (at {where})" if where else ""), hint=hint) from exc
    except SoebenchError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of the user's module at import
        raise ConfigError(f"python adapter target {target!r}: importing module {module_name!r} "
                          f"{_describe_failure(exc)}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"python adapter: module {module_name!r} has no attribute {attr!r}") from None
        except SoebenchError:
            raise
        except Exception as exc:  # noqa: BLE001 - a lazy module's __getattr__ importing what it needs
            raise ConfigError(f"python adapter target {target!r}: looking up {part!r} "
                              f"{_describe_failure(exc)}") from exc
    return obj


def _qualname(obj: Any) -> str:
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj) else type(obj)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', repr(target))}"


_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_PLAIN_ITEMS = 10_000  # a bigger table is data, not a setting: left out rather than hashed on every run


def _plain_repr(value: Any, budget: list[int]) -> str | None:
    """A stable text for ``value`` when it is a plain value (None, a number, a string, bytes, or a
    tuple/list/set/dict of those), else None. Exact types only: a subclass's repr may hold a memory
    address or hide state. Sets are sorted (their order changes with hash randomization)."""
    budget[0] -= 1
    if budget[0] < 0:
        return None
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return repr(value)
    if kind in (tuple, list, set, frozenset):
        parts = []
        for item in value:
            part = _plain_repr(item, budget)
            if part is None:
                return None
            parts.append(part)
        if kind in (set, frozenset):
            parts.sort()
        return f"{kind.__name__}({', '.join(parts)})"
    if kind is dict:
        parts = []
        for key, item in value.items():
            k, v = _plain_repr(key, budget), _plain_repr(item, budget)
            if k is None or v is None:
                return None
            parts.append(f"{k}: {v}")
        return f"dict({', '.join(parts)})"
    return None


def _named_values_digest(h, names: Sequence[str], namespace: Any) -> None:
    """Hash the plain values among ``namespace[name]``: a module constant (``FILL = 128``) or a
    class attribute the code reads changes the output as surely as its code does. Other values (a
    module, a function, a model) are left out: their repr is not their state."""
    for name in names:
        if name in namespace:
            text = _plain_repr(namespace[name], [_PLAIN_ITEMS])
            if text is not None:
                h.update(f"{name}={text};".encode())


def _code_digest(h, code, globals_: Any) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    _named_values_digest(h, code.co_names, globals_)  # co_names holds attribute names too: harmless
    for const in code.co_consts:
        if hasattr(const, "co_code"):  # nested functions, lambdas, comprehensions (same globals)
            _code_digest(h, const, globals_)
        else:
            h.update(repr(const).encode())


def _function_digest(h, fn: Any) -> None:
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    if code is None:  # a builtin or C function: its name is all there is
        h.update(repr(fn).encode())
        return
    _code_digest(h, code, getattr(fn, "__globals__", {}))
    h.update(repr((fn.__defaults__, fn.__kwdefaults__)).encode())
    for cell in fn.__closure__ or ():
        try:
            h.update(repr(cell.cell_contents).encode())
        except ValueError:  # an empty cell
            h.update(b"<empty>")


def _class_attributes_digest(h, cls: type) -> None:
    """The plain class attributes (``FILL = 128`` in the class body) of ``cls`` and its bases, which
    ``self.FILL`` reads as it reads the instance's; dunders (the docstring, ``__module__``) left out."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        names = sorted(n for n in vars(klass) if not (n.startswith("__") and n.endswith("__")))
        h.update(f"<{klass.__qualname__}>".encode())
        _named_values_digest(h, names, vars(klass))


def fingerprint(obj: Any) -> str:
    """A digest of what a function or object computes with: the code of the function (or of the
    object's ``inpaint``/``__call__``), its defaults and closure values, the plain values
    (numbers, strings, tuples/lists/dicts of them) of the module globals the code names, and the
    object's attributes (by repr) and plain class attributes. Two lambdas, two instances with
    other settings, or a function before and after its module's ``FILL = 128`` became
    ``FILL = 0`` differ, so a resumed run never reuses another callable's outputs. What the code
    calls is not followed (a helper function's code, a constant read through a module as
    ``config.FILL``). Values whose repr holds a memory address differ in every process (a cache
    miss, never a stale hit); state that repr does not show (a torch model's weights) is not
    seen: give such objects a ``cache_token()`` or a ``version``."""
    import hashlib

    h = hashlib.sha256()
    if isinstance(obj, functools.partial):  # its __dict__ is empty: the arguments live in slots
        h.update(fingerprint(obj.func).encode())
        h.update(repr((obj.args, sorted(obj.keywords.items()))).encode())
        return h.hexdigest()[:16]
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
    _class_attributes_digest(h, type(obj))
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
            try:
                return [self.fn(r) for r in requests]
            except TypeError as exc:
                hinted = _with_hint(exc, _took_a_list(exc))
                if hinted is exc:
                    raise
                raise hinted from exc
        batch = list(requests)
        try:
            return self.fn(batch)  # as returned: the harness checks it is a list of outputs
        except AttributeError as exc:
            hinted = _with_hint(exc, _took_one_request(exc, batch))
            if hinted is exc:
                raise
            raise hinted from exc


_REQUEST_FIELDS = frozenset(f.name for f in dataclasses.fields(InpaintRequest)) | {"size"}
# CPython's wording when a request is used as a sequence: iterated, len(), indexed
_SEQUENCE_USES = ("'InpaintRequest' object is not iterable", "object of type 'InpaintRequest' has no len()",
                  "'InpaintRequest' object is not subscriptable")


def _took_one_request(exc: AttributeError, batch: list) -> str | None:
    """The hint when the function read a request's field (``.image``) on the very list it was
    given: it takes one request, not a batch. Exact: ``exc.obj`` is the object looked up."""
    if getattr(exc, "obj", None) is batch and getattr(exc, "name", None) in _REQUEST_FIELDS:
        return "it was given the list of requests: a function taking one request needs per_sample=true"
    return None


def _took_a_list(exc: TypeError) -> str | None:
    """The hint when a request was used as a sequence: likely a batch function run per sample."""
    if any(use in str(exc) for use in _SEQUENCE_USES):
        return "it was given one request: a function taking a list of requests needs per_sample=false"
    return None


def _with_hint(exc: Exception, hint: str | None) -> Exception:
    """``exc`` again, or one of its type whose message ends with ``hint``: the harness records the
    message per sample, and every sample fails the same way."""
    if hint is None:
        return exc
    try:
        return type(exc)(f"{exc} (hint: {hint})")
    except Exception:  # noqa: BLE001 - a subclass with another constructor: keep the original
        return exc


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


def _instantiate(cls: type) -> Any:
    """``cls()``; its failure is a ConfigError: a TypeError from the call itself means ``__init__``
    needs arguments, anything raised inside it is named with the place it was raised."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    try:
        return cls()
    except SoebenchError:
        raise
    except TypeError as exc:
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:  # not inside __init__
            raise ConfigError(f"python adapter: cannot instantiate {name} without arguments: {exc}") from exc
        raise ConfigError(f"python adapter: {name}() {_describe_failure(exc)}") from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of the user's constructor
        raise ConfigError(f"python adapter: {name}() {_describe_failure(exc)}") from exc


def from_object(obj: Any, *, per_sample: bool = False, version: str = "") -> Any:
    """An adapter for ``obj``: objects with ``inpaint`` are wrapped, classes are instantiated,
    plain callables become :class:`PythonInpainter`."""
    if inspect.isclass(obj):
        obj = _instantiate(obj)
    if callable(getattr(obj, "inpaint", None)):
        return obj if callable(getattr(obj, "cache_token", None)) and hasattr(obj, "name") else ObjectInpainter(obj, version)
    if callable(obj):
        return PythonInpainter(obj, per_sample=per_sample, version=version)
    raise ConfigError(f"python adapter: {obj!r} is neither callable nor has an inpaint() method")


def build_python(config: PythonConfig) -> Any:
    return from_object(import_target(config.target), per_sample=config.per_sample, version=config.version)
