"""A validating, piece-wise reader of one large JSON object whose bulk is one top-level array.

Why it exists: the COCO train instances file is ~450 MB of JSON, nine tenths of it polygon
coordinates that the miner needs only for the few objects that pass the cheap filters.
``json.load`` would build Python objects for all of it (pycocotools' loader: tens of seconds,
~2.7 GB). The whole file must still be validated -- damage anywhere, also inside an object no
filter keeps, is an error that names the file, the line and column, and the array element --
while memory stays low and fields such as segmentations are decoded lazily (the caller's
msgspec structs declare them :class:`msgspec.Raw`: zero-copy slices of the mapped file).

msgspec checks the syntax of every byte (and a thread beside it the UTF-8 of the strings it
skips); near a known value start the damage is read again with Python's json, so the wording
and position are those json.load would report.

Memory: the array is decoded in pieces of about ``CHUNK_BYTES``, each handed to the caller at
once (which turns it into columns), and the file pages of a finished piece are dropped from the
process (``madvise(MADV_DONTNEED)``: they stay in the page cache), so the peak is a few pieces
rather than the whole file plus a Python object per number. A piece is cut at a candidate
element boundary ``}, {`` whose two separator bytes are overwritten, in a private copy-on-write
mapping, with ``][``. Why this is exact: the first piece starts at the array's real ``[``; if a
piece that starts at a true element boundary decodes as a complete JSON array, its end is a true
element boundary too (a cut inside a string or a nested value leaves the piece unterminated), so
by induction every accepted cut is real, and the pieces, the members before the array and those
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from soebench.errors import InputError

CHUNK_BYTES = 8 << 20
#: json's error positions are reproduced (Python's wording, char offsets) when the damage lies
#: within this many bytes of a point where a JSON value is known to start
_JSON_WINDOW = 64 << 20
_BOM = codecs.BOM_UTF8
_WS = b" \t\r\n"


@dataclass(frozen=True)
class ArrayLayout:
    """The top-level array member read in pieces, and how errors name its elements and the file."""

    key: str  # the member's name, e.g. "annotations"; errors say ``annotations[k]``
    element: str  # errors add "(<element> id N)" from an element's "id" member
    syntax_hint: str  # hint of an error for text that is not valid JSON
    type_hint: str  # hint of an error for a value of the wrong type or a missing field

    @cached_property
    def key_pattern(self) -> re.Pattern[bytes]:
        return re.compile(b'"' + re.escape(self.key.encode()) + rb'"\s*:\s*\[')


@contextmanager
def no_gc() -> Iterator[None]:
    """Decoding allocates millions of objects and no cycles: collections would only cost time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    start (the document, or with ``first_row`` set the first element of an array piece)."""

    at: int
    resume: int
    first_row: int | None = None


_ID_KEY = re.compile(r'[{,]\s*"id"\s*:\s*(-?[0-9]+)')
_ELEMENT_END = re.compile(r"\}\s*(?:,\s*\{|\])")


def _element_id_in_text(layout: ArrayLayout, text: str, starts: list[int], k: int) -> str:
    """' (annotation id N)' for element ``k`` of a walked piece when its one id key is found."""
    lo = starts[k]
    if k + 1 < len(starts):
        hi = starts[k + 1]
    else:
        end = _ELEMENT_END.search(text, lo)
        hi = end.end() if end else len(text)
    found = _ID_KEY.findall(text, lo, hi)
    return f" ({layout.element} id {found[0]})" if len(found) == 1 else ""


def _syntax_error(path: Path, buf, start: int, reason: str, where: _Where, layout: ArrayLayout) -> InputError:
    """An InputError naming the file, line and column (and the array element when the damage
    lies in one). Near a known value start the damage is re-read with Python's json, so that the
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
                context = f", in {layout.key}[{where.first_row + k}]{_element_id_in_text(layout, text, starts, k)}"
    line, col, char = _position(buf, start, at)
    return InputError(
        f"{path}: not valid JSON: {message} at line {line} column {col} (char {char}){context}",
        hint=layout.syntax_hint,
    )


def _validation_error(
    path: Path, exc: msgspec.ValidationError, layout: ArrayLayout, first_row: int | None = None, piece=None
) -> InputError:
    """A value of the wrong type or a missing field, named by its place (``annotations[k].bbox``);
    ``first_row`` and ``piece``: the error came from a piece of the array."""
    m = _PATH.match(str(exc))
    reason, where = (m.group(1), m.group(2)) if m else (str(exc), "")
    element = re.match(r"\[(\d+)\](.*)", where) if first_row is not None else None
    if element:
        k = int(element.group(1))
        where, reason = f"{layout.key}[{first_row + k}]{element.group(2)}", reason + _element_id(layout, piece, k)
    else:
        where = where.lstrip(".") or "the top level"
    return InputError(f"{path}: {where}: {reason}", hint=layout.type_hint)


def _element_id(layout: ArrayLayout, piece, k: int) -> str:
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
        return f" ({layout.element} id {ann_id})" if isinstance(ann_id, int) else ""
    return ""


# --- decoding -----------------------------------------------------------------------------


def map_file(path: Path):
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


_CUT = re.compile(rb"\}[ \t\r\n]*,[ \t\r\n]*\{")


@dataclass
class PiecewiseDocument:
    """One mapped JSON file whose top-level array member (``layout.key``) is decoded piece by piece."""

    path: Path
    buf: Any  # the private mapping (or b"" for an empty file)
    start: int  # where the text starts (past a byte order mark)
    members: msgspec.json.Decoder  # of the members before / after the array
    layout: ArrayLayout
    _written: tuple[int, int] | None = None  # (offset, original byte) of a written '['

    def head(self) -> tuple[Any, int] | None:
        """The members before the top-level array and the offset of its '[' (None: not found)."""
        mm, pos = self.buf, self.start
        for _ in range(4):  # a key of that name inside a string before the real one: try a few
            m = self.layout.key_pattern.search(mm, pos)
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
                    error = _validation_error(self.path, exc, self.layout, rows, view[first : close + 1])
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
                raise self._invalid(_validation_error(self.path, exc, self.layout, rows, memoryview(mm)[first:end])) from None
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
            items = getattr(doc, self.layout.key)
            if items is None:
                return [doc], False
            consume(items, 0)
            setattr(doc, self.layout.key, None)
            del items
            return [doc], True
        before, bracket = head
        return [before, self.tail(self.array(bracket, elements, consume))], True

    def _syntax(self, reason: str, where: _Where) -> InputError:
        self._restore()
        return _syntax_error(self.path, self.buf, self.start, reason, where, self.layout)

    def _invalid(self, error: msgspec.ValidationError | InputError) -> InputError:
        """The error for a value of the wrong type -- unless the file is not even valid JSON
        further on (msgspec checks types as it parses): then the syntax error, as json would."""
        if isinstance(error, msgspec.ValidationError):
            error = _validation_error(self.path, error, self.layout)
        self._restore()
        try:
            msgspec.json.decode(memoryview(self.buf)[self.start :], type=msgspec.Raw)
        except msgspec.DecodeError as exc:
            return self._syntax(str(exc), _Where(_byte_of(exc, self.start, len(self.buf)), self.start))
        return error



def check_object_ends(path: Path, members: msgspec.json.Decoder, layout: ArrayLayout) -> None:
    """Cheap early check that a JSON file is one complete object (reads its two ends only); the
    full decode runs only when an end is wrong, to raise the error with its position."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        size = os.fstat(fh.fileno()).st_size
        fh.seek(max(0, size - 64))
        tail = fh.read(64)
    if head.removeprefix(_BOM).lstrip()[:1] != b"{" or tail.rstrip()[-1:] != b"}":
        buf, start = map_file(path)
        PiecewiseDocument(path, buf, start, members, layout).whole(dict[str, msgspec.Raw])
