"""Compare several runs side by side: one table (metric x run) and plots.

Runs evaluated on different manifests (sha256) or prompt keys are still compared, but the table
says so: their numbers are not measured on the same samples.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soebench.errors import InputError
from soebench.fileio import check_output_file, read_json_object, refuse_existing, write_text_atomic
from soebench.run.report import (distance_notes, fmt, fmt_ci_marked, fmt_pct, footnote_lines, interval_notes, marked,
                                 render_html)
from soebench.run.results import json_safe


# what the comparison (table and plots) reads without a default; evaluate always writes them
REQUIRED_KEYS = ("metrics.means", "metrics.by_size_bucket", "manifest.num_samples", "manifest.sha256",
                 "prompt_key", "errors.count", "taxonomy")


def load_summary(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "summary.json"
    if not Path(run_dir).exists():
        raise InputError(f"run folder {run_dir} does not exist", hint="give the --out folder of a soebench evaluate run")
    if not path.is_file():
        raise InputError(f"{run_dir} is not a finished soebench run (no summary.json)",
                         hint="run soebench evaluate --out RUN first (or --resume an interrupted one)")
    summary = read_json_object(path, what="a soebench summary (a JSON object)")
    if missing := missing_keys(summary):
        raise InputError(f"{path} is not a soebench summary: missing key(s) {', '.join(missing)}")
    return summary


def missing_keys(summary: dict[str, Any], required: Sequence[str] = REQUIRED_KEYS) -> list[str]:
    """The dotted keys of ``required`` that ``summary`` lacks. Of a missing parent only the parent
    is named (``{}`` gives ``metrics, manifest, ...``, not each key below them)."""
    missing: list[str] = []
    for key in required:
        node: Any = summary
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict):
                missing.append(f"{'.'.join(parts[:i])} (not an object)")
                break
            if part not in node:
                missing.append(".".join(parts[:i + 1]))
                break
            node = node[part]
    return list(dict.fromkeys(missing))


def refuse_repeated_runs(runs: Sequence[Path]) -> None:
    """Refuse a run folder given twice, also under two spellings (``./run/``, an absolute path, a
    symlink): its column would sit beside itself as if two models agreed, and its warnings and
    plots would count it twice."""
    seen: dict[Path, Path] = {}
    for run in runs:
        folder = Path(run).resolve()
        if folder in seen:
            spelled = str(run) if str(seen[folder]) == str(run) else f"{seen[folder]} and {run}"
            raise InputError(f"the same run folder {folder} is given twice ({spelled})",
                             hint="give each run folder once")
        seen[folder] = Path(run)


def split_runs(header: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, wrap: int = 22) -> list[range]:
    """The runs (indices into ``header[1:]``) of each terminal table when one table of every run
    is wider than ``width`` characters: consecutive runs, as many as fit beside the metric column
    (repeated in every table), at least one. A run's column is reckoned at its longest cell
    wrapped to ``wrap`` characters, never narrower than its longest word (the run's name among
    them): rich then wraps cells at spaces and cuts none short with an ellipsis."""
    def column(i: int) -> int:
        cells = [header[i], *(row[i] for row in rows)]
        longest_word = max((len(word) for cell in cells for word in cell.split()), default=0)
        longest_line = max((len(line) for cell in cells for line in cell.splitlines()), default=0)
        return max(longest_word, min(longest_line, wrap)) + 3  # padding on both sides and a border

    first = max((len(row[0]) for row in rows), default=0)
    free = width - 1 - (max(first, len(header[0])) + 3)  # the outer border and the metric column
    groups: list[range] = []
    start, used = 0, 0
    for i in range(1, len(header)):
        need = column(i)
        if used and used + need > free:
            groups.append(range(start, i - 1))
            start, used = i - 1, 0
        used += need
    groups.append(range(start, len(header) - 1))
    return groups


def _names(runs: Sequence[Path], summaries: Sequence[dict[str, Any]]) -> list[str]:
    names = [s.get("run_name") or Path(r).name for r, s in zip(runs, summaries)]
    if len(set(names)) != len(names):
        names = [f"{n} ({i + 1})" for i, n in enumerate(names)]
    return names


def comparison_values(summaries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{row: {run: value}}``: the numbers behind the table, for machines (``compare --json``):
    metric means as their bootstrap dicts (mean, lo, hi, n, n_nan, n_inf), FID/KID values,
    taxonomy fractions, sample and error counts; ``None`` where a run lacks the row. Non-finite
    numbers follow summary.json (NaN as null, inf as ``"inf"``) so the output stays standard JSON."""
    names = list(summaries)

    def row(get) -> dict[str, Any]:
        return {n: json_safe(get(summaries[n])) for n in names}

    metrics = list(dict.fromkeys(m for s in summaries.values() for m in s["metrics"].get("means", {})))
    distances = list(dict.fromkeys(d for s in summaries.values() for d in s["metrics"].get("distances", {})))
    labels = list(dict.fromkeys(k for s in summaries.values() for k in s.get("taxonomy", {}).get("fractions", {})))
    values = {m: row(lambda s, m=m: _with_n_inf(s["metrics"].get("means", {}).get(m))) for m in metrics}
    values |= {d: row(lambda s, d=d: s["metrics"].get("distances", {}).get(d, {}).get("value")) for d in distances}
    values |= {f"taxonomy: {lab}": row(lambda s, lab=lab: s.get("taxonomy", {}).get("fractions", {}).get(lab))
               for lab in labels}
    values["samples"] = row(lambda s: s["manifest"]["num_samples"])
    values["errors"] = row(lambda s: s["errors"]["count"])
    return values


def _with_n_inf(mean: dict[str, Any] | None) -> dict[str, Any] | None:
    # summary.json writes n_inf only when there are infinities; a consumer should not need to know
    return None if mean is None else {**mean, "n_inf": mean.get("n_inf", 0)}


def _cell(row: str, value: Any, summary: dict[str, Any]) -> str:
    """The table's text of one value of :func:`comparison_values`: taxonomy rates as percentages
    (as evaluate prints them), a FID/KID value with the marks of its footnotes
    (:func:`comparison_notes`)."""
    if row.startswith("taxonomy: "):
        return fmt_pct(value)
    if isinstance(value, dict):
        return fmt_ci_marked(value)
    distance = summary["metrics"].get("distances", {}).get(row)
    return marked(fmt(value), distance_notes(row, distance)) if distance is not None else fmt(value)


def comparison_notes(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """The footnotes of the table's marked FID/KID cells, the caveats report.md writes beside
    those values: a FID on fewer samples than feature dimensions, a negative KID."""
    rows = list(dict.fromkeys(d for s in summaries.values() for d in s["metrics"].get("distances", {})))
    means = [d for s in summaries.values() for d in s["metrics"].get("means", {}).values()]
    return footnote_lines([note for row in rows for s in summaries.values()
                           for note in distance_notes(row, s["metrics"].get("distances", {}).get(row))]) + interval_notes(means)


def comparison_table(summaries: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """``(header, rows, warnings)``: per-sample metric means with intervals, FID/KID, taxonomy
    fractions and error counts, one column per run, formatted for people (the numbers are
    :func:`comparison_values`)."""
    names = list(summaries)
    rows = [[label] + [_cell(label, by_run[n], summaries[n]) for n in names]
            for label, by_run in comparison_values(summaries).items()]
    warnings = []
    shas = {summaries[n]["manifest"]["sha256"] for n in names}
    if len(shas) > 1:
        warnings.append("runs were evaluated on different manifests (sha256 differs): numbers are not paired")
    prompts = {summaries[n]["prompt_key"] for n in names}
    if len(prompts) > 1:
        warnings.append(f"runs used different prompt keys: {', '.join(sorted(prompts))}")
    counts = {n: summaries[n]["manifest"]["num_samples"] for n in names}
    if len(set(counts.values())) > 1:
        warnings.append(f"runs cover different numbers of samples ({', '.join(f'{n}: {c}' for n, c in counts.items())})")
    warnings += sample_set_warnings(summaries)
    warnings += setup_warnings(summaries)
    return ["metric"] + names, rows, warnings


def sample_set_warnings(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Runs whose means stand on different samples: failed samples drop out of every mean and of
    FID/KID (a model that fails on the hard ones looks better for it), and the PSNR mean leaves
    out untouched backgrounds (infinite PSNR)."""
    warnings = []
    errors = {name: int(s["errors"]["count"]) for name, s in summaries.items()}
    if len(set(errors.values())) > 1:
        shown = ", ".join(f"{name}: {n} of {summaries[name]['manifest']['num_samples']}" for name, n in errors.items())
        warnings.append(f"runs failed on different numbers of samples ({shown}): every mean, FID/KID and taxonomy "
                        "rate is over a run's own successful samples, so the runs are not scored on the same set")
    # a run with a bg_psnr mean and no infinity has no n_inf key: it left out 0, which differs from 4
    n_inf = {name: (_with_n_inf(s["metrics"]["means"].get("bg_psnr")) or {}).get("n_inf") for name, s in summaries.items()}
    if len({v for v in n_inf.values() if v is not None}) > 1:
        shown = ", ".join(f"{name}: {v}" for name, v in n_inf.items() if v is not None)
        warnings.append(f"bg_psnr means leave out different numbers of untouched backgrounds (infinite PSNR: {shown}); "
                        "compare bg_mse and bg_ssim, which count every sample")
    return warnings


def metric_setup(summary: dict[str, Any]) -> dict[str, str]:
    """What each score family was measured with, as comparable text: the FID Inception (file
    sha256, else its path), the CLIP model (architecture, pretrained tag, checkpoint sha256 or path)
    and the preprocessing modes. A family the run did not score is absent."""
    metrics = summary.get("metrics", {})
    setup: dict[str, str] = {}
    inception = metrics.get("inception")
    if isinstance(inception, dict) and metrics.get("distances"):
        setup["FID/KID Inception"] = inception.get("sha256") or str(inception.get("path"))
    clip = metrics.get("clip")
    if isinstance(clip, dict):
        weights = clip.get("sha256") or clip.get("checkpoint") or clip.get("pretrained")
        setup["CLIP model"] = f"{clip.get('resolved_model') or clip.get('model')} ({weights})"
    taxonomy = metrics.get("taxonomy")
    if isinstance(taxonomy, dict):  # runs before 0.2 recorded only the classifier's name
        rules = hashlib.sha256(json.dumps(taxonomy.get("rules"), sort_keys=True).encode()).hexdigest()[:12]
        judge = (taxonomy.get("judge") or {}).get("source") or {}
        judged = f", judge CLIP {judge.get('sha256') or judge.get('checkpoint') or judge.get('pretrained')}" if judge else ""
        setup["taxonomy rules"] = (f"{taxonomy.get('tier')} v{taxonomy.get('version')}, rules {rules}, "
                                   f"colour {'checked' if taxonomy.get('colour_checked') else 'not checked'}{judged}")
    modes = metrics.get("modes", {})
    for key in ("fid_resize", "clip_preprocess", "bg_dilation_radius_at_512"):
        if key in modes:
            setup[f"mode {key}"] = str(modes[key])
    return setup


def setup_warnings(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """One warning per score family that the runs measured with different networks or modes:
    those numbers differ by the measuring, not only by the model."""
    setups = {name: metric_setup(s) for name, s in summaries.items()}
    warnings = []
    for family in dict.fromkeys(k for setup in setups.values() for k in setup):
        seen = {name: setup[family] for name, setup in setups.items() if family in setup}
        if len(set(seen.values())) > 1:
            groups: dict[str, list[str]] = {}
            for name, value in seen.items():
                groups.setdefault(value, []).append(name)
            shown = "; ".join(f"{', '.join(runs)}: {_short(value)}" for value, runs in groups.items())
            warnings.append(f"runs were scored with different {family} ({shown}): those scores are not comparable")
    return warnings


def _short(value: str) -> str:
    # a sha256 is recognisable by its first 12 hex digits
    import re

    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1...", value)


def compare_runs(runs: Sequence[str | Path], out: str | Path | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Load the runs' summaries; with ``out``, write ``compare.md``, ``compare.html`` and plots there.
    Returns ``{"header", "rows", "notes", "values", "warnings", "files"}``: ``rows`` are the table's
    text and ``notes`` its footnotes, ``values`` the same cells as numbers (:func:`comparison_values`,
    what ``--json`` is read for)."""
    if len(runs) < 1:
        raise InputError("compare needs at least one run folder")
    refuse_repeated_runs([Path(r) for r in runs])
    loaded = [load_summary(Path(r)) for r in runs]
    summaries = dict(zip(_names([Path(r) for r in runs], loaded), loaded))
    header, rows, warnings = comparison_table(summaries)
    notes = comparison_notes(summaries)
    files: list[Path] = []
    if out is not None:
        files = _write(Path(out), summaries, header, rows, warnings, overwrite, notes)
    return {"header": header, "rows": rows, "notes": notes, "values": comparison_values(summaries),
            "warnings": warnings, "files": files}


def _write(out: Path, summaries, header, rows, warnings, overwrite: bool, notes: Sequence[str] = ()) -> list[Path]:
    from soebench.metrics import SIZE_BUCKET_NAMES
    from soebench.run import plots
    from soebench.run.report import _md_table, md_notes

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; a comparison is written into a folder")
    refuse_run_folder(out)
    check_output_file(out / "compare.md", what="comparison")
    refuse_existing(out / "compare.md", overwrite, what="comparison")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    figures = {}
    for title, fn, args in (
        ("Metrics", plots.metric_bars, ()),
        ("Metrics by object size", plots.metric_vs_size, (SIZE_BUCKET_NAMES,)),
        ("Failure taxonomy", plots.taxonomy_bars, (SIZE_BUCKET_NAMES,)),
    ):
        name = title.lower().replace(" ", "_") + ".png"
        if p := fn(summaries, out / "plots" / name, *args):
            figures[title] = p.relative_to(out).as_posix()
    md = ["# SOEBench comparison", ""] + [f"> warning: {w}" for w in warnings] + ["", _md_table(header, rows), ""]
    md += md_notes(list(notes))
    md += [f"## {t}\n\n![{t}]({p})\n" for t, p in figures.items()]
    write_text_atomic(out / "compare.md", "\n".join(md))
    info = [("runs", ", ".join(summaries))] + [("warning", w) for w in warnings]
    write_text_atomic(out / "compare.html", render_html("SOEBench comparison", info, [("Metrics", header, rows, notes)], figures))
    return [out / "compare.md", out / "compare.html", *(out / p for p in figures.values())]


#: the files that make a folder a soebench run: run.json is written first by every run, and a
#: folder with summary.json is what compare itself reads as a run
RUN_MARKERS = ("run.json", "summary.json")


def refuse_run_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a run folder, even with ``--overwrite`` (which replaces an old
    comparison, not a run's files): compare.md/html would land among the run's files and the
    comparison's PNGs in the run's own plots/ folder."""
    for marker in RUN_MARKERS:
        if (out / marker).is_file():
            raise InputError(f"--out {out} is a soebench run folder (it holds {marker}); a comparison is not "
                             "written into a run", hint="give --out a folder of its own, e.g. --out compare-runs")
