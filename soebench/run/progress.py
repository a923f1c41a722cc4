"""A rich progress bar over samples (a no-op when disabled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class progress_bar:
    """A rich progress bar over samples (a no-op when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                             console=Console(stderr=True))  # stdout is for results
        self._bar.__enter__()
        task = self._bar.add_task(f"evaluate {self.label}", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._bar.__exit__(*exc)
