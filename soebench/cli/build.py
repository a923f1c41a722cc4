"""``soebench build-dataset`` and ``soebench manifest validate|info``: thin commands over
:func:`soebench.mining.build.build_dataset` and :mod:`soebench.manifest.inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from soebench.cli.options import ConfigFile, JsonOut, Limit, Overwrite, Resume
from soebench.errors import ConfigError

_P = Annotated[Path | None, typer.Option()]


def _opt(*names: str, help: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help, **kw)


Source = Annotated[str | None, _opt("--source", help="Annotation source: coco or openimages.")]
Out = Annotated[Path | None, _opt("--out", "-o", help="Manifest file (or folder of parts with --num-shards).")]
Images = Annotated[Path | None, _opt("--images", help="Images folder (image paths are stored relative to it).")]
Annotations = Annotated[Path | None, _opt("--annotations", help="COCO instances JSON.")]
Captions = Annotated[Path | None, _opt("--captions", help="COCO captions JSON (stored per object).")]
SegCsv = Annotated[Path | None, _opt("--segmentation-csv", help="OpenImages *-annotations-object-segmentation.csv.")]
Masks = Annotated[Path | None, _opt("--masks", help="OpenImages mask PNG folder (or folder of *-masks-<h>.zip).")]
Classes = Annotated[Path | None, _opt("--classes", help="OpenImages class-descriptions-boxable.csv.")]
BboxCsv = Annotated[Path | None, _opt("--bbox-csv", help="OpenImages *-annotations-bbox.csv (flags; boxes alone if no masks).")]
Hierarchy = Annotated[Path | None, _opt(
    "--class-hierarchy", help="OpenImages bbox_labels_600_hierarchy.json: class filters also take every subclass.")]
Preset = Annotated[str | None, _opt("--preset", help="Filter preset: soebench (default), soe-eval, soe-train, coco-small, none.")]
Split = Annotated[str | None, _opt("--split", help="Source split name (default: from the annotation file name).")]
SplitRatios = Annotated[str | None, _opt("--split-ratios", help="Re-split by image hash, e.g. train=0.9,val=0.1.")]
SeedOpt = Annotated[int | None, _opt("--seed", help="Seed for re-splits and the per-image cap (deterministic).")]
NumShards = Annotated[int | None, _opt("--num-shards", min=1, help="Split the work into N parts by image.")]
ShardIndex = Annotated[int | None, _opt("--shard-index", min=0, help="Which part this run writes (0-based).")]
Workers = Annotated[
    int | None,
    _opt("--workers", min=1, help="Processes for the per-image stage (masks, pixels, colour); the output does not depend on it."),
]
NoPlots = Annotated[bool, _opt("--no-plots", help="Skip the PNG histograms.")]
Quiet = Annotated[bool, _opt("--quiet", "-q", help="No progress bar.")]
MinFrac = Annotated[float | None, _opt("--min-area-fraction", help="Object area / image area, lower bound (inclusive).")]
MaxFrac = Annotated[float | None, _opt("--max-area-fraction", help="Object area / image area, upper bound (inclusive).")]
AreaBy = Annotated[str | None, _opt(
    "--area-by", help="Measure area on the 'box' or the 'mask'. COCO 'mask': the annotation's area field (COCO's "
    "measure); the manifest's mask_area_fraction is the decoded mask, which can differ by its outline's pixels.")]
MinPx = Annotated[float | None, _opt("--min-pixels", help="Object area in pixels >= this.")]
MaxPx = Annotated[float | None, _opt("--max-pixels", help="Object area in pixels < this.")]
MaxAspect = Annotated[float | None, _opt("--max-aspect-ratio", help="Longest / shortest box side at most this.")]
Include = Annotated[str | None, _opt("--include-classes", help="Comma-separated category names or ids to keep.")]
Exclude = Annotated[str | None, _opt(
    "--exclude-classes", help="Comma-separated category names or ids to drop (replaces the preset's list).")]
AlsoExclude = Annotated[str | None, _opt(
    "--also-exclude-classes", help="Comma-separated category names or ids to drop besides the preset's list.")]
Crowd = Annotated[bool | None, _opt("--drop-crowd/--keep-crowd", help="Drop COCO crowd regions.")]
Occluded = Annotated[bool | None, _opt("--drop-occluded/--keep-occluded", help="Drop OpenImages IsOccluded.")]
Truncated = Annotated[bool | None, _opt("--drop-truncated/--keep-truncated", help="Drop OpenImages IsTruncated.")]
Group = Annotated[bool | None, _opt("--drop-group/--keep-group", help="Drop OpenImages IsGroupOf.")]
Depiction = Annotated[bool | None, _opt("--drop-depiction/--keep-depiction", help="Drop OpenImages IsDepiction.")]
Inside = Annotated[bool | None, _opt("--drop-inside/--keep-inside", help="Drop OpenImages IsInside.")]
MinIou = Annotated[float | None, _opt("--min-predicted-iou", help="OpenImages PredictedIoU lower bound.")]
Border = Annotated[float | None, _opt("--border-margin", help="Keep this fraction of the image side from every border.")]
MaxPer = Annotated[int | None, _opt("--max-per-image", min=1, help="At most K objects per image (seeded choice).")]
Unique = Annotated[
    bool | None, _opt("--unique-category/--any-category", help="Only objects whose category is unique in the image.")
]

FILTER_KEYS = (
    "min_area_fraction", "max_area_fraction", "area_by", "min_pixels", "max_pixels", "max_aspect_ratio",
    "include_classes", "exclude_classes", "drop_crowd", "drop_occluded", "drop_truncated", "drop_group",
    "drop_depiction", "drop_inside", "min_predicted_iou", "border_margin", "max_per_image", "unique_category",
)
INPUT_KEYS = ("source", "out", "images", "annotations", "captions", "segmentation_csv", "masks", "classes", "bbox_csv",
              "class_hierarchy")
RUN_KEYS = ("preset", "split", "split_ratios", "seed", "num_shards", "shard_index", "limit", "workers")
#: options that change the preset's filters without being one (``also_exclude_classes`` adds to a list)
EXTRA_FILTER_KEYS = ("also_exclude_classes",)


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    if isinstance(data.get("filters"), dict):
        data.update({str(k).replace("-", "_"): v for k, v in data.pop("filters").items()})
    known = set(FILTER_KEYS) | set(EXTRA_FILTER_KEYS) | set(INPUT_KEYS) | set(RUN_KEYS) | {"overwrite", "plots"}
    unknown = sorted(set(data) - known)
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        raise ConfigError(f"{path}: unknown option(s) {', '.join(unknown)}",
                          hint=f"did you mean {close[0]!r}?" if close else
                          "the keys are the build-dataset flags without the dashes, e.g. max_per_image")
    try:
        return {key: _typed(key, value) for key, value in data.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None


_INT_KEYS = ("seed", "num_shards", "shard_index", "limit", "workers")
#: the inputs that are files or folders (``source`` is a name: coco or openimages)
_PATH_KEYS = tuple(k for k in INPUT_KEYS if k != "source")


def _typed(key: str, value: Any) -> Any:
    """A config file value as its flag's type (YAML gives text for ``1e-3`` or a quoted "false")."""
    from soebench.mining.filters import as_bool, coerce_filter_value

    if value is None:
        return None
    if key in FILTER_KEYS:
        return coerce_filter_value(key, value)
    if key in EXTRA_FILTER_KEYS:
        return coerce_filter_value("exclude_classes", value)
    if key in _INT_KEYS:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    if key in ("overwrite", "plots"):
        return as_bool(key, value)
    if key == "split_ratios" and isinstance(value, dict):  # {train: 0.9, val: 0.1}, YAML's natural form
        from soebench.mining.split import parse_split_ratios

        return parse_split_ratios(value)
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{key} must be text, got {value!r}")
    return Path(str(value)) if key in _PATH_KEYS else str(value)


def _classes(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def build_dataset_command(
    source: Source = None,
    out: Out = None,
    images: Images = None,
    annotations: Annotations = None,
    captions: Captions = None,
    segmentation_csv: SegCsv = None,
    masks: Masks = None,
    classes: Classes = None,
    bbox_csv: BboxCsv = None,
    class_hierarchy: Hierarchy = None,
    preset: Preset = None,
    split: Split = None,
    split_ratios: SplitRatios = None,
    seed: SeedOpt = None,
    num_shards: NumShards = None,
    shard_index: ShardIndex = None,
    limit: Limit = None,
    workers: Workers = None,
    min_area_fraction: MinFrac = None,
    max_area_fraction: MaxFrac = None,
    area_by: AreaBy = None,
    min_pixels: MinPx = None,
    max_pixels: MaxPx = None,
    max_aspect_ratio: MaxAspect = None,
    include_classes: Include = None,
    exclude_classes: Exclude = None,
    also_exclude_classes: AlsoExclude = None,
    drop_crowd: Crowd = None,
    drop_occluded: Occluded = None,
    drop_truncated: Truncated = None,
    drop_group: Group = None,
    drop_depiction: Depiction = None,
    drop_inside: Inside = None,
    min_predicted_iou: MinIou = None,
    border_margin: Border = None,
    max_per_image: MaxPer = None,
    unique_category: Unique = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    no_plots: NoPlots = False,
    json_out: JsonOut = False,
    quiet: Quiet = False,
) -> None:
    """Mine small objects from COCO or OpenImages annotations into a manifest (+ summary, plots).

    Every filter flag can also come from --config FILE.yaml (same names); flags win.
    """
    from soebench.mining.build import build_dataset

    given = dict(locals())
    file_values = _read_config(config)

    def pick(key: str, default: Any = None) -> Any:
        value = given.get(key)
        return value if value is not None else file_values.get(key, default)

    src = pick("source")
    if src is None:
        raise ConfigError("--source is required (coco or openimages)")
    missing = [f"--{key}" for key in ("out", "images") if pick(key) is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required",
                          hint="give it on the command line or in the --config file")
    filters = {k: pick(k) for k in FILTER_KEYS}
    filters["include_classes"] = _classes(filters["include_classes"])
    filters["exclude_classes"] = _classes(filters["exclude_classes"])
    _refuse_config_as_output(config, Path(pick("out")), int(pick("num_shards", 1)), int(pick("shard_index", 0)))
    try:
        result = build_dataset(
            src,
            pick("out"),
            images=pick("images"),
            annotations=pick("annotations"),
            captions=pick("captions"),
            segmentation_csv=pick("segmentation_csv"),
            masks=pick("masks"),
            classes=pick("classes"),
            bbox_csv=pick("bbox_csv"),
            class_hierarchy=pick("class_hierarchy"),
            preset=pick("preset", "soebench"),
            filters=filters,
            split=pick("split"),
            split_ratios=pick("split_ratios"),
            seed=int(pick("seed", 0)),
            limit=pick("limit"),
            num_shards=int(pick("num_shards", 1)),
            shard_index=int(pick("shard_index", 0)),
            overwrite=overwrite or bool(file_values.get("overwrite", False)),
            resume=resume,
            workers=int(pick("workers", 1)),
            plots=not no_plots and bool(file_values.get("plots", True)),
            progress=not quiet and not json_out,
            also_exclude_classes=_classes(pick("also_exclude_classes")),
        )
    except KeyboardInterrupt as exc:
        _say_where_progress_is(Path(pick("out")), int(pick("num_shards", 1)), int(pick("shard_index", 0)))
        raise typer.Exit(getattr(exc, "exit_code", 130)) from None  # SIGTERM: 143 (soebench.errors.Terminated)
    from rich.console import Console

    for text in result.summary.get("warnings", []):  # stderr: also with --json, whose stdout is the summary
        Console(stderr=True, soft_wrap=True).print(f"[yellow]warning:[/] {text}", highlight=False)
    if json_out:
        typer.echo(json.dumps(result.summary, indent=2))
        return

    # the result, like evaluate's table: stdout (progress and warnings go to stderr); soft wrap:
    # a log or a grep must see a line whole, not broken at 80 columns
    console = Console(soft_wrap=True)
    s = result.summary
    console.print(f"[bold]{result.manifest_path}[/]: {s['kept']} objects on {s['images']} images from {s['candidates']} candidates")
    for title, key in (("invalid input (dropped)", "invalid"), ("rejected by filter", "rejected")):
        if s[key]:
            console.print(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in s[key].items()), highlight=False)
    for reason, examples in s.get("invalid_examples", {}).items():
        console.print(f"  [yellow]{reason}[/]: e.g. annotation {', '.join(examples)}", highlight=False)
    if s.get("unknown_flags"):
        console.print("  [yellow]kept with the flag unknown[/] (the drop filter could not see it): "
                      + ", ".join(f"{k} {v}" for k, v in s["unknown_flags"].items()), highlight=False)
    if s.get("images_without_captions"):  # a partial captions file: those rows have no captions
        Console(stderr=True, soft_wrap=True).print(
            f"[yellow]warning:[/] {s['images_without_captions']} of {s['images']} images have no caption in "
            f"--captions {pick('captions')} (their rows have an empty captions list)", highlight=False)
    if not s["kept"]:
        warn = Console(stderr=True, soft_wrap=True)
        if s["invalid"].get("missing image file"):  # a wrong --images more often than a partial copy
            warn.print(f"[yellow]warning:[/] the manifest is empty: no image file of the objects that passed the "
                       f"filters is in --images {pick('images')}", highlight=False)
            warn.print("[yellow]hint:[/] --images must be the folder that holds the image files the annotations "
                       "name (e.g. val2017/ for instances_val2017.json)", highlight=False)
        else:
            warn.print("[yellow]warning:[/] no object passed the filters: the manifest is empty", highlight=False)
    console.print(f"  summary: {result.summary_path}", highlight=False)


def _refuse_config_as_output(config: Path | None, out: Path, num_shards: int, shard_index: int) -> None:
    """--config is an input too: --overwrite must not replace it with a manifest."""
    if config is None:
        return
    from soebench.mining.build import output_paths, refuse_outputs_over_inputs

    refuse_outputs_over_inputs(output_paths(out, num_shards, shard_index), {"--config": config})


def _say_where_progress_is(out: Path, num_shards: int, shard_index: int) -> None:
    from rich.console import Console

    from soebench.mining.build import output_paths
    from soebench.mining.checkpoint import partial_dir

    partial = partial_dir(output_paths(out, num_shards, shard_index)[0])
    console = Console(stderr=True)
    if partial.exists():
        console.print(f"interrupted: progress saved in {partial}; the same command with --resume continues from there",
                      highlight=False)
    else:
        console.print("interrupted before any progress was saved", highlight=False)


manifest_app = typer.Typer(help="Check and describe manifests.", no_args_is_help=True, rich_markup_mode=None)


@manifest_app.command("validate")
def validate_command(
    path: Annotated[Path, typer.Argument(help="Manifest file or folder of parts.")],
    no_masks: Annotated[bool, typer.Option("--no-masks", help="Skip decoding every mask.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Check a manifest against the schema (types, nulls, unique ids, masks); exit 2 if it fails."""
    from soebench.manifest.inspect import validate_manifest

    info = validate_manifest(path, check_masks=not no_masks)
    if json_out:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
    else:
        typer.echo(f"{path}: valid soebench manifest (schema {info['schema_version']}), {info['rows']} rows")


@manifest_app.command("merge")
def merge_command(
    parts: Annotated[Path, typer.Argument(help="Folder of part-*-of-*.parquet files from build-dataset --num-shards.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged manifest file.")],
    overwrite: Overwrite = False,
) -> None:
    """Merge every part of a sharded build into one manifest file (rows as an unsharded build)."""
    from soebench.manifest.io import merge_parts

    import pyarrow.parquet as pq

    path = merge_parts(parts, out, overwrite=overwrite)
    typer.echo(f"{path}: {pq.ParquetFile(path).metadata.num_rows} rows merged from {parts}")


@manifest_app.command("info")
def info_command(
    path: Annotated[Path, typer.Argument(help="Manifest file or folder of parts.")],
    json_out: JsonOut = False,
) -> None:
    """Counts per category, split, source and size band."""
    from soebench.manifest.inspect import manifest_info

    info = manifest_info(path)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)  # text lines whole in logs; tables still fit the width
    replaced = info.get("overridden_preset_values")
    overridden = f", overriding its {', '.join(replaced)}" if replaced else ""
    console.print(f"[bold]{info['path']}[/]: {info['rows']} objects on {info['images']} images "
                  f"(schema {info['schema_version']}, preset {info['preset']}{overridden})", highlight=False)
    if info.get("merged_from"):
        parts = info["merged_from"]
        console.print(f"merged from {len(parts)} parts: {', '.join(parts)}", highlight=False)
    for title, key in (("source", "per_source"), ("split", "per_split"), ("size (box side)", "size_histogram"),
                       ("colour", "per_colour"), ("category", "per_category")):
        table = Table(title=title, title_justify="left")
        table.add_column(title)
        table.add_column("objects", justify="right")
        for k, v in info[key].items():
            table.add_row(str(k), str(v))
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add build-dataset and the manifest sub-app to the soebench app."""
    app.command("build-dataset")(build_dataset_command)
    app.add_typer(manifest_app, name="manifest")
