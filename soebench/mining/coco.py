"""COCO instances (and captions) files -> columns of candidate objects, parsing only what is needed.

A COCO train instances file is ~450 MB of JSON, nine tenths of it polygon coordinates that the
miner needs only for the few objects that pass the cheap filters. ``json.load`` would build
Python objects for all of it (pycocotools' loader takes ~30 s and ~2.7 GB). Instead the file is
memory-mapped and scanned once with one regular expression that matches, per annotation, its
``"segmentation"`` key and the run of small fields (``area, iscrowd, image_id, bbox,
category_id, id``) in the key order of the first annotation. The scan is *verified*: every
annotation must yield exactly one segmentation key followed (or preceded) by exactly one
field match, else the file is not in the shape the scanner assumes and it falls back to
``json.load`` (slow, exact; also the path that reports a JSON syntax error with its line and
column). Segmentations are decoded later, only for the objects that survive the filters.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import InputError

CHUNK_BYTES = 32 << 20
_FIELDS = ("area", "iscrowd", "image_id", "bbox", "category_id", "id")
_KEYS = frozenset(_FIELDS) | {"segmentation"}
_WS = re.compile(rb"\s*")
_KEY = re.compile(rb'\s*"((?:[^"\\]|\\.)*)"\s*:\s*')
_SEG_KEY = re.compile(rb'"segmentation"\s*:\s*')
_NUM = rb"(-?[0-9][0-9.eE+-]*)"
_INT = rb"(-?[0-9]+)"


class _Fallback(Exception):
    """The fast scanner met a shape it does not handle: use json.load."""

    def __init__(self, message: str, *, at: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.at = at  # byte offset of a JSON syntax error, when that is what stopped the scan
        self.reason = reason


class MaskError(ValueError):
    """A segmentation that cannot become a mask; ``args[0]`` is the reject reason."""


@dataclass
class CocoImage:
    file_name: str
    width: int
    height: int
    license: str | None


@dataclass
class CocoInstances:
    """Columns of every annotation of one instances file (row i = i-th annotation in the file)."""

    path: Path
    images: dict[int, CocoImage]
    categories: dict[int, str]
    ann_id: np.ndarray
    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray  # (n, 4) x, y, w, h pixels
    area: np.ndarray
    iscrowd: np.ndarray
    parser: str = "scan"  # "scan" | "json"
    _segmentations: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ann_id)

    def segmentations(self, rows: Iterable[int]) -> dict[int, Any]:
        """row index -> the parsed ``segmentation`` value (None when the annotation has none)."""
        return self._segmentations(sorted(set(int(r) for r in rows)))

    def close(self) -> None:
        closer = getattr(self._segmentations, "close", None)
        if closer is not None:
            closer()


# --- errors -------------------------------------------------------------------------------


def json_error(path: Path, exc: json.JSONDecodeError) -> InputError:
    return InputError(
        f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
        hint="the file may be truncated or not a COCO annotation file",
    )


def _load_json(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise json_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 JSON text (byte {exc.start}: {exc.reason})") from None


# --- small JSON values at byte offsets of a mapped file --------------------------------------


def _decode_at(mm: mmap.mmap, pos: int, first_window: int = 1 << 16) -> tuple[Any, int]:
    """Parse the JSON value starting at byte ``pos``; return (value, end byte offset)."""
    decoder = json.JSONDecoder()
    window = first_window
    n = len(mm)
    while True:
        end = min(n, pos + window)
        text = mm[pos:end].decode("utf-8", errors="replace")
        try:
            value, stop = decoder.raw_decode(text)
        except json.JSONDecodeError as exc:
            if end < n and exc.pos >= len(text) - 64:
                window *= 4
                continue
            at = pos + len(text[: exc.pos].encode("utf-8"))
            raise _Fallback(f"bad value at byte {pos}", at=at, reason=exc.msg) from None
        if end < n and stop >= len(text) - 1:
            window *= 4  # a number might continue past the window
            continue
        return value, pos + len(text[:stop].encode("utf-8"))


def _skip_ws(mm: mmap.mmap, pos: int) -> int:
    return _WS.match(mm, pos).end()


def _expect(mm: mmap.mmap, pos: int, char: bytes) -> int:
    pos = _skip_ws(mm, pos)
    if mm[pos : pos + 1] != char:
        raise _Fallback(f"expected {char!r} at byte {pos}")
    return pos + 1


# --- the verified scan of the annotations array ----------------------------------------------


def _field_pattern(order: Sequence[str], compact: bool) -> tuple[bytes, list[str]]:
    """Regex for the run of small fields in ``order``; returns (pattern, group -> column)."""
    colon, comma = (rb": ", rb", ") if compact else (rb"\s*:\s*", rb"\s*,\s*")
    parts, groups = [], []
    for name in order:
        if name == "bbox":
            sep = comma
            value = rb"\[\s*" + _NUM + sep + _NUM + sep + _NUM + sep + _NUM + rb"\s*\]"
            groups += ["x", "y", "w", "h"]
        else:
            value = _NUM if name == "area" else _INT
            groups.append(name)
        parts.append(b'"' + name.encode() + b'"' + colon + value)
    return comma.join(parts), groups


class _SegmentationReader:
    """Finds and parses segmentation values of chosen annotations by re-scanning their chunk."""

    def __init__(self, path: Path, chunks: list[tuple[int, int, int, int]], ann_ids: np.ndarray):
        self.path = path
        self.chunks = chunks  # (start, end, first annotation index, count)
        self.ann_ids = ann_ids
        self._fh = open(path, "rb")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._positions: dict[int, list[int]] = {}

    def __call__(self, rows: list[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        firsts = [c[2] for c in self.chunks]
        wanted: dict[int, list[int]] = {}
        for r in rows:
            k = int(np.searchsorted(firsts, r, side="right")) - 1
            wanted.setdefault(k, []).append(r)
        for k, chunk_rows in sorted(wanted.items()):
            start, end, first, _count = self.chunks[k]
            positions = self._positions.get(k)
            if positions is None:  # one re-scan per chunk, cached: survivors cluster by image
                positions = self._positions[k] = [m.end() for m in _SEG_KEY.finditer(self._mm, start, end)]
            for r in chunk_rows:
                try:
                    out[r], _ = _decode_at(self._mm, positions[r - first])
                except (_Fallback, IndexError) as exc:
                    raise self._error(r, exc) from None
        return out

    def _error(self, row: int, exc: Exception) -> InputError:
        """The file is not JSON where a kept object's segmentation lies: name the annotation
        and the position (as json.load would), so the user can find the damage."""
        where = ""
        at = getattr(exc, "at", None)
        if at is not None:
            line = self._mm[:at].count(b"\n") + 1
            column = at - (self._mm.rfind(b"\n", 0, at) + 1) + 1
            where = f": {exc.reason} at line {line} column {column} (char {at})"
        return InputError(
            f"{self.path}: not valid JSON in the segmentation of annotation id {int(self.ann_ids[row])}{where}",
            hint="the file may be damaged; re-download it",
        )

    def close(self) -> None:
        self._mm.close()
        self._fh.close()


def _scan_annotations(
    mm: mmap.mmap, reader, start: int, order: Sequence[str], seg_first: bool, compact: bool
) -> tuple[dict[str, np.ndarray], list[tuple[int, int, int, int]], int]:
    """Scan from ``start`` (just after the annotations '[') to the end of the file.

    The bulk is read with ``reader.readinto`` into one reused buffer (cheaper than faulting in
    mapped pages, and the resident memory stays one chunk). Returns (columns named as in
    ``_COLUMNS``, chunk table, byte offset just after the array's closing ']').
    """
    fields_re, groups = _field_pattern(order, compact)
    pattern = re.compile(rb'"segmentation"|' + fields_re)
    empty = (b"",) * len(groups)
    n = len(mm)
    pos = start
    expect_seg = seg_first
    parts: list[np.ndarray] = []
    chunks: list[tuple[int, int, int, int]] = []
    seg_count = 0
    field_count = 0
    last_chunk_with_match = None
    buf = bytearray(CHUNK_BYTES)
    while pos < n:
        reader.seek(pos)
        nread = reader.readinto(buf)
        data, stop = buf, nread
        if pos + nread < n:
            cut = buf.rfind(b'"segmentation"', 1, nread)
            if cut <= 0:  # one annotation larger than a chunk: take it whole from the map
                nxt = mm.find(b'"segmentation"', pos + nread)
                stop = (n if nxt < 0 else nxt) - pos
                data = mm[pos : pos + stop]
            else:
                stop = cut
        found = pattern.findall(data, 0, stop)
        if found:
            segs = found[0::2] if expect_seg else found[1::2]
            fields = found[1::2] if expect_seg else found[0::2]
            if segs.count(empty) != len(segs) or fields.count(empty):
                raise _Fallback("annotations do not alternate segmentation / fields")
            if len(found) % 2:
                expect_seg = not expect_seg
            if fields:
                parts.append(_parse_numbers(b"\n".join(map(b",".join, fields)), len(groups), len(fields)))
            last_chunk_with_match = len(chunks)
        else:
            segs, fields = [], []
        chunks.append((pos, pos + stop, seg_count, len(segs)))
        seg_count += len(segs)
        field_count += len(fields)
        pos += stop
    del buf
    if seg_count != field_count:
        raise _Fallback("unequal numbers of segmentations and fields")
    values = np.concatenate(parts, axis=0) if parts else np.zeros((0, len(groups)))
    columns = {g: np.ascontiguousarray(values[:, i]) for i, g in enumerate(groups)}
    # find the closing ']' after the last annotation
    if last_chunk_with_match is None:
        array_end = _expect(mm, start, b"]")
    else:
        c_start, c_end, _, _ = chunks[last_chunk_with_match]
        last = None
        for last in pattern.finditer(mm, c_start, c_end):
            pass
        assert last is not None
        stop = last.end()
        if last.group(0).startswith(b'"segmentation"'):
            _, stop = _decode_at(mm, _SEG_KEY.match(mm, last.start()).end())
        array_end = _expect(mm, _expect(mm, stop, b"}"), b"]")
    return columns, chunks, array_end


_COLUMNS = ("area", "iscrowd", "image_id", "x", "y", "w", "h", "category_id", "id")


def _parse_numbers(blob: bytes, ncols: int, nrows: int) -> np.ndarray:
    """CSV text of numbers -> float64 (nrows, ncols) via pyarrow's C++ parser."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pcsv.read_csv(
            io.BytesIO(blob),
            read_options=pcsv.ReadOptions(column_names=names, block_size=16 << 20),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.float64() for n in names}),
        )
    except pa.ArrowInvalid as exc:
        raise _Fallback(f"numbers did not parse: {exc}") from None
    if table.num_rows != nrows or any(col.null_count for col in table.columns):
        raise _Fallback("numbers did not parse")
    out = np.empty((nrows, ncols))
    for i, col in enumerate(table.columns):
        out[:, i] = arrow_to_numpy(col)
    return out


_NUMERIC = {"double": np.float64, "int64": np.int64, "int32": np.int32, "int8": np.int8}


def _chunk_to_numpy(chunk) -> np.ndarray:
    """Numeric chunks without nulls straight from their buffer: Array.to_numpy's first call
    costs ~0.5 s of lazy imports."""
    dtype = _NUMERIC.get(str(chunk.type))
    if dtype is not None and chunk.null_count == 0:
        return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * np.dtype(dtype).itemsize)
    return chunk.to_numpy(zero_copy_only=False)


def arrow_to_numpy(column) -> np.ndarray:
    """A pyarrow ChunkedArray as numpy without importing pandas (ChunkedArray.to_numpy may)."""
    chunks = [_chunk_to_numpy(c) for c in column.chunks]
    if not chunks:
        return np.zeros(0, dtype=object if column.type == "string" else np.float64)
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _first_annotation_order(mm: mmap.mmap, start: int) -> tuple[list[str], bool, bool]:
    """Key order of the first annotation; (order without segmentation, seg_first, compact)."""
    pos = _skip_ws(mm, start)
    obj, end = _decode_at(mm, pos)
    if not isinstance(obj, dict) or set(obj) != _KEYS:
        raise _Fallback("first annotation does not have exactly the instance keys")
    keys = list(obj)
    if keys[0] != "segmentation" and keys[-1] != "segmentation":
        raise _Fallback("segmentation is neither the first nor the last key")
    raw = mm[pos:end]
    compact = all(b'"' + k.encode() + b'": ' in raw for k in keys) and raw.count(b", \"") >= len(keys) - 1
    return [k for k in keys if k != "segmentation"], keys[0] == "segmentation", compact


def _scan_file(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray], list[tuple[int, int, int, int]]]:
    """Fast path: top-level keys except 'annotations' parsed normally, annotations scanned."""
    fh = open(path, "rb")
    try:
        if os.fstat(fh.fileno()).st_size == 0:
            raise _Fallback("empty file")
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (ValueError, OSError):
        fh.close()
        raise _Fallback("cannot map file") from None
    try:
        top: dict[str, Any] = {}
        table = None
        reader = open(path, "rb", buffering=0)
        chunks: list[tuple[int, int, int, int]] = []
        pos = _expect(mm, 0, b"{")
        if mm[_skip_ws(mm, pos) : _skip_ws(mm, pos) + 1] == b"}":
            pos = _skip_ws(mm, pos) + 1
        else:
            while True:
                m = _KEY.match(mm, pos)
                if m is None:
                    raise _Fallback(f"expected a key at byte {pos}")
                key = json.loads(b'"' + m.group(1) + b'"')
                pos = m.end()
                if key == "annotations":
                    pos = _expect(mm, pos, b"[")
                    if mm[_skip_ws(mm, pos) : _skip_ws(mm, pos) + 1] == b"]":
                        table, pos = {c: np.zeros(0) for c in _COLUMNS}, _skip_ws(mm, pos) + 1
                    else:
                        order, seg_first, compact = _first_annotation_order(mm, pos)
                        try:
                            table, chunks, pos = _scan_annotations(mm, reader, pos, order, seg_first, compact)
                        except _Fallback:
                            if not compact:
                                raise
                            table, chunks, pos = _scan_annotations(mm, reader, pos, order, seg_first, False)
                else:
                    top[key], pos = _decode_at(mm, pos)
                pos = _skip_ws(mm, pos)
                sep = mm[pos : pos + 1]
                pos += 1
                if sep == b"}":
                    break
                if sep != b",":
                    raise _Fallback(f"expected ',' or '}}' at byte {pos - 1}")
        if _skip_ws(mm, pos) != len(mm):
            raise _Fallback("trailing data")
        if table is None:
            raise _Fallback("no annotations")
        return top, table, chunks
    finally:
        reader.close()
        mm.close()
        fh.close()


# --- public loader ---------------------------------------------------------------------------


def _images_and_categories(path: Path, top: dict[str, Any]) -> tuple[dict[int, CocoImage], dict[int, str]]:
    for key in ("images", "categories"):
        if not isinstance(top.get(key), list):
            raise InputError(f"{path}: no {key!r} list; is this a COCO instances file?")
    licenses = {}
    for lic in top.get("licenses") or []:
        if isinstance(lic, dict) and "id" in lic:
            licenses[lic["id"]] = lic.get("name")
    images: dict[int, CocoImage] = {}
    for i, img in enumerate(top["images"]):
        try:
            images[int(img["id"])] = CocoImage(
                str(img["file_name"]), int(img["width"]), int(img["height"]), licenses.get(img.get("license"))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: images[{i}] lacks a valid id/file_name/width/height ({exc!r})") from None
    categories: dict[int, str] = {}
    for i, cat in enumerate(top["categories"]):
        try:
            categories[int(cat["id"])] = str(cat["name"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: categories[{i}] lacks a valid id/name ({exc!r})") from None
    return images, categories


def _from_json(path: Path, data: Any) -> CocoInstances:
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{path}: no 'annotations' list; is this a COCO instances file?")
    images, categories = _images_and_categories(path, data)
    anns = data["annotations"]
    n = len(anns)
    cols = {k: np.zeros(n) for k in _COLUMNS}
    segs: list[Any] = []
    for i, ann in enumerate(anns):
        try:
            bbox = [float(v) for v in ann["bbox"]]
            if len(bbox) != 4:
                raise ValueError("bbox needs 4 numbers")
            cols["x"][i], cols["y"][i], cols["w"][i], cols["h"][i] = bbox
            cols["id"][i] = int(ann["id"])
            cols["image_id"][i] = int(ann["image_id"])
            cols["category_id"][i] = int(ann["category_id"])
            cols["area"][i] = float(ann.get("area", bbox[2] * bbox[3]))
            cols["iscrowd"][i] = int(ann.get("iscrowd", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: annotations[{i}] lacks a valid id/image_id/category_id/bbox ({exc!r})") from None
        segs.append(ann.get("segmentation"))

    def lookup(rows: list[int]) -> dict[int, Any]:
        return {r: segs[r] for r in rows}

    return _assemble(path, images, categories, cols, lookup, "json")


def _assemble(path, images, categories, c: dict[str, np.ndarray], seg_lookup, parser) -> CocoInstances:
    return CocoInstances(
        path=path,
        images=images,
        categories=categories,
        ann_id=c["id"].astype(np.int64),
        image_id=c["image_id"].astype(np.int64),
        category_id=c["category_id"].astype(np.int64),
        bbox=np.stack([c["x"], c["y"], c["w"], c["h"]], axis=1) if len(c["id"]) else np.zeros((0, 4)),
        area=c["area"].astype(np.float64),
        iscrowd=c["iscrowd"].astype(np.int8),
        parser=parser,
        _segmentations=seg_lookup,
    )


def load_instances(path: str | os.PathLike, *, fast: bool = True) -> CocoInstances:
    """Read a COCO instances file; the fast verified scan unless ``fast=False`` or it declines."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO annotation file {path} does not exist")
    if fast:
        try:
            top, table, chunks = _scan_file(path)
        except _Fallback:
            pass
        else:
            images, categories = _images_and_categories(path, top)
            return _assemble(path, images, categories, table, _SegmentationReader(path, chunks, table["id"]), "scan")
    return _from_json(path, _load_json(path))


# --- captions ------------------------------------------------------------------------------


def check_json_object_ends(path: str | os.PathLike, what: str = "COCO") -> None:
    """Cheap early check that a JSON file is one complete object (reads its two ends only).

    Captions are read after the mining (only for the images kept); a truncated file must still
    fail before any work, with json.load's position -- the full parse runs only when an end is wrong.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - 64))
        tail = fh.read(64)
    if head.lstrip()[:1] != b"{" or tail.rstrip()[-1:] != b"}":
        data = _load_json(path)  # raises with the position of the damage
        if not isinstance(data, dict):
            raise InputError(f"{path}: expected a JSON object; is this a {what} file?")


_CAPTION_RE = re.compile(rb'"image_id"\s*:\s*([0-9]+)|"caption"\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*")')


def load_captions(path: str | os.PathLike, image_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    """image id -> captions (file order) from a COCO captions file; only ``image_ids`` if given.

    Scans for the two keys it needs (verified: they must alternate); falls back to json.load.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO captions file {path} does not exist")
    wanted = None if image_ids is None else np.array(sorted({int(i) for i in image_ids}), dtype=np.int64)
    raw = path.read_bytes()
    found = _CAPTION_RE.findall(raw)
    ok = bool(found) and len(found) % 2 == 0 and raw.lstrip()[:1] == b"{" and raw.rstrip()[-1:] == b"}"
    if ok:
        id_first = bool(found[0][0])
        ids, caps = (found[0::2], found[1::2]) if id_first else (found[1::2], found[0::2])
        id_list = [t[0] for t in ids]
        cap_list = [t[1] for t in caps]
        ok = b"" not in id_list and b"" not in cap_list and {t[1] for t in ids} == {b""} and {t[0] for t in caps} == {b""}
    if ok:
        del found, raw
        img = np.array(id_list).astype(np.int64)
        sel = np.arange(len(img)) if wanted is None else np.flatnonzero(np.isin(img, wanted))
        out: dict[int, list[str]] = {}
        for i in sel:
            out.setdefault(int(img[i]), []).append(json.loads(cap_list[i]))
        return out
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{path}: no 'annotations' list; is this a COCO captions file?")
    out = {}
    for i, ann in enumerate(data["annotations"]):
        try:
            iid, cap = int(ann["image_id"]), str(ann["caption"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: annotations[{i}] lacks image_id/caption") from None
        if wanted is None or iid in wanted:
            out.setdefault(iid, []).append(cap)
    return out


# --- masks ---------------------------------------------------------------------------------


def segmentation_mask(seg: Any, height: int, width: int) -> tuple[np.ndarray, str]:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> (bool mask, source).

    Raises MaskError with the reject reason for polygons with fewer than 3 points, RLE whose
    size differs from the image, and malformed values.
    """
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        polys = []
        for poly in seg:
            if not isinstance(poly, list) or not all(isinstance(v, (int, float)) for v in poly):
                raise MaskError("malformed polygon")
            if len(poly) < 6:
                raise MaskError("polygon with fewer than 3 points")
            if len(poly) % 2:
                raise MaskError("polygon with an odd number of coordinates")
            polys.append([float(v) for v in poly])
        if not polys:
            raise MaskError("empty segmentation")
        rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        source = "polygon"
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        size = seg["size"]
        if not isinstance(size, list) or not all(isinstance(v, (int, float)) for v in size):
            raise MaskError("malformed RLE size")
        if [int(v) for v in size] != [height, width]:
            raise MaskError("RLE size differs from the image")
        counts = seg["counts"]
        if isinstance(counts, list):
            if not all(isinstance(v, int) and v >= 0 for v in counts):
                raise MaskError("malformed RLE counts")
            if sum(counts) != height * width:
                raise MaskError("RLE counts do not cover the image")
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        elif isinstance(counts, str):
            if not counts.isascii():
                raise MaskError("malformed RLE counts")
            rle = {"size": [height, width], "counts": counts.encode("ascii")}
        else:
            raise MaskError("malformed RLE counts")
        source = "rle"
    else:
        raise MaskError("missing or malformed segmentation")
    try:
        mask = mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError):  # pycocotools: "Invalid RLE mask representation"
        raise MaskError(f"malformed {source} segmentation (does not decode)") from None
    if mask.shape != (height, width):
        raise MaskError("RLE size differs from the image")
    return mask, source
