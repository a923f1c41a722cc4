"""What a reader of a report, summary.json and the plots learns without the source: the edges of
the size buckets (under the size tables, in summary.json, on the plots, in the README), the same
buckets in every table and plot, axes with units and the better direction, and a comparison's
by-size plot whose notes do not cover its lines and whose buckets say their n."""

from __future__ import annotations

import html
import json
import math
import re

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from soebench.evaluation import evaluate
from soebench.manifest.io import read_manifest
from soebench.metrics import METRICS, SIZE_BUCKET_NAMES
from soebench.metrics.bootstrap import size_bucket_edges, size_buckets_note
from soebench.metrics.registry import axis_label
from soebench.run import plots
from tests.conftest import REPO
from tests.evaluate.conftest import BG

SIZE_TABLES = ("By object size", "FID/KID by object size (small groups: FID biased upward)", "Failure taxonomy")


@pytest.fixture(scope="module")
def run(tmp_path_factory, manifest6, tiny_nets):
    """A run of the six synthetic samples (buckets small and medium only) with its report."""
    out = tmp_path_factory.mktemp("readability") / "run"
    evaluate(manifest6, "opencv-telea", out, metrics=(*BG, "fid_crop", "kid_crop"), progress=False,
             inception_weights=tiny_nets["inception_weights"])
    return out


def _md_sections(text: str) -> dict[str, str]:
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in text.split("\n## ")[1:]}


def _table_rows(section: str) -> list[str]:
    return [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| ")][1:]


def test_the_report_defines_the_size_buckets_under_each_size_table(run):
    note = size_buckets_note()
    assert "tiny <0.5%, small 0.5–1%, medium 1–2%, large 2–3%, above ≥3%" in note
    sections = _md_sections((run / "report.md").read_text())
    for title in SIZE_TABLES:
        table, _, after = sections[title].strip().partition("\n\n")
        assert table.startswith("| ") and after.splitlines()[0] == note, title
    assert (run / "report.html").read_text().count(f"<p class='note'>{html.escape(note)}</p>") == len(SIZE_TABLES)


def test_summary_json_gives_the_bucket_edges_and_counts(run, manifest6):
    entry = json.loads((run / "summary.json").read_text())["size_buckets"]
    assert entry["edges"] == {"tiny": [0.0, 0.005], "small": [0.005, 0.01], "medium": [0.01, 0.02],
                              "large": [0.02, 0.03], "above": [0.03, None]}
    frame = pd.read_parquet(run / "samples.parquet")
    assert list(entry["counts"]) == list(SIZE_BUCKET_NAMES)
    assert entry["counts"] == {b: int((frame["size_bucket"] == b).sum()) for b in SIZE_BUCKET_NAMES}
    # the edges are the ones the samples were bucketed by
    for rec, bucket in zip(read_manifest(manifest6).table.to_pylist(), frame["size_bucket"]):
        lower, upper = entry["edges"][bucket]
        assert lower <= rec["mask_area_fraction"] < (math.inf if upper is None else upper)


def _tick_names(ax) -> list[str]:
    return [t.get_text().split("\n")[0] for t in ax.get_xticklabels()]


def test_every_table_and_plot_shows_the_same_buckets(run, tmp_path, saved_figures):
    summary = json.loads((run / "summary.json").read_text())
    sections = _md_sections((run / "report.md").read_text())
    shown = ["small", "medium"]  # the buckets of the six samples; tiny, large and above are empty
    assert all(_table_rows(sections[title]) == shown for title in SIZE_TABLES[:2])
    assert _table_rows(sections["Failure taxonomy"]) == ["all", *shown]
    plots.metric_vs_size({"run": summary}, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    plots.taxonomy_bars({"run": summary}, tmp_path / "tax.png", SIZE_BUCKET_NAMES)
    size_fig, tax_fig = saved_figures
    for ax in size_fig.axes:
        assert _tick_names(ax) == shown
        assert ax.get_xlabel().endswith("small 0.5–1%, medium 1–2%")  # the edges of what is shown
    assert _tick_names(tax_fig.axes[0]) == [*shown, "all"] and "medium 1–2%" in tax_fig.axes[0].get_xlabel()


def test_the_readme_states_the_bucket_edges():
    text = re.sub(r"\s+", "", (REPO / "README.md").read_text())  # the README's lines wrap anywhere
    for name, (lower, upper) in size_bucket_edges().items():
        span = f"<{100 * upper:g}%" if lower == 0 else f"≥{100 * lower:g}%" if upper is None \
            else f"{100 * lower:g}–{100 * upper:g}%"
        assert f"`{name}`{span}" in text, name


def test_axes_name_the_unit_and_the_better_direction(tmp_path, saved_figures):
    assert axis_label("bg_psnr") == "bg PSNR (dB) ↑" and axis_label("bg_mse") == "bg MSE ([0,1] scale) ↓"
    assert axis_label("fid_crop").startswith("FID") and axis_label("kid_full").startswith("KID")
    for name, info in METRICS.items():
        assert axis_label(name).endswith("↑" if info.higher_is_better else "↓"), name
    assert axis_label("a_newer_metric") == "a_newer_metric"  # a summary of another version still plots
    summary = _bucketed({"bg_psnr": {"small": _group(30.0, 3)}, "clip_score_local": {"small": _group(25.0, 3)}})
    summary["metrics"]["distances"] = {"fid_crop": {"value": 12.0}, "kid_crop": {"value": 0.01}}
    plots.metric_vs_size({"a": summary}, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    plots.metric_bars({"a": summary, "b": summary}, tmp_path / "bars.png")
    panels = [ax for fig in saved_figures for ax in fig.axes if ax.get_title()]
    assert {ax.get_title() for ax in panels} == {"bg_psnr", "clip_score_local", "fid_crop", "kid_crop"}
    assert all(ax.get_ylabel() == axis_label(ax.get_title()) for ax in panels)


def _group(mean, n, **extra):
    spread = 0.0 if isinstance(mean, str) else 1.0
    return {"mean": mean, "lo": mean if spread == 0 else mean - spread, "hi": mean if spread == 0 else mean + spread,
            "n": n, **extra}


def _bucketed(by_size: dict) -> dict:
    return {"metrics": {"means": {m: {} for m in by_size}, "by_size_bucket": by_size}, "taxonomy": {}}


def test_a_comparisons_size_plot_keeps_its_notes_off_the_lines_and_says_n(tmp_path, saved_figures):
    touched = _bucketed({"bg_psnr": {"tiny": _group(30.0, 4), "small": _group(32.0, 5), "large": _group(33.0, 2)}})
    untouched = _bucketed({"bg_psnr": {"tiny": _group("inf", 3, n_inf=3), "small": _group("inf", 5, n_inf=5)}})
    plots.metric_vs_size({"telea": touched, "oracle": untouched}, tmp_path / "cmp.png", SIZE_BUCKET_NAMES)
    (fig,) = saved_figures
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tiny\nn=4/3", "small\nn=5", "large\nn=2/0"]
    assert "samples of each run, in this order" in fig.legends[0].get_title().get_text()
    (note,) = [t for t in ax.texts if t.get_text().startswith("inf in every size bucket")]
    FigureCanvasAgg(fig).draw()  # pyplot's canvas went with plt.close: lay it out again as it was saved
    renderer = fig.canvas.get_renderer()
    box, panel = note.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.y1 <= panel.y0  # below the axes, not over telea's line
    assert box.y0 >= 0 and box.y1 <= fig.bbox.y1  # and on the figure, not cut off
