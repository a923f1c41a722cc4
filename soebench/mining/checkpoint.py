"""Progress of an unfinished ``build_dataset`` run, so that ``--resume`` continues where it stopped.

The per-image stage is the long part of a big build (every kept object's mask, pixels and
colour); everything before it -- parse, invalid rows, cheap filters, missing files -- is
recomputed on resume in seconds and is deterministic. So the progress is the miner's state at
an image-group boundary: the index of the next group, the rows kept so far and the counters.

Layout, beside the manifest it will become (``<manifest>.partial/``)::

    state.json         key, next group, chunk list, counters  (written last, atomically)
    rows-000001.arrow  the rows kept since the previous save   (Arrow IPC, written atomically)

A save appends one chunk and then replaces ``state.json``; a crash between the two leaves a
chunk that no state names, which is ignored and removed. The ``key`` hashes everything that
decides the result (inputs and their sha256, filters, seed, limit, shard, versions): a resume
with anything changed is refused instead of mixing two configurations in one manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soebench.errors import ConfigError, InputError, OutputExistsError
from soebench.fileio import atomic_path, write_text_atomic

FORMAT_VERSION = 1
#: seconds of per-image work between two saves (a save costs one small Arrow file)
SAVE_EVERY_S = 30.0
#: columns filled in after the per-image stage (ids, splits, captions): not part of a saved row
LATER_COLUMNS = ("sample_id", "split", "captions")


def partial_dir(manifest_path: Path) -> Path:
    return manifest_path.with_name(manifest_path.name + ".partial")


def run_key(parts: dict[str, Any]) -> str:
    """A hash of what decides the manifest (JSON of ``parts`` with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def changed_parts(saved: Any, now: dict[str, Any]) -> list[str]:
    """The entries of a run key's parts that differ, one level deep (``filters.min_area_fraction``,
    ``inputs.bbox_csv``); empty when ``saved`` (an older state file) does not record them."""
    if not isinstance(saved, dict):
        return []
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


@dataclass
class Snapshot:
    """The miner's state after ``next_group`` image groups: rows kept and every counter."""

    next_group: int
    rows: int
    invalid: dict[str, int]
    examples: dict[str, list[str]]
    rejected: dict[str, int]
    capped: int


@dataclass
class Progress:
    """Saves and restores a build's progress in :func:`partial_dir` of its manifest."""

    folder: Path
    #: returns what decides the run's rows (its key is :func:`run_key` of it); called at the first
    #: restore or save, so that the input hashes (computed beside the parse) are not waited for
    #: before they are needed. Saved beside the key, so that a refused resume can say what changed.
    parts_fn: Callable[[], dict[str, Any]] = dict
    every_s: float = SAVE_EVERY_S
    _key: str | None = None
    _parts: dict[str, Any] | None = None
    _chunks: list[str] = field(default_factory=list)
    _saved_rows: int = 0
    _last_save: float = field(default_factory=time.monotonic)

    @classmethod
    def prepare(cls, manifest_path: Path, *, resume: bool, overwrite: bool) -> Progress:
        """Before any work: refuse to drop an interrupted run's progress unless asked to."""
        if resume and overwrite:
            raise ConfigError("--overwrite and --resume exclude each other")
        folder = partial_dir(manifest_path)
        if folder.is_dir() and not (folder / "state.json").exists():
            shutil.rmtree(folder)  # killed during its first save: chunks no state names, nothing to resume
        if folder.exists() and not resume:
            if not overwrite:
                raise OutputExistsError(
                    f"an interrupted build of {manifest_path} left its progress in {folder}",
                    hint="pass --resume to continue it, or --overwrite to start over",
                )
            shutil.rmtree(folder)
        return cls(folder, every_s=SAVE_EVERY_S)

    def has_state(self) -> bool:
        """Whether a killed build's progress is here to resume."""
        return (self.folder / "state.json").is_file()

    @property
    def parts(self) -> dict[str, Any]:
        if self._parts is None:
            # as JSON gives it back (tuples as lists, paths as text): compared with a saved state
            self._parts = json.loads(json.dumps(self.parts_fn(), sort_keys=True, default=str))
        return self._parts

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = run_key(self.parts)
        return self._key

    # -- restore -------------------------------------------------------------------------------

    def restore(self, groups: int) -> tuple[Snapshot, list[dict[str, Any]]] | None:
        """The saved snapshot and rows, or None when there is nothing to resume."""
        state_path = self.folder / "state.json"
        if not state_path.exists():
            return None
        try:
            state = json.loads(state_path.read_text())
            snap = Snapshot(**state["snapshot"])
            chunks = list(state["chunks"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{state_path}: not a soebench build progress file ({exc})",
                             hint="pass --overwrite to start over") from exc
        if state.get("format") != FORMAT_VERSION or state.get("key") != self.key:
            changed = changed_parts(state.get("parts"), self.parts) if state.get("format") == FORMAT_VERSION else []
            what = f": {', '.join(changed)} changed" if changed else ""
            raise ConfigError(
                f"{self.folder} holds the progress of a build with other inputs, filters or options{what}",
                hint="resume with the command that started it, or pass --overwrite to start over",
            )
        if snap.next_group > groups:
            raise InputError(f"{state_path}: {snap.next_group} image groups done, but this build has {groups}",
                             hint="pass --overwrite to start over")
        rows = self._read_rows(chunks)
        if len(rows) != snap.rows:
            raise InputError(f"{self.folder}: {len(rows)} saved rows, state says {snap.rows}",
                             hint="pass --overwrite to start over")
        self._chunks, self._saved_rows = chunks, len(rows)
        for stray in set(p.name for p in self.folder.glob("rows-*.arrow")) - set(chunks):
            (self.folder / stray).unlink()  # written by a save that was cut before its state
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink()  # a chunk or state a killed save was writing (the build's lock is held)
        return snap, rows

    def _read_rows(self, chunks: list[str]) -> list[dict[str, Any]]:
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        for name in chunks:
            path = self.folder / name
            try:
                with pa.memory_map(str(path)) as source:
                    rows.extend(pa.ipc.open_file(source).read_all().to_pylist())
            except (OSError, pa.ArrowInvalid) as exc:
                raise InputError(f"{path}: unreadable build progress ({exc})", hint="pass --overwrite to start over") from exc
        return rows

    # -- save ----------------------------------------------------------------------------------

    def due(self) -> bool:
        return time.monotonic() - self._last_save >= self.every_s

    def save(self, snap: Snapshot, rows: list[dict[str, Any]]) -> None:
        """Append ``rows[saved:snap.rows]`` as a chunk, then record ``snap``."""
        new = rows[self._saved_rows : snap.rows]
        self.folder.mkdir(parents=True, exist_ok=True)
        chunks = list(self._chunks)
        if new:
            name = f"rows-{len(chunks) + 1:06d}.arrow"
            _write_chunk(self.folder / name, new)
            chunks.append(name)
        state = {"format": FORMAT_VERSION, "key": self.key, "parts": self.parts, "chunks": chunks,
                 "snapshot": snap.__dict__,
                 "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_text_atomic(self.folder / "state.json", json.dumps(state, indent=1, sort_keys=True) + "\n")
        self._chunks, self._saved_rows = chunks, snap.rows
        self._last_save = time.monotonic()

    def discard(self) -> None:
        """The build finished: its progress is no longer needed."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _write_chunk(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa

    from soebench.manifest.schema import SCHEMA

    schema = pa.schema([f for f in SCHEMA if f.name not in LATER_COLUMNS])
    table = pa.Table.from_pydict({name: [r.get(name) for r in rows] for name in schema.names}, schema=schema)
    with atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)


def snapshot(next_group: int, rows: int, invalid: Counter, examples: dict[str, list[str]],
             rejected: dict[str, int], capped: int) -> Snapshot:
    """A copy of the counters as they are now (they go on changing)."""
    return Snapshot(next_group, rows, dict(invalid), {k: list(v) for k, v in examples.items()}, dict(rejected), capped)
