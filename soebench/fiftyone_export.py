"""Manifest and evaluation runs -> FiftyOne: pure converters plus :func:`to_fiftyone`.

This module never imports ``fiftyone`` at its top: the converters turn a manifest and run
folders into plain sample dicts (numpy masks, relative boxes, scores, tags) that
:mod:`soebench.fo.writer` turns into FiftyOne samples. That keeps the geometry and the
bookkeeping testable without a database and FiftyOne an optional extra.

Geometry: FiftyOne's ``Detection`` takes ``bounding_box = [x, y, w, h]`` relative to the image
and an instance ``mask`` cropped to that box. We use the integer pixel box that encloses both
the manifest ``bbox`` and the decoded mask (COCO polygons may stick out of their bbox by a
pixel), so the crop loses no mask pixel, and write it so that FiftyOne's own conversion back to
pixels (``int(W * x)``) lands on exactly those pixels (see :func:`relative_box`).

The dataset is grouped (slice ``original`` + one slice per run); :mod:`soebench.fo.writer`
explains why that suits the App and human review better than per-model media fields.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import InputError

ORIGINAL_SLICE = "original"
HUMAN_TAG_PREFIX = "human:"
TAG_MISSING_MEDIA = "missing_media"
TAG_ERROR = "error"
AUTO_TAGS = (TAG_MISSING_MEDIA, TAG_ERROR)
SCORE_FIELDS = ("clip_score_local", "clip_score_global", "bg_psnr", "bg_ssim", "bg_mse")
SUMMARY_KEYS = ("run_name", "model", "manifest")
RUN_COLUMNS = ("sample_id", "output_path", "error", "failure")
# samples.parquet columns that are not copied as plain fields (they become labels or tags,
# or repeat the manifest fields copied from the original slice)
_RUN_SPECIAL = {"sample_id", "failure", "failure_evidence", "error", "category", "size_bucket", "image_id",
                "mask_area_fraction"}


@dataclass
class RunFolder:
    """An evaluation run folder (``summary.json`` + ``samples.parquet`` + ``images/``)."""

    run_dir: Path
    name: str
    summary: dict[str, Any]
    samples: list[dict[str, Any]]

    @property
    def manifest_path(self) -> Path:
        return Path(self.summary["manifest"]["path"])

    @property
    def manifest_sha256(self) -> str:
        return str(self.summary["manifest"]["sha256"])

    @property
    def model_name(self) -> str:
        model = self.summary.get("model") or {}
        return str(model.get("name", "?")) if isinstance(model, dict) else str(model)

    @property
    def slice(self) -> str:
        return slice_name(self.name)

    @property
    def label(self) -> str:
        """How messages name the run: its run name, and its slice where that differs."""
        return run_label(self.name, self.slice)


@dataclass
class Sources:
    """What ``inspect`` was given: one manifest (found or named) and the runs made from it."""

    manifest: Any  # soebench.manifest.io.Manifest
    manifest_sha256: str
    runs: list[RunFolder] = field(default_factory=list)


#: the slice of a run named ``original`` (the oracle model's default run name): the manifest's
#: slice has that name. Kept as it was so that datasets already holding it stay up to date.
ORIGINAL_RUN_SLICE = f"run-{ORIGINAL_SLICE}"


def slice_name(run_name: str) -> str:
    """A group-slice name for a run: letters, digits, ``-`` and ``_`` only (it shows in App URLs).

    A run name of those characters is its own slice, except ``original`` (the manifest's slice),
    whose slice is ``run-original``. Every other name -- one that loses characters on the way, or
    the literal ``run-original`` that ``original`` took -- gets a short hash of itself, so distinct
    run names (``ünï run``, ``ûnï run``; ``v1.0``, ``v1+0``; ``original``, ``run-original``) never
    share a slice. (Only a 24-bit hash coincidence could map two names to one slice;
    :func:`resolve_sources` refuses that, naming both runs.)"""
    import hashlib

    text = str(run_name)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "run"
    if text == ORIGINAL_SLICE:
        return ORIGINAL_RUN_SLICE
    if name != text or text == ORIGINAL_RUN_SLICE:
        name = f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return name


def run_label(run_name: str, slice_: str | None = None) -> str:
    """``run 'NAME'``, with ``(slice 'SLICE')`` where the slice is not the name itself."""
    slice_ = slice_name(run_name) if slice_ is None else slice_
    return f"run {run_name!r}" + ("" if slice_ == run_name else f" (slice {slice_!r})")


def check_dataset_name(name: str | None) -> None:
    """``None`` means the default name; an empty or blank name is a mistake (an unset shell
    variable, say), not a request for the default."""
    if name is not None and not str(name).strip():
        raise InputError(f"dataset name {name!r} is empty",
                         hint="pass a name (--name NAME), or leave it out for the default name from the manifest")


def default_dataset_name(manifest_path: Path, sha256: str) -> str:
    """A stable name from the manifest: ``soebench-<stem>-<first 8 hex of its sha256>``."""
    stem = Path(manifest_path).name
    for suffix in (".parquet",):
        stem = stem.removesuffix(suffix)
    return f"soebench-{slice_name(stem)}-{sha256[:8]}"


def manifest_sha256(path: Path) -> str:
    """The manifest hash exactly as evaluation runs record it in ``summary.json``."""
    from soebench.run.results import manifest_sha256 as _sha

    return _sha(Path(path))


# ----------------------------------------------------------------------------- reading inputs
def read_run(run_dir: str | Path) -> RunFolder:
    """Read and check a run folder; raise :class:`InputError` naming the file and what is wrong."""
    import pandas as pd

    run_dir = Path(run_dir)
    summary_path, samples_path = run_dir / "summary.json", run_dir / "samples.parquet"
    if not run_dir.is_dir():
        raise InputError(f"run folder {run_dir} does not exist")
    for p in (summary_path, samples_path):
        if not p.is_file():
            raise InputError(f"{run_dir} is not an evaluation run folder: {p.name} is missing",
                             hint="pass a folder written by `soebench evaluate`, or a manifest")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{summary_path}: not valid JSON ({exc})") from exc
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    man = summary.get("manifest")
    if isinstance(man, dict):
        missing += [f"manifest.{k}" for k in ("path", "sha256") if not man.get(k)]
    if missing:
        raise InputError(f"{summary_path}: missing key(s) {', '.join(missing)}")
    try:
        frame = pd.read_parquet(samples_path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{samples_path}: not a readable Parquet file ({exc})") from exc
    absent = [c for c in RUN_COLUMNS if c not in frame.columns]
    if absent:
        raise InputError(f"{samples_path}: missing column(s) {', '.join(absent)}")
    dup = frame["sample_id"][frame["sample_id"].duplicated()]
    if len(dup):
        raise InputError(f"{samples_path}: sample_id {dup.iloc[0]!r} appears more than once")
    rows = [{k: _plain(v) for k, v in r.items()} for r in frame.to_dict(orient="records")]
    return RunFolder(run_dir=run_dir.resolve(), name=str(summary["run_name"]), summary=summary, samples=rows)


def _plain(value: Any) -> Any:
    """numpy/pandas scalars -> Python; NaN and pandas NA -> None (inf is kept: untouched background);
    list cells (numpy arrays from Parquet) -> lists, which FiftyOne stores as list fields."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def is_run_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "summary.json").is_file()


def resolve_sources(paths: list[str | Path], *, manifest: str | Path | None = None) -> Sources:
    """Sort ``paths`` into one manifest and run folders and check that they belong together.

    The manifest is the one passed (positionally or as ``manifest``) or the one the runs name in
    ``summary.json``; every run must record that manifest's sha256.
    """
    from soebench.manifest.io import read_manifest

    if not paths and manifest is None:
        raise InputError("nothing to inspect: pass a manifest or one or more run folders")
    runs: list[RunFolder] = []
    manifests: list[Path] = [Path(manifest)] if manifest is not None else []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p} does not exist (expected a manifest or a run folder)")
        if is_run_dir(p) or (p.is_dir() and (p / "samples.parquet").is_file()):
            runs.append(read_run(p))  # a broken run folder is reported as such, not as a manifest
        else:
            _check_manifest_like(p)
            manifests.append(p)
    if len({m.resolve() for m in manifests}) > 1:
        raise InputError(f"more than one manifest given ({', '.join(map(str, manifests))}); inspect one at a time")
    _check_distinct_slices(runs)
    if manifests:
        man_path = manifests[0]
    else:
        man_path = runs[0].manifest_path
        if not man_path.exists():
            raise InputError(f"run {runs[0].run_dir} names manifest {man_path}, which does not exist",
                             hint="pass the manifest as well (first argument or --manifest)")
    man = read_manifest(man_path)
    sha = manifest_sha256(man.path)
    for run in runs:
        if run.manifest_sha256 != sha:
            raise InputError(
                f"run {run.run_dir} was made from another manifest: its summary.json records sha256 "
                f"{run.manifest_sha256[:12]}… ({run.manifest_path}), but {man.path} has {sha[:12]}…",
                hint="inspect runs of one manifest together (one dataset per manifest)",
            )
    return Sources(manifest=man, manifest_sha256=sha, runs=runs)


def _check_manifest_like(path: Path) -> None:
    """A folder that is neither a run folder nor holds manifest parts is named as what it is not
    (the manifest reader would only say that it holds no parts, as if a manifest was meant)."""
    from soebench.manifest.io import part_files

    if path.is_dir() and not part_files(path):
        raise InputError(
            f"{path} is neither an evaluation run folder (summary.json + samples.parquet) nor a manifest "
            "folder (.parquet parts)",
            hint="pass a run folder written by `soebench evaluate`, a manifest .parquet file, or a folder of its parts",
        )


def _check_distinct_slices(runs: list[RunFolder]) -> None:
    """Two run folders must not meet in one slice: the same run name, or (by a hash coincidence)
    two names with one slice. The same folder given twice is fine."""
    seen: dict[str, RunFolder] = {}
    for run in runs:
        other = seen.setdefault(run.slice, run)
        if other.run_dir == run.run_dir:
            continue
        if other.name == run.name:
            what = f"share the run name {run.name!r}"
        else:
            what = f"(run names {other.name!r} and {run.name!r}) map to the same FiftyOne slice {run.slice!r}"
        raise InputError(f"runs {other.run_dir} and {run.run_dir} {what}",
                         hint="evaluate with distinct --run-name values (the name becomes the group slice)")


# ----------------------------------------------------------------------------- geometry
def object_box(bbox: list[float], mask: np.ndarray) -> tuple[int, int, int, int]:
    """Integer pixel box ``(x0, y0, x1, y1)`` (half-open) enclosing the bbox and the mask."""
    h, w = mask.shape
    x, y, bw, bh = bbox
    x0, y0 = math.floor(x), math.floor(y)
    x1, y1 = math.ceil(x + bw), math.ceil(y + bh)
    ys, xs = np.nonzero(mask)
    if len(xs):
        x0, y0 = min(x0, int(xs.min())), min(y0, int(ys.min()))
        x1, y1 = max(x1, int(xs.max()) + 1), max(y1, int(ys.max()) + 1)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(w, max(x1, x0 + 1)), min(h, max(y1, y0 + 1))
    return x0, y0, x1, y1


#: how far (in pixels) into its first pixel a relative box starts; see :func:`relative_box`
BOX_EPSILON_PX = 1e-6


def relative_box(box: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    """Pixel ``(x0, y0, x1, y1)`` -> FiftyOne ``[x, y, w, h]`` in [0, 1].

    FiftyOne (eta) turns a box back into pixels by truncation: ``int(W * x)`` and
    ``int(W * (x + w))``. With ``x = x0 / W`` the float product often comes out just below
    ``x0`` (``W * (x0 / W) = x0 - 1e-13``) and truncates a pixel short, which moves the instance
    mask by a pixel or stretches it by one. Starting the box ``BOX_EPSILON_PX`` inside its first
    pixel puts both products above the integer by far more than the float error (about
    ``W * 1e-16``) and far less than a pixel, so truncation and rounding alike give back
    ``x0`` and ``x1``. ``w`` stays ``(x1 - x0) / W``: ``round(w * W)`` is still the width.
    """
    x0, y0, x1, y1 = box
    eps = BOX_EPSILON_PX
    return [(x0 + eps) / width, (y0 + eps) / height, (x1 - x0) / width, (y1 - y0) / height]


# ----------------------------------------------------------------------------- sample dicts
def manifest_sample_dicts(manifest: Any) -> list[dict[str, Any]]:
    """One dict per manifest row: ``filepath``, ``fields``, ``labels`` (``ground_truth`` with
    box + cropped mask, ``eval_crop``), ``tags`` and ``media_exists``."""
    from soebench.manifest.masks import decode_mask
    from soebench.manifest.schema import PROMPT_KEYS
    from soebench.metrics import size_bucket

    out = []
    for row in manifest.table.to_pylist():
        sid = row["sample_id"]
        width, height = int(row["width"]), int(row["height"])
        mask = decode_mask(row["mask_rle"])
        if mask.shape != (height, width):
            raise InputError(f"manifest {manifest.path}: sample {sid}: mask is {mask.shape[1]}x{mask.shape[0]}, "
                             f"image is {width}x{height}")
        x0, y0, x1, y1 = object_box(row["bbox"], mask)
        path = manifest.image_path(row["image_path"])
        exists = path.is_file()
        prompts = row["prompts"] or {}
        fields = {
            "sample_id": sid,
            "image_id": row["image_id"],
            "source": row["source"],
            "split": row["split"],
            "category": row["category"],
            "category_id": row["category_id"],
            "color": row["color"],
            "color_confidence": row["color_confidence"],
            "size_bucket": size_bucket(row["mask_area_fraction"]),
            "mask_area_fraction": row["mask_area_fraction"],
            "bbox_area_fraction": row["bbox_area_fraction"],
            "mask_source": row["mask_source"],
            **{f"prompt_{k}": prompts.get(k) for k in PROMPT_KEYS},
            "captions": list(row["captions"] or []),
            "license": row["license"],
        }
        labels = {
            "ground_truth": {
                "label": row["category"],
                "bounding_box": relative_box((x0, y0, x1, y1), width, height),
                "mask": mask[y0:y1, x0:x1].copy(),
                "attributes": {"color": row["color"], "annotation_id": row["annotation_id"]},
            },
            "eval_crop": {"label": "eval_crop", "bounding_box": relative_box(tuple(row["eval_crop"]), width, height),
                          "mask": None, "attributes": {}},
        }
        out.append({"sample_id": sid, "filepath": str(path), "width": width, "height": height, "fields": fields,
                    "labels": labels, "tags": [] if exists else [TAG_MISSING_MEDIA], "media_exists": exists})
    return out


def parse_evidence(raw: Any) -> dict[str, Any]:
    """``failure_evidence`` JSON -> attributes (numbers and strings; NaN -> None)."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        data = raw
    else:
        try:
            data = json.loads(raw)
        except (TypeError, json.JSONDecodeError):
            return {"raw": str(raw)}
    if not isinstance(data, dict):
        return {"raw": str(raw)}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = re.sub(r"\W+", "_", str(k)).strip("_") or "value"
        if isinstance(v, bool) or isinstance(v, (int, float, str)) or v is None:
            out[key] = None if isinstance(v, float) and math.isnan(v) else v
        else:
            out[key] = json.dumps(v)
    return out


def run_sample_dicts(run: RunFolder, base: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per row of ``run``'s samples.parquet, on its generated image, carrying the manifest
    fields and labels of ``base`` (sample_id -> manifest sample dict), its scores, the taxonomy
    label as ``failure`` (evidence as attributes) and ``error``/``missing_media`` tags."""
    out = []
    for row in run.samples:
        sid = row["sample_id"]
        if sid not in base:
            raise InputError(f"run {run.run_dir}: sample {sid!r} is not in the manifest")
        ref = base[sid]
        rel = row.get("output_path")
        error = row.get("error")
        path = run.run_dir / (rel if rel else f"images/{sid}.png")
        exists = bool(rel) and path.is_file()
        tags = []
        if error is not None:
            tags.append(TAG_ERROR)
        elif not exists:
            tags.append(TAG_MISSING_MEDIA)
        fields = dict(ref["fields"])
        fields.update({"run": run.slice, "model": run.model_name})
        for k, v in row.items():
            if k in _RUN_SPECIAL or k.startswith("evidence_"):
                continue
            fields[k] = v
        for k in SCORE_FIELDS:
            fields.setdefault(k, None)
        fields["error"] = error
        label = row.get("failure")
        failure = None
        if label is not None and label != TAG_ERROR:
            failure = {"label": str(label), "attributes": parse_evidence(row.get("failure_evidence"))}
        labels = dict(ref["labels"])
        out.append({"sample_id": sid, "filepath": str(path), "width": ref["width"], "height": ref["height"],
                    "fields": fields, "labels": labels, "failure": failure, "tags": tags, "media_exists": exists})
    return out


# ----------------------------------------------------------------------------- public API
def to_fiftyone(
    *sources: str | Path,
    name: str | None = None,
    manifest: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
):
    """Load a manifest and/or evaluation run folders into a persistent grouped FiftyOne dataset.

    ``sources`` are a manifest (file or folder of parts) and/or run folders of that manifest;
    ``name`` defaults to :func:`default_dataset_name`. Calling it again adds or updates runs
    (samples are keyed on ``sample_id``; human tags survive). A run whose slice holds another
    run folder of the same run name is refused unless ``overwrite`` (as ``inspect --overwrite``).
    Returns the ``fiftyone.Dataset``.
    """
    from soebench.fo.writer import export

    check_dataset_name(name)
    resolved = resolve_sources(list(sources), manifest=manifest)
    return export(resolved, name=name, progress=progress, overwrite=overwrite).dataset
