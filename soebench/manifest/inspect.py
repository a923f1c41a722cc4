"""Library side of ``soebench manifest validate`` / ``manifest info``."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from soebench.manifest.io import part_files, read_manifest


#: problems listed in one error at most (a broken file can have one per row)
MAX_PROBLEMS = 20


def validate_manifest(path: str | os.PathLike, *, check_masks: bool = True) -> dict[str, Any]:
    """Check ``path`` (file or folder of parts) strictly: the soebench metadata and its schema
    version, exact column types, nulls and unique ids, then the values of every row (geometry
    inside the image, fractions and confidences in range, known sources, image paths inside the
    images root, mask sizes) and, with ``check_masks``, every ``mask_rle``: it decodes, is not
    empty, and (except for PNG masks, measured at their own size) has the stored
    ``mask_area_fraction``. Raises one InputError listing the problems, each naming its sample."""
    from soebench.errors import InputError
    from soebench.manifest.schema import SCHEMA_VERSION, row_problems

    manifest = read_manifest(path, validate=True)
    problems: list[str] = []
    version = manifest.metadata.get("schema_version")
    if version is None:
        problems.append("no soebench metadata (schema_version) in the file: not written by soebench")
    problems += _stored_type_problems(manifest)
    problems += row_problems(manifest.table)
    if check_masks and manifest.table.num_rows and len(problems) < MAX_PROBLEMS:
        problems += _mask_problems(manifest.table, MAX_PROBLEMS - len(problems))
    if problems:
        more = f" (and possibly more; first {MAX_PROBLEMS} shown)" if len(problems) >= MAX_PROBLEMS else ""
        raise InputError(f"{path}: " + "; ".join(problems[:MAX_PROBLEMS]) + more,
                         hint=f"this tool writes schema {SCHEMA_VERSION}; rebuild the manifest with soebench build-dataset")
    return manifest_info(manifest)


def _stored_type_problems(manifest) -> list[str]:
    """Columns stored with another type than the schema's, before the reader's cast; in a folder,
    each part is checked and named (one part's int64 must not hide behind another's int32)."""
    import pyarrow.parquet as pq

    from soebench.manifest.schema import SCHEMA

    folder = manifest.path.is_dir()
    files = part_files(manifest.path) if folder else [manifest.path]
    problems = []
    for f in files:
        stored = pq.read_schema(f)
        for field in SCHEMA:
            if field.name in stored.names and not stored.field(field.name).type.equals(field.type):
                where = f"{f.name}: " if folder else ""
                problems.append(f"{where}column {field.name!r} is stored as {stored.field(field.name).type}, "
                                f"the schema says {field.type}")
    return problems


def _mask_problems(table, budget: int) -> list[str]:
    """Decode every mask whose recorded size is the image's (other sizes are a row problem)."""
    from soebench.manifest.schema import decode_row_mask

    problems: list[str] = []
    cols = table.select(["sample_id", "mask_rle", "width", "height", "mask_source", "mask_area_fraction"]).to_pylist()
    for row in cols:
        sid, rle = row["sample_id"], row["mask_rle"] or {}
        if rle.get("counts") is None or rle.get("size") is None or list(rle["size"]) != [row["height"], row["width"]]:
            continue  # reported by row_problems
        try:
            mask = decode_row_mask(row["mask_rle"], row["height"], row["width"])
        except ValueError as exc:
            problems.append(f"sample {sid}: {exc}")
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
    from soebench.mining.build import box_band, size_histogram

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
        # a merged file's parts (``manifest merge``): it has no parts of its own to read
        "merged_from": meta.get("merged_from"),
        "overridden_preset_values": sorted(meta.get("overridden_preset_values") or {}),
        "per_source": counts("source"),
        "per_split": counts("split"),
        "per_category": counts("category"),
        "per_colour": counts("color"),
        # the build's band: objects on its edges count inside it, as in the build's summary
        "size_histogram": size_histogram(np.asarray(table.column("bbox_area_fraction").to_numpy(), dtype=float),
                                         box_band(meta.get("filters") or {})),
    }
