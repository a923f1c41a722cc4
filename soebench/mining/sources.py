"""Sources of candidate objects for ``build_dataset``: one interface over COCO and OpenImages.

A source gives :class:`Candidates` (numpy columns, one row per annotated object, with the rows
it cannot use already marked invalid with a reason) and the per-image operations the miner
needs only for survivors: where the image file is, its size, the masks, captions and license.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from soebench.errors import InputError
from soebench.image_io import rgb_array
from soebench.manifest.schema import BOX_TOLERANCE_PX  # the build's drop rule is validate's check
from soebench.mining.coco import (
    CocoInstances,
    MaskError,
    check_json_object_ends,
    load_captions,
    load_captions_counted,
    load_instances,
    segmentation_mask,
)


class ImageError(ValueError):
    """An image (or mask) that cannot be used; ``args[0]`` is the reject reason, the same for
    every object it hits (the summary counts by it); ``detail`` says what of this one object
    (the path looked for, the sizes) and goes into the examples only."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.detail = detail


@dataclass
class Candidates:
    """One row per annotated object.

    ``cols`` holds the filter columns (see :mod:`soebench.mining.filters`): ``box`` (n, 4)
    normalised x0, y0, x1, y1; ``box_frac``; ``mask_frac`` (NaN until known); ``width``/``height``
    (NaN until known); flags as int8 (1 yes, 0 no, -1 unknown); ``predicted_iou`` (NaN unknown);
    ``category_lower``, ``category_id_lower``, ``category_count`` (objects of that category
    annotated in the image). ``provides`` names the columns known before any file is read.
    """

    ann_key: np.ndarray  # source-specific keys (ints); text via Source.annotation_name
    image_key: np.ndarray  # source-specific keys (ints); text via Source.image_name
    category: np.ndarray
    category_id: np.ndarray
    cols: dict[str, np.ndarray]
    invalid: np.ndarray  # object: None or reason
    provides: set[str]
    image_order: np.ndarray  # sort key of the image (int or str)
    ann_order: np.ndarray  # sort key of the annotation within its image

    def __len__(self) -> int:
        return len(self.ann_key)


class Source(Protocol):
    name: str
    split: str

    def candidates(self) -> Candidates: ...
    def later_columns(self) -> set[str]: ...
    def join_columns(self) -> set[str]: ...
    def join(self, rows: np.ndarray) -> set[str]: ...
    def image_name(self, image_key: Any) -> str: ...
    def annotation_name(self, ann_key: Any) -> str: ...
    def annotation_keys(self, ann_keys: np.ndarray) -> Any: ...
    def vocabulary(self) -> dict[str, str]: ...
    def image_file(self, image_key: Any) -> str | None: ...
    def image_size(self, image_key: str) -> tuple[int, int]: ...
    def masks(self, rows: np.ndarray, width: int, height: int) -> dict[int, tuple[np.ndarray | str | ImageError, str]]: ...
    def bbox_pixels(self, row: int, width: int, height: int) -> list[float]: ...
    def captions(self, image_keys: list[str]) -> dict[str, list[str]]: ...
    def license(self, image_key: str) -> str | None: ...
    def input_files(self) -> dict[str, Path]: ...
    def close(self) -> None: ...


def category_counts(image_idx: np.ndarray, cat_idx: np.ndarray) -> np.ndarray:
    """For each row, how many rows share its (image, category)."""
    if not len(image_idx):
        return np.zeros(0, dtype=np.int64)
    key = image_idx.astype(np.int64) * (int(cat_idx.max()) + 1) + cat_idx.astype(np.int64)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse]


def lower(values: np.ndarray) -> np.ndarray:
    uniq, inverse = np.unique(values.astype(str), return_inverse=True)
    return np.array([u.lower() for u in uniq], dtype=object)[inverse]


class FileIndex:
    """Which files a folder holds, listed once (a stat per image would dominate big runs)."""

    def __init__(self, root: Path):
        self.root = root
        self._names: set[str] | None = None

    def exists(self, relative: str) -> bool:
        if "/" in relative or os.sep in relative:
            return (self.root / relative).is_file()
        if self._names is None:
            try:
                self._names = set(os.listdir(self.root))
            except OSError:
                self._names = set()
        return relative in self._names


def inside_root(root: Path, name: str) -> str | None:
    """``name`` (an annotation's file name) as a path relative to ``root``, the form a manifest
    stores: an absolute or ``..`` name that points inside ``root`` is made relative to it, one that
    points elsewhere gives None (the image is not in --images; readers refuse such paths)."""
    from soebench.manifest.schema import leaves_images_root

    if not leaves_images_root(name):
        return name
    path = Path(name) if Path(name).is_absolute() else root / name
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def read_image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return int(img.size[0]), int(img.size[1])
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageError("corrupt image file") from None


def read_image_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return rgb_array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError("corrupt image file") from None


def _clip_box(x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray, width: np.ndarray, height: np.ndarray):
    """COCO boxes (pixels) clipped to their image. A box may overshoot the image by rounding
    (up to BOX_TOLERANCE_PX, which is accepted): its stored bbox, its area fraction and the
    filters' normalised box then all describe the part inside the image -- an area fraction above
    1 is no fraction, and ``manifest validate`` refuses it. A box inside the image keeps its exact
    values (``(x + w) - x`` need not be ``w`` in floating point)."""
    with np.errstate(invalid="ignore"):
        over_x = (x < 0) | (x + w > width)
        over_y = (y < 0) | (y + h > height)
        x0, y0 = np.clip(x, 0.0, width), np.clip(y, 0.0, height)
        x1, y1 = np.clip(x + w, 0.0, width), np.clip(y + h, 0.0, height)
    return (np.where(over_x, x0, x), np.where(over_y, y0, y),
            np.where(over_x, np.maximum(x1 - x0, 0.0), w), np.where(over_y, np.maximum(y1 - y0, 0.0), h))


@dataclass
class CocoSource:
    """COCO instances (+ optional captions) and an images folder."""

    annotations: Path
    images_root: Path
    captions_path: Path | None = None
    split: str = "val2017"
    name: str = "coco"
    _data: CocoInstances | None = field(default=None, repr=False)
    _bbox: np.ndarray | None = field(default=None, repr=False)  # (n, 4) x, y, w, h clipped to the image
    _captions: dict[int, list[str]] | None = field(default=None, repr=False)  # read_captions

    def __post_init__(self) -> None:
        self._index = FileIndex(self.images_root)
        if self.captions_path is not None:
            check_json_object_ends(self.captions_path, "COCO captions")

    @property
    def data(self) -> CocoInstances:
        if self._data is None:
            self._data = load_instances(self.annotations)
        return self._data

    def candidates(self) -> Candidates:
        d = self.data
        n = len(d)
        invalid = np.full(n, None, dtype=object)
        image_ids = d.image_ids
        widths = d.image_width.astype(np.float64)
        heights = d.image_height.astype(np.float64)
        img_pos = np.searchsorted(image_ids, d.image_id) if len(image_ids) else np.zeros(n, dtype=np.int64)
        img_pos = np.minimum(img_pos, max(len(image_ids) - 1, 0))
        known_img = (image_ids[img_pos] == d.image_id) if len(image_ids) else np.zeros(n, dtype=bool)
        invalid[~known_img] = "unknown image id"
        cat_ids = np.array(sorted(d.categories), dtype=np.int64)
        cat_pos = np.minimum(np.searchsorted(cat_ids, d.category_id), max(len(cat_ids) - 1, 0))
        known_cat = (cat_ids[cat_pos] == d.category_id) if len(cat_ids) else np.zeros(n, dtype=bool)
        invalid[known_img & ~known_cat] = "unknown category id"
        width = np.where(known_img, widths[img_pos] if len(widths) else 0.0, np.nan)
        height = np.where(known_img, heights[img_pos] if len(heights) else 0.0, np.nan)
        x, y, w, h = (d.bbox[:, k] for k in range(4))
        tol = BOX_TOLERANCE_PX
        with np.errstate(invalid="ignore", divide="ignore"):
            outside = (x < -tol) | (y < -tol) | (x + w > width + tol) | (y + h > height + tol)
            empty = ~((w > 0) & (h > 0))
            x, y, w, h = _clip_box(x, y, w, h, width, height)
            box = np.stack([x / width, y / height, (x + w) / width, (y + h) / height], axis=1)
            box_frac = (w * h) / (width * height)
            mask_frac = d.area / (width * height)
        self._bbox = np.stack([x, y, w, h], axis=1)  # what the manifest stores (bbox_pixels)
        ok = invalid == None  # noqa: E711 - elementwise on an object array
        invalid[ok & ~((width > 0) & (height > 0))] = "image width or height is not positive"
        ok = invalid == None  # noqa: E711
        invalid[ok & empty] = "empty bbox"
        ok = invalid == None  # noqa: E711
        with np.errstate(invalid="ignore"):  # within the tolerance, yet no part of it inside the image
            invalid[ok & (outside | ~((w > 0) & (h > 0)))] = "bbox outside the image"
        names = np.array([d.categories.get(int(c), "") for c in cat_ids] or [""], dtype=object)
        lowered = np.array([v.lower() for v in names], dtype=object)
        id_text = np.array([str(int(c)) for c in cat_ids] or [""], dtype=object)
        category = names[cat_pos]
        category_id = id_text[cat_pos]
        unknown = np.flatnonzero(~known_cat)  # keep their own id as text (those rows are invalid anyway)
        category_id[unknown] = [str(int(v)) for v in d.category_id[unknown]]
        cols = {
            "box": np.clip(box, 0.0, 1.0),
            "box_frac": box_frac,
            "mask_frac": mask_frac,  # COCO's own 'area' field, the measure COCO evaluation uses
            "width": width,
            "height": height,
            "crowd": d.iscrowd.astype(np.int8),
            "predicted_iou": np.full(n, np.nan),
            "category_lower": lowered[cat_pos],
            "category_id_lower": category_id,
            "category_count": category_counts(img_pos, cat_pos),
        }
        return Candidates(
            ann_key=d.ann_id,  # ints; turned into text only for the rows written
            image_key=d.image_id,
            category=category,
            category_id=category_id,
            cols=cols,
            invalid=invalid,
            provides=set(cols) - {"predicted_iou"},  # the column exists (NaN) so rows share one layout
            image_order=d.image_id,
            ann_order=d.ann_id,
        )

    def later_columns(self) -> set[str]:
        return set()

    def join_columns(self) -> set[str]:
        return set()

    def join(self, rows: np.ndarray) -> set[str]:
        return set()

    def image_name(self, image_key: Any) -> str:
        return str(int(image_key))

    def annotation_name(self, ann_key: Any) -> str:
        return str(int(ann_key))

    def annotation_keys(self, ann_keys: np.ndarray) -> np.ndarray:
        """What makes an annotation unique (its id), for the rows ``ann_keys``."""
        return ann_keys

    def vocabulary(self) -> dict[str, str]:
        """Every class a filter may name, lower-cased -> as written: category names and ids."""
        cats = self.data.categories
        return {**{str(i): str(i) for i in cats}, **{n.lower(): n for n in cats.values()}}

    def image_file(self, image_key: Any) -> str | None:
        d = self.data
        row = d.image_row(int(image_key))
        if row is None:
            return None
        name = inside_root(self.images_root, d.image_files[row])
        return name if name is not None and self._index.exists(name) else None

    def image_lookup(self, image_key: Any) -> str:
        """Where the image file of ``image_key`` was looked for (the examples of a missing one)."""
        d = self.data
        row = d.image_row(int(image_key))
        if row is None:
            return f"image id {image_key} is not in the images list of {self.annotations.name}"
        name = d.image_files[row]
        inside = inside_root(self.images_root, name)
        return f"looked for {self.images_root / inside}" if inside is not None else \
            f"file_name {name!r} is outside --images {self.images_root}"

    def image_size(self, image_key: str) -> tuple[int, int]:
        img = self.data.image(int(image_key))
        return img.width, img.height

    def masks(self, rows: np.ndarray, width: int, height: int) -> dict[int, tuple[np.ndarray | str, str]]:
        out: dict[int, tuple[np.ndarray | str, str]] = {}
        for r in rows:
            try:
                mask, kind = segmentation_mask(self.data.segmentation(int(r)), height, width)
            except MaskError as exc:
                out[int(r)] = (str(exc), "")
                continue
            out[int(r)] = (mask, kind)
        return out

    def bbox_pixels(self, row: int, width: int, height: int) -> list[float]:
        boxes = self._bbox if self._bbox is not None else self.data.bbox  # clipped by candidates()
        return [float(v) for v in boxes[row]]

    def read_captions(self, image_keys: np.ndarray) -> None:
        """Read the captions of ``image_keys`` (the images that may be kept) before the per-image
        stage: a captions file that is broken, or of other images altogether (another split's),
        fails before the long part instead of leaving every row without captions. A file that
        lacks only some images is fine (the build counts them). :meth:`captions` then looks the
        captions up here."""
        if self.captions_path is None:
            return
        self._captions, shared = load_captions_counted(self.captions_path, [int(k) for k in image_keys],
                                                       count_of=self.data.image_ids)
        if len(image_keys) and not shared:
            raise InputError(
                f"--captions {self.captions_path}: no caption of any of the {len(self.data.image_ids)} images of "
                f"--annotations {self.annotations} (caption image ids and annotation image ids do not overlap)",
                hint="pass the captions file of the same split as --annotations (captions_<split>.json), "
                     "or leave --captions out")

    def captions(self, image_keys: list[str]) -> dict[str, list[str]]:
        if self.captions_path is None:
            return {}
        if self._captions is not None:
            found = {int(k): self._captions[int(k)] for k in image_keys if int(k) in self._captions}
        else:
            found = load_captions(self.captions_path, [int(k) for k in image_keys])
        return {str(k): v for k, v in found.items()}

    def license(self, image_key: str) -> str | None:
        return self.data.image(int(image_key)).license

    def input_files(self) -> dict[str, Path]:
        files = {"annotations": self.annotations}
        if self.captions_path is not None:
            files["captions"] = self.captions_path
        return files

    def close(self) -> None:
        if self._data is not None:
            self._data.close()
