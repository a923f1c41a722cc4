"""The shared shape of the stateful metrics (torchmetrics style, without the torch dependency).

A metric keeps its state as named arrays that *add up* across shards: ``a + b`` (or
``a.merge(b)``) gives the metric of the union of their samples, and ``state_dict()`` /
``load_state_dict()`` move states between processes (sum them key by key, except ``_config``,
load the sum, ``compute()``). Every state, an empty one included, must be summable that way: a
state whose shape is not known before the first update starts as a 0-d zero, which adds to any
shape (see :class:`~soebench.metrics.fid.FID`); list-valued states concatenate.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


class SummableMetric:
    """Base class: subclasses list their summable state names in ``_state_names`` and set them
    in ``reset()``; list-valued states (kept samples) are concatenated on merge."""

    _state_names: tuple[str, ...] = ()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _config(self) -> dict[str, Any]:
        """Settings that must agree for two states to be merged."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Copies of the state arrays (lists of arrays for kept samples), plus ``_config``: the
        settings a state may only be merged or loaded under."""
        out: dict[str, Any] = {}
        for name in self._state_names:
            value = getattr(self, name)
            out[name] = [np.array(v, copy=True) for v in value] if isinstance(value, list) else np.array(value, copy=True)
        out["_config"] = self._config()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the state by ``state`` (from ``state_dict()``, or the sum of several);
        ValueError when its ``_config`` differs from this metric's settings."""
        config = state.get("_config", {})
        if config and config != self._config():
            raise ValueError(f"cannot load a {type(self).__name__} state made with {config}; this one uses {self._config()}")
        for name in self._state_names:
            value = state[name]
            setattr(self, name, [np.array(v) for v in value] if isinstance(value, list) else np.array(value))

    def merge(self, other: SummableMetric) -> SummableMetric:
        """Add ``other``'s state into this one (in place) and return self."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other._config() != self._config():
            raise ValueError(f"cannot merge states with different settings: {other._config()} vs {self._config()}")
        for name in self._state_names:
            mine, theirs = getattr(self, name), getattr(other, name)
            if isinstance(mine, list):  # copies: editing one metric's kept rows must not change the other's
                setattr(self, name, mine + [np.array(v, copy=True) for v in theirs])
            elif np.ndim(mine) and np.ndim(theirs) and np.shape(mine) != np.shape(theirs):
                if np.size(mine) == 0:  # an empty state has no feature dimension yet
                    setattr(self, name, np.array(theirs, copy=True))
                elif np.size(theirs) != 0:
                    raise ValueError(f"state {name!r} shapes differ: {np.shape(mine)} vs {np.shape(theirs)}")
            else:
                setattr(self, name, mine + theirs)
        return self

    def __add__(self, other: SummableMetric) -> SummableMetric:
        """A new metric holding both states; shares (does not copy) the injected network."""
        return self._copy().merge(other)

    def __radd__(self, other: Any) -> SummableMetric:
        """``sum(shards)`` starts from 0: ``0 + metric`` is a copy of the metric."""
        if isinstance(other, (int, float)) and not isinstance(other, bool) and other == 0:
            return self._copy()
        return NotImplemented

    def _copy(self) -> SummableMetric:
        out = copy.copy(self)
        for name in self._state_names:
            value = getattr(self, name)
            setattr(out, name, [np.array(v, copy=True) for v in value] if isinstance(value, list)
                    else np.array(value, copy=True))
        return out
