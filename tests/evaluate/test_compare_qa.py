"""``soebench compare`` with many runs, the same run twice, an ``--out`` inside a run, and runs
that scored nothing: readable plots and terminal tables, refusals that name the folder, and
empty axes that say why they are empty."""

from __future__ import annotations

import math
import os
import re

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.metrics import SIZE_BUCKET_NAMES
from soebench.run import plots
from soebench.run.compare import compare_runs, split_runs
from soebench.run.results import write_json

BUCKETS = ("tiny", "small", "medium", "large")


def _ci(mean, n, **extra):
    spread = 0.0 if isinstance(mean, str) or mean is None else 0.1 * abs(mean) + 0.01
    lo, hi = (mean, mean) if spread == 0 else (mean - spread, mean + spread)
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "n_nan": 0, "level": 0.95, "n_resamples": 1000, **extra}


def _summary(k: int, *, failed: bool = False, untouched: bool = False, samples: int = 12) -> dict:
    """A summary as evaluate writes it; run ``k`` gets its own bucket counts (so the n's differ)."""
    counts = {b: 1 + (k + i) % 4 for i, b in enumerate(BUCKETS)}
    if failed:
        means = {m: _ci(None, 0) for m in ("bg_psnr", "bg_ssim", "bg_mse")}
        by_size = {m: {} for m in means}
        taxonomy = {"available": False, "counts": {}, "fractions": {}, "by_size_bucket": {}}
    else:
        psnr = {b: _ci("inf", n, n_inf=n) if untouched else _ci(30.0 + k + i, n) for i, (b, n) in enumerate(counts.items())}
        by_size = {"bg_psnr": psnr,
                   "bg_ssim": {b: _ci(0.9 - 0.01 * k, n) for b, n in counts.items()},
                   "bg_mse": {b: _ci(0.001 * (k + 1), n) for b, n in counts.items()}}
        means = {m: _ci(next(iter(g.values()))["mean"], sum(counts.values())) for m, g in by_size.items()}
        tax = {"ok": k % 3, "missing": 2, "mismatch": 1, "distortion": samples - 3 - k % 3}
        taxonomy = {"available": True, "counts": tax, "fractions": {a: v / samples for a, v in tax.items()},
                    "by_size_bucket": {}}
    return {"run_name": None, "prompt_key": "color_label", "manifest": {"sha256": "ab" * 32, "num_samples": samples},
            "metrics": {"means": means, "by_size_bucket": by_size, "distances": {}},
            "taxonomy": taxonomy, "errors": {"count": samples if failed else 0, "examples": []}}


def _runs(n: int, *, failed: int | None = None, untouched: tuple[int, ...] = ()) -> dict[str, dict]:
    names = [f"inpainter-number-{k:02d}" for k in range(n)]
    return {name: _summary(k, failed=k == failed, untouched=k in untouched) for k, name in enumerate(names)}


def _write_runs(root, summaries: dict[str, dict]) -> list:
    folders = []
    for name, summary in summaries.items():
        folder = root / name
        folder.mkdir()
        write_json(folder / "summary.json", summary)
        write_json(folder / "run.json", {"config": {}})
        folders.append(folder)
    return folders


def _drawn(fig):
    FigureCanvasAgg(fig).draw()  # pyplot's canvas went with plt.close: lay it out again as it was saved
    return fig.canvas.get_renderer()


# -- finding 1: many runs ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [14, 25])
def test_every_run_has_its_own_style(n):
    styles = [plots.run_style(k, n) for k in range(n)]
    assert len({(s["color"], s["marker"], s["linestyle"]) for s in styles}) == n
    assert len({s["color"] for s in styles}) == min(n, 20)  # tab20: up to 20 colours, then markers
    assert plots.run_style(3, 4)["color"] == "C3"  # few runs keep matplotlib's first colours


def test_a_size_plot_of_many_runs_keeps_its_panels_and_tells_the_runs_apart(tmp_path, saved_figures):
    runs = _runs(14, untouched=tuple(range(9)))  # nine runs infinite in every bucket: a long note
    plots.metric_vs_size(runs, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    (fig,) = saved_figures
    renderer = _drawn(fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    for ax in panels:  # not squeezed to slivers by the tick labels or the note
        box = ax.get_window_extent(renderer)
        assert box.width >= 2.5 * fig.dpi and box.height >= 1.8 * fig.dpi, ax.get_title()
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert [t.split("\n")[0] for t in labels] == list(BUCKETS)
        assert all(len(line) <= 12 for t in labels for line in t.split("\n")), labels
    # the spread of a bucket's n over the runs, and the legend says what it is
    assert [t.get_text() for t in panels[1].get_xticklabels()][0] == "tiny\nn=1–4"
    assert "fewest–most" in fig.legends[0].get_title().get_text()
    # one entry per run, no two alike
    handles = fig.legends[0].legend_handles
    assert len(handles) == 14
    assert len({(h.get_color(), h.get_marker(), h.get_linestyle()) for h in handles}) == 14
    (note,) = [t for t in panels[0].texts if t.get_text().startswith("inf in every size bucket")]
    assert all(len(line) <= 60 for line in note.get_text().splitlines())  # wrapped
    assert "inpainter-number-08" in note.get_text()
    box = note.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1 and box.y0 >= 0  # whole, not cut off


def test_a_metric_only_some_of_many_runs_scored_gives_the_range_of_those(tmp_path, saved_figures):
    runs = _runs(14)
    for k, summary in enumerate(list(runs.values())[:2]):  # only two runs scored CLIP
        summary["metrics"]["by_size_bucket"]["clip_score_local"] = {"tiny": _ci(20.0, 3 + k)}
    plots.metric_vs_size(runs, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    (fig,) = saved_figures
    (ax,) = [ax for ax in fig.axes if ax.get_title() == "clip_score_local"]
    # not n=3/4, which the legend would read as the first two runs', nor n=0–4 from runs without CLIP
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "tiny\nn=3–4"


def test_a_few_runs_keep_one_n_per_run_under_a_bucket(tmp_path, saved_figures):
    plots.metric_vs_size(_runs(3), tmp_path / "size.png", SIZE_BUCKET_NAMES)
    (fig,) = saved_figures
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][0] == "tiny\nn=1/2/3"
    assert "in this order" in fig.legends[0].get_title().get_text()


def test_bar_panels_grow_with_the_runs(tmp_path, saved_figures):
    runs = _runs(14)
    plots.metric_bars(runs, tmp_path / "bars.png")
    plots.taxonomy_bars(runs, tmp_path / "tax.png", SIZE_BUCKET_NAMES)
    bars, tax = saved_figures
    for fig in (bars, tax):
        renderer = _drawn(fig)
        for ax in (a for a in fig.axes if a.get_title()):
            assert ax.get_window_extent(renderer).width >= 0.3 * 14 * fig.dpi, ax.get_title()
            names = [t.get_text() for t in ax.get_xticklabels()]
            assert names == list(runs)


def test_a_terminal_too_narrow_for_every_run_gets_several_tables(tmp_path, monkeypatch, capsys):
    folders = _write_runs(tmp_path, _runs(14))
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["compare", *map(str, folders)]) == 0
    out = capsys.readouterr().out
    tables = [line.strip() for line in out.splitlines() if "SOEBench comparison" in line]
    assert len(tables) > 1 and re.fullmatch(r"SOEBench comparison \(runs 1–\d+ of 14\)", tables[0]), tables
    assert tables[-1].endswith("14 of 14)")
    table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= 80 for line in table_lines)
    assert "…" not in out  # no cell cut short
    for folder in folders:  # every run's column, each with its whole name
        assert folder.name in out
    assert out.count("┃ metric") == len(tables)  # the metric names repeat in every table


def test_split_runs_packs_what_fits():
    header = ["metric", "a", "b", "c"]
    rows = [["bg_psnr", "1 [0, 2] (n=3)", "10.5 [9, 12] (n=3)", "x" * 40]]
    assert split_runs(header, rows, width=200) == [range(0, 3)]
    assert split_runs(header, rows, width=50) == [range(0, 2), range(2, 3)]
    assert split_runs(header, rows, width=10) == [range(0, 1), range(1, 2), range(2, 3)]  # never none


# -- finding 2: the same run twice ---------------------------------------------------------------


def test_the_same_run_twice_is_refused(tmp_path, monkeypatch):
    (a, b) = _write_runs(tmp_path, _runs(2))
    monkeypatch.chdir(tmp_path)
    os.symlink(a, tmp_path / "link")
    for args in ([a, a], ["./inpainter-number-00/", str(a)], [a, b, "link"]):
        with pytest.raises(InputError) as err:
            compare_runs(args)
        assert f"the same run folder {a}" in err.value.message, args
    assert compare_runs([a, b])["header"] == ["metric", a.name, b.name]


def test_cli_refuses_the_same_run_twice(tmp_path, capsys):
    (a,) = _write_runs(tmp_path, _runs(1))
    assert main(["compare", str(a), str(a)]) == 2
    assert f"the same run folder {a}" in capsys.readouterr().err


# -- finding 3: --out inside a run ---------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_that_is_a_run_folder_is_refused(tmp_path, overwrite):
    a, b = _write_runs(tmp_path, _runs(2))
    before = sorted(p.name for p in a.rglob("*"))
    with pytest.raises(InputError, match=f"--out {a} is a soebench run folder"):
        compare_runs([a, b], a, overwrite=overwrite)
    assert sorted(p.name for p in a.rglob("*")) == before  # nothing written into the run
    written = compare_runs([a, b], tmp_path / "cmp")["files"]
    assert (tmp_path / "cmp" / "compare.md") in written


# -- finding 4: runs that scored nothing ---------------------------------------------------------


def test_an_all_failed_runs_size_plot_says_why_it_is_empty(tmp_path, saved_figures):
    plots.metric_vs_size({"allfail": _summary(0, failed=True)}, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    (fig,) = saved_figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    for ax in panels:
        assert [t.get_text() for t in ax.texts] == ["no scored samples"], ax.get_title()


def test_a_comparison_marks_the_run_that_scored_nothing(tmp_path, saved_figures):
    runs = _runs(3, failed=1)
    plots.metric_vs_size(runs, tmp_path / "size.png", SIZE_BUCKET_NAMES)
    plots.taxonomy_bars(runs, tmp_path / "tax.png", SIZE_BUCKET_NAMES)
    size, tax = saved_figures
    labels = [t.get_text() for t in size.legends[0].get_texts()]
    assert labels[1] == "inpainter-number-01 (no scored samples)" and labels[0] == "inpainter-number-00"
    (ax,) = tax.axes
    marks = [t for t in ax.texts if t.get_text().startswith("n/a")]
    assert len(marks) == 1 and "no scored samples" in marks[0].get_text()
    assert math.isclose(marks[0].xy[0], 1)  # at the failed run's slot


def test_a_run_without_untouched_backgrounds_against_one_with_them_is_warned_about():
    """summary.json leaves n_inf out when it is 0: the oracle (4 infinite PSNRs) against a model
    with none used to give no warning."""
    from soebench.run.compare import sample_set_warnings

    def summary(psnr):
        return {"errors": {"count": 0}, "manifest": {"num_samples": 4}, "metrics": {"means": {"bg_psnr": psnr}}}

    warnings = sample_set_warnings({"oracle": summary({"mean": None, "n": 0, "n_inf": 4}),
                                    "model": summary({"mean": 31.2, "n": 4})})
    assert any("untouched backgrounds (infinite PSNR: oracle: 4, model: 0)" in w for w in warnings)
    assert sample_set_warnings({"a": summary({"mean": 31.2, "n": 4}), "b": summary({"mean": 30.0, "n": 4})}) == []


def test_a_run_folder_that_does_not_exist_is_named_as_such(tmp_path):
    from soebench.errors import InputError
    from soebench.run.compare import load_summary

    with pytest.raises(InputError, match="run folder .*typo does not exist"):
        load_summary(tmp_path / "typo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is not a finished soebench run"):
        load_summary(tmp_path / "empty")
