"""Atomic Parquet write and read of a manifest file or a folder of shard parts."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soebench.errors import InputError
from soebench.fileio import atomic_path, check_output_file, refuse_existing
from soebench.manifest.schema import METADATA_KEY, SCHEMA_VERSION, validate_table


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

    def image_path(self, relative: str) -> Path:
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
    return table, meta


_PART = re.compile(r"^part-(\d+)-of-(\d+)\.parquet$")
#: metadata that every part of one build shares (shard index, limit effects and summaries differ)
_SHARED_KEYS = ("source", "preset", "filters", "inputs", "images_root", "split", "seed", "limit", "schema_version")


def _check_parts(folder: Path, parts: list[Path], metas: list[dict[str, Any]]) -> None:
    """Refuse a folder whose parts are incomplete or come from different builds."""
    named = [(p, _PART.match(p.name)) for p in parts]
    counts = {int(m.group(2)) for _, m in named if m}
    if len(counts) > 1:
        raise InputError(f"manifest folder {folder} mixes parts of {sorted(counts)} shards")
    if counts:
        (count,) = counts
        have = {int(m.group(1)) for _, m in named if m}
        missing = sorted(set(range(count)) - have)
        if missing:
            shown = ", ".join(f"part-{i:05d}-of-{count:05d}.parquet" for i in missing[:5])
            raise InputError(
                f"manifest folder {folder} is incomplete: {len(missing)} of {count} parts missing ({shown})",
                hint="run build-dataset for the missing --shard-index values",
            )
    first = metas[0]
    for part, meta in zip(parts[1:], metas[1:]):
        for key in _SHARED_KEYS:
            if meta.get(key) != first.get(key):
                raise InputError(
                    f"manifest folder {folder}: {part.name} differs from {parts[0].name} in {key!r}; "
                    "its parts come from different builds"
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


def _read_parts(folder: Path) -> tuple[pa.Table, dict[str, Any]]:
    parts = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not parts:
        raise InputError(f"manifest folder {folder} holds no .parquet parts")
    tables, metas = zip(*(_read_one(p) for p in parts))
    _check_parts(folder, parts, list(metas))
    try:
        table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    except pa.ArrowInvalid as exc:
        raise InputError(f"manifest parts in {folder} have different schemas: {exc}") from exc
    meta = dict(metas[0])
    meta["parts"] = [p.name for p in parts]
    meta.pop("shard", None)
    summary: dict[str, Any] = {}
    for m in metas:
        summary = _add_counts(summary, m.get("summary") or {})
    meta["summary"] = summary
    if "image_id" in table.column_names and table.num_rows:
        table = table.take(pa.array(_row_order(table, meta.get("source"))))
    return table, meta


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
    meta["merged_from"] = meta.pop("parts")
    meta["shard"] = {"index": 0, "count": 1}
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


def read_manifest(path: str | os.PathLike, *, validate: bool = True) -> Manifest:
    """Read a manifest file, or a folder of ``*.parquet`` parts (shards) as one manifest.

    A folder must hold every part of one build (checked); its rows come back in the order of
    the unsharded build.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"manifest {path} does not exist")
    if path.is_dir():
        table, meta = _read_parts(path)
    else:
        table, meta = _read_one(path)
    if validate:
        version = meta.get("schema_version")
        if version is not None and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"{path}: manifest schema version {version} is not compatible with {SCHEMA_VERSION}")
        table = validate_table(table, where=str(path))
    return Manifest(table=table, metadata=meta, path=path.resolve())
