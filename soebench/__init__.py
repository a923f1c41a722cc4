"""soebench: small object editing benchmarks -- build, evaluate, inspect, train.

The library API is imported lazily so that the CLI starts fast.
"""

from __future__ import annotations

__version__ = "0.2.0"

_LAZY = {
    "build_dataset": "soebench.mining.build",
    "read_manifest": "soebench.manifest.io",
    "write_manifest": "soebench.manifest.io",
    "evaluate": "soebench.evaluation",
    "to_fiftyone": "soebench.fiftyone_export",
    "SoebenchError": "soebench.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = globals()[name] = getattr(importlib.import_module(_LAZY[name]), name)  # looked up once
        return value
    raise AttributeError(f"module 'soebench' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names are not in globals() until first used; list them so that dir() and tab
    # completion show the public API without importing it.
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(_LAZY)
