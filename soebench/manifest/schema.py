"""The manifest contract: a typed pyarrow schema and its version.

Geometry conventions (one for the whole project):
- ``bbox`` is ``[x, y, w, h]`` in image pixels (COCO convention), floats.
- ``teacher_crop`` and ``eval_crop`` are ``[x0, y0, x1, y1]`` in image pixels, floats, half-open;
  both are squares in *normalised* image coordinates (squares in pixels after the SOEBench
  protocol's resize to 512x512). See :mod:`soebench.mining.crops`.
- ``mask_rle`` is COCO compressed RLE (``{"size": [h, w], "counts": str}``) at the image size;
  ``mask_source`` says where the mask came from (polygon, rle, png or box).

Beyond types: :func:`row_problems` checks the values of the rows (the one set of checks that
``manifest validate`` runs in full and each reader runs on the columns it uses), and
:func:`mask_problem` / :func:`decode_row_mask` check and decode one row's mask.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
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


# -- row values -------------------------------------------------------------------------------
# The schema says a column holds floats; these checks say the floats make sense. `manifest
# validate` runs all of them, and each reader runs the ones whose columns it uses before any
# work, so a bad row is named up front instead of crashing (or silently skewing) a run later.

#: pixels a box may overshoot the image by rounding (COCO boxes are floats)
BOX_TOLERANCE_PX = 1.0
#: an image_path a reader must not open: absolute (POSIX root, a Windows drive ``C:\\`` or ``C:/``,
#: UNC; ``x:1.jpg`` is a file name on Linux), a ``..`` component, or empty. A manifest is data
#: that is handed around; its paths must stay inside the images root it names.
_OUTSIDE_ROOT = r"^[/\\]|^[A-Za-z]:[/\\]|(^|[/\\])\.\.([/\\]|$)|^$"
IMAGE_PATH_PROBLEM = "image_path leaves the images root (absolute, empty or with a '..' component)"


def leaves_images_root(image_path: str) -> bool:
    """True when ``image_path`` (a manifest value) does not name a file inside the images root."""
    return re.search(_OUTSIDE_ROOT, image_path) is not None


def _fixed_lists(table: pa.Table, column: pa.ChunkedArray, width: int) -> np.ndarray:
    """A fixed-size-list column as an (n, width) float array, NaN where a list or item is null."""
    arr = column.combine_chunks()
    out = np.full((table.num_rows, width), np.nan)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out[valid] = np.asarray(arr.flatten().to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, width)
    return out


def _floats(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)  # None -> NaN


def _image_size(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    return _floats(table, "width"), _floats(table, "height")


def _check_size(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    width, height = _image_size(table)
    return [("width or height is not positive", ~((width > 0) & (height > 0)))]


def _check_bbox(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    width, height = _image_size(table)
    box, tol = _fixed_lists(table, table.column("bbox"), 4), BOX_TOLERANCE_PX
    finite = np.isfinite(box).all(1)
    with np.errstate(invalid="ignore"):  # NaN compares False: such rows are reported once, as not finite
        inside = ((box[:, 0] >= -tol) & (box[:, 1] >= -tol)
                  & (box[:, 0] + box[:, 2] <= width + tol) & (box[:, 1] + box[:, 3] <= height + tol))
        return [
            ("bbox is not finite or has no area", ~(finite & (box[:, 2] > 0) & (box[:, 3] > 0))),
            ("bbox lies outside the image", finite & ~inside),
        ]


def _check_crop(name: str) -> Callable[[pa.Table], list[tuple[str, np.ndarray]]]:
    def check(table: pa.Table) -> list[tuple[str, np.ndarray]]:
        width, height = _image_size(table)
        box = _fixed_lists(table, table.column(name), 4)
        with np.errstate(invalid="ignore"):
            inside = (np.isfinite(box).all(1) & (box[:, 0] >= -1e-6) & (box[:, 1] >= -1e-6)
                      & (box[:, 2] <= width + 1e-6) & (box[:, 3] <= height + 1e-6)
                      & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1]))
        return [(f"{name} is not a box inside the image", ~inside)]

    return check


def _check_fraction(name: str) -> Callable[[pa.Table], list[tuple[str, np.ndarray]]]:
    def check(table: pa.Table) -> list[tuple[str, np.ndarray]]:
        v = _floats(table, name)
        with np.errstate(invalid="ignore"):
            return [(f"{name} is not in (0, 1]", ~((v > 0) & (v <= 1)))]

    return check


def _check_confidence(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    conf = _floats(table, "color_confidence")  # null (no colour named) is allowed, NaN is not
    nulls = np.asarray(table.column("color_confidence").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    with np.errstate(invalid="ignore"):
        return [("color_confidence is not in [0, 1]", ~(nulls | ((conf >= 0) & (conf <= 1))))]


def _check_source(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    from soebench.mining.presets import SOURCES

    source = np.asarray(table.column("source").to_pylist(), dtype=object)
    return [(f"source is not one of {', '.join(SOURCES)}", ~np.isin(source, list(SOURCES)))]


def _check_image_path(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    import pyarrow.compute as pc

    bad = pc.match_substring_regex(table.column("image_path"), _OUTSIDE_ROOT).to_numpy(zero_copy_only=False)
    return [(IMAGE_PATH_PROBLEM, np.asarray(bad, dtype=bool))]


def _check_mask_size(table: pa.Table) -> list[tuple[str, np.ndarray]]:
    """The RLE's recorded size against the row's image size (decoding is :func:`decode_row_mask`)."""
    import pyarrow.compute as pc

    width, height = _image_size(table)
    size = _fixed_lists(table, pc.struct_field(table.column("mask_rle"), "size"), 2)
    no_counts = np.asarray(pc.struct_field(table.column("mask_rle"), "counts").is_null().to_numpy(zero_copy_only=False),
                           dtype=bool)
    known = np.isfinite(size).all(1)
    return [("mask_rle has no size or counts", ~known | no_counts),
            ("mask size is not the image size", known & ((size[:, 0] != height) | (size[:, 1] != width)))]


#: each check with the columns whose values it judges (a reader runs those of the columns it uses)
ROW_CHECKS: tuple[tuple[tuple[str, ...], Callable[[pa.Table], list[tuple[str, np.ndarray]]]], ...] = (
    (("width", "height"), _check_size),
    (("bbox",), _check_bbox),
    (("teacher_crop",), _check_crop("teacher_crop")),
    (("eval_crop",), _check_crop("eval_crop")),
    (("bbox_area_fraction",), _check_fraction("bbox_area_fraction")),
    (("mask_area_fraction",), _check_fraction("mask_area_fraction")),
    (("color_confidence",), _check_confidence),
    (("source",), _check_source),
    (("image_path",), _check_image_path),
    (("mask_rle",), _check_mask_size),
)


def row_problems(table: pa.Table, columns: Iterable[str] | None = None) -> list[str]:
    """The value problems of the rows of ``table`` (a table :func:`validate_table` accepted), one
    line per kind of problem naming its first sample: ``"sample ID: what (N row(s))"``.
    ``columns``: run only the checks of these columns (what a reader uses); None: every check."""
    if not table.num_rows:
        return []
    wanted = None if columns is None else set(columns)
    ids = table.column("sample_id")
    problems = []
    for judged, check in ROW_CHECKS:
        if wanted is not None and not wanted.intersection(judged):
            continue
        for what, bad in check(table):
            where = np.flatnonzero(bad)
            if len(where):
                problems.append(f"sample {ids[int(where[0])].as_py()}: {what} ({len(where)} row(s))")
    return problems


def check_rows(table: pa.Table, columns: Iterable[str], *, where: str, shown: int = 5) -> None:
    """Raise one InputError naming the rows of ``table`` whose ``columns`` hold values a reader
    cannot use (see :func:`row_problems`); ``where`` names the manifest."""
    problems = row_problems(table, columns)
    if problems:
        more = f" (and {len(problems) - shown} more kinds)" if len(problems) > shown else ""
        raise InputError(f"{where}: " + "; ".join(problems[:shown]) + more,
                         hint=f"`soebench manifest validate {where}` lists every problem; rebuild the manifest "
                              "with soebench build-dataset")


def _rle_runs(counts: str) -> list[int] | None:
    """The run lengths of COCO compressed RLE text (pycocotools' ``rleFrString``: 6-bit
    characters from "0", 5 bits of value each, a continuation bit, sign-extended, runs from the
    third on stored as a difference to the run two before); None when the text is no such thing."""
    runs: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p == len(counts):
                return None  # the text ends inside a number
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            return None
        runs.append(x)
    return runs


def mask_problem(rle: Any, height: int, width: int) -> str | None:
    """Why a row's ``mask_rle`` is not the mask of a ``height`` x ``width`` image, or None. Exact
    and cheap (no pixels decoded): its runs must cover the image exactly. pycocotools does not
    check this -- too long an RLE raises an opaque ValueError, too short a one decodes into memory
    it never wrote -- and fails oddly (TypeError, a huge allocation) on a null or wrong size."""
    size = rle.get("size") if isinstance(rle, dict) else None
    counts = rle.get("counts") if isinstance(rle, dict) else None
    if not isinstance(size, (list, tuple)) or len(size) != 2 or None in size or counts is None:
        return "mask_rle has no size or counts"
    if [int(v) for v in size] != [height, width]:
        return f"mask is {size[1]}x{size[0]} but the image is {width}x{height}"
    if isinstance(counts, bytes):
        counts = counts.decode("latin-1")
    runs = _rle_runs(counts) if isinstance(counts, str) else None
    if runs is None:
        return "mask_rle does not decode (not COCO compressed RLE text)"
    if sum(runs) != height * width:
        return f"mask_rle does not decode: its runs cover {sum(runs)} of the {height * width} pixels"
    return None


def decode_row_mask(rle: Any, height: int, width: int) -> np.ndarray:
    """A row's ``mask_rle`` decoded, after :func:`mask_problem` found nothing wrong with it;
    ValueError saying what is wrong otherwise."""
    from soebench.manifest.masks import decode_mask

    problem = mask_problem(rle, height, width)
    if problem is not None:
        raise ValueError(problem)
    return decode_mask(rle)
