"""The manifest contract: a typed pyarrow schema and its version.

Geometry conventions (one for the whole project):
- ``bbox`` is ``[x, y, w, h]`` in image pixels (COCO convention), floats.
- ``teacher_crop`` and ``eval_crop`` are ``[x0, y0, x1, y1]`` in image pixels, floats, half-open;
  both are squares in *normalised* image coordinates (squares in pixels after the SOEBench
  protocol's resize to 512x512). See :mod:`soebench.mining.crops`.
- ``mask_rle`` is COCO compressed RLE (``{"size": [h, w], "counts": str}``) at the image size;
  ``mask_source`` says where the mask came from (polygon, rle, png or box).
"""

from __future__ import annotations

import pyarrow as pa

from soebench.errors import InputError

SCHEMA_VERSION = "1.0"
METADATA_KEY = b"soebench"

PROMPT_KEYS = ("label", "small_label", "color_label", "small_color_label")

_box = pa.list_(pa.float64(), 4)

SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # "coco" | "openimages"
        pa.field("split", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),  # relative to metadata images_root
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("annotation_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("category_id", pa.string(), nullable=False),  # COCO id as text, or OpenImages MID
        pa.field("bbox", _box, nullable=False),
        pa.field("bbox_area_fraction", pa.float64(), nullable=False),
        pa.field(
            "mask_rle",
            pa.struct([pa.field("size", pa.list_(pa.int32(), 2)), pa.field("counts", pa.string())]),
            nullable=False,
        ),
        pa.field("mask_source", pa.string(), nullable=False),  # polygon | rle | png | box
        pa.field("mask_area_fraction", pa.float64(), nullable=False),
        pa.field("color", pa.string(), nullable=True),
        pa.field("color_confidence", pa.float64(), nullable=True),
        pa.field("prompts", pa.struct([pa.field(k, pa.string()) for k in PROMPT_KEYS]), nullable=False),
        pa.field("captions", pa.list_(pa.string()), nullable=False),
        pa.field("teacher_crop", _box, nullable=False),
        pa.field("eval_crop", _box, nullable=False),
        pa.field("crowd", pa.bool_(), nullable=True),
        pa.field("occluded", pa.bool_(), nullable=True),
        pa.field("truncated", pa.bool_(), nullable=True),
        pa.field("group", pa.bool_(), nullable=True),
        pa.field("depiction", pa.bool_(), nullable=True),
        pa.field("inside", pa.bool_(), nullable=True),
        pa.field("predicted_iou", pa.float64(), nullable=True),
        pa.field("license", pa.string(), nullable=True),
    ]
)

COLUMNS = tuple(SCHEMA.names)


def validate_table(table: pa.Table, *, where: str = "manifest", required: tuple[str, ...] = COLUMNS) -> pa.Table:
    """Check ``table`` against the schema; raise one :class:`InputError` listing every problem.

    Returns the table cast to :data:`SCHEMA` column order and types (extra columns are kept at the end).
    """
    problems: list[str] = []
    missing = [c for c in required if c not in table.column_names]
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    for field in SCHEMA:
        if field.name not in table.column_names:
            continue
        col = table.column(field.name)
        if not col.type.equals(field.type):
            try:
                col.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                problems.append(f"column {field.name!r} has type {col.type}, expected {field.type}")
                continue
        if not field.nullable and col.null_count:
            problems.append(f"column {field.name!r} has {col.null_count} null value(s)")
    if "sample_id" in table.column_names and table.num_rows:
        ids = table.column("sample_id").to_pylist()
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))
            problems.append(f"duplicate sample_id values (first: {dup!r})")
    if problems:
        raise InputError(f"{where} does not match the soebench manifest schema {SCHEMA_VERSION}: " + "; ".join(problems))
    present = [f.name for f in SCHEMA if f.name in table.column_names]
    extra = [c for c in table.column_names if c not in SCHEMA.names]
    arrays = [table.column(n).cast(SCHEMA.field(n).type) for n in present] + [table.column(c) for c in extra]
    fields = [SCHEMA.field(n) for n in present] + [table.schema.field(c) for c in extra]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))
