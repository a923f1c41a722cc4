"""``soebench evaluate`` and ``soebench compare``: thin commands over :mod:`soebench.evaluation`
and :mod:`soebench.run.compare` (heavy libraries are imported inside the commands)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from soebench.cli.options import (
    ClipModel,
    ClipPretrained,
    ClipWeights,
    Device,
    JsonOut,
    Limit,
    ManifestPath,
    Overwrite,
    Resume,
    Seed,
)

ModelName = Annotated[
    str,
    typer.Option("--model", help="Adapter: diffusers, python, command, folder, original, opencv-telea, opencv-ns, mean-fill."),
]
ModelArgs = Annotated[
    str | None, typer.Option("--model-args", help="Adapter options k=v,k=v (e.g. path=DIR,steps=20,guidance=7.5,lora=DIR).")
]
PromptKey = Annotated[
    str, typer.Option("--prompt", help="Manifest prompt key: label, small_label, color_label, small_color_label.")
]
RunDir = Annotated[Path, typer.Option("--out", "-o", help="Run folder (images/, samples.parquet, summary.json, report).")]
Metrics = Annotated[
    str | None,
    typer.Option("--metrics", help="Comma-separated metrics (default: every metric whose weights are available)."),
]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Samples per adapter call and per metric batch.")]
InceptionWeights = Annotated[
    str | None, typer.Option("--inception-weights", help="TorchScript FID Inception file (default: search the usual places).")
]
ImagesRoot = Annotated[
    str | None, typer.Option("--images", help="Folder of the manifest's images, when the manifest was moved away from "
                                              "them (default: the images root it records).")
]
RunName = Annotated[
    str | None, typer.Option("--run-name", help="Name of the run in reports and FiftyOne (default: the --out folder's name).")
]
TaxonomyTier = Annotated[
    str,
    typer.Option("--taxonomy-tier", help="Failure taxonomy tier: auto (add the CLIP model tier when the run loads "
                 "CLIP for its CLIP-Scores), weight-free (the tier validated offline), model (always; needs CLIP weights)."),
]
NoReport = Annotated[bool, typer.Option("--no-report", help="Skip report.md/report.html and plots.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def evaluate_command(
    manifest: ManifestPath,
    out: RunDir,
    model: ModelName = "original",
    model_args: ModelArgs = None,
    images: ImagesRoot = None,
    prompt: PromptKey = "color_label",
    metrics: Metrics = None,
    limit: Limit = None,
    batch_size: BatchSize = 8,
    device: Device = "cpu",
    seed: Seed = 0,
    clip_model: ClipModel = "ViT-B-32",
    clip_pretrained: ClipPretrained = "openai",
    clip_weights: ClipWeights = None,
    inception_weights: InceptionWeights = None,
    taxonomy_tier: TaxonomyTier = "auto",
    overwrite: Overwrite = False,
    resume: Resume = False,
    run_name: RunName = None,
    no_report: NoReport = False,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Run an inpainter on a manifest and score it (CLIP-Score, background preservation, FID/KID,
    failure taxonomy), with resume and a report."""
    import json

    from soebench.evaluation import evaluate
    from soebench.run.results import json_safe

    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    # with --json, stdout is the summary alone: an adapter's print() goes to stderr
    quiet_stdout = contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext()
    try:
        with quiet_stdout:
            result = evaluate(
                manifest, model, out, model_args=model_args, prompt_key=prompt, metrics=chosen, limit=limit,
                batch_size=batch_size, device=device, seed=seed, clip_model=clip_model,
                clip_pretrained=clip_pretrained or None, clip_weights=clip_weights, inception_weights=inception_weights,
                overwrite=overwrite, resume=resume, report=not no_report, progress=not quiet and not json_out,
                run_name=run_name, taxonomy_tier=taxonomy_tier, images_root=images,
            )
    except KeyboardInterrupt as exc:
        typer.echo(f"interrupted: every finished output and scored batch is kept in {out}; "
                   "the same command with --resume continues from there", err=True)
        raise typer.Exit(getattr(exc, "exit_code", 130)) from None
    if result.summary is None:  # a rank other than 0 of a sharded run
        return
    if json_out:
        typer.echo(json.dumps(json_safe(result.summary), indent=2))
    else:
        _print_summary(result)
    _exit_if_nothing_scored(result.summary)


def _exit_if_nothing_scored(summary) -> None:
    """Every sample failed: the run folder holds no score, and a script or CI must notice (exit 1)."""
    from rich.console import Console
    from rich.markup import escape

    errors, total = summary["errors"]["count"], summary["manifest"]["num_samples"]
    if total and errors >= total:
        first = summary["errors"]["examples"][0]["error"] if summary["errors"]["examples"] else "see samples.parquet"
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/] every one of the {total} samples failed, e.g. {escape(first)}", highlight=False)
        raise typer.Exit(1)


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from rich.markup import escape

    from soebench.run.report import distance_notes, fmt, fmt_ci_marked, fmt_pct, footnote_lines, interval_notes, marked

    s = result.summary
    console = Console(soft_wrap=True)  # text lines whole in logs; tables still fit the width
    table = Table(title=f"{s['run_name']}: {s['model']['name']} on {s['manifest']['num_samples']} samples")
    table.add_column("metric")
    table.add_column("value")
    for name, d in s["metrics"]["means"].items():
        table.add_row(name, fmt_ci_marked(d))  # ‡: from fewer than 10 values, as report.md marks it
    notes = []  # the caveats report.md writes beside a FID/KID value, as footnotes of this table
    for name, d in s["metrics"]["distances"].items():
        cell_notes = distance_notes(name, d)
        notes += cell_notes
        table.add_row(name, marked(fmt(d.get("value")), cell_notes))
    if s["taxonomy"].get("available"):
        table.add_row("taxonomy", ", ".join(f"{k} {fmt_pct(v)}" for k, v in s["taxonomy"]["fractions"].items()))
    table.add_row("errors", f"{s['errors']['count']} of {s['manifest']['num_samples']}")
    console.print(table)
    for example in s["errors"]["examples"][:2]:  # the reason, not only a count (the rest: report.md)
        console.print(f"  [yellow]sample {example['sample_id']}[/]: {escape(str(example['error']))}",
                      highlight=False, soft_wrap=True)
    for line in footnote_lines(notes) + interval_notes(list(s["metrics"]["means"].values())):
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    for line in skipped_lines(s["metrics"].get("skipped", {})):
        console.print(line, highlight=False, soft_wrap=True)
    timing = s.get("timing", {})
    calls = timing.get("adapter_calls", result.adapter_calls)
    console.print(f"the adapter ran on {calls} samples, {timing.get('from_cache', result.from_cache)} came from the "
                  f"cache, {s['errors']['count']} failed; results in {result.run_dir}", highlight=False)


def skipped_lines(skipped: dict[str, str]) -> list[str]:
    """The terminal lines of metrics skipped for want of weights: the reason and, indented, how to
    provide the weights (the reason's ``Hint:``), once for metrics skipped for the same reason
    (both CLIP-Scores need the one CLIP model)."""
    from rich.markup import escape

    by_reason: dict[str, list[str]] = {}
    for name, why in skipped.items():
        by_reason.setdefault(why, []).append(name)
    lines = []
    for why, names in by_reason.items():
        first, *rest = why.splitlines() or [""]
        lines.append(f"[yellow]skipped {', '.join(names)}[/]: {escape(first)}")
        lines += [f"  {escape(_how_to(line))}" for line in rest if line.strip()]
    return lines


def _how_to(line: str) -> str:
    # SoebenchError's text puts its hint on a line of its own, as "Hint: ..."
    line = line.strip()
    return "how to provide the weights: " + line.removeprefix("Hint:").strip() if line.startswith("Hint:") else line


def compare_command(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by soebench evaluate.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write compare.md/.html and plots here.")] = None,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Compare runs side by side: metric means with 95 % intervals, FID/KID, taxonomy, errors."""
    import json

    from rich.console import Console
    from rich.table import Table

    from soebench.run.compare import compare_runs, split_runs

    result = compare_runs(runs, out, overwrite=overwrite)
    if json_out:
        # numbers for machines; the formatted table rows are for people
        typer.echo(json.dumps({"runs": result["header"][1:], "values": result["values"], "warnings": result["warnings"],
                               "files": [str(f) for f in result["files"]]}, indent=2))
        return
    console = Console(soft_wrap=True)  # text lines whole in logs; tables still fit the width
    header, rows = result["header"], result["rows"]
    # more runs than the width holds: several tables of a few runs each, the metric column in each,
    # rather than one whose cells rich would cut down to an ellipsis
    groups = split_runs(header, rows, console.width)
    for group in groups:
        table = Table(title="SOEBench comparison" + _runs_shown(group, len(header) - 1, len(groups)))
        for col in [header[0], *(header[1 + i] for i in group)]:
            table.add_column(col)
        for row in rows:
            table.add_row(row[0], *(row[1 + i] for i in group))
        console.print(table)
    for line in result["notes"]:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if result["files"]:
        console.print(f"wrote {result['files'][0].parent}", highlight=False)


def _runs_shown(group: range, total: int, tables: int) -> str:
    # the title's note of which runs a table holds, when the comparison needs several
    if tables == 1:
        return ""
    first, last = group.start + 1, group.stop
    return f" (run {first} of {total})" if first == last else f" (runs {first}–{last} of {total})"


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and ``compare`` to the soebench app."""
    app.command("evaluate")(evaluate_command)
    app.command("compare")(compare_command)
