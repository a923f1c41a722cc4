"""Matplotlib figures of a run (and of several runs side by side), saved as PNG.

- metric vs object size: the mean of each per-sample metric per size bucket with its 95 % interval;
- taxonomy bars: failure labels per size bucket (stacked fractions);
- worst samples: original / mask / output for the samples with the lowest score.
Runs are given as ``{run name: summary}`` so one function draws one run or a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FAILURE_COLOURS = {"ok": "#4c9a2a", "missing": "#c0392b", "mismatch": "#e67e22", "distortion": "#8e44ad", "error": "#555555"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, str):
        return math.inf if v == "inf" else (-math.inf if v == "-inf" else math.nan)
    return float(v)


def _scored(group: dict[str, Any]) -> int:
    """Samples scored in one bucket. A finite mean is over the finite values (``n``) and the
    infinities are counted apart (``n_inf``, bg_psnr of untouched backgrounds); an infinite
    mean already counts them in ``n``."""
    n = int(group.get("n", 0) or 0)
    return n + int(group.get("n_inf", 0) or 0) if math.isfinite(_num(group.get("mean"))) else n


def occupied_buckets(runs: Mapping[str, dict[str, Any]], buckets: Sequence[str]) -> list[str]:
    """The ``buckets`` that hold scored samples in any run, in their order: an empty bucket is left
    out of the size plot as the report's size tables leave it out (its edges are in the axis label
    and the report's bucket note), rather than shown as an empty column."""
    seen = {b for s in runs.values() for groups in s["metrics"].get("by_size_bucket", {}).values() for b in groups}
    return [b for b in buckets if b in seen]


def size_axis_label(buckets: Sequence[str]) -> str:
    """The x label of a by-size plot: what the buckets cut, and the edges of those shown."""
    from soebench.metrics.bootstrap import SIZE_BUCKET_NAMES, size_bucket_range

    ranges = ", ".join(f"{b} {size_bucket_range(b)}" for b in buckets if b in SIZE_BUCKET_NAMES)
    return "object size = mask area / image area" + (f"\n{ranges}" if ranges else "")


#: runs whose bucket counts are spelled one by one under a bucket (n=4/3/5); more get the range
SPELLED_COUNTS = 4
#: no colour repeats within 20 runs (tab20, dark halves first); beyond, markers and line styles
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
RUN_LINESTYLES = ("-", "--", ":", "-.")
NO_SCORES = "no scored samples"


def run_style(k: int, n: int) -> dict[str, str]:
    """Colour, marker and line style of run ``k`` of ``n``, the same in every panel: matplotlib's
    ten colours for up to ten runs; tab20 for more, its light half with another marker and line
    (a pale blue beside its dark twin needs more than the colour), markers and lines again beyond
    20 runs, so no two runs look alike up to 80."""
    if n <= 10:
        return {"color": f"C{k}", "marker": "o", "linestyle": "-"}
    import matplotlib
    from matplotlib.colors import to_hex

    colours = matplotlib.colormaps["tab20"].colors
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # the dark ones (tab10's) first, then the light ones
    variant = 2 * (k // 20) + (k % 20) // 10
    return {"color": to_hex(colours[order[k % 20]]), "marker": RUN_MARKERS[variant % len(RUN_MARKERS)],
            "linestyle": RUN_LINESTYLES[variant % len(RUN_LINESTYLES)]}


def _bucket_counts(counts: Sequence[int], *, spelled: bool = True) -> str:
    """A bucket's n under its tick: one number when the runs agree; else one per run, in the
    legend's order, for a few runs (``spelled``), and the fewest–most for more (a row of 14
    numbers is not read)."""
    if len(set(counts)) <= 1:
        return f"n={counts[0] if counts else 0}"
    if spelled:
        return "n=" + "/".join(map(str, counts))
    return f"n={min(counts)}–{max(counts)}"


def _note_infinite(ax, note: str, *, lines_drawn: bool) -> bool:
    """Say that a run is infinite in every bucket (a line cannot show it): in the middle of an
    otherwise empty panel, else below the axis label, where it cannot cover the other runs' lines.
    True when it went below (the figure then needs the room)."""
    style = {"ha": "center", "fontsize": 9, "color": "#aa3333"}
    if not lines_drawn:
        ax.text(0.5, 0.5, note, transform=ax.transAxes, va="center", **style)
        return False
    # anchored to the x label's bottom edge, so it sits below the tick labels whatever their height
    ax.annotate(note, (0.5, 0.0), xycoords=ax.xaxis.label, xytext=(0, -3), textcoords="offset points", va="top",
                **style)
    return True


def _infinite_note(metric: str, infinite: Sequence[str], n_runs: int, width: int) -> str:
    # wrapped to the panel: one long line would stick out of the figure and squeeze every panel
    import textwrap

    note = "inf in every size bucket"
    if n_runs > 1:
        note += ":\n" + textwrap.fill(", ".join(infinite), width, break_on_hyphens=False)
    return note + ("\n(background left untouched)" if metric == "bg_psnr" else "")


def _metric_order(runs: Mapping[str, dict[str, Any]]) -> list[str]:
    # the order of the first run's table; metrics only other runs have, after it
    first = list(next(iter(runs.values()))["metrics"].get("means", {}))
    return sorted({m for s in runs.values() for m in s["metrics"].get("by_size_bucket", {})},
                  key=lambda m: first.index(m) if m in first else 99)


def _size_line(ax, groups: dict[str, Any], buckets: Sequence[str], x, offset: float, name: str, style, size) -> str:
    """One run's line in a size panel: ``"line"`` when drawn, ``"inf"`` when every bucket mean is
    +-inf (bg_psnr of an untouched background), ``""`` when the run scored nothing there."""
    mean = np.array([_num(groups.get(b, {}).get("mean")) for b in buckets])
    lo = np.array([_num(groups.get(b, {}).get("lo")) for b in buckets])
    hi = np.array([_num(groups.get(b, {}).get("hi")) for b in buckets])
    finite = np.isfinite(mean)
    if not finite.any():
        return "inf" if np.isinf(mean).any() else ""
    for i in np.flatnonzero(np.isinf(mean)):  # a bucket of untouched backgrounds only: say so at its place
        ax.annotate("inf", (x[i] + offset, 0.97), xycoords=ax.get_xaxis_transform(), ha="center", va="top",
                    fontsize=8, color=style["color"])
    with np.errstate(invalid="ignore"):  # inf - inf in a bucket of untouched backgrounds
        err = np.vstack([np.where(finite, mean - lo, 0), np.where(finite, hi - mean, 0)])
    err = np.nan_to_num(err, nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    ax.errorbar(x[finite] + offset, mean[finite], yerr=err[:, finite], label=name, capsize=size["capsize"],
                markersize=size["markersize"], **style)
    return "line"


def _size_counts(runs: Mapping[str, dict[str, Any]], metric: str, bucket: str) -> list[int]:
    """The samples each run scored in one bucket of ``metric``: every run for the spelled n=a/b
    (in the legend's order); for the fewest–most range only runs that scored the metric at all
    (a run without CLIP would pull every CLIP bucket's range down to 0)."""
    groups = [s["metrics"]["by_size_bucket"].get(metric, {}) for s in runs.values()]
    if len(groups) > SPELLED_COUNTS:
        groups = [g for g in groups if g] or groups
    return [_scored(g.get(bucket, {})) for g in groups]


def _legend(fig, runs: Mapping[str, dict[str, Any]], styles, scored: set[str], title: str | None) -> float:
    """A legend of every run above the panels, in as many columns as the width holds; a run that
    scored nothing is named so (else its entry matches no line). Returns its height in inches."""
    from matplotlib.lines import Line2D

    labels = [name if name in scored else f"{name} ({NO_SCORES})" for name in runs]
    entry = 0.7 + 0.065 * max(len(label) for label in labels)  # inches at fontsize 8
    ncol = max(1, min(len(runs), int(fig.get_figwidth() // entry)))
    handles = [Line2D([], [], label=label, **style) for label, style in zip(labels, styles)]
    fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=8, title_fontsize=8, title=title)
    return 0.25 + 0.2 * (math.ceil(len(runs) / ncol) + (title is not None))


def metric_vs_size(runs: Mapping[str, dict[str, Any]], path: Path, buckets: Sequence[str]) -> Path | None:
    """One panel per per-sample metric: mean and 95 % interval per size bucket, one line per run;
    only the buckets that hold samples (:func:`occupied_buckets`). The figure grows with the runs
    (wider panels, a legend of as many rows as it needs) rather than squeezing the panels."""
    from soebench.metrics.registry import axis_label

    buckets = occupied_buckets(runs, buckets)
    metrics = _metric_order(runs)
    if not metrics:
        return None
    plt = _pyplot()
    n = len(runs)
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    width = min(7.5, max(4.2, 0.9 + len(buckets) * (0.4 + 0.06 * n)))  # room for each run's point in a bucket
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.2 * rows), squeeze=False)
    x = np.arange(len(buckets))
    step = min(0.08, 0.6 / max(1, n - 1))  # the runs' points side by side within 0.6 of a bucket
    size = {"markersize": 6 if n <= 6 else 4, "capsize": 3 if n <= 6 else 2}
    styles = [run_style(k, n) for k in range(n)]
    counts_differ = False  # then a bucket's n is one number per run (or a range), which the legend explains
    scored: set[str] = set()
    note_lines = [0] * rows  # lines of the notes under each row of panels
    for i, (ax, metric) in enumerate(zip(axes.flat, metrics)):
        drawn = {name: _size_line(ax, s["metrics"]["by_size_bucket"].get(metric, {}), buckets, x,
                                  (k - (n - 1) / 2) * step, name, styles[k], size)
                 for k, (name, s) in enumerate(runs.items())}
        scored |= {name for name, what in drawn.items() if what}
        lines_drawn = "line" in drawn.values()
        if infinite := [name for name, what in drawn.items() if what == "inf"]:
            note = _infinite_note(metric, infinite, n, max(30, min(60, int(width * 11))))
            if _note_infinite(ax, note, lines_drawn=lines_drawn):
                note_lines[i // cols] = max(note_lines[i // cols], note.count("\n") + 1)
        elif not lines_drawn:  # an all-failed run: say why the panel is blank
            ax.text(0.5, 0.5, NO_SCORES, transform=ax.transAxes, ha="center", va="center", fontsize=9, color="#aa3333")
        ax.set_title(metric)
        ax.set_ylabel(axis_label(metric), fontsize=9)
        counts = [_size_counts(runs, metric, b) for b in buckets]
        counts_differ |= any(len(set(c)) > 1 for c in counts)
        ticks = [f"{b}\n{_bucket_counts(c, spelled=n <= SPELLED_COUNTS)}" for b, c in zip(buckets, counts)]
        ax.set_xticks(x, ticks, rotation=30 if any(len(line) > 9 for t in ticks for line in t.split("\n")) else 0)
        ax.set_xlabel(size_axis_label(buckets), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    # the notes under the axis labels take room the panels would otherwise lose
    fig.set_figheight(fig.get_figheight() + sum(0.2 + 0.16 * lines for lines in note_lines if lines))
    if n > 1:
        title = None
        if counts_differ:
            title = ("n=a/b under a bucket: samples of each run, in this order" if n <= SPELLED_COUNTS else
                     "n under a bucket: fewest–most samples of a run in it (each run's counts: its report.md)")
        legend_height = _legend(fig, runs, styles, scored, title)
        fig.set_figheight(fig.get_figheight() + legend_height)
        fig.tight_layout(rect=(0, 0, 1, 1 - legend_height / fig.get_figheight()))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _no_taxonomy(summary: dict[str, Any]) -> str:
    # why a run's taxonomy bar is empty: nothing was scored, or the taxonomy was not run
    errors, samples = summary.get("errors", {}).get("count"), summary.get("manifest", {}).get("num_samples")
    return NO_SCORES if errors is not None and samples is not None and errors >= samples else "no taxonomy"


def taxonomy_bars(runs: Mapping[str, dict[str, Any]], path: Path, buckets: Sequence[str]) -> Path | None:
    """Stacked fractions of failure labels; per size bucket for one run, per run for several (a
    run without labels gets an n/a that says why, not a blank slot)."""
    from soebench.run.results import FAILURE_LABELS

    if not any(s.get("taxonomy", {}).get("available") for s in runs.values()):
        return None
    if len(runs) == 1:
        tax = next(iter(runs.values()))["taxonomy"]
        groups = {b: tax["by_size_bucket"][b] for b in buckets if b in tax["by_size_bucket"]}
        groups["all"] = tax["counts"]
    else:
        groups = {name: s["taxonomy"].get("counts", {}) for name, s in runs.items()}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(groups) + 2), 3.4))
    names = list(groups)
    bottom = np.zeros(len(names))
    for label in FAILURE_LABELS:
        counts = np.array([groups[n].get(label, 0) for n in names], dtype=float)
        totals = np.array([max(1, sum(groups[n].values())) for n in names], dtype=float)
        frac = counts / totals
        ax.bar(names, frac, bottom=bottom, label=label, color=FAILURE_COLOURS[label])
        bottom += frac
    if len(runs) > 1:
        for i, name in enumerate(names):
            if not sum(groups[name].values()):
                ax.annotate(f"n/a ({_no_taxonomy(runs[name])})", (i, 0.5), ha="center", va="center", rotation=90,
                            fontsize=9, color="#aa3333")
    ax.set_ylabel("fraction of samples")
    if len(runs) == 1:  # the bars are size buckets: say what they cut
        ax.set_xlabel(size_axis_label([n for n in names if n != "all"]), fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_title("failure taxonomy")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    _name_ticks(ax, len(names))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _name_ticks(ax, n: int) -> None:
    # slanted names end under their bar (anchored at the right), smaller when there are many
    plt = _pyplot()
    plt.setp(ax.get_xticklabels(), rotation=30 if n <= 6 else 45, ha="right", rotation_mode="anchor",
             fontsize=10 if n <= 6 else 8)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    from soebench.image_io import rgb_array

    with Image.open(path) as img:
        return rgb_array(img)


def worst_samples(
    run_dir: Path, frame, manifest, path: Path, *, metric: str | None, higher_is_better: bool = True, n: int = 8
) -> Path | None:
    """Original / mask / output of the ``n`` samples worst on ``metric`` (errors excluded), worst
    first; ``metric=None``: the samples the taxonomy labelled as failures, by label."""
    from soebench.manifest.masks import decode_mask

    scored = frame[frame["error"].isna()]
    if metric is None:
        if "failure" not in scored:
            return None
        order = {label: i for i, label in enumerate(FAILURE_ORDER)}
        failed = scored[scored["failure"].fillna("ok") != "ok"]
        worst = failed.assign(_rank=failed["failure"].map(order).fillna(len(order))).sort_values("_rank", kind="stable")
    else:
        values = scored[metric].to_numpy(dtype=float)
        worst = scored[~np.isnan(values)].sort_values(metric, ascending=higher_is_better, kind="stable")
    worst = worst.head(n)
    if worst.empty:
        return None
    table = manifest.table
    ids = table.column("sample_id").to_pylist()
    where = {sid: i for i, sid in enumerate(ids)}
    plt = _pyplot()
    fig, axes = plt.subplots(len(worst), 3, figsize=(7.5, 2.4 * len(worst)), squeeze=False)
    for row_axes, (_, sample) in zip(axes, worst.iterrows()):
        rec = table.slice(where[sample["sample_id"]], 1).to_pylist()[0]
        original = _read_rgb(manifest.image_path(rec["image_path"]))
        output = _read_rgb(run_dir / sample["output_path"])
        mask = decode_mask(rec["mask_rle"])
        window = zoom_window(rec["bbox"], original.shape[1], original.shape[0])
        views = [v[window] for v in (original, mask, output)]
        for ax, img, title in zip(row_axes, views, ("original (zoomed)", "mask", "output")):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
        failure = sample.get("failure")
        score = f"{metric}={sample[metric]:.3g}" if metric is not None else ""
        row_axes[2].set_title("output: " + ", ".join(t for t in (score, failure) if t), fontsize=8)
        row_axes[0].set_ylabel(f"{sample['sample_id'][:10]}\n{sample['prompt']}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


#: the order failure labels are shown in when no score ranks the samples
FAILURE_ORDER = ("missing", "distortion", "mismatch")


def zoom_window(bbox, width: int, height: int, *, factor: float = 3.0, minimum: int = 64) -> tuple[slice, slice]:
    """A square window ``factor`` times the object's box (at least ``minimum`` px) around it, so a
    small object fills a good part of the figure panel. A box that is no box (NaN, missing) gives
    the whole image: the figure is drawn after the scoring, and must not fail a finished run."""
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):  # None, a wrong length, text
        return slice(0, height), slice(0, width)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return slice(0, height), slice(0, width)
    side = int(min(max(factor * max(w, h), minimum), width, height))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(min(max(cx - side / 2, 0), width - side))
    y0 = int(min(max(cy - side / 2, 0), height - side))
    return slice(y0, y0 + side), slice(x0, x0 + side)


def metric_bars(runs: Mapping[str, dict[str, Any]], path: Path) -> Path | None:
    """Per-sample metric means with 95 % intervals and FID/KID values, one bar per run."""
    from soebench.metrics.registry import axis_label

    metrics = list(dict.fromkeys(m for s in runs.values() for m in s["metrics"].get("means", {})))
    distances = sorted({d for s in runs.values() for d in s["metrics"].get("distances", {})})
    panels = metrics + distances
    if not panels:
        return None
    plt = _pyplot()
    names = list(runs)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    width = max(4.0, 0.8 + 0.36 * len(names))  # a bar's width of room for each run's name and n/a
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.0 * rows), squeeze=False)
    small = 9 if len(names) <= 6 else 7
    for ax, metric in zip(axes.flat, panels):
        if metric in metrics:
            vals = [runs[n]["metrics"]["means"].get(metric, {}) for n in names]
            mean = np.array([_num(v.get("mean")) for v in vals])
            lo = np.array([_num(v.get("lo")) for v in vals])
            hi = np.array([_num(v.get("hi")) for v in vals])
            with np.errstate(invalid="ignore"):
                err = np.nan_to_num(np.vstack([mean - lo, hi - mean]), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
        else:
            mean = np.array([_num(runs[n]["metrics"].get("distances", {}).get(metric, {}).get("value")) for n in names])
            err = None
        shown = np.nan_to_num(mean, nan=0.0, posinf=0.0, neginf=0.0)
        ax.bar(names, shown, yerr=err, capsize=3, color="#4878a8")
        for i, v in enumerate(mean):  # a value a bar cannot show is written out instead
            if not np.isfinite(v):
                # at the panel's foot: at y=0 it would sit on the title of a panel of negative KIDs
                ax.annotate("n/a" if np.isnan(v) else ("inf" if v > 0 else "-inf"), (i, 0.01),
                            xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=small,
                            color="#aa3333")
        ax.set_title(metric)
        ax.set_ylabel(axis_label(metric), fontsize=9)
        _name_ticks(ax, len(names))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
