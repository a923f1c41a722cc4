"""Sharding a run across processes (``accelerate launch -m soebench evaluate ...``).

Rank ``r`` of ``W`` takes samples ``r, r+W, r+2W, ...`` (manifest order), generates and scores
them, and writes its per-sample rows plus its metric states to ``shards/rank-r-of-W.pkl``. Rank 0
waits for every shard of the same run configuration, concatenates the rows (back in manifest
order) and adds the metric states -- they are sums, so the merge is exact: two shards merged
give the same result as one process.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soebench.errors import ConfigError, InputError
from soebench.fileio import atomic_path

SHARD_DIR = "shards"


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"invalid shard: rank {self.rank} of world size {self.world_size}",
                              hint="the rank must lie in [0, world size) and the world size be >= 1 "
                                   "(RANK / WORLD_SIZE set by accelerate launch or torchrun)")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def select(self, items: Sequence[Any]) -> list[Any]:
        return list(items[self.rank :: self.world_size])


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r} is not a whole number",
                          hint="it is set by accelerate launch / torchrun; unset it for a single process") from None


def detect_shard() -> Shard:
    """The process's shard. Under ``accelerate launch`` / torchrun (``WORLD_SIZE`` > 1) accelerate's
    ``PartialState`` sets up the process group (so :func:`barrier` really waits) and gives the
    rank; when it does not see the launch (e.g. torchrun on CPU without an accelerate config),
    the process group is initialised here from the same environment variables."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Shard()
    rank = _env_int("RANK", 0)
    Shard(rank, world)  # a bad pair fails before any process group is set up
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()  # accelerate imports torchvision
    try:
        from accelerate import PartialState

        state = PartialState()
        if state.num_processes == world:
            return Shard(state.process_index, world)
    except ImportError:  # pragma: no cover - accelerate is a dependency
        pass
    import torch
    import torch.distributed as dist

    if dist.is_available() and not dist.is_initialized() and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return Shard(rank, world)


def local_device(device: str, shard: Shard) -> str:
    """``cuda`` on a sharded run means this process's GPU (``cuda:LOCAL_RANK``)."""
    if shard.world_size > 1 and device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', shard.rank) or 0)}"
    return device


def barrier() -> None:
    """Wait for every process when torch.distributed is running (else nothing to wait for)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shard_path(run_dir: Path, shard: Shard) -> Path:
    return Path(run_dir) / SHARD_DIR / f"rank-{shard.rank:03d}-of-{shard.world_size:03d}.pkl"


def write_shard(run_dir: Path, shard: Shard, config_hash: str, rows: list[dict[str, Any]], states: dict[str, Any],
                stats: dict[str, Any]) -> Path:
    path = shard_path(run_dir, shard)
    payload = {"config_hash": config_hash, "shard": (shard.rank, shard.world_size), "rows": rows, "states": states,
               "stats": stats}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def read_shards(run_dir: Path, world_size: int, config_hash: str, *, timeout: float = 0.0, poll: float = 2.0) -> list[dict]:
    """Every shard of this configuration; waits up to ``timeout`` seconds for missing ones."""
    deadline = time.monotonic() + timeout
    while True:
        found, missing = [], []
        for rank in range(world_size):
            path = shard_path(run_dir, Shard(rank, world_size))
            payload = _load(path)
            if payload is None or payload["config_hash"] != config_hash:
                missing.append(rank)
            else:
                found.append(payload)
        if not missing:
            return found
        if time.monotonic() >= deadline:
            raise InputError(
                f"run {run_dir}: shard(s) {', '.join(map(str, missing))} of {world_size} are missing or belong to another "
                "configuration",
                hint="run every rank (accelerate launch) with the same options, then run rank 0 again with --resume",
            )
        time.sleep(poll)


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        return pickle.load(fh)
