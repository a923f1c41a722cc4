"""The histograms beside a manifest count objects: their count axes are ticked in whole objects,
also for a manifest of a dozen objects (where matplotlib would tick 0.25, 0.5, ...)."""

from __future__ import annotations

import pyarrow as pa

from soebench.mining.summary_plots import write_plots


def test_count_axes_have_integer_ticks(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: figures.append(self) or real(self, *a, **k))
    table = pa.table({"bbox_area_fraction": [0.005, 0.006, 0.0061, 0.01, 0.012, 0.02],
                      "category": ["cup", "cup", "box", "eye", "box", "cup"]})
    write_plots(table, tmp_path / "s.sizes.png", tmp_path / "s.categories.png")
    sizes, categories = (fig.axes[0] for fig in figures)
    for axis in (sizes.yaxis, categories.xaxis):  # objects per bin; objects per category
        ticks = [t for t in axis.get_ticklocs() if axis.get_view_interval()[0] <= t <= axis.get_view_interval()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
