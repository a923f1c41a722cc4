"""COCO instances (and captions) files -> columns of candidate objects, decoding only what is needed.

A COCO train instances file is ~450 MB of JSON, nine tenths of it polygon coordinates that the
miner needs only for the few objects that pass the cheap filters. ``json.load`` would build
Python objects for all of it (pycocotools' loader: tens of seconds, ~2.7 GB). Here msgspec
decodes the file into typed structs that declare only the fields the miner uses; the
``segmentation`` of each annotation stays a :class:`msgspec.Raw` (a zero-copy slice of the
mapped file), decoded later and only for the objects that survive the filters. msgspec still
checks the syntax of every byte (and a thread beside it the UTF-8 of the strings it skips), so
damage anywhere in the file -- also inside an object no filter keeps -- is an error that names
the file, the line and column, and the annotation; near a known value start the damage is read
again with Python's json, so the wording and position are those json.load would report.

Memory: the ``annotations`` array is decoded in pieces of about ``CHUNK_BYTES``, each turned into
numpy columns at once, and the file pages of a finished piece are dropped from the process
(``madvise(MADV_DONTNEED)``: they stay in the page cache), so the peak is a few pieces rather than
the whole file plus a Python object per number. A piece is cut at a candidate element boundary
``}, {`` whose two separator bytes are overwritten, in a private copy-on-write mapping, with
``][``. Why this is exact: the first piece starts at the array's real ``[``; if a piece that
starts at a true element boundary decodes as a complete JSON array, its end is a true element
boundary too (a cut inside a string or a nested value leaves the piece unterminated), so by
induction every accepted cut is real, and the pieces, the members before the array and those
after it together are the whole document, each part checked by msgspec.
"""

from __future__ import annotations

import codecs
import gc
import json
import mmap
import os
import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from soebench.errors import InputError

CHUNK_BYTES = 8 << 20
#: json's error positions are reproduced (Python's wording, char offsets) when the damage lies
#: within this many bytes of a point where a JSON value is known to start
_JSON_WINDOW = 64 << 20
_NAN = float("nan")
_BOM = codecs.BOM_UTF8
_WS = b" \t\r\n"


class MaskError(ValueError):
    """A segmentation that cannot become a mask; ``args[0]`` is the reject reason."""


# --- what is decoded ------------------------------------------------------------------------
# gc=False: these structs hold no containers that could form cycles, and 860k tracked objects
# would make every collection during the decode walk them all.


class _Annotation(msgspec.Struct, gc=False):
    id: int
    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    area: float = _NAN  # missing: the box area (as when COCO evaluation lacks it)
    iscrowd: int | bool = 0
    segmentation: msgspec.Raw = msgspec.Raw(b"null")


class _Image(msgspec.Struct, gc=False):
    id: int
    file_name: str
    width: int
    height: int
    license: int | str | None = None


class _Category(msgspec.Struct, gc=False):
    id: int
    name: str


class _License(msgspec.Struct, gc=False):
    id: int | str | None = None
    name: str | None = None


class _Members(msgspec.Struct):
    """Top-level members other than ``annotations`` (they may come before or after it)."""

    images: list[_Image] | None = None
    categories: list[_Category] | None = None
    licenses: list[_License] | None = None


class _Instances(_Members):
    annotations: list[_Annotation] | None = None


class _Caption(msgspec.Struct, gc=False):
    image_id: int
    caption: str


class _Captions(msgspec.Struct):
    annotations: list[_Caption] | None = None


_ANNOTATIONS = msgspec.json.Decoder(list[_Annotation])
_MEMBERS = msgspec.json.Decoder(_Members)
_CAPTIONS = msgspec.json.Decoder(list[_Caption])
_ANY_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # checked, not kept


@contextmanager
def _no_gc() -> Iterator[None]:
    """Decoding allocates millions of objects and no cycles: collections would only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- the result -------------------------------------------------------------------------------


@dataclass
class CocoImage:
    file_name: str
    width: int
    height: int
    license: str | None


@dataclass
class CocoInstances:
    """Columns of every annotation of one instances file (row i = i-th annotation in the file).

    Images are columns sorted by id (``image_ids``, ``image_width``, ...); ``image_row`` maps an
    id to its position.
    """

    path: Path
    image_ids: np.ndarray
    image_width: np.ndarray
    image_height: np.ndarray
    image_files: list[str]
    image_licenses: list[str | None]
    categories: dict[int, str]
    ann_id: np.ndarray
    image_id: np.ndarray
    category_id: np.ndarray
    bbox: np.ndarray  # (n, 4) x, y, w, h pixels
    area: np.ndarray
    iscrowd: np.ndarray
    _segmentations: list[msgspec.Raw] | None = field(default=None, repr=False)
    _image_rows: dict[int, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ann_id)

    def image_row(self, image_id: int) -> int | None:
        if self._image_rows is None:  # built on first use: called once per image kept
            self._image_rows = dict(zip(self.image_ids.tolist(), range(len(self.image_ids))))
        return self._image_rows.get(int(image_id))

    def image(self, image_id: int) -> CocoImage:
        i = self.image_row(image_id)
        if i is None:
            raise KeyError(image_id)
        return CocoImage(self.image_files[i], int(self.image_width[i]), int(self.image_height[i]), self.image_licenses[i])

    def segmentation(self, row: int) -> Any:
        """The decoded ``segmentation`` of annotation ``row`` (None when it has none)."""
        try:
            return msgspec.json.decode(self._segmentations[row])
        except msgspec.DecodeError:  # structure was checked with the file; e.g. a string not UTF-8
            raise MaskError("malformed segmentation (not valid JSON text)") from None

    def close(self) -> None:
        # the raw slices keep the file mapped; it is unmapped when the last of them goes
        self._segmentations = None


# --- errors -------------------------------------------------------------------------------


def _counts(buf, start: int, stop: int) -> tuple[int, int]:
    """(newlines, UTF-8 code points) in ``buf[start:stop]``, counted in blocks with numpy."""
    lines = chars = 0
    for lo in range(start, stop, 1 << 24):
        hi = min(stop, lo + (1 << 24))
        block = np.frombuffer(buf, dtype=np.uint8, count=hi - lo, offset=lo)
        lines += int(np.count_nonzero(block == 10))
        chars += (hi - lo) - int(np.count_nonzero((block & 0xC0) == 0x80))  # not continuation bytes
    return lines, chars


def _line_start(buf, start: int, at: int) -> int:
    pos = at
    while pos > start:
        lo = max(start, pos - (1 << 20))
        nl = bytes(buf[lo:pos]).rfind(b"\n")
        if nl >= 0:
            return lo + nl + 1
        pos = lo
    return start


def _position(buf, start: int, at: int) -> tuple[int, int, int]:
    """(line, column, char) of byte ``at`` as json reports them: 1-based line and column, 0-based
    char, columns and chars in code points, from the document start ``start``."""
    at = min(max(at, start), len(buf))
    lines, chars = _counts(buf, start, at)
    return lines + 1, _counts(buf, _line_start(buf, start, at), at)[1] + 1, chars


def _utf8_error(path: Path, start: int, stop: threading.Event | None = None) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence in the file from ``start``, or None.

    msgspec checks the UTF-8 of the strings it decodes, not of those it skips, so this runs
    beside the decode in a thread: reading into one buffer and numpy's max release the GIL,
    and only blocks with non-ASCII bytes are decoded.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    pos = start
    with open(path, "rb", buffering=0) as fh:
        block = bytearray(max(1, min(CHUNK_BYTES, os.fstat(fh.fileno()).st_size - start)))
        fh.seek(start)
        while (n := fh.readinto(block)) and not (stop is not None and stop.is_set()):
            view = memoryview(block)[:n]
            pending = len(decoder.getstate()[0])  # bytes of a sequence begun in the previous block
            if pending or int(np.frombuffer(view, dtype=np.uint8).max()) >= 0x80:
                try:
                    decoder.decode(view, final=False)
                except UnicodeDecodeError as exc:
                    return pos - pending + exc.start
            pos += n
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return pos - len(decoder.getstate()[0])
    return None


class _Utf8Check:
    """:func:`_utf8_error` in a worker thread for the duration of a decode."""

    def __init__(self, path: Path, start: int):
        self.path, self.start = path, start
        self.stop = threading.Event()
        self.result: list[int | None] = []
        self.thread = threading.Thread(target=lambda: self.result.append(_utf8_error(path, start, self.stop)), daemon=True)

    def __enter__(self) -> "_Utf8Check":
        self.thread.start()
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:  # the decode failed first: its error is the one to report
            self.stop.set()
        self.thread.join()

    def error(self, buf) -> InputError | None:
        bad = self.result[0] if self.result else None
        return None if bad is None else _utf8_message(self.path, buf, self.start, bad)


def _utf8_message(path: Path, buf, start: int, bad: int) -> InputError:
    line, col, _ = _position(buf, start, bad)
    return InputError(f"{path}: not UTF-8 text: byte {bad} (line {line} column {col}) is not valid UTF-8")


_BYTE = re.compile(r"\s*\(byte (\d+)\)$")
_PATH = re.compile(r"^(.*) - at `\$(.*)`$")
_JSON_WS = re.compile(r"[ \t\n\r]*")


def _byte_of(exc: msgspec.DecodeError, offset: int, end: int) -> int:
    """Absolute byte offset of a msgspec syntax error in a buffer decoded from ``offset``
    (``end`` when msgspec gives none: the input ended early)."""
    m = _BYTE.search(str(exc))
    return offset + int(m.group(1)) if m else end


def _json_retry(text: str, walk_array: bool) -> tuple[json.JSONDecodeError | None, list[int]]:
    """Python's json over ``text``: a whole document, or with ``walk_array`` the elements of an
    array from its first one. Returns its error (None if it found none) and the element starts."""
    decoder = json.JSONDecoder()
    if not walk_array:
        try:
            decoder.decode(text)
        except json.JSONDecodeError as exc:
            return exc, []
        return None, []
    idx, starts = _JSON_WS.match(text, 0).end(), []
    while True:
        starts.append(idx)
        try:
            _, idx = decoder.raw_decode(text, idx)
        except json.JSONDecodeError as exc:
            return exc, starts
        idx = _JSON_WS.match(text, idx).end()
        if text[idx : idx + 1] == ",":
            idx = _JSON_WS.match(text, idx + 1).end()
            continue
        if text[idx : idx + 1] == "]":
            return None, starts
        return json.JSONDecodeError("Expecting ',' delimiter", text, idx), starts


@dataclass
class _Where:
    """Where decoding met damage: byte ``at``; ``resume``, a byte where a JSON value is known to
    start (the document, or with ``first_row`` set the first element of annotations piece)."""

    at: int
    resume: int
    first_row: int | None = None


_ID_KEY = re.compile(r'[{,]\s*"id"\s*:\s*(-?[0-9]+)')
_ELEMENT_END = re.compile(r"\}\s*(?:,\s*\{|\])")


def _annotation_id(text: str, starts: list[int], k: int) -> str:
    """' (annotation id N)' for element ``k`` of a walked piece when its one id key is found."""
    lo = starts[k]
    if k + 1 < len(starts):
        hi = starts[k + 1]
    else:
        end = _ELEMENT_END.search(text, lo)
        hi = end.end() if end else len(text)
    found = _ID_KEY.findall(text, lo, hi)
    return f" (annotation id {found[0]})" if len(found) == 1 else ""


def _syntax_error(path: Path, buf, start: int, reason: str, where: _Where) -> InputError:
    """An InputError naming the file, line and column (and the annotation when the damage lies
    in one). Near a known value start the damage is re-read with Python's json, so that the
    wording and position are json's (the position json.load would report for the whole file)."""
    if "UTF-8" in reason:  # msgspec names no position for these
        bad = _utf8_error(path, start)
        if bad is not None:
            return _utf8_message(path, buf, start, bad)
    at, context = where.at, ""
    message = _BYTE.sub("", reason.replace("JSON is malformed: ", ""))
    if 0 <= where.at - where.resume <= _JSON_WINDOW:
        stop = min(len(buf), where.at + (1 << 16))
        text = bytes(buf[where.resume : stop]).decode("utf-8", errors="replace")
        err, starts = _json_retry(text, walk_array=where.first_row is not None)
        if err is not None and (stop == len(buf) or err.pos < len(text) - 1024):
            at, message = where.resume + len(text[: err.pos].encode("utf-8")), err.msg
        if where.first_row is not None:
            k = bisect_right(starts, _counts(buf, where.resume, at)[1]) - 1
            if k >= 0:
                context = f", in annotations[{where.first_row + k}]{_annotation_id(text, starts, k)}"
    line, col, char = _position(buf, start, at)
    return InputError(
        f"{path}: not valid JSON: {message} at line {line} column {col} (char {char}){context}",
        hint="the file may be truncated, damaged or not a COCO annotation file",
    )


def _validation_error(path: Path, exc: msgspec.ValidationError, first_row: int | None = None, piece=None) -> InputError:
    """A value of the wrong type or a missing field, named by its place (``annotations[k].bbox``);
    ``first_row`` and ``piece``: the error came from a piece of the annotations array."""
    m = _PATH.match(str(exc))
    reason, where = (m.group(1), m.group(2)) if m else (str(exc), "")
    element = re.match(r"\[(\d+)\](.*)", where) if first_row is not None else None
    if element:
        k = int(element.group(1))
        where, reason = f"annotations[{first_row + k}]{element.group(2)}", reason + _element_id(piece, k)
    else:
        where = where.lstrip(".") or "the top level"
    return InputError(f"{path}: {where}: {reason}", hint="is this a COCO annotation file?")


def _element_id(piece, k: int) -> str:
    """' (annotation id N)' of element ``k`` of a piece (which may run on past the array)."""
    for _ in range(2):
        try:
            element = msgspec.json.decode(msgspec.json.decode(piece, type=list[msgspec.Raw])[k])
        except msgspec.DecodeError as exc:
            m = _BYTE.search(str(exc))
            if m is None or "trailing characters" not in str(exc):
                return ""
            piece = piece[: int(m.group(1)) - 1]  # msgspec names the byte after the first trailing one
            continue
        except (msgspec.ValidationError, IndexError):
            return ""
        ann_id = element.get("id") if isinstance(element, dict) else None
        return f" (annotation id {ann_id})" if isinstance(ann_id, int) else ""
    return ""


# --- decoding -----------------------------------------------------------------------------


def _map(path: Path):
    """The file as a private copy-on-write mapping (bytes for an empty file; a bytearray where
    the file system cannot map it) and the offset where its text starts (past a byte order mark)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return b"", 0
        try:
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        except (OSError, ValueError):
            mm = bytearray(fh.read())
    return mm, len(_BOM) if mm[: len(_BOM)] == _BOM else 0


def _drop_pages(mm, upto: int, done: int) -> int:
    """Let the kernel take back the mapped pages of bytes [done, upto): they stay in the page
    cache, and a later read of a kept object's segmentation faults its page back in."""
    if not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return done
    upto = upto // mmap.PAGESIZE * mmap.PAGESIZE
    if upto > done:
        mm.madvise(mmap.MADV_DONTNEED, done, upto - done)
        return upto
    return done


_ARRAY_KEY = re.compile(rb'"annotations"\s*:\s*\[')
_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")


@dataclass
class _Document:
    """One mapped JSON file whose top-level ``annotations`` array is decoded piece by piece."""

    path: Path
    buf: Any  # the private mapping (or b"" for an empty file)
    start: int  # where the text starts (past a byte order mark)
    members: msgspec.json.Decoder  # of the members before / after the array
    _written: tuple[int, int] | None = None  # (offset, original byte) of a written '['

    def head(self) -> tuple[Any, int] | None:
        """The members before the top-level array and the offset of its '[' (None: not found)."""
        mm, pos = self.buf, self.start
        for _ in range(4):  # a key of that name inside a string before the real one: try a few
            m = _ARRAY_KEY.search(mm, pos)
            if m is None:
                return None
            pos = m.end()
            prefix = bytes(mm[self.start : m.start()]).strip(_WS)
            if not (prefix.startswith(b"{") and (prefix == b"{" or prefix.endswith(b","))):
                continue
            try:  # decodes only if this key is a member of the top-level object
                return self.members.decode(prefix[:-1] + b"}" if prefix != b"{" else b"{}"), m.end() - 1
            except msgspec.ValidationError as exc:
                raise self._invalid(exc) from None
            except msgspec.DecodeError:
                continue
        return None

    def array(self, bracket: int, elements: msgspec.json.Decoder, consume) -> int:
        """Decode the array whose '[' is at ``bracket`` in pieces (see the module docstring),
        handing each piece's list to ``consume(items, first_row)``; returns the offset just past
        the array's ']'."""
        mm, view = self.buf, memoryview(self.buf)
        first = bracket  # the '[' of the current piece: the array's own, then a written one
        rows = dropped = 0
        cut_from = first + CHUNK_BYTES
        try:
            while True:
                m = _CUT.search(mm, cut_from)
                if m is None:  # no cut left: the piece runs to the array's end, where msgspec stops
                    return self._last(elements, consume, first, len(mm), rows)
                close, opening = m.start() + 1, m.end() - 2  # separator bytes that become ']' and '['
                saved = mm[close]
                mm[close] = ord("]")
                try:
                    items = elements.decode(view[first : close + 1])
                except msgspec.ValidationError as exc:
                    error = _validation_error(self.path, exc, rows, view[first : close + 1])
                    mm[close] = saved
                    raise self._invalid(error) from None
                except msgspec.DecodeError as exc:
                    mm[close] = saved
                    at = _byte_of(exc, first, close + 1)
                    if "trailing characters" in str(exc):  # the array ended inside this piece
                        return self._last(elements, consume, first, at - 1, rows)
                    if at < close:  # before the written byte: real damage
                        raise self._syntax(str(exc), _Where(at, first + 1, rows)) from None
                    # the cut lay inside a string or a nested value: a longer piece (at least twice as long)
                    cut_from = max(m.end() - 1, first + 2 * (close - first))
                    continue
                consume(items, rows)
                rows += len(items)
                del items
                mm[close] = saved
                self._restore()
                self._written = (opening, mm[opening])
                mm[opening] = ord("[")
                first, cut_from = opening, opening + CHUNK_BYTES
                dropped = _drop_pages(mm, first, dropped)
        finally:
            self._restore()

    def _restore(self) -> None:
        """Put back the byte the current piece's '[' replaced: the document as it was."""
        if self._written is not None:
            pos, byte = self._written
            self.buf[pos] = byte
            self._written = None

    def _last(self, elements, consume, first: int, stop: int, rows: int) -> int:
        """The final piece: from ``first`` to the array's ']', the last non-space byte before
        ``stop`` (the first byte after the array, or the end of the file when not known yet)."""
        mm = self.buf
        while True:
            end = stop
            while end > first and mm[end - 1] in _WS:
                end -= 1
            try:
                items = elements.decode(memoryview(mm)[first:end])
            except msgspec.ValidationError as exc:
                raise self._invalid(_validation_error(self.path, exc, rows, memoryview(mm)[first:end])) from None
            except msgspec.DecodeError as exc:
                at = _byte_of(exc, first, end)
                if "trailing characters" in str(exc) and stop == len(mm):
                    stop = at - 1  # msgspec names the byte after the first trailing one
                    continue
                raise self._syntax(str(exc), _Where(at, first + 1, rows)) from None
            consume(items, rows)
            return end

    def tail(self, end: int) -> Any:
        """The members after the array (``end`` is just past its ']') up to the final '}'."""
        body = bytes(self.buf[end:]).lstrip(_WS)
        at = len(self.buf) - len(body)
        if body[:1] == b",":
            doc, offset = b"{" + body[1:], at  # doc[i] is the file's byte at + i
        elif body[:1] == b"}":
            doc, offset = b"{" + body, at - 1
        else:
            raise self._syntax("Input data was truncated" if not body else "expected ',' or '}'", _Where(at, self.start))
        try:
            return self.members.decode(doc)
        except msgspec.ValidationError as exc:
            raise self._invalid(exc) from None
        except msgspec.DecodeError as exc:
            raise self._syntax(str(exc), _Where(_byte_of(exc, offset, len(self.buf)), self.start)) from None

    def whole(self, cls) -> Any:
        """The whole document at once: a layout without a findable top-level array, or a file
        that is no JSON object at all (for its error)."""
        try:
            return msgspec.json.decode(memoryview(self.buf)[self.start :], type=cls)
        except msgspec.ValidationError as exc:
            raise self._invalid(exc) from None
        except msgspec.DecodeError as exc:
            raise self._syntax(str(exc), _Where(_byte_of(exc, self.start, len(self.buf)), self.start)) from None

    def read(self, elements: msgspec.json.Decoder, consume, whole_cls) -> tuple[list[Any], bool]:
        """The members (before and after the array) and whether there was an array; the
        array's items go to ``consume``."""
        check = _Utf8Check(self.path, self.start)
        with check:
            members = self._read(elements, consume, whole_cls)
        error = check.error(self.buf)
        if error is not None:
            raise error
        return members

    def _read(self, elements, consume, whole_cls) -> tuple[list[Any], bool]:
        head = self.head() if self.buf else None
        if head is None:
            doc = self.whole(whole_cls)
            if doc.annotations is None:
                return [doc], False
            consume(doc.annotations, 0)
            doc.annotations = None
            return [doc], True
        before, bracket = head
        return [before, self.tail(self.array(bracket, elements, consume))], True

    def _syntax(self, reason: str, where: _Where) -> InputError:
        self._restore()
        return _syntax_error(self.path, self.buf, self.start, reason, where)

    def _invalid(self, error: msgspec.ValidationError | InputError) -> InputError:
        """The error for a value of the wrong type -- unless the file is not even valid JSON
        further on (msgspec checks types as it parses): then the syntax error, as json would."""
        if isinstance(error, msgspec.ValidationError):
            error = _validation_error(self.path, error)
        self._restore()
        try:
            msgspec.json.decode(memoryview(self.buf)[self.start :], type=msgspec.Raw)
        except msgspec.DecodeError as exc:
            return self._syntax(str(exc), _Where(_byte_of(exc, self.start, len(self.buf)), self.start))
        return error


@dataclass
class _Columns:
    """Numpy columns of the annotations decoded so far, piece by piece."""

    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    segmentations: list[msgspec.Raw] = field(default_factory=list)

    def add(self, anns: list[_Annotation], first_row: int = 0) -> None:
        n = len(anns)
        ints = np.fromiter(chain.from_iterable(map(_INT_FIELDS, anns)), np.int64, 4 * n).reshape(n, 4)
        bbox = np.fromiter(chain.from_iterable(map(_BBOX, anns)), np.float64, 4 * n).reshape(n, 4)
        area = np.fromiter(map(_AREA, anns), np.float64, n)
        self.parts.append((ints, bbox, area))
        self.segmentations.extend(map(_SEGMENTATION, anns))

    def arrays(self) -> dict[str, np.ndarray]:
        if self.parts:
            ints, bbox, area = (np.concatenate(p) for p in zip(*self.parts))
        else:
            ints, bbox, area = np.zeros((0, 4), np.int64), np.zeros((0, 4)), np.zeros(0)
        return {
            "ann_id": ints[:, 0].copy(), "image_id": ints[:, 1].copy(), "category_id": ints[:, 2].copy(),
            "iscrowd": ints[:, 3].astype(np.int8), "bbox": bbox,
            "area": np.where(np.isnan(area), bbox[:, 2] * bbox[:, 3], area),
        }


_INT_FIELDS = attrgetter("id", "image_id", "category_id", "iscrowd")
_BBOX, _AREA, _SEGMENTATION = attrgetter("bbox"), attrgetter("area"), attrgetter("segmentation")


def _image_columns(path: Path, members: list[_Members]):
    images = next((m.images for m in members if m.images is not None), None)
    categories = next((m.categories for m in members if m.categories is not None), None)
    for key, value in (("images", images), ("categories", categories)):
        if value is None:
            raise InputError(f"{path}: no {key!r} list; is this a COCO instances file?")
    licenses: dict[Any, str | None] = {}
    for m in members:
        for lic in m.licenses or []:
            licenses[lic.id] = lic.name
    n = len(images)
    ids = np.fromiter(map(attrgetter("id"), images), np.int64, n)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    dup = np.flatnonzero(ids[1:] == ids[:-1])
    if len(dup):
        raise InputError(f"{path}: image id {int(ids[dup[0]])} appears twice in 'images'")
    width = np.fromiter(map(attrgetter("width"), images), np.int64, n)[order]
    height = np.fromiter(map(attrgetter("height"), images), np.int64, n)[order]
    files = [images[i].file_name for i in order]
    lic_names = [licenses.get(images[i].license) for i in order]
    cats: dict[int, str] = {}
    for i, cat in enumerate(categories):
        if cat.id in cats:
            raise InputError(f"{path}: categories[{i}]: category id {cat.id} appears twice")
        cats[cat.id] = cat.name
    return ids, width, height, files, lic_names, cats


def load_instances(path: str | os.PathLike) -> CocoInstances:
    """Read a COCO instances file into columns (see the module docstring for how)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO annotation file {path} does not exist")
    buf, start = _map(path)
    cols = _Columns()
    with _no_gc():
        members, found = _Document(path, buf, start, _MEMBERS).read(_ANNOTATIONS, cols.add, _Instances)
        if not found:
            raise InputError(f"{path}: no 'annotations' list; is this a COCO instances file?")
        ids, width, height, files, lic_names, cats = _image_columns(path, members)
        del members
    return CocoInstances(path, ids, width, height, files, lic_names, cats, _segmentations=cols.segmentations, **cols.arrays())


# --- captions ------------------------------------------------------------------------------


def check_json_object_ends(path: str | os.PathLike, what: str = "COCO") -> None:
    """Cheap early check that a JSON file is one complete object (reads its two ends only).

    Captions are read after the mining (only for the images kept); a truncated file must still
    fail before any work, with its position -- the full decode runs only when an end is wrong.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - 64))
        tail = fh.read(64)
    if head.removeprefix(_BOM).lstrip()[:1] != b"{" or tail.rstrip()[-1:] != b"}":
        buf, start = _map(path)
        try:
            _Document(path, buf, start, _ANY_MEMBERS).whole(dict[str, msgspec.Raw])  # raises with the position
        except InputError as exc:
            raise InputError(f"{exc.message}; is this a {what} file?", hint=exc.hint) from None


def load_captions(path: str | os.PathLike, image_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    """image id -> captions (file order) from a COCO captions file; only ``image_ids`` if given."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO captions file {path} does not exist")
    wanted = None if image_ids is None else np.array(sorted({int(i) for i in image_ids}), dtype=np.int64)
    out: dict[int, list[str]] = {}

    def keep(caps: list[_Caption], first_row: int) -> None:
        img = np.fromiter(map(attrgetter("image_id"), caps), np.int64, len(caps))
        rows = range(len(caps)) if wanted is None else np.flatnonzero(np.isin(img, wanted)).tolist()
        for i in rows:
            out.setdefault(int(img[i]), []).append(caps[i].caption)

    buf, start = _map(path)
    with _no_gc():
        _, found = _Document(path, buf, start, _ANY_MEMBERS).read(_CAPTIONS, keep, _Captions)
    if not found:
        raise InputError(f"{path}: no 'annotations' list; is this a COCO captions file?")
    return out


# --- arrow columns (shared with the OpenImages reader) ------------------------------------------

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
