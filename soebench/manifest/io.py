"""Atomic Parquet write and read of a manifest file or a folder of shard parts."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soebench.errors import InputError
from soebench.fileio import atomic_path, check_output_file, refuse_existing
from soebench.manifest.schema import METADATA_KEY, SCHEMA_VERSION, leaves_images_root, validate_table


@dataclass
class Manifest:
    table: pa.Table
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def images_root(self) -> Path:
        """Absolute images root: recorded relative to the manifest file when possible."""
        root = Path(self.metadata.get("images_root", "."))
        if not root.is_absolute() and self.path is not None:
            base = self.path if self.path.is_dir() else self.path.parent
            root = (base / root).resolve()
        return root

    def with_images_root(self, root: str | os.PathLike) -> "Manifest":
        """This manifest reading its images from ``root`` instead of the recorded root (stored
        relative to the manifest's folder, that names nothing once the manifest was moved)."""
        folder = Path(root).expanduser()
        if not folder.is_dir():
            raise InputError(f"images root {folder} is not a folder",
                             hint="give the folder the manifest's image_path values are relative to")
        return replace(self, metadata={**self.metadata, "images_root": str(folder.resolve())})

    def image_path(self, relative: str) -> Path:
        """The file of a row's ``image_path``; one that would lead outside the images root
        (absolute, ``..``) is refused: a manifest must not make a reader open any file it names."""
        if leaves_images_root(relative):
            raise InputError(f"manifest {self.path}: image_path {relative!r} leaves the images root {self.images_root}",
                             hint="image paths must be relative to the images root, without '..'; "
                                  "rebuild the manifest with soebench build-dataset")
        return self.images_root / relative

    def __len__(self) -> int:
        return self.table.num_rows

    def to_pandas(self):
        return self.table.to_pandas()


def _encode_metadata(metadata: dict[str, Any]) -> dict[bytes, bytes]:
    meta = {"schema_version": SCHEMA_VERSION, **metadata}
    return {METADATA_KEY: json.dumps(meta, sort_keys=True, default=str).encode()}


def write_manifest(
    table: pa.Table, path: str | os.PathLike, metadata: dict[str, Any] | None = None, *, overwrite: bool = False,
    validated: bool = False,
) -> Path:
    """Validate and write ``table`` to ``path`` atomically; byte-identical for identical inputs.
    ``validated``: the caller already has the table :func:`validate_table` returned (checked
    before anything else was written), so it is not checked twice."""
    path = Path(path)
    refuse_existing(path, overwrite, what="manifest")
    if not validated:
        table = validate_table(table, where=f"table for {path}")
    table = table.replace_schema_metadata(_encode_metadata(metadata or {}))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
    return path


def _read_one(path: Path) -> tuple[pa.Table, dict[str, Any]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: the soebench metadata of the file is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path}: the soebench metadata of the file is not a JSON object")
    _check_metadata(path, meta)
    return table, meta


#: metadata values readers use, with the JSON type each must have
_TEXT_KEYS = ("schema_version", "images_root", "source")
_OBJECT_KEYS = ("summary", "inputs", "split", "filters", "tool")


def _check_metadata(path: Path, meta: dict[str, Any]) -> None:
    """The metadata values readers use have their types (a hand-edited or foreign file would
    otherwise fail later with an AttributeError, or as a path such as ``Path(5)``)."""
    for key in _TEXT_KEYS:
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise InputError(f"{path}: metadata {key!r} must be text, got {meta[key]!r}")
    for key in _OBJECT_KEYS:
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise InputError(f"{path}: metadata {key!r} must be a JSON object, got {meta[key]!r}")
    for role, entry in (meta.get("inputs") or {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path", ""), (str, type(None))):
            raise InputError(f"{path}: metadata 'inputs' entry {role!r} must be an object with a text 'path', "
                             f"got {entry!r}")
    if meta.get("shard") is not None and _shard(meta) is None:
        raise InputError(f"{path}: metadata 'shard' must be {{\"index\": I, \"count\": N}} with 0 <= I < N, "
                         f"got {meta['shard']!r}")


def _shard(meta: dict[str, Any]) -> tuple[int, int] | None:
    """``(index, count)`` of the metadata's ``shard`` entry; None when it is absent or malformed."""
    shard = meta.get("shard")
    if not isinstance(shard, dict):
        return None
    index, count = shard.get("index"), shard.get("count")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, count)) or not 0 <= index < count:
        return None
    return index, count


def part_files(folder: Path) -> list[Path]:
    """The parts of a manifest folder: its ``*.parquet`` files, without dot-files (a temporary
    file of a build being written, a lock, an editor's or the OS's files)."""
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


_PART = re.compile(r"^part-(\d+)-of-(\d+)\.parquet$")
#: metadata that every part of one build shares (shard index, limit effects and summaries differ);
#: the versions too: colour words and prompts of another namer or template are another build
_SHARED_KEYS = ("source", "preset", "filters", "inputs", "images_root", "split", "seed", "limit", "schema_version",
                "tool", "colour_namer_version", "prompt_template_version")


def _check_parts(folder: Path, parts: list[Path], metas: list[dict[str, Any]]) -> bool:
    """Refuse a folder whose parts are incomplete or come from different builds; True when the
    parts are known to be every part of their build (from their metadata, else their names)."""
    first = metas[0]
    for part, meta in zip(parts[1:], metas[1:]):
        for key in _SHARED_KEYS:
            a, b = _comparable(key, first.get(key)), _comparable(key, meta.get(key))
            if a != b:
                raise InputError(
                    f"manifest folder {folder}: {part.name} differs from {parts[0].name} in {key!r} "
                    f"({_difference(key, a, b)}); its parts come from different builds"
                )
    recorded = [_shard(m) for m in metas]
    if any(r is not None for r in recorded):
        return _check_recorded_shards(folder, parts, recorded)
    return _check_part_names(folder, parts)


#: what identifies an input file across machines: its content, not where it was read from (the
#: parts of one build may be made from copies of the inputs at other paths)
_INPUT_IDENTITY = ("sha256", "bytes")


def _comparable(key: str, value: Any) -> Any:
    """A shared metadata value as parts must agree on it: split ratios in their order too (dicts
    compare equal in any order), since the order of the names decided the assignment before
    soebench cut the splits in name order; write_manifest stores them sorted. Inputs by content."""
    if key == "split" and isinstance(value, dict) and isinstance(value.get("ratios"), dict):
        return {**value, "ratios": list(value["ratios"].items())}
    if key == "inputs" and isinstance(value, dict):
        return {role: {k: entry.get(k) for k in _INPUT_IDENTITY} if isinstance(entry, dict) else entry
                for role, entry in value.items()}
    return value


def _difference(key: str, a: Any, b: Any, depth: int = 0) -> str:
    """The first field in which two metadata values differ, with both values (shortened)."""
    if isinstance(a, dict) and isinstance(b, dict) and depth < 3:
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                if k not in a or k not in b:
                    return f"{key}.{k} is only in {'the first' if k in a else 'the other'}"
                return _difference(f"{key}.{k}", a[k], b[k], depth + 1)

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True, default=str)
        return text if len(text) <= 80 else text[:77] + "..."  # a sha256 whole

    return f"{key}: {short(a)} vs {short(b)}"


def _check_recorded_shards(folder: Path, parts: list[Path], recorded: list[tuple[int, int] | None]) -> bool:
    """Completeness from what each part records (``shard: {index, count}``), whatever the files
    are called: every index 0..count-1 exactly once, one count."""
    unrecorded = [p for p, r in zip(parts, recorded) if r is None]
    if unrecorded:
        raise InputError(f"manifest folder {folder}: {unrecorded[0].name} records no shard in its metadata, "
                         "unlike the other parts; its parts come from different builds")
    counts = sorted({count for _, count in recorded})
    if len(counts) > 1:
        raise InputError(f"manifest folder {folder} mixes parts of {counts} shards")
    (count,) = counts
    seen: dict[int, Path] = {}
    for part, (index, _) in zip(parts, recorded):
        if index in seen:
            raise InputError(f"manifest folder {folder}: {seen[index].name} and {part.name} are both part "
                             f"{index} of {count} (shard index {index}); a part is there twice")
        seen[index] = part
    _refuse_missing(folder, sorted(set(range(count)) - set(seen)), count)
    return True


def _check_part_names(folder: Path, parts: list[Path]) -> bool:
    """Completeness from ``part-I-of-N`` names, for parts without shard metadata."""
    named = [m for m in (_PART.match(p.name) for p in parts) if m]
    counts = {int(m.group(2)) for m in named}
    if len(counts) > 1:
        raise InputError(f"manifest folder {folder} mixes parts of {sorted(counts)} shards")
    if not counts:
        return False
    (count,) = counts
    _refuse_missing(folder, sorted(set(range(count)) - {int(m.group(1)) for m in named}), count)
    return True


def _refuse_missing(folder: Path, missing: list[int], count: int) -> None:
    if missing:
        shown = ", ".join(f"part-{i:05d}-of-{count:05d}.parquet" for i in missing[:5])
        raise InputError(
            f"manifest folder {folder} is incomplete: {len(missing)} of {count} parts missing ({shown})",
            hint="run build-dataset for the missing --shard-index values",
        )


def _add_counts(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    out = dict(total)
    for key, value in part.items():
        if isinstance(value, dict):
            out[key] = _add_counts(out.get(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value
    return out


def _row_order(table: pa.Table, source: str | None) -> np.ndarray:
    """The order build_dataset writes rows in: by image (COCO: numeric id; else the id text),
    objects of one image in their written order (stable sort; an image never spans parts)."""
    ids = table.column("image_id").to_pylist()
    if source == "coco" and all(i.isdigit() for i in ids):
        keys = np.array([int(i) for i in ids], dtype=np.int64)
    else:
        _, keys = np.unique(np.array(ids, dtype=object), return_inverse=True)
    return np.argsort(keys, kind="stable")


def _read_parts(folder: Path, validate: bool) -> tuple[pa.Table, dict[str, Any]]:
    parts = part_files(folder)
    if not parts:
        raise InputError(f"manifest folder {folder} holds no .parquet parts")
    tables, metas = zip(*(_read_one(p) for p in parts))
    complete = _check_parts(folder, parts, list(metas))
    if validate:  # each part against the schema first: an error names the part, and types are cast alike
        tables = tuple(validate_table(t, where=str(p)) for p, t in zip(parts, tables))
    table = _concat_parts(parts, tables)
    meta = dict(metas[0])
    meta["parts"] = [p.name for p in parts]
    # the folder as a whole is one complete build when every part was seen, else nothing is claimed
    meta.pop("shard", None)
    if complete:
        meta["shard"] = {"index": 0, "count": 1}
    summary: dict[str, Any] = {}
    for m in metas:
        summary = _add_counts(summary, m.get("summary") or {})
    meta["summary"] = summary
    if "image_id" in table.column_names and table.num_rows:
        table = table.take(pa.array(_row_order(table, meta.get("source"))))
    return table, meta


def _concat_parts(parts: list[Path], tables: tuple[pa.Table, ...]) -> pa.Table:
    """One table of the parts' rows; a part with other columns or types is named, with the column."""
    first = tables[0].schema
    for part, table in zip(parts[1:], tables[1:]):
        names = table.schema.names
        missing = [c for c in first.names if c not in names]
        extra = [c for c in names if c not in first.names]
        if missing or extra:
            what = f"missing column {missing[0]!r}" if missing else f"extra column {extra[0]!r}"
            raise InputError(f"{part}: {what}, unlike {parts[0].name}; its parts come from different builds")
        for column in first:
            other = table.schema.field(column.name).type
            if not other.equals(column.type):
                raise InputError(f"{part}: column {column.name!r} is {other}, in {parts[0].name} it is {column.type}")
    return pa.concat_tables([t.select(first.names).replace_schema_metadata(None) for t in tables])


def merge_parts(folder: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the parts of ``folder`` (from ``build-dataset --num-shards``) as one manifest file,
    rows in the order of an unsharded build, summaries added up."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder of manifest parts")
    if Path(out).resolve().parent == folder.resolve():
        # the folder is read as every *.parquet in it: the merged file would join its parts
        raise InputError(f"--out {out} is inside the parts folder {folder}; the merged manifest must be written elsewhere",
                         hint=f"e.g. --out {folder.resolve().parent / (folder.resolve().name + '.parquet')}")
    check_output_file(out, what="--out")
    refuse_existing(out, overwrite, what="manifest")
    manifest = read_manifest(folder)
    meta = {k: v for k, v in manifest.metadata.items() if k != "schema_version"}
    meta["merged_from"] = meta.pop("parts")  # "shard" stays as the read says: 0 of 1 only when complete
    out = Path(out)
    new_base = out.resolve().parent
    meta["images_root"] = _relative_to(manifest.images_root, new_base)
    # the input files' paths were recorded relative to the parts folder: rebase them too
    inputs = {}
    for role, entry in (meta.get("inputs") or {}).items():
        entry = dict(entry)
        if entry.get("path") and not Path(entry["path"]).is_absolute():
            entry["path"] = _relative_to((folder.resolve() / entry["path"]).resolve(), new_base)
        inputs[role] = entry
    if inputs:
        meta["inputs"] = inputs
    return write_manifest(manifest.table, out, meta, overwrite=overwrite)


def _relative_to(target: Path, base: Path) -> str:
    """``target`` relative to ``base`` when possible (the pair moves together), else absolute."""
    try:
        return os.path.relpath(target, base)
    except ValueError:  # another drive (Windows)
        return str(target)


def _refuse_lone_part(path: Path, meta: dict[str, Any]) -> None:
    """One part of a sharded build is a fraction of its rows: read alone, it would pass for the
    whole manifest (an evaluation or training on a third of the data, without a word)."""
    index, count = _shard(meta) or (0, 1)
    if count > 1:
        raise InputError(f"{path} is one part of a sharded build (shard index {index} of {count} parts), "
                         "not a whole manifest; read the folder of all its parts, or merge them first",
                         hint=f"soebench manifest merge {path.parent} --out FILE.parquet writes all the parts "
                              "as one manifest")


def read_manifest(path: str | os.PathLike, *, validate: bool = True,
                  images_root: str | os.PathLike | None = None) -> Manifest:
    """Read a manifest file, or a folder of ``*.parquet`` parts (shards) as one manifest.

    ``images_root``: where the images are, in place of the recorded root (stored relative to
    the manifest's folder, it names nothing once the manifest was moved away from its images).

    A folder must hold every part of one build (checked from each part's recorded shard, else
    from the part-I-of-N names); its rows come back in the order of the unsharded build. With
    ``validate``, a single file that records itself as one part of several is refused.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"manifest {path} does not exist")
    if path.is_dir():
        table, meta = _read_parts(path, validate)
    else:
        table, meta = _read_one(path)
    if validate:
        version = meta.get("schema_version")
        if version is not None and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"{path}: manifest schema version {version} is not compatible with {SCHEMA_VERSION}")
        if not path.is_dir():
            _refuse_lone_part(path, meta)
        table = validate_table(table, where=str(path))
    manifest = Manifest(table=table, metadata=meta, path=path.resolve())
    return manifest if images_root is None else manifest.with_images_root(images_root)
