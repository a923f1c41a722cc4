"""OpenImages segmentation CSV + mask PNGs (+ box flags, class names) -> candidate objects.

Columns read (V5+ release): segmentation ``MaskPath, ImageID, LabelName, BoxID, BoxXMin,
BoxXMax, BoxYMin, BoxYMax[, PredictedIoU]`` (``Clicks`` is never parsed); boxes ``ImageID,
LabelName, XMin, XMax, YMin, YMax`` and the flags ``IsOccluded, IsTruncated, IsGroupOf,
IsDepiction, IsInside``. A segmentation row and its box share ImageID, LabelName and box
coordinates; they are joined on those (coordinates rounded to 1e-4 of the image side).
Without a segmentation CSV the boxes themselves are the objects (mask = box, ``mask_source``
"box"). Mask area fractions are measured on the mask PNG itself; masks whose pixel size
differs from the image are resized nearest-neighbour when they have its aspect ratio up to
rounding (:func:`mask_fits`; others are dropped as invalid). Masks are looked up as
``MASKS/<MaskPath>``, ``MASKS/<anything>-<h>/<MaskPath>`` (one folder per archive, ``h`` the
first hex digit of the ImageID) or inside ``MASKS/*-masks-<h>.zip`` archives as shipped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import InputError
from soebench.mining.arrow_columns import arrow_to_numpy, chunk_to_numpy
from soebench.mining.filters import BOX_FRAC_TOL
from soebench.image_io import gray_array
from soebench.mining.sources import Candidates, FileIndex, ImageError, category_counts, read_image_size

SEGMENTATION_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
BBOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
FLAG_COLUMNS = {
    "occluded": "IsOccluded",
    "truncated": "IsTruncated",
    "group": "IsGroupOf",
    "depiction": "IsDepiction",
    "inside": "IsInside",
}
#: how far a side (two coordinates of 6 decimals, as OpenImages ships them) may be off
COORDINATE_ROUNDING = 1e-6
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
_MID = re.compile(r"^/[mg]/[0-9a-z_]+$")
MASK_PATH_OUTSIDE = "MaskPath leaves the masks folder (absolute or with a '..' component)"
MASK_MISFIT = "mask size does not fit its image (another aspect ratio)"


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read CSV {path}: {exc}") from None


def check_columns(path: Path, required: tuple[str, ...]) -> list[str]:
    """Header of ``path``; InputError naming every required column it lacks."""
    if not path.is_file():
        raise InputError(f"CSV file {path} does not exist")
    header = _header(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"{path}: missing required column(s) {', '.join(missing)} (found: {', '.join(header) or 'nothing'})"
        )
    return header


def _text_lines(path: Path) -> str:
    """The whole of a small text file (the class list): a byte that is not UTF-8 (a Latin-1
    export) is an InputError naming the line, not a UnicodeDecodeError traceback."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                         hint="save the file as UTF-8 (the official class-descriptions-boxable.csv is)") from None


def read_classes(path: str | os.PathLike) -> dict[str, str]:
    """MID -> display name from ``class-descriptions-boxable.csv``; a header row (later releases:
    ``LabelName,DisplayName``) is detected by its first field not being a MID."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"OpenImages class file {path} does not exist")
    out: dict[str, str] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(_text_lines(path), newline="")), start=1):
        if not row:
            continue
        if len(row) < 2:
            raise InputError(f"{path}: line {lineno} has {len(row)} field(s), expected 'MID,Display name'")
        if lineno == 1 and not _MID.match(row[0].strip()):
            continue  # header row
        if not _MID.match(row[0].strip()):
            # e.g. a bbox or segmentation CSV given as --classes: its rows start with an ImageID
            raise InputError(f"{path}: line {lineno} starts with {row[0].strip()[:40]!r}, not a class MID such as "
                             "'/m/011k07'; expected the class list 'MID,Display name' "
                             "(class-descriptions-boxable.csv)")
        name = " ".join(row[1].split())
        if not name:
            raise InputError(f"{path}: line {lineno}: class {row[0].strip()!r} has an empty display name")
        out[row[0].strip()] = name
    if not out:
        raise InputError(f"{path}: no classes")
    return out


#: text columns whose values are keys (joins, file names): a space around one (`` /m/01yrx ``,
#: a hand-edited CSV) would make it match nothing, so it is stripped
_KEY_COLUMNS = ("MaskPath", "ImageID", "LabelName")


def _read_csv(path: Path, columns: list[str], types: dict[str, Any]):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(include_columns=columns, column_types=types),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: {_locate_bad_value(path, columns, types) or exc}") from None
    for name in _KEY_COLUMNS:  # Arrow trims numbers itself, never text
        if name in table.column_names and _padded(table.column(name)):
            table = table.set_column(table.column_names.index(name), name,
                                     pc.utf8_trim_whitespace(table.column(name)))
    return table


def _padded(col) -> bool:
    """Whether a value starts or ends with a space or tab: bit masks, so that the millions of
    clean values of a real file are not copied by a trim that changes nothing."""
    import pyarrow.compute as pc

    return any(pc.any(test(col, pattern=ch)).as_py() for test in (pc.starts_with, pc.ends_with) for ch in (" ", "\t"))


def _first_outside(path: Path, table, name: str, allowed: str, ok) -> None:
    """InputError naming the first row of column ``name`` whose (non-null) value is not ``ok``."""
    import pyarrow.compute as pc

    col = table.column(name)
    bad = pc.and_(pc.is_valid(col), pc.invert(ok(col)))
    if pc.any(bad).as_py():
        flat = np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
        row = int(np.flatnonzero(flat)[0])
        raise InputError(f"{path}: row {row + 1} (line {row + 2}): column {name} is {col[row].as_py()!r}, "
                         f"expected {allowed} ({int(flat.sum())} such row(s) in this column)")


def _check_flags(path: Path, table, flags: list[str]) -> None:
    """Every flag is 1, 0 or -1 (unknown): a 2 would be read as set by one filter and not by another."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name in flags:
        values = pa.array([-1, 0, 1], table.column(name).type)
        _first_outside(path, table, name, "1, 0 or -1 (unknown)", lambda col, v=values: pc.is_in(col, value_set=v))


def _read_bbox_csv(path: Path, columns: list[str], flags: list[str], types: dict[str, Any]):
    """The box table with its flag columns as int8 (1, 0, -1 unknown; empty -> null). Flags
    written as ``0.0``/``1.0`` (a CSV that went through pandas with one missing value) are
    read again as floats and accepted when every value is -1, 0 or 1."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        table = _read_csv(path, columns + flags, {**types, **{c: pa.int8() for c in flags}})
    except InputError:
        if not flags:
            raise
    else:
        _check_flags(path, table, flags)
        return table
    table = _read_csv(path, columns + flags, {**types, **{c: pa.float32() for c in flags}})
    _check_flags(path, table, flags)
    for name in flags:
        table = table.set_column(table.column_names.index(name), name, pc.cast(table.column(name), pa.int8()))
    return table


_NUMBER_TEXT = {"float": r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$", "int": r"^\s*[-+]?\d+\s*$"}


def _locate_bad_value(path: Path, columns: list[str], types: dict[str, Any]) -> str | None:
    """Arrow names the column of a value that is not a number but not its row: find it (only
    after a failure, so the normal read stays one pass)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    numeric = [c for c in columns if c in types and not pa.types.is_string(types[c])]
    try:
        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}))
    except pa.ArrowInvalid:
        return None  # a parse error (row length, quoting): Arrow's own message names the row
    for name in numeric:
        col = table.column(name)
        kind = "int" if pa.types.is_integer(types[name]) else "float"
        ok = pc.or_kleene(pc.match_substring_regex(col, _NUMBER_TEXT[kind]), pc.equal(pc.utf8_length(col), 0))
        bad = np.flatnonzero(~np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool))
        if len(bad):
            row = int(bad[0])
            return (f"row {row + 1} (line {row + 2}): column {name} is {col[row].as_py()!r}, not a number "
                    f"({len(bad)} such row(s) in this column)")
    return None


def _join_flags(seg, boxes, present: dict[str, str]) -> dict[str, np.ndarray]:
    """Flags of each segmentation row's box, -1 where no box matches: an Arrow hash join on
    ImageID, LabelName and the box coordinates rounded to 1e-4 (duplicate boxes: any flag set wins)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def keyed(table, names):
        cols = {"k_img": table.column(names[0]), "k_lab": table.column(names[1])}
        for i, name in enumerate(names[2:]):
            cols[f"k{i}"] = pc.cast(pc.round(pc.multiply(table.column(name), 1e4)), pa.int64())
        return cols

    keys = ["k_img", "k_lab", "k0", "k1", "k2", "k3"]
    n = seg.num_rows
    left = pa.table({**keyed(seg, ["ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"]),
                     "row": pa.array(np.arange(n, dtype=np.int64))})
    right = pa.table({**keyed(boxes, list(BBOX_COLUMNS)), **{f: boxes.column(c) for f, c in present.items()}})
    if present:
        right = right.group_by(keys).aggregate([(f, "max") for f in present])
        right = right.rename_columns([c[:-4] if c.endswith("_max") else c for c in right.column_names])
    joined = left.join(right, keys=keys, join_type="inner")
    rows = arrow_to_numpy(joined.column("row")).astype(np.int64)
    out = {}
    for flag in present:
        col = np.full(n, -1, dtype=np.int8)
        values = arrow_to_numpy(joined.column(flag))
        col[rows] = np.nan_to_num(values.astype(np.float64), nan=-1).astype(np.int8)
        out[flag] = col
    return out


def _box_counts(seg, boxes) -> np.ndarray:
    """For each segmentation row, how many boxes of its class its image has in the bbox CSV."""
    import pyarrow as pa

    counts = boxes.group_by(["ImageID", "LabelName"]).aggregate([([], "count_all")])
    left = pa.table({"ImageID": seg.column("ImageID"), "LabelName": seg.column("LabelName"),
                     "row": pa.array(np.arange(seg.num_rows, dtype=np.int64))})
    joined = left.join(counts, keys=["ImageID", "LabelName"], join_type="inner")
    out = np.zeros(seg.num_rows, dtype=np.int64)
    out[arrow_to_numpy(joined.column("row")).astype(np.int64)] = arrow_to_numpy(joined.column("count_all"))
    return out


class MaskStore:
    """Finds mask PNGs in a folder, per-archive subfolders or the shipped zip archives."""

    def __init__(self, root: Path):
        self.root = root
        if not root.is_dir():
            raise InputError(f"masks folder {root} does not exist")
        self._dirs: dict[str, Path] | None = None  # per-archive folders / zips, indexed on first need
        self._zips: dict[str, Path] = {}
        self._open: dict[str, zipfile.ZipFile] = {}

    def _index(self) -> None:
        """Find ``*-<h>`` folders and ``*-<h>.zip`` archives (once; a flat folder never needs it)."""
        self._dirs = {}
        with os.scandir(self.root) as entries:
            for entry in entries:
                if not (entry.name.endswith(".zip") or entry.is_dir()):
                    continue
                m = re.search(r"-([0-9a-f])(\.zip)?$", entry.name)
                if m is None:
                    continue
                if entry.is_dir():
                    self._dirs[m.group(1)] = Path(entry.path)
                else:
                    self._zips[m.group(1)] = Path(entry.path)

    def read(self, mask_path: str) -> np.ndarray:
        """Mask PNG -> bool array at its own size; raises ImageError('missing/corrupt mask file')."""
        from PIL import Image, UnidentifiedImageError

        from soebench.manifest.schema import leaves_images_root

        if mask_path and leaves_images_root(mask_path):  # a CSV is data: it must not open /etc/passwd
            raise ImageError(MASK_PATH_OUTSIDE)  # the example is the MaskPath itself
        data: Any = None
        direct = self.root / mask_path
        hexdigit = mask_path[:1].lower()
        if direct.is_file():
            data = direct
        else:
            if self._dirs is None:
                self._index()
            assert self._dirs is not None
            if hexdigit in self._dirs and (self._dirs[hexdigit] / mask_path).is_file():
                data = self._dirs[hexdigit] / mask_path
            elif hexdigit in self._zips:
                data = self._from_archive(hexdigit, mask_path)
        if data is None:
            # an empty MaskPath is named "row N (no MaskPath)" already
            raise ImageError("missing mask file", detail=self._looked_in(mask_path, hexdigit) if mask_path else None)
        try:
            with Image.open(data) as img:
                arr = gray_array(img)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageError("corrupt mask file") from None
        if arr.ndim != 2 or arr.size == 0:
            raise ImageError("corrupt mask file")
        # official masks are 0/255; 0/1 masks, soft masks and masks on a grey background are
        # cut at half their peak, so a non-zero background never becomes a whole-image object
        return arr > arr.max() // 2

    def _looked_in(self, mask_path: str, hexdigit: str) -> str:
        """Where a missing mask was looked for, for the examples of the build summary."""
        where = [str(self.root / mask_path)]
        if self._dirs and hexdigit in self._dirs:
            where.append(str(self._dirs[hexdigit] / mask_path))
        if hexdigit in self._zips:
            where.append(f"{self._zips[hexdigit]}:{mask_path}")
        return "looked for " + ", ".join(where)

    def holds_any(self, names) -> bool:
        """Whether any of ``names`` (an Arrow string array of MaskPaths) is in the folder, its
        archive folders or zips: one listing each, only for the question whether --masks is wrong."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._dirs is None:
            self._index()
        found: set[str] = set()
        for folder in [self.root, *(self._dirs or {}).values()]:
            with contextlib.suppress(OSError):
                found.update(os.listdir(folder))
        for path in self._zips.values():
            with contextlib.suppress(zipfile.BadZipFile, OSError, EOFError), zipfile.ZipFile(path) as archive:
                found.update(archive.namelist())
        return bool(found) and bool(pc.any(pc.is_in(names, value_set=pa.array(sorted(found), pa.string()))).as_py())

    def _from_archive(self, hexdigit: str, mask_path: str) -> io.BytesIO | None:
        """The member's bytes, None when the archive lacks it; a damaged archive or member (an
        interrupted download, flipped bytes) drops the mask with a reason naming the archive."""
        import zlib

        archive = self._open.get(hexdigit)
        name = self._zips[hexdigit].name
        if archive is None:
            try:
                archive = self._open[hexdigit] = zipfile.ZipFile(self._zips[hexdigit])
            except (zipfile.BadZipFile, OSError, EOFError):
                raise ImageError(f"corrupt mask archive {name}") from None
        try:
            return io.BytesIO(archive.read(mask_path))
        except KeyError:
            return None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError):
            raise ImageError(f"corrupt mask file in archive {name}") from None

    def close(self) -> None:
        for archive in self._open.values():
            archive.close()
        self._open.clear()

    def after_fork(self) -> None:
        """In a forked worker: forget the parent's open archives (their file offsets are shared
        with the parent), so that this process opens its own."""
        self._open = {}


def mask_fits(mask_width: int, mask_height: int, width: int, height: int) -> bool:
    """Whether a mask of ``mask_width x mask_height`` can be its ``width x height`` image scaled:
    OpenImages masks come at another resolution than their image, the same aspect ratio up to
    rounding each side to whole pixels (up to one pixel either way, as floor, round or ceil give).
    A transposed or cropped mask does not: resized, it would not cover its object."""
    # mask = image * s + e with |e| <= 1 per side  <=>  |mw * h - mh * w| = |ew * h - eh * w| <= w + h
    return abs(mask_width * height - mask_height * width) <= width + height


def resize_nearest(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width)."""
    if mask.shape == (height, width):
        return mask
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(img) > 127


def _invalid_rows(coords: list[np.ndarray], known_class: np.ndarray) -> np.ndarray:
    """Per row None or the reason it cannot be used (the first that applies)."""
    x0, y0, x1, y1 = coords
    invalid = np.full(len(x0), None, dtype=object)
    with np.errstate(invalid="ignore"):
        bad = ~((x0 >= 0) & (y0 >= 0) & (x1 <= 1) & (y1 <= 1))
        empty = ~((x1 > x0) & (y1 > y0))
    invalid[~known_class] = "unknown category id"
    for reason, hit in (("missing box coordinates", np.isnan(np.stack(coords)).any(axis=0)),
                        ("empty bbox", empty), ("bbox outside the image", bad)):
        ok = invalid == None  # noqa: E711 - elementwise on an object array
        invalid[ok & hit] = reason
    return invalid


@dataclass
class OpenImagesSource:
    """OpenImages segmentation (or box-only) annotations, masks and images."""

    images_root: Path
    classes_path: Path
    segmentation_csv: Path | None = None
    masks_root: Path | None = None
    bbox_csv: Path | None = None
    split: str = "validation"
    name: str = "openimages"
    hierarchy_path: Path | None = None  # bbox_labels_600_hierarchy.json: class filters include subclasses

    def __post_init__(self) -> None:
        if self.segmentation_csv is None and self.bbox_csv is None:
            raise InputError("OpenImages needs --segmentation-csv (with --masks) or at least --bbox-csv")
        if self.segmentation_csv is not None and self.masks_root is None:
            raise InputError("--segmentation-csv needs --masks (the folder of mask PNGs or their zip archives)")
        self._index = FileIndex(self.images_root)
        self._store = MaskStore(self.masks_root) if self.segmentation_csv is not None else None
        self._image_names: dict[str, str | None] = {}
        self._names = None
        self._seg_table = self._bbox_table = None
        self._present: dict[str, str] = {}
        self._cols: dict[str, np.ndarray] = {}
        self._image_ids: list[str] = []
        self._box = np.zeros((0, 4))
        self._classes: dict[str, str] | None = None  # MID -> display name, read once (_class_table)
        self._children: dict[str, tuple[str, ...]] | None = None  # the class hierarchy, read on first need

    # -- candidate table ------------------------------------------------------------------
    def candidates(self) -> Candidates:
        """Strings stay in Arrow (dictionary-encoded): 2.7M rows of Python strings would cost GBs."""
        import pyarrow.compute as pc

        classes = self._class_table()
        table, coord_names, iou, flag_cols = self._read_tables()
        n = table.num_rows
        coords = [arrow_to_numpy(table.column(c)).astype(np.float64) for c in coord_names]
        img_enc = pc.dictionary_encode(table.column("ImageID")).combine_chunks()
        lab_enc = pc.dictionary_encode(table.column("LabelName")).combine_chunks()
        img_idx = chunk_to_numpy(img_enc.indices).astype(np.int64)
        lab_idx = chunk_to_numpy(lab_enc.indices).astype(np.int64)
        self._image_ids = img_enc.dictionary.to_pylist()
        mids = lab_enc.dictionary.to_pylist()
        image_rank = np.empty(len(self._image_ids), dtype=np.int64)
        image_rank[np.asarray(pc.array_sort_indices(img_enc.dictionary))] = np.arange(len(self._image_ids))
        names = np.array([classes.get(m) or "" for m in mids] or [""], dtype=object)
        known = np.array([m in classes for m in mids] or [False], dtype=bool)
        invalid = _invalid_rows(coords, known[lab_idx])
        x0, y0, x1, y1 = coords
        box = np.clip(np.stack(coords, axis=1), 0.0, 1.0)
        mid_arr = np.array(mids or [""], dtype=object)
        cols: dict[str, np.ndarray] = {
            "box": box,
            "box_frac": (x1 - x0) * (y1 - y0),
            # each coordinate is off by up to half a unit of its 6th decimal
            BOX_FRAC_TOL: COORDINATE_ROUNDING * ((x1 - x0) + (y1 - y0) + COORDINATE_ROUNDING),
            "mask_frac": np.full(n, np.nan),
            "width": np.full(n, np.nan),
            "height": np.full(n, np.nan),
            "predicted_iou": iou,
            "category_lower": np.array([v.lower() for v in names], dtype=object)[lab_idx],
            "category_id_lower": np.array([m.lower() for m in mid_arr], dtype=object)[lab_idx],
            "category_count": category_counts(img_idx, lab_idx),
            "crowd": np.full(n, -1, dtype=np.int8),
        }
        for flag in FLAG_COLUMNS:
            cols[flag] = flag_cols.get(flag, np.full(n, -1, dtype=np.int8))
        provides = {k for k in cols if k not in ("mask_frac", "width", "height", "crowd")}
        provides -= {f for f in FLAG_COLUMNS if f not in flag_cols}
        if not self._has_iou:  # box-only, or a segmentation CSV without the column
            provides.discard("predicted_iou")
        if self.join_columns():  # OpenImages segments only some boxes: the others count too (join)
            provides.discard("category_count")
        self._cols = cols
        self._box = box
        # what names a box-only object (a segmentation row is named by its MaskPath)
        self._raw = np.stack(coords, axis=1) if self.segmentation_csv is None else None
        self._image_key, self._label_key, self._mids = img_idx, lab_idx, mids
        rows = np.arange(n, dtype=np.int64)
        return Candidates(
            ann_key=rows,
            image_key=img_idx,
            category=names[lab_idx],
            category_id=mid_arr[lab_idx],
            cols=cols,
            invalid=invalid,
            provides=provides,
            image_order=image_rank[img_idx],
            ann_order=rows,
        )

    def _read_tables(self):
        """The candidate table (segmentation rows, or box rows when there are no masks) with the
        names of its box columns, its PredictedIoU column and -- box-only -- its flags. With masks
        the box table is kept for :meth:`join` (flags only for rows that pass the cheap filters)."""
        import pyarrow as pa

        self._bbox_table, btable, present = None, None, {}
        if self.bbox_csv is not None:
            bheader = check_columns(self.bbox_csv, BBOX_COLUMNS)
            present = {k: v for k, v in FLAG_COLUMNS.items() if v in bheader}
            types = {c: pa.float64() for c in ("XMin", "XMax", "YMin", "YMax")}
            types.update({c: pa.string() for c in ("ImageID", "LabelName")})
            btable = _read_bbox_csv(self.bbox_csv, list(BBOX_COLUMNS), list(present.values()), types)
        self._has_iou = False
        if self.segmentation_csv is None:
            iou = np.full(btable.num_rows, np.nan)
            flags = {k: np.nan_to_num(arrow_to_numpy(btable.column(v)).astype(np.float64), nan=-1).astype(np.int8)
                     for k, v in present.items()}
            self._names = None
            return btable, ("XMin", "YMin", "XMax", "YMax"), iou, flags
        header = check_columns(self.segmentation_csv, SEGMENTATION_COLUMNS)
        wanted = ["MaskPath", "ImageID", "LabelName", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax"]
        wanted += ["PredictedIoU"] if "PredictedIoU" in header else []
        types = {c: pa.float64() for c in ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax", "PredictedIoU")}
        types.update({c: pa.string() for c in ("MaskPath", "ImageID", "LabelName")})
        table = _read_csv(self.segmentation_csv, wanted, {k: v for k, v in types.items() if k in wanted})
        self._has_iou = "PredictedIoU" in wanted
        if self._has_iou:
            import pyarrow.compute as pc

            _first_outside(self.segmentation_csv, table, "PredictedIoU", "a number in [0, 1] (or empty: unknown)",
                           lambda col: pc.and_(pc.greater_equal(col, 0.0), pc.less_equal(col, 1.0)))
        iou = (arrow_to_numpy(table.column("PredictedIoU")).astype(np.float64) if self._has_iou
               else np.full(table.num_rows, np.nan))
        self._names = table.column("MaskPath")
        self._seg_table, self._bbox_table, self._present = table, btable, present
        return table, ("BoxXMin", "BoxYMin", "BoxXMax", "BoxYMax"), iou, {}

    def join_columns(self) -> set[str]:
        """Columns :meth:`join` can add for surviving rows: the box flags, and the category
        count over the segmented objects and the boxes of the bbox CSV."""
        if self.segmentation_csv is None or self._bbox_table is None:
            return set()
        return set(self._present) | {"category_count"}

    def join(self, rows: np.ndarray) -> set[str]:
        """Look up the box flags and box counts of ``rows`` (Arrow hash joins restricted to their images)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.join_columns():
            return set()
        sub = self._seg_table.take(pa.array(np.asarray(rows, dtype=np.int64)))
        boxes = self._bbox_table.filter(pc.is_in(self._bbox_table.column("ImageID"), value_set=pc.unique(sub.column("ImageID"))))
        if not boxes.num_rows:
            self._refuse_unrelated_boxes()
        flags = _join_flags(sub, boxes, self._present)
        for flag, values in flags.items():
            self._cols[flag][rows] = values
        counts = self._cols["category_count"]
        counts[rows] = np.maximum(counts[rows], _box_counts(sub, boxes))
        return set(flags) | {"category_count"}

    def _refuse_unrelated_boxes(self) -> None:
        """No image of the surviving rows has a box: unless the two CSVs share images at all
        (a pre-filtered bbox CSV), it is another split's or dataset's file, and every flag filter
        would pass every object unseen."""
        import pyarrow.compute as pc

        seg_ids = pc.unique(self._seg_table.column("ImageID"))
        if pc.any(pc.is_in(seg_ids, value_set=pc.unique(self._bbox_table.column("ImageID")))).as_py():
            return  # a partial bbox CSV: the rows without a box are kept with the flag unknown (and counted)
        raise InputError(
            f"--bbox-csv {self.bbox_csv} shares no ImageID with --segmentation-csv {self.segmentation_csv} "
            f"({len(seg_ids)} images there, {self._bbox_table.num_rows} boxes here): no object's box flags can be "
            "looked up",
            hint="pass the bbox CSV of the same split as the segmentation CSV (e.g. validation-annotations-bbox.csv "
                 "with validation-annotations-object-segmentation.csv), or leave --bbox-csv out")

    def image_name(self, image_key) -> str:
        return self._image_ids[int(image_key)]

    def annotation_name(self, ann_key) -> str:
        if self._names is None:
            return self._box_name(int(ann_key))
        name = self._names[int(ann_key)].as_py()
        # an empty MaskPath still needs a name in the examples: its CSV row (line = row + 1)
        return name if name else f"row {int(ann_key) + 1} (no MaskPath)"

    def _box_name(self, row: int) -> str:
        """A box-only object's name, shaped like a MaskPath stem: ``<ImageID>_<MID without
        slashes>_<8 hex of its coordinates>``. Made of what the box is, not of its CSV row, so it
        (and the sample_id) survive a filtered or re-ordered bbox CSV; an identical second box of
        the same class in the same image is a duplicate annotation."""
        import hashlib

        x0, y0, x1, y1 = (repr(float(v)) for v in self._raw[row])
        digest = hashlib.sha1(f"{x0},{x1},{y0},{y1}".encode()).hexdigest()[:8]
        return f"{self._image_ids[self._image_key[row]]}_{self._mids[self._label_key[row]].replace('/', '')}_{digest}"

    def _class_table(self) -> dict[str, str]:
        if self._classes is None:
            self._classes = read_classes(self.classes_path)
        return self._classes

    def widen_classes(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """``names`` plus the MIDs of their subclasses (with ``hierarchy_path``; else as given)."""
        if self.hierarchy_path is None or not names:
            return names
        from soebench.mining.class_hierarchy import read_hierarchy, widen

        if self._children is None:
            self._children = read_hierarchy(self.hierarchy_path)
        return widen(names, self._class_table(), self._children)

    def class_ids(self, name: str) -> set[str]:
        """Everything a class filter entry matches on (lower-cased): itself and its MIDs."""
        from soebench.mining.class_hierarchy import mids_of

        return {name.strip().lower()} | {m.lower() for m in mids_of(name, self._class_table())}

    def vocabulary(self) -> dict[str, str]:
        """Every class a filter may name, lower-cased -> as written: display names and MIDs."""
        classes = self._class_table()
        return {**{mid.lower(): mid for mid in classes}, **{n.lower(): n for n in classes.values()}}

    def annotation_keys(self, ann_keys: np.ndarray):
        """What makes an annotation unique, for the rows ``ann_keys``: its MaskPath (a box-only
        row is its own row)."""
        if self._names is None:
            return [self._box_name(int(k)) for k in ann_keys]
        import pyarrow as pa

        return self._names.take(pa.array(np.asarray(ann_keys, dtype=np.int64)))

    def later_columns(self) -> set[str]:
        # box-only too: the mask is the box rasterised to whole pixels, measured like a PNG mask
        return {"width", "height", "mask_frac"}

    # -- per image -------------------------------------------------------------------------
    def image_file(self, image_key) -> str | None:
        image_key = self.image_name(image_key)
        if image_key not in self._image_names:
            found = None
            for suffix in IMAGE_SUFFIXES:
                if self._index.exists(image_key + suffix):
                    found = image_key + suffix
                    break
            self._image_names[image_key] = found
        return self._image_names[image_key]

    def image_lookup(self, image_key) -> str:
        """Where the image file of ``image_key`` was looked for (the examples of a missing one)."""
        stem = self.images_root / self.image_name(image_key)
        return f"looked for {stem}{'|'.join(IMAGE_SUFFIXES)}"

    def holds_any_mask(self, rows: np.ndarray) -> bool:
        """Whether --masks holds the mask file of any of ``rows`` (a shard whose every mask is
        missing may come from a partial copy; a folder with none of them is the wrong one)."""
        import pyarrow as pa

        if self._store is None or self._names is None:
            return True  # box-only: no mask files to look for
        return self._store.holds_any(self._names.take(pa.array(np.asarray(rows, dtype=np.int64))))

    def image_size(self, image_key) -> tuple[int, int]:
        name = self.image_file(image_key)
        if name is None:
            raise ImageError("missing image file", detail=self.image_lookup(image_key))
        return read_image_size(self.images_root / name)

    def masks(self, rows: np.ndarray, width: int, height: int) -> dict[int, tuple[np.ndarray | ImageError, str]]:
        """row -> (mask at its own size, "png"/"box"), or (the ImageError that drops it, "")."""
        from soebench.manifest.masks import box_mask

        out: dict[int, tuple[np.ndarray | ImageError, str]] = {}
        for r in rows:
            r = int(r)
            if self._store is None:
                out[r] = (box_mask(self.bbox_pixels(r, width, height), width, height), "box")
                continue
            try:
                mask = self._store.read(self._names[r].as_py() or "")
            except ImageError as exc:
                out[r] = (exc, "")
                continue
            if not mask_fits(mask.shape[1], mask.shape[0], width, height):
                out[r] = (ImageError(MASK_MISFIT, detail=f"mask {mask.shape[1]}x{mask.shape[0]}, "
                                                         f"image {width}x{height}"), "")
                continue
            out[r] = (mask, "png")
        return out

    def bbox_pixels(self, row: int, width: int, height: int) -> list[float]:
        x0, y0, x1, y1 = self._box[row]
        return [float(x0 * width), float(y0 * height), float((x1 - x0) * width), float((y1 - y0) * height)]

    def captions(self, image_keys: list[str]) -> dict[str, list[str]]:
        return {}

    def license(self, image_key: str) -> str | None:
        return None

    def input_files(self) -> dict[str, Path]:
        files = {"classes": self.classes_path}
        if self.segmentation_csv is not None:
            files["segmentation_csv"] = self.segmentation_csv
        if self.bbox_csv is not None:
            files["bbox_csv"] = self.bbox_csv
        if self.hierarchy_path is not None:
            files["class_hierarchy"] = self.hierarchy_path
        return files

    def describe(self) -> dict[str, Any]:
        return {"masks": "png" if self.segmentation_csv is not None else "box"}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def after_fork(self) -> None:
        if self._store is not None:
            self._store.after_fork()
