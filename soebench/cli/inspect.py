"""``soebench inspect`` (manifest / runs -> FiftyOne App) and ``soebench agreement`` (human tags
vs automatic labels): thin commands over :mod:`soebench.fiftyone_export` and :mod:`soebench.fo`."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from soebench.cli.options import JsonOut, Overwrite

Sources = Annotated[list[Path], typer.Argument(help="A manifest (file or folder of parts) and/or run folders of it.")]
Name = Annotated[str | None, typer.Option("--name", help="FiftyOne dataset name (default: from the manifest name and hash).")]
Port = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port of the FiftyOne App.")]
Address = Annotated[str, typer.Option("--address", help="Address the App binds to (loopback by default).")]
NoLaunch = Annotated[bool, typer.Option("--no-launch", help="Create/update the dataset only; do not start the App.")]
ManifestOpt = Annotated[
    Path | None, typer.Option("--manifest", "-m", help="The runs' manifest, if it moved since they were evaluated.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def inspect_cmd(
    sources: Sources,
    name: Name = None,
    port: Port = 5151,
    address: Address = "127.0.0.1",
    no_launch: NoLaunch = False,
    manifest: ManifestOpt = None,
    quiet: Quiet = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a slice that holds another run folder of the same run name.")] = False,
) -> None:
    """Load a manifest and/or evaluation runs into a persistent FiftyOne dataset and open the App.

    One group per object: slice 'original' plus one slice per run (the generated image with its scores, failure label and evidence). Re-running adds or updates runs; saved views list each failure label per run, the worst local CLIP-Scores and the largest background changes.

    Tag samples 'human:<label>' in the App and compare with `soebench agreement`.
    """
    from rich.console import Console

    from soebench.fiftyone_export import check_dataset_name, resolve_sources
    from soebench.fo import app
    from soebench.fo.writer import export

    check_dataset_name(name)
    if not no_launch:  # a busy port is found before minutes of writing the dataset, not after
        app.check_port_free(address, port)
    console = Console(soft_wrap=True)  # text lines whole in logs; tables still fit the width
    resolved = resolve_sources(list(sources), manifest=manifest)
    result = export(resolved, name=name, progress=not quiet, overwrite=overwrite)
    console.print(_slices_table(result))
    console.print(f"dataset [bold]{escape(result.name)}[/] · {len(result.views)} saved views", highlight=False)
    _print_notes(Console(stderr=True), result)
    if no_launch:
        return
    from soebench.fo.app import check_port_free, launch, url

    check_port_free(address, port)  # again: it may have been taken while the dataset was written
    # the handler goes in before the App starts: a `kill` that arrives while it starts (it may
    # answer before launch() returns) must stop its server too, not leave it behind
    previous = signal.signal(signal.SIGTERM, _interrupt)
    session = None
    try:
        console.print(f"FiftyOne App: {url(address, port)}  (Ctrl-C to stop)", highlight=False)
        session = launch(result.dataset, port=port, address=address)
        session.wait(-1)  # serve until Ctrl-C (no browser is opened here)
    except KeyboardInterrupt:
        pass
    finally:
        if session is not None:
            session.close()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _print_notes(console, result) -> None:
    """Warn about media not found (samples are kept, tagged) and views that could not be made."""
    from soebench.fiftyone_export import TAG_MISSING_MEDIA, run_label

    for s in result.slices:
        where = s.slice if s.run_name is None else run_label(s.run_name, s.slice)
        if s.missing_media:
            console.print(f"[yellow]warning:[/] {escape(where)}: {s.missing_media} of {s.samples} image(s) not found, "
                          f"e.g. {escape(str(s.first_missing))}; those samples are kept with tag '{TAG_MISSING_MEDIA}'",
                          highlight=False, soft_wrap=True)
        if s.tags_dropped:
            console.print(f"[yellow]warning:[/] {escape(where)}: {s.tags_dropped} human tag(s) removed from sample(s) whose "
                          "generated image changed (they judged the previous image)", highlight=False, soft_wrap=True)
    for view, why in result.skipped_views.items():
        console.print(f"note: no saved view {escape(view)}: {escape(why)}", highlight=False, soft_wrap=True)


def _slices_table(result):
    from rich import box
    from rich.table import Table

    # compact, so that 8 columns fit 80; names fold rather than being cut to "opencv-…"
    table = Table(title=f"FiftyOne dataset {escape(result.name)}", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False, show_edge=False)
    for col in ("slice", "model", "samples", "added", "updated", "removed", "no media", "errors"):
        left = col in ("slice", "model")
        table.add_column(col, justify="left" if left else "right", overflow="fold" if left else "ellipsis")
    for s in result.slices:
        counts = (s.samples, s.added, s.updated, s.removed, s.missing_media, s.errors)
        table.add_row(escape(s.slice), escape(s.model or "-"), *map(str, counts))
    return table


def agreement_cmd(
    name: Annotated[str, typer.Option("--name", help="FiftyOne dataset made by `soebench inspect`.")],
    run: Annotated[list[str] | None, typer.Option("--run", help="Run (slice) name; repeat; default: every run.")] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the human labels into each run's samples.parquet.")] = False,
    overwrite: Overwrite = False,
    json_out: JsonOut = False,
) -> None:
    """Agreement of the automatic failure labels with the human tags ('human:<label>') set in the App: accuracy, Cohen's kappa and the confusion matrix, per run."""
    from rich.console import Console

    from soebench.errors import InputError
    from soebench.fiftyone_export import ORIGINAL_SLICE
    from soebench.fo.agreement import agreement, check_labels, collect, stale_tags, tagged_originals, write_human_labels
    from soebench.fo.db import connect
    from soebench.fo.writer import dataset_runs

    fo = connect()
    if not fo.dataset_exists(name):
        known = fo.list_datasets()  # inspect --name accepts any name: list them all
        raise InputError(f"no FiftyOne dataset named {name!r}", hint=f"datasets: {', '.join(known) or 'none'}")
    dataset = fo.load_dataset(name)
    recorded = dataset_runs(dataset)
    slices = _run_slices(dataset, recorded, run) if run else \
        [s for s in dataset.group_slices or [] if s != ORIGINAL_SLICE]
    if not slices:
        raise InputError(f"dataset {name!r} holds no evaluation runs", hint="add runs with `soebench inspect RUN_DIR --name ...`")
    names = {sl: recorded.get(sl, {}).get("run_name") or sl for sl in slices}
    console = Console(soft_wrap=True)  # text lines whole in logs; tables still fit the width
    misplaced = tagged_originals(dataset)
    if misplaced:
        Console(stderr=True).print(
            f"[yellow]warning:[/] {len(misplaced)} sample(s) of slice '{ORIGINAL_SLICE}' carry human: tags "
            f"({', '.join(misplaced[:5])}); they judge no model output and are ignored. Tag the run's "
            "samples: pick its slice in the App or open a saved view 'soebench-<run>-…'", highlight=False)
    report = {}
    for sl in slices:
        tags = collect(dataset, sl, names[sl])
        check_labels(tags)
        if tags.on_labels:
            Console(stderr=True).print(
                f"[yellow]warning:[/] {escape(tags.label)}: {len(tags.on_labels)} sample(s) carry human: tags on their failure "
                f"label ({', '.join(tags.on_labels[:5])}), not on the sample; agreement reads sample tags: tag the "
                "samples (the App's sample tagging) instead", highlight=False)
        run_dir = recorded.get(sl, {}).get("run_dir")
        if run_dir and (stale := stale_tags(run_dir, tags)):
            # the run was evaluated again after inspect: the tags judge images it no longer holds
            raise InputError(
                f"{tags.label}: {len(stale)} tagged sample(s) show images that {run_dir} has since replaced "
                f"(output_key differs: {', '.join(stale[:3])}); the dataset is out of date",
                hint=f"run `soebench inspect {run_dir} --name {name}` (tags of replaced images are dropped there), "
                     "then tag those samples again",
            )
        auto, human, unlabelled = tags.pairs()
        result = agreement(auto, human)
        entry = {**result.to_dict(), "tagged": len(tags.human), "conflicting": sorted(tags.conflicts),
                 "human_labels": sorted(set(tags.human.values())),
                 "without_auto_label": unlabelled}
        if write:
            if not run_dir:
                raise InputError(f"dataset {name!r} does not record the folder of {tags.label}")
            entry["written"] = str(write_human_labels(run_dir, tags.human, overwrite=overwrite))
        report[sl] = entry
        if not json_out:
            _print_agreement(console, tags.label, result, entry)
    if json_out:
        typer.echo(json.dumps(report, indent=2))


def _run_slices(dataset, recorded: dict, runs: list[str]) -> list[str]:
    """The slices of ``--run`` values: a run name as recorded by inspect, else a slice name as the
    App shows it (``run-original``), else the slice the name would have (absent: reported by
    :func:`soebench.fo.agreement.collect`)."""
    from soebench.fiftyone_export import ORIGINAL_SLICE, slice_name

    by_name = {entry.get("run_name"): sl for sl, entry in recorded.items() if entry.get("run_name")}
    present = set(dataset.group_slices or []) - {ORIGINAL_SLICE}
    return [by_name.get(r) or (r if r in present else slice_name(r)) for r in runs]


def _print_agreement(console, label, result, entry) -> None:
    """``label``: how the run is named (its run name, and its slice where that differs)."""
    from rich.table import Table

    kappa = "undefined" if entry["kappa"] is None else f"{entry['kappa']:.3f}"
    acc = "-" if entry["accuracy"] is None else f"{entry['accuracy']:.3f}"
    console.print(f"[bold]{escape(label)}[/]: {result.n} sample(s) with a human tag and an automatic label · "
                  f"accuracy {acc} · Cohen's kappa {kappa}", highlight=False)
    if entry["conflicting"]:
        console.print(f"  skipped {len(entry['conflicting'])} sample(s) with conflicting human tags: "
                      f"{', '.join(entry['conflicting'][:5])}", highlight=False)
    if entry["without_auto_label"]:
        console.print(f"  skipped {entry['without_auto_label']} tagged sample(s) without an automatic label (errors)")
    if result.n:
        table = Table(title=f"{escape(label)}: automatic (rows) vs human (columns)")
        table.add_column("auto \\ human")
        for lab in result.labels:
            table.add_column(escape(lab), justify="right")
        for i, lab in enumerate(result.labels):
            table.add_row(escape(lab), *[(f"[bold]{v}[/]" if i == j else str(v)) for j, v in enumerate(result.matrix[i])])
        console.print(table)
    if "written" in entry:
        console.print(f"  wrote human_label to {escape(entry['written'])}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the soebench app."""
    app.command("inspect")(inspect_cmd)
    app.command("agreement")(agreement_cmd)
