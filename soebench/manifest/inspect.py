"""Library side of ``soebench manifest validate`` / ``manifest info``."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from soebench.manifest.io import read_manifest


def validate_manifest(path: str | os.PathLike, *, check_masks: bool = True) -> dict[str, Any]:
    """Read ``path`` (file or folder of parts) against the schema; raise InputError listing the
    problems. With ``check_masks`` every ``mask_rle`` must decode to the row's image size."""
    from soebench.errors import InputError
    from soebench.manifest.masks import decode_mask

    manifest = read_manifest(path, validate=True)
    problems: list[str] = []
    if check_masks and manifest.table.num_rows:
        cols = manifest.table.select(["sample_id", "mask_rle", "width", "height"]).to_pylist()
        for row in cols:
            rle = row["mask_rle"]
            if list(rle["size"]) != [row["height"], row["width"]]:
                problems.append(f"sample {row['sample_id']}: mask size {rle['size']} is not the image size")
                continue
            try:
                decode_mask(rle)
            except Exception as exc:  # pycocotools raises plain exceptions on bad counts
                problems.append(f"sample {row['sample_id']}: mask does not decode ({exc})")
            if len(problems) >= 20:
                break
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return manifest_info(manifest)


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
