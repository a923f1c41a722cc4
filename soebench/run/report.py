"""``report.md`` and ``report.html`` of a run: tables of the summary and its plots."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from soebench.fileio import write_text_atomic
from soebench.metrics.bootstrap import SMALL_SAMPLE_N, size_buckets_note

PLOTS = "plots"


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}g}"
    return str(value)


def fmt_ci(d: dict[str, Any] | None) -> str:
    """``mean [lo, hi] (n)``."""
    if not d:
        return "n/a"
    mean, lo, hi = d.get("mean"), d.get("lo"), d.get("hi")
    text = f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]" if lo != hi else fmt(mean)
    extra = f"n={d.get('n', 0)}"
    if d.get("n_inf"):
        extra += f", {d['n_inf']} inf"
    return f"{text} ({extra})"


def fmt_pct(fraction: Any) -> str:
    """A rate as the terminal, the report and the comparison all show it: ``75%``."""
    return "n/a" if not isinstance(fraction, (int, float)) or math.isnan(fraction) else f"{fraction:.0%}"


#: footnote marks for what a table cell has no room to say
CAVEAT_MARK = "*"
NEGATIVE_KID_MARK = "†"
NEGATIVE_KID_NOTE = (
    "KID < 0: KID is an unbiased estimate (of MMD²) that scatters around 0 for image sets that are alike, "
    "widely on few samples; read a negative value as no measurable difference"
)


SMALL_SAMPLE_MARK = "‡"
SMALL_SAMPLE_NOTE = (
    f"fewer than {SMALL_SAMPLE_N} values: the interval (none for one value) is a rough Student-t one; it assumes "
    "normal values and may reach past the metric's range (an SSIM above 1), but no bootstrap interval reaches "
    "95 % on so few; compare such cells with care"
)
#: how the report names an interval's ``method`` (summary.json); older summaries have none
INTERVAL_METHOD_NAMES = {
    "bca-expanded": f"expanded BCa bootstrap (from {SMALL_SAMPLE_N} values)",
    "student-t": f"Student t (below {SMALL_SAMPLE_N} values)",
    "percentile": "percentile bootstrap",
}


def small_sample(d: dict[str, Any] | None) -> bool:
    """Whether a mean stands on fewer than :data:`SMALL_SAMPLE_N` values, but some (its
    ``small_sample`` flag; summaries written before the flag have none and are not marked)."""
    return bool((d or {}).get("small_sample")) and bool((d or {}).get("n"))


def fmt_ci_marked(d: dict[str, Any] | None) -> str:
    """:func:`fmt_ci` with the small-sample mark when the interval stands on few values."""
    return f"{fmt_ci(d)} {SMALL_SAMPLE_MARK}" if small_sample(d) else fmt_ci(d)


def interval_notes(cells: list[dict[str, Any] | None]) -> list[str]:
    """The lines under a table of means: which interval methods its cells use, and the
    small-sample footnote when a cell carries its mark (that footnote names the t interval)."""
    small = any(small_sample(d) for d in cells)
    methods = [m for m in dict.fromkeys(d.get("method") for d in cells if d)
               if m in INTERVAL_METHOD_NAMES and not (small and m == "student-t")]
    notes = [f"95 % intervals of the mean: {', '.join(INTERVAL_METHOD_NAMES[m] for m in methods)}"] if methods else []
    return notes + (footnote_lines([(SMALL_SAMPLE_MARK, SMALL_SAMPLE_NOTE)]) if small else [])


def negative_kid(name: str, d: dict[str, Any] | None) -> bool:
    # the KID rows are kid_crop and kid_full; their value is a float, or "inf"/None in summary.json
    value = (d or {}).get("value")
    return name.startswith("kid") and isinstance(value, (int, float)) and value < 0


def distance_notes(name: str, d: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The footnotes ``(mark, text)`` one FID/KID result needs where only its value is shown (the
    terminal and comparison tables): why it is biased or missing (its ``reason``, e.g. fewer
    samples than feature dimensions), and why a KID is below zero."""
    notes = [(CAVEAT_MARK, d["reason"])] if d and d.get("reason") else []
    if negative_kid(name, d):
        notes.append((NEGATIVE_KID_MARK, NEGATIVE_KID_NOTE))
    return notes


def marked(text: str, notes: list[tuple[str, str]]) -> str:
    """``text`` followed by the marks of its footnotes."""
    marks = "".join(dict.fromkeys(mark for mark, _ in notes))
    return f"{text} {marks}" if marks else text


def footnote_lines(notes: list[tuple[str, str]]) -> list[str]:
    """One ``mark text`` line per distinct footnote, in the order the table first needs them."""
    return [f"{mark} {text}" for mark, text in dict.fromkeys(notes)]


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
    return "\n".join(out)


def summary_sections(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The report's tables as ``(title, header, rows, note lines)`` (shared by the Markdown and
    HTML writers): the notes define the size buckets, name the interval methods, and explain a
    negative KID or a mean from few values (``‡``) under the tables that show them."""
    m = summary["metrics"]
    sections = []
    rows = [[name, fmt_ci_marked(d)] for name, d in m.get("means", {}).items()]
    distances = m.get("distances", {})
    rows += [[name, f"{fmt(d.get('value'))}{_kid_mark(name, d)} (n={d.get('n_real')}/{d.get('n_fake')}, {d.get('mode')})"
              + (f" -- {d['reason']}" if d.get("reason") else "")] for name, d in distances.items()]
    sections.append(("Metrics (mean [95 % interval])", ["metric", "value"], rows,
                     interval_notes(list(m.get("means", {}).values())) + _kid_note(distances.items())))
    if m.get("skipped"):
        sections.append(("Metrics skipped", ["metric", "why"], [[k, v] for k, v in m["skipped"].items()], []))
    for key, title in (("by_size_bucket", "By object size"), ("by_category", "By category")):
        groups = m.get(key, {})
        names = list(groups)
        if not names:
            continue
        keys = list(dict.fromkeys(g for n in names for g in groups[n]))
        if not keys:
            continue
        sections.append((title, [key.removeprefix("by_")] + names,
                         [[g] + [fmt_ci_marked(groups[n].get(g)) for n in names] for g in keys],
                         ([size_buckets_note()] if key == "by_size_bucket" else [])
                         + interval_notes([groups[n].get(g) for n in names for g in keys])))
    by_size = m.get("distances_by_size_bucket", {})
    if by_size:
        names = list(by_size)
        buckets = list(dict.fromkeys(b for n in names for b in by_size[n]))
        sections.append(("FID/KID by object size (small groups: FID biased upward)", ["size_bucket"] + names,
                         [[b] + [f"{fmt(by_size[n].get(b, {}).get('value'))}{_kid_mark(n, by_size[n].get(b))}"
                                 f" (n={by_size[n].get(b, {}).get('n_real', 0)})" for n in names] for b in buckets],
                         [size_buckets_note()] + _kid_note((n, g) for n in names for g in by_size[n].values())))
    tax = summary.get("taxonomy", {})
    if tax.get("available"):
        labels = list(tax["counts"])
        rows = [["all"] + [f"{tax['counts'][lab]} ({fmt_pct(tax['fractions'][lab])})" for lab in labels]]
        rows += [[b] + [str(c.get(lab, 0)) for lab in labels] for b, c in tax["by_size_bucket"].items()]
        sections.append(("Failure taxonomy", ["size bucket"] + labels, rows,
                         [size_buckets_note(), _taxonomy_note(summary.get("metrics", {}).get("taxonomy"))]))
    errors = summary.get("errors", {})
    if errors.get("count"):
        sections.append((f"Errors ({errors['count']})", ["sample", "error"],
                         [[e["sample_id"], e["error"]] for e in errors.get("examples", [])], []))
    return sections


def _kid_mark(name: str, d: dict[str, Any] | None) -> str:
    # the report keeps a FID's reason in its cell; only a negative KID needs a footnote
    return f" {NEGATIVE_KID_MARK}" if negative_kid(name, d) else ""


def _kid_note(results) -> list[str]:
    """The negative-KID footnote, when any of the ``(name, result)`` pairs is a KID below 0."""
    return footnote_lines([(NEGATIVE_KID_MARK, NEGATIVE_KID_NOTE)]) if any(negative_kid(*r) for r in results) else []


def _header(summary: dict[str, Any]) -> list[tuple[str, str]]:
    man = summary["manifest"]
    return [
        ("model", f"{summary['model']['name']} {summary['model']['args'] or ''}".strip()),
        ("manifest", f"{man['path']} (sha256 {man['sha256'][:12]}..., {man['num_samples']} samples)"),
        ("prompt", summary["prompt_key"]),
        ("metric modes", ", ".join(f"{k}={v}" for k, v in summary["metrics"].get("modes", {}).items() if k != "bg_psnr_mean")),
        *_networks(summary["metrics"]),
        ("errors", str(summary["errors"]["count"])),
        ("git commit", f"{summary.get('git_commit')}" + (" (dirty)" if summary.get("git_dirty") else "")),
        ("created", summary.get("created", "")),
    ]


def _networks(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Header lines naming the feature networks the scores were measured with."""
    lines = []
    clip = metrics.get("clip")
    if isinstance(clip, dict):
        where = clip.get("checkpoint") or clip.get("pretrained") or ""
        sha = f", sha256 {clip['sha256'][:12]}..." if clip.get("sha256") else ""
        lines.append(("CLIP", f"{clip.get('resolved_model') or clip.get('model')} ({where}{sha})"))
    inception = metrics.get("inception")
    if isinstance(inception, dict) and metrics.get("distances"):
        sha = f", sha256 {inception['sha256'][:12]}..." if inception.get("sha256") else ""
        lines.append(("FID Inception", f"{inception.get('path')} ({inception.get('found_via')}{sha})"))
    return lines


def write_plots(run_dir: Path, summary: dict[str, Any], frame, manifest) -> dict[str, Path]:
    from soebench.metrics import METRICS, SIZE_BUCKET_NAMES
    from soebench.run import plots

    folder = run_dir / PLOTS
    folder.mkdir(parents=True, exist_ok=True)
    runs = {summary["run_name"]: summary}
    out = {}
    if p := plots.metric_vs_size(runs, folder / "metric_vs_size.png", SIZE_BUCKET_NAMES):
        out["Metrics by object size"] = p
    if p := plots.taxonomy_bars(runs, folder / "taxonomy.png", SIZE_BUCKET_NAMES):
        out["Failure taxonomy by object size"] = p
    if manifest is not None:
        key = worst_samples_metric(frame, summary["metrics"].get("means", {}))
        higher = METRICS[key].higher_is_better if key else True
        if p := plots.worst_samples(run_dir, frame, manifest, folder / "worst_samples.png", metric=key, higher_is_better=higher):
            out[f"Worst samples by {key}" if key else "Samples labelled as failures"] = p
    return out


def worst_samples_metric(frame, means: dict[str, Any]) -> str | None:
    """The score that ranks the worst-samples grid: the first of local CLIP-Score, background
    SSIM and PSNR that the run has and that differs between its samples (a baseline that leaves
    every background untouched has SSIM 1 everywhere, which ranks nothing); None when none does,
    and the grid shows the taxonomy's failures instead."""
    import numpy as np

    for key in ("clip_score_local", "bg_ssim", "bg_psnr"):
        if key in means and key in frame:
            values = frame.loc[frame["error"].isna(), key].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if values.size and values.min() != values.max():
                return key
    return None


def write_report(run_dir: Path, summary: dict[str, Any], frame, manifest=None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (with PNG plots under ``plots/``)."""
    run_dir = Path(run_dir)
    figures = write_plots(run_dir, summary, frame, manifest)
    title = f"SOEBench run {summary['run_name']}"
    sections = summary_sections(summary)
    md = [f"# {title}", ""] + [f"- **{k}**: {v}" for k, v in _header(summary)] + [""]
    for name, header, rows, notes in sections:
        md += [f"## {name}", "", _md_table(header, rows), ""] + md_notes(notes)
    for name, path in figures.items():
        md += [f"## {name}", "", f"![{name}]({path.relative_to(run_dir).as_posix()})", ""]
    md_path = run_dir / "report.md"
    write_text_atomic(md_path, "\n".join(md))
    html_path = run_dir / "report.html"
    write_text_atomic(html_path, render_html(title, _header(summary), sections,
                                             {n: p.relative_to(run_dir).as_posix() for n, p in figures.items()}))
    return md_path, html_path


def md_notes(lines: list[str]) -> list[str]:
    """Markdown of the lines under a table: one paragraph each (a leading ``*`` footnote mark
    escaped, else Markdown makes the line a list item)."""
    return [part for line in lines for part in ("\\" + line if line.startswith("*") else line, "")]


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}th{background:#f2f2f2}img{max-width:100%}
p.note{font-size:12px;color:#555;margin:-1em 0 1.5em}"""


def render_html(title: str, header: list[tuple[str, str]], sections, figures: dict[str, str]) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{e(title)}</h1><ul>"]
    parts += [f"<li><b>{e(k)}</b>: {e(str(v))}</li>" for k, v in header]
    parts.append("</ul>")
    for name, head, rows, notes in sections:  # notes: the lines under the table
        parts.append(f"<h2>{e(name)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
        parts += [f"<p class='note'>{e(line)}</p>" for line in notes]
    for name, rel in figures.items():
        parts.append(f"<h2>{e(name)}</h2><img src='{e(rel)}' alt='{e(name)}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _taxonomy_note(info: Any) -> str:
    """Which tier made the labels: the model tier's accuracy is the user's to measure."""
    if not isinstance(info, dict):
        return "labels: the weight-free tier"
    if info.get("tier") == "model":
        judge = (info.get("judge") or {}).get("judge", "a judge")
        return (f"labels: taxonomy v{info.get('version')}, weight-free tier with the model tier ({judge}); "
                "measure the model tier with `soebench validate-taxonomy --taxonomy-tier model`")
    return f"labels: taxonomy v{info.get('version')}, weight-free tier"
