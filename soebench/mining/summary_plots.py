"""PNG histograms written beside a manifest: object sizes and categories."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from soebench.fileio import atomic_path

TOP_CATEGORIES = 40


def write_plots(table, sizes_path: Path, categories_path: Path, *, title: str = "") -> list[Path]:
    """Histogram of box side (sqrt of the box area fraction) and bar chart of categories."""
    fractions = np.asarray(table.column("bbox_area_fraction").to_numpy(), dtype=float)
    fig, ax = _figure((7, 4))
    if len(fractions):
        ax.hist(np.sqrt(fractions), bins=_side_bins(np.sqrt(fractions)), color="#4c72b0")
    for ref, name in ((1 / 16, "1/16"), (1 / 8, "1/8"), (1 / 6, "1/6")):
        ax.axvline(ref, color="grey", linestyle="--", linewidth=0.8)
        ax.text(ref, ax.get_ylim()[1] * 0.95, name, ha="center", va="top", fontsize=8, color="grey")
    ax.set_xlabel("box side / image side  (sqrt of box area fraction)")
    ax.set_ylabel("objects")
    _count_ticks(ax.yaxis)
    ax.set_title(f"Object sizes, {len(fractions)} objects {title}".strip())
    fig.tight_layout()
    _save(fig, sizes_path)

    counts = Counter(table.column("category").to_pylist()).most_common()
    top = sorted(counts, key=lambda kv: (-kv[1], kv[0]))[:TOP_CATEGORIES]
    fig, ax = _figure((7, max(2.5, 0.22 * len(top) + 1)))
    if top:
        names, values = zip(*top)
        ax.barh(range(len(top)), values, color="#55a868")
        ax.set_yticks(range(len(top)), names, fontsize=7)
        ax.invert_yaxis()
    ax.set_xlabel("objects")
    _count_ticks(ax.xaxis)
    shown = f"top {len(top)} of {len(counts)}" if len(counts) > len(top) else f"{len(counts)}"
    ax.set_title(f"Categories ({shown}) {title}".strip())
    fig.tight_layout()
    _save(fig, categories_path)
    return [sizes_path, categories_path]


def _figure(size: tuple[float, float]):
    """A figure on its own Agg canvas: no pyplot, so no global figure registry or backend
    switch in the caller's process (and the figure is freed with its last reference)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _count_ticks(axis) -> None:
    # a count axis of a small manifest would otherwise be ticked 0.25, 0.5, ... objects
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _side_bins(sides: np.ndarray, count: int = 40) -> np.ndarray:
    """Bin edges over the data, widened when every object has (nearly) the same size: numpy
    cannot cut a zero-width range into 40 bins."""
    lo, hi = float(sides.min()), float(sides.max())
    if hi - lo < 1e-6:
        lo, hi = max(0.0, lo - 0.005), hi + 0.005
    return np.linspace(lo, hi, count + 1)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
