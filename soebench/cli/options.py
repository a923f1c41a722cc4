"""Annotated options shared by several commands (one name for one thing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted run where it stopped; nothing already done is redone.")
]
Limit = Annotated[int | None, typer.Option("--limit", min=1, help="Process at most this many samples/objects.")]
Seed = Annotated[int, typer.Option("--seed", min=0, help="Seed for every random choice (results are deterministic).")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", exists=True, dir_okay=False, help="YAML file with the same options (flags win)."),
]
ManifestPath = Annotated[Path, typer.Option("--manifest", "-m", help="Manifest file or folder of parts.")]
Device = Annotated[str, typer.Option("--device", help="torch device: cpu, cuda, cuda:1, mps ...")]
ClipModel = Annotated[str, typer.Option("--clip-model", help="open_clip architecture name or model-config JSON.")]
ClipPretrained = Annotated[
    str, typer.Option("--clip-pretrained", help="open_clip pretrained tag whose cached weights to use ('' for none).")
]
ClipWeights = Annotated[str | None, typer.Option("--clip-weights", help="Local CLIP checkpoint file or folder.")]
