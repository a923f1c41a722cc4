"""``soebench validate-taxonomy``: measure the failure classifier on labelled cases made from the
real objects of a manifest (thin command over :mod:`soebench.taxonomy.validate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soebench.cli.options import ClipModel, ClipPretrained, ClipWeights, Device, JsonOut, Limit, ManifestPath, Overwrite, Seed

OutDir = Annotated[
    Path | None, typer.Option("--out", "-o", help="Folder for validation.json, cases.csv and confusion.png.")
]
AllMethods = Annotated[
    bool, typer.Option("--all-methods", help="Every removal/distortion method, two recolours and the loose-mask variants per object (default: one case per label).")
]
TuningSplit = Annotated[
    str | None,
    typer.Option(
        "--tuning-split",
        help="The split the rules were tuned on (reported as 'tuning', the others as 'held-out'); "
        "one of the manifest's splits. Default: val2017, the shipped rules' split, when the manifest has it.",
        show_default=False,
    ),
]
Refit = Annotated[
    bool, typer.Option("--refit", help="Re-fit the rules on the tuning split's cases of this run before labelling (the fitting protocol, end to end).")
]
RulesFile = Annotated[
    Path | None, typer.Option(
        "--rules", exists=True, dir_okay=False,
        help="A rules JSON: the 'rules' block of a validation.json, or a whole validation.json (its 'rules' block is used).",
    )
]
Splits = Annotated[
    list[str] | None, typer.Option("--split", help="Only objects of this split (repeatable), e.g. --split train2017 for the held-out half.")
]
CvFolds = Annotated[
    int | None,
    typer.Option(
        "--cv", min=2,
        help="With --refit: also report a K-fold cross-validation of the fit on the tuning split's objects "
        "(the figure for design decisions, which never needs the held-out split).",
        show_default=False,
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Tier = Annotated[
    str, typer.Option("--taxonomy-tier", help="weight-free (default), or model: add the CLIP zero-shot checks "
                      "(the judge evaluate uses), to measure them; needs CLIP weights (--clip-weights).")
]


def validate_taxonomy_command(
    manifest: ManifestPath,
    limit: Limit = None,
    seed: Seed = 0,
    out: OutDir = None,
    all_methods: AllMethods = False,
    tuning_split: TuningSplit = None,
    refit: Refit = False,
    rules: RulesFile = None,
    split: Splits = None,
    cv: CvFolds = None,
    taxonomy_tier: Tier = "weight-free",
    clip_model: ClipModel = "ViT-B-32",
    clip_pretrained: ClipPretrained = "openai",
    clip_weights: ClipWeights = None,
    device: Device = "cpu",
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    json_out: JsonOut = False,
) -> None:
    """Build labelled cases from a manifest's real objects (original -> ok, removed -> missing,
    recoloured -> mismatch, damaged -> distortion), classify them and print the confusion matrix
    per split, with per-class and per-method accuracy."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from soebench.fileio import sha256_file
    from soebench.manifest.io import read_manifest
    from soebench.taxonomy.rules import RuleSet
    from soebench.taxonomy.validate import validate, write_outputs

    if out is not None:
        _check_out(out, overwrite)
    rule_set = RuleSet.load(rules) if rules is not None else None
    judge = _judge(taxonomy_tier, clip_model, clip_pretrained or None, clip_weights, device)
    data = read_manifest(manifest)
    console = Console(stderr=True)
    show = not quiet and not json_out
    with Progress(
        TextColumn("[bold]validate-taxonomy"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not show, transient=True,
    ) as bar:
        task = bar.add_task("objects", total=None)
        result = validate(
            data, limit=limit, seed=seed, all_methods=all_methods, tuning_split=tuning_split, refit=refit,
            rules=rule_set, splits=split or None, cv_folds=cv, judge=judge, progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    manifest_info = {"path": str(manifest), "sha256": sha256_file(manifest) if Path(manifest).is_file() else None, "objects": len(data)}
    written = write_outputs(result, out, extra={"manifest": manifest_info}) if out is not None else {}
    if json_out:
        typer.echo(json.dumps({"manifest": manifest_info, **result.to_dict(), "written": written}, indent=2, default=str))
        return
    _print_report(result, Console(), written)


def _judge(tier: str, model: str, pretrained: str | None, weights: str | None, device: str):
    """None for the weight-free tier; the CLIP judge (loaded now, before any case) for ``model``."""
    from soebench.errors import ConfigError, MissingWeightsError

    if tier == "weight-free":
        return None
    if tier != "model":
        raise ConfigError(f"--taxonomy-tier {tier!r}: validate-taxonomy measures 'weight-free' or 'model'")
    from soebench.evaluation import check_device
    from soebench.taxonomy.clip_judge import ClipJudge

    check_device(device)
    try:
        return ClipJudge.load(model, pretrained, weights=weights, device=device)
    except MissingWeightsError as exc:
        raise MissingWeightsError(f"--taxonomy-tier model needs CLIP weights: {exc.message}", hint=exc.hint) from exc


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is (or lies under) a file, and any existing output without --overwrite."""
    from soebench.errors import InputError
    from soebench.fileio import check_output_file, nearest_existing, refuse_existing
    from soebench.taxonomy.validate import OUTPUT_FILES, output_paths

    existing = nearest_existing(out)
    if not existing.is_dir():
        what = f"{out} is a file" if existing == out.absolute() else f"{out}: {existing} is a file"
        raise InputError(f"--out {what}, not a folder (validation writes {', '.join(OUTPUT_FILES.values())} into one)")
    for path in output_paths(out).values():
        check_output_file(path, what="validation output")  # a folder we cannot write fails now, not after the cases
        refuse_existing(path, overwrite, what="validation output")


def _print_report(result, console, written: dict[str, str]) -> None:
    from rich.table import Table

    from soebench.taxonomy import LABELS

    console.print(
        f"tier: {result.settings.get('tier', 'weight_free').replace('_', '-')}; "
        f"rules: [bold]{result.rules.fitted_on}[/]; cases: {result.settings['cases']} from "
        f"{result.settings['objects']} objects (seed {result.settings['seed']}"
        f"{', all methods' if result.settings['all_methods'] else ', one method per label'})"
    )
    for rep in result.splits:
        if rep.role == "held-out":
            role = "[green]held-out[/]"
        elif rep.role.endswith("cross-validation"):
            role = f"[cyan]{rep.role} of the fit (design figure)[/]"
        else:
            role = "[yellow]tuning (optimistic)[/]"
        table = Table(title=f"{rep.split} — {role}: accuracy {rep.accuracy:.1%} of {rep.n} cases", title_justify="left")
        table.add_column("truth \\ predicted")
        for label in LABELS:
            table.add_column(label, justify="right")
        table.add_column("recall", justify="right")
        for i, label in enumerate(LABELS):
            row = rep.confusion[i]
            cells = [f"[bold]{v}[/]" if j == i else str(v) for j, v in enumerate(row)]
            recall = rep.per_class[label]
            table.add_row(label, *cells, "—" if recall != recall else f"{recall:.1%}")
        console.print(table)
        methods = Table(title=f"{rep.split}: accuracy per method", title_justify="left")
        methods.add_column("label")
        methods.add_column("method")
        methods.add_column("cases", justify="right")
        methods.add_column("accuracy", justify="right")
        for name, m in rep.per_method.items():
            methods.add_row(m["label"], name, str(m["n"]), f"{m['accuracy']:.1%}")
        console.print(methods)
    for what, path in written.items():
        console.print(f"wrote {what}: {path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the soebench app."""
    app.command("validate-taxonomy")(validate_taxonomy_command)
