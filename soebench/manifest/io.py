"""Atomic Parquet write and read of a manifest file or a folder of shard parts."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from soebench.errors import InputError
from soebench.fileio import atomic_path, refuse_existing
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
    table: pa.Table, path: str | os.PathLike, metadata: dict[str, Any] | None = None, *, overwrite: bool = False
) -> Path:
    """Validate and write ``table`` to ``path`` atomically; byte-identical for identical inputs."""
    path = Path(path)
    refuse_existing(path, overwrite, what="manifest")
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
    meta = json.loads(raw) if raw else {}
    return table, meta


def read_manifest(path: str | os.PathLike, *, validate: bool = True) -> Manifest:
    """Read a manifest file, or a folder of ``*.parquet`` parts (shards) as one manifest."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"manifest {path} does not exist")
    if path.is_dir():
        parts = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
        if not parts:
            raise InputError(f"manifest folder {path} holds no .parquet parts")
        tables, metas = zip(*(_read_one(p) for p in parts))
        try:
            table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
        except pa.ArrowInvalid as exc:
            raise InputError(f"manifest parts in {path} have different schemas: {exc}") from exc
        meta = dict(metas[0])
        meta["parts"] = [p.name for p in parts]
    else:
        table, meta = _read_one(path)
    if validate:
        version = meta.get("schema_version")
        if version is not None and version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise InputError(f"{path}: manifest schema version {version} is not compatible with {SCHEMA_VERSION}")
        table = validate_table(table, where=str(path))
    return Manifest(table=table, metadata=meta, path=path.resolve())
