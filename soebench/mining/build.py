"""``build_dataset``: annotation files -> a filtered, coloured, prompted soebench manifest.

Order of work (cheapest first, so pixels are decoded only for objects that passed every
cheap test): parse annotations -> mark invalid rows -> shard -> class / flag / box filters ->
per image, in sorted order: image file present? -> image size (OpenImages) -> size filters ->
masks -> mask filters -> decode image -> colour -> at most K per image -> rows. Every dropped
object is counted under its reason (``invalid``: bad input; ``rejected``: a filter).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import ConfigError, InputError, OutputExistsError
from soebench.fileio import (check_output_file, exclusive_lock, refuse_existing, remove_stale_temps, sha256_file,
                             write_text_atomic)
from soebench.mining.checkpoint import Progress, snapshot
from soebench.mining.filters import FilterConfig, FilterRun
from soebench.mining.per_image import Stage, Tally, group_results
from soebench.mining.presets import SOURCES, resolve_filters
from soebench.mining.split import assign_splits, parse_split_ratios, part_name, sample_id, shard_of, source_split, unit_hash

#: threads decoding the images of the next groups ahead of the miner (1: decode on demand)
IMAGE_WORKERS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass
class BuildResult:
    manifest_path: Path
    num_rows: int
    summary: dict[str, Any]
    summary_path: Path
    plot_paths: list[Path] = field(default_factory=list)


def output_paths(out: Path, num_shards: int, shard_index: int) -> tuple[Path, Path, Path, Path]:
    """(manifest, summary json, sizes png, categories png) for a run."""
    if num_shards > 1:
        manifest = out / part_name(shard_index, num_shards)
    else:
        manifest = out
    stem = manifest.with_suffix("") if manifest.suffix == ".parquet" else manifest
    return (
        manifest,
        stem.with_name(stem.name + ".summary.json"),
        stem.with_name(stem.name + ".sizes.png"),
        stem.with_name(stem.name + ".categories.png"),
    )


def _relative_or_absolute(target: Path, base: Path) -> str:
    target, base = target.resolve(), base.resolve()
    try:
        return os.path.relpath(target, base)
    except ValueError:  # other drive (Windows)
        return str(target)


COCO_INPUTS = ("annotations", "captions")
OPENIMAGES_INPUTS = ("segmentation_csv", "masks", "classes", "bbox_csv", "class_hierarchy")


def _make_source(source: str, split: str | None, inputs: Mapping[str, Any]):
    def path(key: str, required: bool = True) -> Path | None:
        value = inputs.get(key)
        if value is None:
            if required:
                raise InputError(f"source {source!r} needs --{key.replace('_', '-')}")
            return None
        return Path(value)

    images = path("images")
    if not images.is_dir():
        raise InputError(f"images folder {images} " + ("is a file, not a folder" if images.exists() else "does not exist"))
    # an input of the other source would be silently unused: the user believes it was read
    other = OPENIMAGES_INPUTS if source == "coco" else COCO_INPUTS
    given = [f"--{k.replace('_', '-')}" for k in other if inputs.get(k) is not None]
    if given:
        raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --source "
                         f"{'openimages' if source == 'coco' else 'coco'} only, not to --source {source}")
    if source == "coco":
        from soebench.mining.sources import CocoSource

        ann = path("annotations")
        if not ann.is_file():
            raise InputError(f"COCO annotation file {ann} " + ("is a folder; expected the instances JSON file"
                                                                if ann.is_dir() else "does not exist"))
        caps = path("captions", required=False)
        if caps is not None and not caps.is_file():
            raise InputError(f"COCO captions file {caps} does not exist")
        return CocoSource(ann, images, caps, split=split or source_split(ann, "coco"))
    from soebench.mining.openimages import OpenImagesSource

    seg = path("segmentation_csv", required=False)
    bbox = path("bbox_csv", required=False)
    named = seg or bbox
    return OpenImagesSource(
        images_root=images,
        classes_path=path("classes"),
        segmentation_csv=seg,
        masks_root=path("masks", required=seg is not None),
        bbox_csv=bbox,
        split=split or (source_split(named, "openimages") if named else "openimages"),
        hierarchy_path=path("class_hierarchy", required=False),
    )


def _progress(enabled: bool, total: int):
    from contextlib import nullcontext

    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("mining"), BarColumn(), MofNCompleteColumn(), TextColumn("images"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )
    return progress


def lock_path(manifest_path: Path) -> Path:
    """The lock a build of ``manifest_path`` holds (beside it, hidden, removed when the build ends)."""
    return manifest_path.with_name(f".{manifest_path.name}.lock")


def build_dataset(
    source: str,
    out: str | os.PathLike,
    *,
    images: str | os.PathLike,
    annotations: str | os.PathLike | None = None,
    captions: str | os.PathLike | None = None,
    segmentation_csv: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
    classes: str | os.PathLike | None = None,
    bbox_csv: str | os.PathLike | None = None,
    class_hierarchy: str | os.PathLike | None = None,
    preset: str | None = "soebench",
    filters: Mapping[str, Any] | FilterConfig | None = None,
    split: str | None = None,
    split_ratios: str | Mapping[str, float] | None = None,
    seed: int = 0,
    limit: int | None = None,
    num_shards: int = 1,
    shard_index: int = 0,
    overwrite: bool = False,
    resume: bool = False,
    workers: int = 1,
    plots: bool = True,
    progress: bool = False,
    also_exclude_classes: str | Sequence[str] | None = None,
) -> BuildResult:
    """Mine small objects from COCO or OpenImages annotations into a soebench manifest.

    ``class_hierarchy`` (OpenImages ``bbox_labels_600_hierarchy.json``) widens the include and
    exclude class lists to every subclass of the classes they name.
    ``filters`` overrides the preset's values (a dict of :class:`FilterConfig` fields, None
    values ignored) or replaces them (a FilterConfig); an ``exclude_classes`` there replaces the
    preset's exclusions (the summary's ``warnings`` says so, which the CLI prints, and the manifest
    records the preset values that were overridden), ``also_exclude_classes`` adds to them.
    ``out`` is a ``.parquet`` file that is none of the inputs, outside the images and masks
    folders (refused even with ``overwrite``). With ``num_shards > 1`` ``out`` is a folder and
    this call writes part ``shard_index`` (images are assigned to parts by a hash, so an image
    never spans parts). Writes, atomically, the manifest, ``<out>.summary.json``
    and ``<out>.sizes.png`` / ``<out>.categories.png`` (unless ``plots=False``).

    The per-image stage saves its progress every :data:`soebench.mining.checkpoint.SAVE_EVERY_S`
    seconds in ``<manifest>.partial/``; after a crash or Ctrl-C, ``resume=True`` with the same
    arguments continues from there and writes the manifest a single run would have written.
    ``workers > 1`` mines the images in that many processes forked after the parse (Linux); the
    outputs do not depend on it.
    """
    # -- check inputs before any work ------------------------------------------------------
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if num_shards < 1:
        raise ConfigError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard index {shard_index} is not in [0, {num_shards})")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    cfg = filters if isinstance(filters, FilterConfig) else resolve_filters(preset, source, filters)
    overridden = _overridden_preset_values(preset, source, filters)
    warnings = _override_warnings(preset, overridden, cfg)
    named = _named_classes(filters)
    if also_exclude_classes is not None:
        from soebench.mining.filters import coerce_filter_value

        extra = coerce_filter_value("exclude_classes", also_exclude_classes)
        named["also_exclude_classes"] = extra
        cfg = cfg.replace(exclude_classes=tuple(dict.fromkeys(cfg.exclude_classes + extra)))
    _check_class_overlap(cfg, preset, source)
    ratios = parse_split_ratios(split_ratios)
    out = Path(out)
    if num_shards == 1 and out.is_dir():
        raise ConfigError(f"--out {out} is a folder; a manifest is one .parquet file",
                          hint="give a file path such as manifests/NAME.parquet (a folder of parts needs --num-shards)")
    if num_shards > 1 and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; with --num-shards it must be a folder of parts")
    manifest_path, summary_path, sizes_path, cats_path = output_paths(out, num_shards, shard_index)
    side = (summary_path, sizes_path, cats_path) if plots else (summary_path,)
    inputs = {
        "images": images, "annotations": annotations, "captions": captions, "segmentation_csv": segmentation_csv,
        "masks": masks, "classes": classes, "bbox_csv": bbox_csv, "class_hierarchy": class_hierarchy,
    }
    refuse_outputs_over_inputs((manifest_path, *side), _input_paths(source, inputs))
    if num_shards == 1 and out.suffix != ".parquet":
        # the summary and plots are named after the stem of a .parquet name; any other name would
        # hold Parquet under a .csv or .json suffix (or be a typo for an input)
        raise ConfigError(f"--out {out}: a manifest file name must end in .parquet",
                          hint=f"e.g. --out {out.with_suffix('.parquet') if out.suffix else out.with_name(out.name + '.parquet')}")
    check_output_file(manifest_path, what="--out")  # its folder holds the lock
    with exclusive_lock(lock_path(manifest_path), what=f"manifest {manifest_path}"):
        # a killed build's half-written files: garbage whatever this run does (no one else writes them: the lock)
        remove_stale_temps([manifest_path, summary_path, sizes_path, cats_path])
        store, replace = _claim_outputs(manifest_path, side, overwrite=overwrite, resume=resume)
        src = _make_source(source, split, inputs)
        cfg = _widen_classes(src, cfg)
        hasher = ThreadPoolExecutor(max_workers=1)  # hashlib releases the GIL: hash beside the parse
        hashes = {role: hasher.submit(sha256_file, p) for role, p in src.input_files().items()}

        store.parts_fn = lambda: {  # everything that decides the rows of the per-image stage
            **_versions(), "source": source, "split": src.split, "inputs": {role: f.result() for role, f in hashes.items()},
            "images": str(Path(images).resolve()), "masks": str(Path(masks).resolve()) if masks is not None else None,
            "filters": cfg.to_dict(), "seed": seed, "limit": limit, "shard": [shard_index, num_shards],
        }
        try:
            # fork copies only the calling thread: the hashing thread is finished and joined first
            _check_classes(src, named)
            table, summary = _mine(src, cfg, ratios, seed, limit, num_shards, shard_index, progress, store, workers,
                                   before_fork=lambda: hasher.shutdown(wait=True))
        finally:
            src.close()
            hasher.shutdown(wait=True)

        from soebench.manifest.io import write_manifest
        from soebench.manifest.schema import validate_table

        table = validate_table(table, where=f"table for {manifest_path}")  # before anything is written
        versions = _versions()
        base = manifest_path.parent if num_shards == 1 else out
        metadata = {
            "source": source,
            "preset": preset,
            "filters": cfg.to_dict(),
            # the preset's values a flag or config replaced: "preset soe-eval" alone would hide them
            "overridden_preset_values": overridden,
            "inputs": {
                role: {"name": Path(p).name, "path": _relative_or_absolute(Path(p), base), "sha256": hashes[role].result(),
                       "bytes": Path(p).stat().st_size}
                for role, p in src.input_files().items()
            },
            "tool": {"name": "soebench", "version": versions["tool"]},
            "prompt_template_version": versions["prompt_template_version"],
            "colour_namer_version": versions["colour_namer_version"],
            "images_root": _relative_or_absolute(Path(images), base),
            "split": {"source_split": src.split, "ratios": ratios, "seed": seed},
            "shard": {"index": shard_index, "count": num_shards},
            "seed": seed,
            "limit": limit,
            "summary": {k: summary[k] for k in ("candidates", "kept", "invalid", "rejected")},
        }
        summary = {"manifest": manifest_path.name, "source": source, "preset": preset, "filters": cfg.to_dict(),
                   "overridden_preset_values": overridden, "warnings": warnings, **summary}
        import json

        plot_paths: list[Path] = []
        if plots:
            from soebench.mining.summary_plots import write_plots

            plot_paths = write_plots(table, sizes_path, cats_path, title=f"{source} {src.split} ({preset or 'custom'})")
        summary["plots"] = [p.name for p in plot_paths]
        write_manifest(table, manifest_path, metadata, overwrite=replace, validated=True)
        # last: a summary says its build finished (a kill before it leaves the progress for --resume)
        write_text_atomic(summary_path, json.dumps(summary, indent=2) + "\n")
        store.discard()
        return BuildResult(manifest_path, table.num_rows, summary, summary_path, plot_paths)


#: the inputs that are folders: an output inside one would join the images or masks it reads
_FOLDER_INPUTS = ("images", "masks")


def _input_paths(source: str, inputs: Mapping[str, Any]) -> dict[str, Path]:
    """``--flag -> path`` of the inputs the build reads (of ``source``; the others are refused later)."""
    other = OPENIMAGES_INPUTS if source == "coco" else COCO_INPUTS
    return {f"--{k.replace('_', '-')}": Path(v) for k, v in inputs.items() if v is not None and k not in other}


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def refuse_outputs_over_inputs(outputs, inputs: Mapping[str, Path]) -> None:
    """Refuse, even with --overwrite, an output that is one of the inputs (``-o seg.csv``) or lies
    inside an input folder (``-o images --num-shards 2``): --overwrite replaces an old output,
    never the data the build reads. ``inputs``: option name -> path (files; the folders are
    --images and --masks)."""
    for flag, path in inputs.items():
        folder = flag.lstrip("-") in _FOLDER_INPUTS
        for out in outputs:
            out = Path(out)
            if _same_file(out, path):
                raise InputError(f"--out would write {out}, which is the input {flag} {path}",
                                 hint="write the manifest somewhere else, e.g. --out manifests/NAME.parquet")
            if folder and out.resolve().is_relative_to(path.resolve()):
                raise InputError(f"--out would write {out} inside the {flag} folder {path}",
                                 hint="write the manifest outside the folders the build reads, "
                                      "e.g. --out manifests/NAME.parquet")


def _claim_outputs(manifest_path: Path, outputs: tuple[Path, ...], *, overwrite: bool,
                   resume: bool) -> tuple[Progress, bool]:
    """Refuse outputs that exist (unless ``overwrite``) before any work; return the build's
    progress store and whether the outputs may be replaced.

    The outputs are written after the progress of the whole per-image stage is saved -- plots,
    then the manifest, then the summary: a summary marks a finished build. Saved progress means
    its build was killed before that, so ``resume`` replaces the outputs it finds (the plots or
    manifest of that build, or those it was started with --overwrite to replace); a plain rerun
    is pointed to --resume before any output is judged."""
    for p in (manifest_path, *outputs):
        check_output_file(p, what="--out")  # before the mining, not after it
    store = Progress.prepare(manifest_path, resume=resume, overwrite=overwrite)
    replace = overwrite or (resume and store.has_state())
    if resume and not replace and all(p.exists() for p in (manifest_path, *outputs)):
        # --overwrite would throw a finished build away: say it is finished instead
        raise OutputExistsError(f"the build of {manifest_path} is complete (no saved progress): nothing to resume",
                                hint="use it as it is, or pass --overwrite (without --resume) to build it again")
    for p in (manifest_path, *outputs):
        refuse_existing(p, replace, what="output")
    return store, replace


def _widen_classes(src, cfg: FilterConfig) -> FilterConfig:
    """With a class hierarchy, the class lists (the preset's too) also name every subclass:
    the widened lists are what the manifest records, so the rule stays exact and reviewable."""
    widen = getattr(src, "widen_classes", None)
    if widen is None or getattr(src, "hierarchy_path", None) is None:
        return cfg
    wide = cfg.replace(include_classes=widen(cfg.include_classes), exclude_classes=widen(cfg.exclude_classes))
    excluded = {c.strip().lower() for c in wide.exclude_classes}
    covered = [n for n in cfg.include_classes if src.class_ids(n) & excluded]
    if covered:  # as if listed in both: Cat under an excluded Mammal
        raise ConfigError(f"{', '.join(map(repr, covered))} is in --include-classes but a subclass of an excluded "
                          "class (with --class-hierarchy the exclusions, the preset's too, take every subclass)",
                          hint="--preset none (with your own filters) keeps it, or exclude narrower classes")
    return wide


def _overridden_preset_values(preset: str | None, source: str, filters) -> dict[str, Any]:
    """``{filter: the preset's value}`` for every filter the caller set to another value than the
    preset's (a FilterConfig replaces the preset whole: every differing value)."""
    if preset is None or filters is None:
        return {}
    base = resolve_filters(preset, source).to_dict()
    given = filters.to_dict() if isinstance(filters, FilterConfig) else resolve_filters(preset, source, filters).to_dict()
    return {k: base[k] for k in base if given[k] != base[k]}


def _override_warnings(preset: str | None, overridden: Mapping[str, Any], cfg: FilterConfig) -> list[str]:
    """What a user may not expect of an override: a class list replaces the preset's, it does not
    add to it (every other override replaces one value, which says itself what it does)."""
    out = []
    for key in ("exclude_classes", "include_classes"):
        before = overridden.get(key)
        if not before:
            continue
        now = {c.strip().lower() for c in getattr(cfg, key)}
        lost = [c for c in before if c.strip().lower() not in now]
        if lost:
            flag = "--" + key.replace("_", "-")
            add = " (--also-exclude-classes adds to them)" if key == "exclude_classes" else ""
            out.append(f"{flag} replaces the {len(before)} {key.split('_')[0]}d classes of preset {preset!r}: "
                       f"{len(lost)} of them ({', '.join(lost[:3])}{', ...' if len(lost) > 3 else ''}) are no longer "
                       f"{key.split('_')[0]}d{add}")
    return out


def _check_class_overlap(cfg: FilterConfig, preset: str | None, source: str) -> None:
    """A class both included and excluded selects nothing of it: a mistake, not a selection."""
    both = sorted({c.strip().lower() for c in cfg.include_classes} & {c.strip().lower() for c in cfg.exclude_classes})
    if not both:
        return
    by_preset = preset is not None and both[0] in {c.lower() for c in resolve_filters(preset, source).exclude_classes}
    raise ConfigError(f"{', '.join(map(repr, both))} is in both --include-classes and --exclude-classes",
                      hint=f"the preset {preset!r} excludes it; --preset none (with your own filters) keeps it"
                      if by_preset else "name each class in one of the two lists")


def _named_classes(filters) -> dict[str, tuple[str, ...]]:
    """The class names the caller wrote (not the preset's lists, which span datasets)."""
    from soebench.mining.filters import coerce_filter_value

    if not isinstance(filters, Mapping):
        return {}
    return {key: coerce_filter_value(key, filters[key]) for key in ("include_classes", "exclude_classes")
            if filters.get(key) is not None}


def _check_classes(src, named: Mapping[str, tuple[str, ...]]) -> None:
    """A class name that is no category of the source is a typo, never an empty selection."""
    if not any(named.values()):
        return
    import difflib

    vocabulary = src.vocabulary()
    for key, names in named.items():
        unknown = [n for n in names if n.strip().lower() not in vocabulary]
        if unknown:
            close = difflib.get_close_matches(unknown[0].lower(), list(vocabulary), n=3)
            hint = ("did you mean " + ", ".join(repr(vocabulary[c]) for c in close) + "?") if close else \
                "names are matched case-insensitively against the category names and ids of the annotations"
            files = ", ".join(Path(p).name for p in src.input_files().values())
            raise ConfigError(f"--{key.replace('_', '-')}: {', '.join(map(repr, unknown))} is not a category "
                              f"name or id of {src.name} ({files})", hint=hint)


def _versions() -> dict[str, Any]:
    """Versions of the code that decides a manifest's rows: recorded with it, part of a resume key."""
    from soebench import __version__
    from soebench.mining.colour import COLOUR_NAMER_VERSION
    from soebench.mining.prompts import PROMPT_TEMPLATE_VERSION

    return {"tool": __version__, "prompt_template_version": PROMPT_TEMPLATE_VERSION,
            "colour_namer_version": COLOUR_NAMER_VERSION}


def _flag_hint(source: str):
    def hint(missing: list[str]) -> str:
        flags = " ".join(f"--keep-{f}" for f in missing)
        return _FLAG_HINTS[source == "openimages"].format(flags=flags)

    return hint


_FLAG_HINTS = {
    True: "OpenImages flags come from --bbox-csv (columns IsOccluded, IsTruncated, IsGroupOf, IsDepiction, "
    "IsInside); pass a bbox CSV that has them, or turn the filter off ({flags})",
    False: "COCO annotations carry only iscrowd; turn the other flag filters off ({flags})",
}


def _mine(src, cfg: FilterConfig, ratios, seed: int, limit, num_shards: int, shard_index: int, progress: bool,
          store: Progress | None = None, workers: int = 1, before_fork=lambda: None):
    frun = FilterRun(cfg)
    tally = Tally(namer=src.annotation_name)
    cands, groups, available, later, candidates = _select(src, frun, tally, num_shards, shard_index)
    # the objects that passed every filter known before their files were opened
    reached = sum(len(g) for g in groups) + tally.invalid.get("missing image file", 0)
    read_captions = getattr(src, "read_captions", None)  # COCO: a wrong --captions fails before the long part
    if read_captions is not None:
        read_captions(np.array([cands.image_key[g[0]] for g in groups]))
    stage = Stage(src, cands, groups, frun, available, later, before_fork)
    out_rows, capped, unprocessed = _mine_groups(stage, tally, seed, limit, progress, store, workers)
    frun.finish(available | later)
    if not out_rows:
        _refuse_missing_files(src, cands, tally, reached, store)
    if limit is not None and len(out_rows) > limit:
        unprocessed += len(out_rows) - limit
        out_rows = out_rows[:limit]
    # captions, splits, ids
    image_keys = sorted({r["image_id"] for r in out_rows})
    caps = src.captions(image_keys) if out_rows else {}
    splits = assign_splits(image_keys, ratios, seed, src.name) if ratios else {}
    for r in out_rows:
        r["sample_id"] = sample_id(src.name, src.split, r["annotation_id"])
        r["split"] = splits.get(r["image_id"], src.split)
        r["captions"] = caps.get(r["image_id"], [])
    table = _to_table(out_rows)
    rejected = dict(frun.rejected)
    if cfg.max_per_image is not None:
        rejected["max_per_image"] = capped
    if limit is not None:
        rejected["limit"] = unprocessed
    summary = _summary(table, candidates, tally, rejected, band=box_band(cfg.to_dict()))
    summary["unknown_flags"] = _unknown_flags(table, cfg)
    if "captions" in src.input_files():  # their rows have an empty captions list: say how many
        summary["images_without_captions"] = sum(1 for k in image_keys if not caps.get(k))
    return table, summary


def box_band(filters: dict[str, Any]) -> tuple[float | None, float | None] | None:
    """The area band every kept object's box passed, from a FilterConfig's ``to_dict()`` (as a
    manifest's metadata records it); None: no band, or one on the mask."""
    lo, hi = filters.get("min_area_fraction"), filters.get("max_area_fraction")
    if filters.get("area_by") != "box" or (lo is None and hi is None):
        return None
    return lo, hi


def _unknown_flags(table, cfg: FilterConfig) -> dict[str, int]:
    """Kept objects whose flag an active ``drop_<flag>`` filter could not see (unknown in the
    source, or an OpenImages segmentation row with no matching box in --bbox-csv): they pass."""
    from soebench.mining.filters import FLAG_NAMES

    return {f: table.column(f).null_count for f in FLAG_NAMES
            if getattr(cfg, f"drop_{f}") and table.column(f).null_count}


def _repeats(keys) -> np.ndarray:
    """True where a key already occurred at an earlier position (an Arrow stable sort, so ints
    and strings alike, and only over the rows that passed the cheap filters)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = np.zeros(len(keys), dtype=bool)
    if len(keys) < 2:
        return out
    arr = pa.array(keys)
    order = pc.sort_indices(arr)  # stable: equal keys keep their file order
    ordered = arr.take(order)
    same = np.asarray(pc.equal(ordered.slice(1), ordered.slice(0, len(arr) - 1)).to_numpy(zero_copy_only=False),
                      dtype=bool)
    out[order.to_numpy()[1:][same]] = True
    return out


def _select(src, frun: FilterRun, tally: Tally, num_shards: int, shard_index: int):
    """Everything before the pixels: invalid rows, this shard, the cheap filters, missing image
    files. Returns ``(candidates, groups, available columns, later columns, candidate count)``;
    ``groups`` are the surviving rows by image, in the manifest's order."""
    cands = src.candidates()
    later = src.later_columns()
    joinable = src.join_columns()
    frun.check_source(cands.provides | later | joinable, flag_hint=_flag_hint(src.name))
    rows = np.arange(len(cands))
    if num_shards > 1:
        uniq, inverse = np.unique(cands.image_key, return_inverse=True)
        shard = np.array([shard_of(src.image_name(k), src.name, num_shards) for k in uniq])[inverse]
        rows = rows[shard == shard_index]
    candidates = len(rows)
    invalid = cands.invalid[rows]
    for reason in sorted({r for r in invalid if r is not None}):
        tally.drop(reason, cands.ann_key[rows[invalid == reason]])
    rows = rows[invalid == None]  # noqa: E711
    available = set(cands.provides)
    rows = frun.apply(cands.cols, rows, available)
    repeats = _repeats(src.annotation_keys(cands.ann_key[rows]))
    if repeats.any():  # two rows would share a sample_id: the file's first one is kept
        tally.drop("duplicate annotation id", cands.ann_key[rows[repeats]])
        rows = rows[~repeats]
    if joinable:  # columns looked up only for the rows still alive (OpenImages flags)
        available |= src.join(rows) if len(rows) else joinable
        rows = frun.apply(cands.cols, rows, available)
    # one look-up per image, before the per-image loop: missing files are common in partial copies
    uniq, inverse = np.unique(cands.image_key[rows], return_inverse=True)
    missing = np.array([src.image_file(k) is None for k in uniq], dtype=bool)[inverse] if len(rows) else np.zeros(0, bool)
    if missing.any():
        _drop_missing_images(src, cands, rows[missing], tally)
        rows = rows[~missing]
    rows = rows[np.lexsort((cands.ann_order[rows], cands.image_order[rows]))]
    img_keys = cands.image_key[rows]
    boundaries = np.flatnonzero(np.r_[True, img_keys[1:] != img_keys[:-1]]) if len(rows) else np.array([], dtype=int)
    groups = np.split(rows, boundaries[1:]) if len(rows) else []
    return cands, groups, available, later, candidates


#: the drop reasons of a file that is not there or cannot be read: a wrong --images or --masks
_FILE_REASONS = ("missing image file", "corrupt image file", "missing mask file", "corrupt mask file")


def _file_reason(reason: str) -> bool:
    return reason in _FILE_REASONS or reason.startswith(("corrupt mask archive ", "corrupt mask file in archive "))


def _refuse_missing_files(src, cands, tally: Tally, reached: int, store: Progress | None) -> None:
    """No object kept, every one that passed the filters was dropped for its files, and the
    folders hold none of the files any object names (or only unreadable ones): a wrong --images
    or --masks, which an empty manifest with exit 0 would hide. A partial copy -- the folders hold
    files of other objects, those another filter rejected or another shard's -- only warns."""
    counts = {k: v for k, v in tally.invalid.items() if _file_reason(k)}
    if not reached or sum(counts.values()) < reached:
        return
    if _folders_hold_files(src, cands, counts):
        return
    if store is not None:
        store.discard()  # a rerun with the right folders starts afresh, not from this progress
    folders = [f"--images {src.images_root}"]
    if getattr(src, "masks_root", None) is not None and any("mask" in k for k in counts):
        folders.append(f"--masks {src.masks_root}")
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    examples = "; ".join(f"{k}: {ex[0]}" for k, ex in sorted(tally.examples.items()) if k in counts and ex)
    raise InputError(
        f"no object kept: all {reached} objects that passed the filters were dropped for missing or unreadable "
        f"files ({shown}); looked in {' and '.join(folders)}" + (f" (e.g. {examples})" if examples else ""),
        hint="--images must be the folder of the image files the annotations name (--masks: of the mask PNGs or "
             "their *-masks-<h>.zip archives)")


def _folders_hold_files(src, cands, counts: Mapping[str, int]) -> bool:
    """Whether, for each kind of file found missing, its folder holds that file of some valid
    candidate (of any shard); False too when no file was missing, only unreadable."""
    kinds = [k for k in ("missing image file", "missing mask file") if counts.get(k)]
    if not kinds:
        return False
    rows = np.flatnonzero(cands.invalid == None)  # noqa: E711 - elementwise on an object array
    if "missing image file" in kinds and not any(src.image_file(k) is not None
                                                 for k in np.unique(cands.image_key[rows])):
        return False
    holds_mask = getattr(src, "holds_any_mask", None)
    return not ("missing mask file" in kinds and holds_mask is not None and not holds_mask(rows))


def _drop_missing_images(src, cands, rows: np.ndarray, tally: Tally) -> None:
    """Count ``rows`` as ``missing image file``; the examples say where each image was looked for."""
    reason = "missing image file"
    lookup = getattr(src, "image_lookup", None)
    keys = cands.image_key[rows]
    while len(rows) and lookup is not None and not tally.full(reason):  # image by image, until the examples are full
        hit = keys == keys[0]
        tally.drop(reason, cands.ann_key[rows[hit]], lookup(keys[0]))
        rows, keys = rows[~hit], keys[~hit]
    if len(rows):
        tally.drop(reason, cands.ann_key[rows])


def _mine_groups(stage: Stage, tally: Tally, seed: int, limit, progress: bool, store: Progress | None,
                 workers: int) -> tuple[list[dict[str, Any]], int, int]:
    """The per-image stage over ``stage.groups`` (resumed from ``store`` when it holds progress);
    returns ``(rows, objects capped by max_per_image, objects left unprocessed by limit)``."""
    frun, groups = stage.frun, stage.groups
    cap = frun.config.max_per_image
    out_rows: list[dict[str, Any]] = []
    capped = unprocessed = start = 0
    restored = store.restore(len(groups)) if store is not None else None
    if restored is not None:
        snap, out_rows = restored
        tally.invalid, tally.examples = Counter(snap.invalid), snap.examples
        frun.rejected, capped, start = snap.rejected, snap.capped, snap.next_group
    done = start  # the groups mined (or, past a limit, left unmined) so far
    with group_results(stage, start, workers, IMAGE_WORKERS) as results, _progress(progress, len(groups)) as prog:
        task = prog.add_task("mining", total=len(groups), completed=start) if prog is not None else None
        for gi in range(start, len(groups)):
            if limit is not None and len(out_rows) >= limit:
                unprocessed += sum(len(g) for g in groups[gi:])
                break
            if store is not None and store.due():  # a group boundary: the counters are consistent
                store.save(snapshot(gi, len(out_rows), tally.invalid, tally.examples, frun.rejected, capped), out_rows)
            result = next(results)
            result.add_to(tally, frun)
            kept = result.kept
            if cap is not None and len(kept) > cap:
                ranked = sorted(kept, key=lambda rec: unit_hash(f"cap:{seed}:{rec['annotation_id']}"))
                chosen = {id(r) for r in ranked[:cap]}
                capped += len(kept) - cap
                kept = [r for r in kept if id(r) in chosen]
            out_rows.extend(kept)
            done = gi + 1
            if prog is not None:
                prog.advance(task)
    if store is not None:  # the whole stage, saved before any output is written: a build killed while
        # writing them (even one too short for a periodic save) is finished by --resume without mining again
        store.save(snapshot(done, len(out_rows), tally.invalid, tally.examples, frun.rejected, capped), out_rows)
    return out_rows, capped, unprocessed


def _to_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    from soebench.manifest.schema import SCHEMA

    data = {name: [r.get(name) for r in rows] for name in SCHEMA.names}
    return pa.Table.from_pydict(data, schema=SCHEMA)


#: the size histogram's bins: box side fraction sqrt(area fraction), half-open [edge, next edge)
SIZE_EDGES = (0, 1 / 32, 1 / 16, 1 / 12, 1 / 8, 1 / 6, 1 / 4, 1 / 2, 1.0)
SIZE_LABELS = ("<1/32", "1/32-1/16", "1/16-1/12", "1/12-1/8", "1/8-1/6", "1/6-1/4", "1/4-1/2", ">=1/2")


def size_histogram(fractions: np.ndarray, band: tuple[float | None, float | None] | None = None) -> dict[str, int]:
    """Counts of objects by box side fraction sqrt(area fraction), in the bins of :data:`SIZE_EDGES`.

    ``band``: the inclusive area band (min, max; None: open) that every fraction passed, as the
    build's filter judged it -- inclusive up to its tolerances (BAND_RTOL, OpenImages' coordinate
    rounding). An object on the band's edge then counts in the band's bins: the soebench preset's
    largest boxes, exactly (1/6)^2, are in "1/8-1/6", not in "1/6-1/4" outside the band.
    """
    from soebench.mining.filters import BAND_RTOL

    area_edges = np.array([e * e for e in SIZE_EDGES])  # compared as areas: (1/6)**2 is the preset's value exactly
    frac = np.asarray(fractions, dtype=float)
    idx = np.clip(np.searchsorted(area_edges, frac, side="right") - 1, 0, len(SIZE_LABELS) - 1)
    if band is not None and len(idx):
        lo, hi = band
        # the bins the band reaches; an edge within BAND_RTOL of a bin edge is that bin edge
        top = len(SIZE_LABELS) - 1
        first = 0 if lo is None else int(np.searchsorted(area_edges, lo * (1 + BAND_RTOL), side="right")) - 1
        last = top if hi is None else int(np.searchsorted(area_edges, hi * (1 - BAND_RTOL), side="left")) - 1
        first = min(max(first, 0), top)
        idx = np.clip(idx, first, max(first, min(last, top)))
    counts = np.bincount(idx, minlength=len(SIZE_LABELS))
    return {label: int(c) for label, c in zip(SIZE_LABELS, counts)}


def _summary(table, candidates: int, tally: Tally, rejected: dict[str, int], band=None) -> dict[str, Any]:
    cats = Counter(table.column("category").to_pylist())
    splits = Counter(table.column("split").to_pylist())
    colours = Counter(c for c in table.column("color").to_pylist() if c)
    return {
        "candidates": candidates,
        "kept": table.num_rows,
        "invalid": dict(sorted(tally.invalid.items())),
        "invalid_examples": {k: v for k, v in sorted(tally.examples.items())},
        "rejected": rejected,
        "images": len(set(table.column("image_id").to_pylist())),
        "per_category": dict(sorted(cats.items(), key=lambda kv: (-kv[1], kv[0]))),
        "per_split": dict(sorted(splits.items())),
        "per_colour": dict(sorted(colours.items(), key=lambda kv: (-kv[1], kv[0]))),
        "size_histogram": size_histogram(table.column("bbox_area_fraction").to_numpy(), band),
    }
