"""COCO instances (and captions) files -> columns of candidate objects, decoding only what is needed.

msgspec decodes the file into typed structs that declare only the fields the miner uses; the
``segmentation`` of each annotation stays a :class:`msgspec.Raw` (a zero-copy slice of the
mapped file), decoded later and only for the objects that survive the filters. The validation
of the whole file, the piece-wise decode of its ``annotations`` array and json-like error
positions are :mod:`soebench.mining.json_pieces`; here is the COCO format: its structs, the
columns built from them, captions and segmentation masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import numpy as np

from soebench.errors import InputError
from soebench.mining.json_pieces import ArrayLayout, PiecewiseDocument, check_object_ends, map_file, no_gc

_NAN = float("nan")
#: the COCO files' bulk is their ``annotations`` array (objects, or captions)
_LAYOUT = ArrayLayout(
    key="annotations",
    element="annotation",
    syntax_hint="the file may be truncated, damaged or not a COCO annotation file",
    type_hint="is this a COCO annotation file of the right kind? (instances_*.json for --annotations, "
              "captions_*.json for --captions)",
)


class MaskError(ValueError):
    """A segmentation that cannot become a mask; ``args[0]`` is the reject reason."""


# --- what is decoded ------------------------------------------------------------------------
# gc=False: these structs hold no containers that could form cycles, and 860k tracked objects
# would make every collection during the decode walk them all.


#: ids are kept as int64 columns: a larger one is an error naming its element, not an overflow
Id = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Annotation(msgspec.Struct, gc=False):
    id: Id
    image_id: Id
    category_id: Id
    bbox: tuple[float, float, float, float]
    area: float = _NAN  # missing: the box area (as when COCO evaluation lacks it)
    iscrowd: int | bool = 0
    segmentation: msgspec.Raw = msgspec.Raw(b"null")


class _Image(msgspec.Struct, gc=False):
    id: Id
    file_name: str
    width: int
    height: int
    license: int | str | None = None


class _Category(msgspec.Struct, gc=False):
    id: Id
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
    image_id: Id
    caption: str


class _Captions(msgspec.Struct):
    annotations: list[_Caption] | None = None


_ANNOTATIONS = msgspec.json.Decoder(list[_Annotation])
_MEMBERS = msgspec.json.Decoder(_Members)
_CAPTIONS = msgspec.json.Decoder(list[_Caption])
_ANY_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # checked, not kept


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
            raise InputError(f"{path}: no {key!r} list; is this a COCO instances file?",
                             hint="a captions file (captions_*.json) goes in --captions; --annotations takes "
                                  "instances_*.json")
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
        name = " ".join(cat.name.split())  # the name prompts are made of: no stray spaces
        if not name:
            raise InputError(f"{path}: categories[{i}]: category id {cat.id} has an empty name")
        cats[cat.id] = name
    return ids, width, height, files, lic_names, cats


def load_instances(path: str | os.PathLike) -> CocoInstances:
    """Read a COCO instances file into columns (see the module docstrings here and of json_pieces for how)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO annotation file {path} does not exist")
    buf, start = map_file(path)
    cols = _Columns()
    with no_gc():
        members, found = PiecewiseDocument(path, buf, start, _MEMBERS, _LAYOUT).read(_ANNOTATIONS, cols.add, _Instances)
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
    try:
        check_object_ends(Path(path), _ANY_MEMBERS, _LAYOUT)  # raises with the position
    except InputError as exc:
        raise InputError(f"{exc.message}; is this a {what} file?", hint=exc.hint) from None


def load_captions(path: str | os.PathLike, image_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
    """image id -> captions (file order) from a COCO captions file; only ``image_ids`` if given."""
    return load_captions_counted(path, image_ids)[0]


def load_captions_counted(path: str | os.PathLike, image_ids: Iterable[int] | None = None,
                          count_of: np.ndarray | None = None) -> tuple[dict[int, list[str]], int]:
    """:func:`load_captions`, and how many captions are of an image in ``count_of`` (image ids):
    whether the file belongs to an annotations file at all, in the same single pass."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"COCO captions file {path} does not exist")
    wanted = None if image_ids is None else np.array(sorted({int(i) for i in image_ids}), dtype=np.int64)
    out: dict[int, list[str]] = {}
    counted = [0]

    def keep(caps: list[_Caption], first_row: int) -> None:
        img = np.fromiter(map(attrgetter("image_id"), caps), np.int64, len(caps))
        rows = range(len(caps)) if wanted is None else np.flatnonzero(np.isin(img, wanted)).tolist()
        for i in rows:
            out.setdefault(int(img[i]), []).append(caps[i].caption)
        if count_of is not None:
            counted[0] += int(np.isin(img, count_of).sum())

    buf, start = map_file(path)
    with no_gc():
        _, found = PiecewiseDocument(path, buf, start, _ANY_MEMBERS, _LAYOUT).read(_CAPTIONS, keep, _Captions)
    if not found:
        raise InputError(f"{path}: no 'annotations' list; is this a COCO captions file?")
    return out, counted[0]


# --- arrow columns (shared with the OpenImages reader) ------------------------------------------

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
