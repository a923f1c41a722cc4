"""Library side of ``soebench manifest validate`` / ``manifest info``."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from soebench.manifest.io import read_manifest


#: problems listed in one error at most (a broken file can have one per row)
MAX_PROBLEMS = 20
#: pixels a box may overshoot the image by rounding (COCO boxes are floats)
_BOX_TOLERANCE_PX = 1.0


def validate_manifest(path: str | os.PathLike, *, check_masks: bool = True) -> dict[str, Any]:
    """Check ``path`` (file or folder of parts) strictly: the soebench metadata and its schema
    version, exact column types, nulls and unique ids, then the values of every row (geometry
    inside the image, fractions and confidences in range, known sources) and, with
    ``check_masks``, every ``mask_rle``: it decodes at the row's image size, is not empty, and
    (except for PNG masks, measured at their own size) has the stored ``mask_area_fraction``.
    Raises one InputError listing the problems, each naming its sample."""
    from soebench.errors import InputError
    from soebench.manifest.schema import SCHEMA, SCHEMA_VERSION

    manifest = read_manifest(path, validate=True)
    problems: list[str] = []
    version = manifest.metadata.get("schema_version")
    if version is None:
        problems.append("no soebench metadata (schema_version) in the file: not written by soebench")
    raw_types = _stored_types(manifest)
    for field in SCHEMA:
        stored = raw_types.get(field.name)
        if stored is not None and not stored.equals(field.type):
            problems.append(f"column {field.name!r} is stored as {stored}, the schema says {field.type}")
    problems += _value_problems(manifest.table)
    if check_masks and manifest.table.num_rows and len(problems) < MAX_PROBLEMS:
        problems += _mask_problems(manifest.table, MAX_PROBLEMS - len(problems))
    if problems:
        more = f" (and possibly more; first {MAX_PROBLEMS} shown)" if len(problems) >= MAX_PROBLEMS else ""
        raise InputError(f"{path}: " + "; ".join(problems[:MAX_PROBLEMS]) + more,
                         hint=f"this tool writes schema {SCHEMA_VERSION}; rebuild the manifest with soebench build-dataset")
    return manifest_info(manifest)


def _stored_types(manifest) -> dict[str, Any]:
    """Column types as stored in the file(s), before the reader's cast to the schema."""
    import pyarrow.parquet as pq

    files = sorted(manifest.path.glob("*.parquet")) if manifest.path.is_dir() else [manifest.path]
    out: dict[str, Any] = {}
    for f in files:
        for field in pq.read_schema(f):
            out.setdefault(field.name, field.type)
    return out


def _value_problems(table) -> list[str]:
    from soebench.mining.presets import SOURCES

    if not table.num_rows:
        return []
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=object)
    width = table.column("width").to_numpy().astype(np.float64)
    height = table.column("height").to_numpy().astype(np.float64)

    def boxes(name: str) -> np.ndarray:
        return np.asarray(table.column(name).to_pylist(), dtype=np.float64).reshape(-1, 4)

    bbox, teacher, evalc = boxes("bbox"), boxes("teacher_crop"), boxes("eval_crop")
    tol = _BOX_TOLERANCE_PX
    checks: list[tuple[str, np.ndarray]] = [
        ("width or height is not positive", ~((width > 0) & (height > 0))),
        ("bbox is not finite or has no area", ~(np.isfinite(bbox).all(1) & (bbox[:, 2] > 0) & (bbox[:, 3] > 0))),
        ("bbox lies outside the image", ~((bbox[:, 0] >= -tol) & (bbox[:, 1] >= -tol)
                                          & (bbox[:, 0] + bbox[:, 2] <= width + tol)
                                          & (bbox[:, 1] + bbox[:, 3] <= height + tol))),
    ]
    for name, box in (("teacher_crop", teacher), ("eval_crop", evalc)):
        inside = (np.isfinite(box).all(1) & (box[:, 0] >= -1e-6) & (box[:, 1] >= -1e-6)
                  & (box[:, 2] <= width + 1e-6) & (box[:, 3] <= height + 1e-6)
                  & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1]))
        checks.append((f"{name} is not a box inside the image", ~inside))
    for name in ("bbox_area_fraction", "mask_area_fraction"):
        v = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        checks.append((f"{name} is not in (0, 1]", ~((v > 0) & (v <= 1))))
    conf = np.asarray(table.column("color_confidence").to_pylist(), dtype=object)
    conf = np.array([np.nan if c is None else float(c) for c in conf])
    checks.append(("color_confidence is not in [0, 1]", ~(np.isnan(conf) | ((conf >= 0) & (conf <= 1)))))
    source = np.asarray(table.column("source").to_pylist(), dtype=object)
    checks.append((f"source is not one of {', '.join(SOURCES)}", ~np.isin(source, list(SOURCES))))
    problems = []
    for what, bad in checks:
        where = np.flatnonzero(bad)
        if len(where):
            problems.append(f"sample {ids[where[0]]}: {what} ({len(where)} row(s))")
    return problems


def _mask_problems(table, budget: int) -> list[str]:
    from soebench.manifest.masks import decode_mask

    problems: list[str] = []
    cols = table.select(["sample_id", "mask_rle", "width", "height", "mask_source", "mask_area_fraction"]).to_pylist()
    for row in cols:
        rle = row["mask_rle"]
        sid = row["sample_id"]
        if list(rle["size"]) != [row["height"], row["width"]]:
            problems.append(f"sample {sid}: mask size {rle['size']} is not the image size")
        else:
            try:
                mask = decode_mask(rle)
            except Exception as exc:  # pycocotools raises plain exceptions on bad counts
                problems.append(f"sample {sid}: mask does not decode ({exc})")
            else:
                frac = np.count_nonzero(mask) / mask.size
                if frac == 0:
                    problems.append(f"sample {sid}: the mask is empty")
                elif row["mask_source"] != "png" and abs(frac - row["mask_area_fraction"]) > 1e-9:
                    problems.append(f"sample {sid}: mask_area_fraction {row['mask_area_fraction']:.6g} "
                                    f"is not the decoded mask's {frac:.6g}")
        if len(problems) >= budget:
            break
    return problems


def manifest_info(manifest_or_path) -> dict[str, Any]:
    """Counts per category, split, source and size band of a manifest."""
    from soebench.mining.build import size_histogram

    manifest = read_manifest(manifest_or_path) if not hasattr(manifest_or_path, "table") else manifest_or_path
    table = manifest.table
    meta = manifest.metadata

    def counts(column: str) -> dict[str, int]:
        c = Counter(table.column(column).to_pylist())
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], str(kv[0]))))

    return {
        "path": str(manifest.path),
        "rows": table.num_rows,
        "images": len(set(table.column("image_id").to_pylist())),
        "schema_version": meta.get("schema_version"),
        "preset": meta.get("preset"),
        "parts": meta.get("parts"),
        "per_source": counts("source"),
        "per_split": counts("split"),
        "per_category": counts("category"),
        "per_colour": counts("color"),
        "size_histogram": size_histogram(np.asarray(table.column("bbox_area_fraction").to_numpy(), dtype=float)),
    }
