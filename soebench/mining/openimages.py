"""OpenImages segmentation CSV + mask PNGs (+ box flags, class names) -> candidate objects.

Columns read (V5+ release): segmentation ``MaskPath, ImageID, LabelName, BoxID, BoxXMin,
BoxXMax, BoxYMin, BoxYMax[, PredictedIoU]`` (``Clicks`` is never parsed); boxes ``ImageID,
LabelName, XMin, XMax, YMin, YMax`` and the flags ``IsOccluded, IsTruncated, IsGroupOf,
IsDepiction, IsInside``. A segmentation row and its box share ImageID, LabelName and box
coordinates; they are joined on those (coordinates rounded to 1e-4 of the image side).
Without a segmentation CSV the boxes themselves are the objects (mask = box, ``mask_source``
"box"). Mask area fractions are measured on the mask PNG itself; masks whose pixel size
differs from the image are resized nearest-neighbour. Masks are looked up as
``MASKS/<MaskPath>``, ``MASKS/<anything>-<h>/<MaskPath>`` (one folder per archive, ``h`` the
first hex digit of the ImageID) or inside ``MASKS/*-masks-<h>.zip`` archives as shipped.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import InputError
from soebench.mining.coco import arrow_to_numpy
from soebench.mining.sources import Candidates, FileIndex, ImageError, category_counts, lower, read_image_size

SEGMENTATION_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
BBOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
FLAG_COLUMNS = {
    "occluded": "IsOccluded",
    "truncated": "IsTruncated",
    "group": "IsGroupOf",
    "depiction": "IsDepiction",
    "inside": "IsInside",
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG")
_MID = re.compile(r"^/[mg]/[0-9a-z_]+$")


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
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


def read_classes(path: str | os.PathLike) -> dict[str, str]:
    """MID -> display name from ``class-descriptions-boxable.csv``; a header row (later releases:
    ``LabelName,DisplayName``) is detected by its first field not being a MID."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"OpenImages class file {path} does not exist")
    out: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row:
                continue
            if len(row) < 2:
                raise InputError(f"{path}: line {lineno} has {len(row)} field(s), expected 'MID,Display name'")
            if lineno == 1 and not _MID.match(row[0].strip()):
                continue  # header row
            out[row[0].strip()] = row[1].strip()
    if not out:
        raise InputError(f"{path}: no classes")
    return out


def _read_csv(path: Path, columns: list[str], types: dict[str, Any]):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        return pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(include_columns=columns, column_types=types),
        )
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: {exc}") from None


def _key(image: np.ndarray, label: np.ndarray, coords: list[np.ndarray]) -> np.ndarray:
    parts = [image.astype(str), label.astype(str)] + [np.round(c * 1e4).astype(np.int64).astype(str) for c in coords]
    out = parts[0].astype(object)
    for p in parts[1:]:
        out = out + "|" + p.astype(object)
    return out


class MaskStore:
    """Finds mask PNGs in a folder, per-archive subfolders or the shipped zip archives."""

    def __init__(self, root: Path):
        self.root = root
        if not root.is_dir():
            raise InputError(f"masks folder {root} does not exist")
        self._dirs: dict[str, Path] = {}
        self._zips: dict[str, Path] = {}
        self._open: dict[str, zipfile.ZipFile] = {}
        for child in sorted(root.iterdir()):
            m = re.search(r"-([0-9a-f])(\.zip)?$", child.name)
            if m is None:
                continue
            if child.is_dir():
                self._dirs[m.group(1)] = child
            elif child.suffix == ".zip":
                self._zips[m.group(1)] = child

    def read(self, mask_path: str) -> np.ndarray:
        """Mask PNG -> bool array at its own size; raises ImageError('missing/corrupt mask file')."""
        from PIL import Image, UnidentifiedImageError

        data: Any = None
        direct = self.root / mask_path
        hexdigit = mask_path[:1].lower()
        if direct.is_file():
            data = direct
        elif hexdigit in self._dirs and (self._dirs[hexdigit] / mask_path).is_file():
            data = self._dirs[hexdigit] / mask_path
        elif hexdigit in self._zips:
            archive = self._open.get(hexdigit)
            if archive is None:
                archive = self._open[hexdigit] = zipfile.ZipFile(self._zips[hexdigit])
            try:
                data = io.BytesIO(archive.read(mask_path))
            except KeyError:
                data = None
        if data is None:
            raise ImageError("missing mask file")
        try:
            with Image.open(data) as img:
                arr = np.asarray(img.convert("L") if img.mode not in ("L", "1", "P") else img)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            raise ImageError("corrupt mask file") from None
        if arr.ndim != 2 or arr.size == 0:
            raise ImageError("corrupt mask file")
        return arr > 0

    def close(self) -> None:
        for archive in self._open.values():
            archive.close()
        self._open.clear()


def resize_nearest(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (height, width)."""
    if mask.shape == (height, width):
        return mask
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
    return np.asarray(img) > 127


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
    _rows: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.segmentation_csv is None and self.bbox_csv is None:
            raise InputError("OpenImages needs --segmentation-csv (with --masks) or at least --bbox-csv")
        if self.segmentation_csv is not None and self.masks_root is None:
            raise InputError("--segmentation-csv needs --masks (the folder of mask PNGs or their zip archives)")
        self._index = FileIndex(self.images_root)
        self._store = MaskStore(self.masks_root) if self.segmentation_csv is not None else None
        self._image_names: dict[str, str | None] = {}

    # -- candidate table ------------------------------------------------------------------
    def candidates(self) -> Candidates:
        import pyarrow as pa

        classes = read_classes(self.classes_path)
        flag_cols: dict[str, np.ndarray] = {}
        if self.segmentation_csv is not None:
            header = check_columns(self.segmentation_csv, SEGMENTATION_COLUMNS)
            wanted = list(SEGMENTATION_COLUMNS) + (["PredictedIoU"] if "PredictedIoU" in header else [])
            types = {c: pa.float64() for c in ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax", "PredictedIoU")}
            types.update({c: pa.string() for c in ("MaskPath", "ImageID", "LabelName", "BoxID")})
            table = _read_csv(self.segmentation_csv, wanted, {k: v for k, v in types.items() if k in wanted})
            image = np.asarray(arrow_to_numpy(table.column("ImageID")), dtype=object)
            label = np.asarray(arrow_to_numpy(table.column("LabelName")), dtype=object)
            coords = [arrow_to_numpy(table.column(c)).astype(np.float64) for c in ("BoxXMin", "BoxYMin", "BoxXMax", "BoxYMax")]
            mask_path = np.asarray(arrow_to_numpy(table.column("MaskPath")), dtype=object)
            ann_key = mask_path
            iou = (
                arrow_to_numpy(table.column("PredictedIoU")).astype(np.float64)
                if "PredictedIoU" in wanted
                else np.full(table.num_rows, np.nan)
            )
            ann_order = mask_path
        else:
            table = None
            mask_path = None
            iou = None
        if self.bbox_csv is not None:
            bheader = check_columns(self.bbox_csv, BBOX_COLUMNS)
            present = {k: v for k, v in FLAG_COLUMNS.items() if v in bheader}
            cols = list(BBOX_COLUMNS) + list(present.values())
            types = {c: pa.float64() for c in ("XMin", "XMax", "YMin", "YMax")}
            types.update({c: pa.string() for c in ("ImageID", "LabelName")})
            types.update({c: pa.int8() for c in present.values()})
            btable = _read_csv(self.bbox_csv, cols, types)
            b_image = np.asarray(arrow_to_numpy(btable.column("ImageID")), dtype=object)
            b_label = np.asarray(arrow_to_numpy(btable.column("LabelName")), dtype=object)
            b_coords = [arrow_to_numpy(btable.column(c)).astype(np.float64) for c in ("XMin", "YMin", "XMax", "YMax")]
            b_flags = {
                k: np.nan_to_num(arrow_to_numpy(btable.column(v)).astype(np.float64), nan=-1).astype(np.int8)
                for k, v in present.items()
            }
            if table is None:  # box-only objects
                image, label, coords = b_image, b_label, b_coords
                ann_key = np.array([f"box{i:09d}" for i in range(len(image))], dtype=object)
                ann_order = ann_key
                iou = np.full(len(image), np.nan)
                flag_cols = b_flags
            else:
                flag_cols = self._join_flags(image, label, coords, b_image, b_label, b_coords, b_flags)
        n = len(image)
        invalid = np.full(n, None, dtype=object)
        x0, y0, x1, y1 = coords
        with np.errstate(invalid="ignore"):
            bad = ~((x0 >= 0) & (y0 >= 0) & (x1 <= 1) & (y1 <= 1))
            empty = ~((x1 > x0) & (y1 > y0))
        category = np.array([classes.get(m) for m in label], dtype=object)
        invalid[category == None] = "unknown category id"  # noqa: E711
        ok = invalid == None  # noqa: E711
        invalid[ok & empty] = "empty bbox"
        ok = invalid == None  # noqa: E711
        invalid[ok & bad] = "bbox outside the image"
        category = np.where(category == None, "", category).astype(object)  # noqa: E711
        img_uniq, img_idx = np.unique(image.astype(str), return_inverse=True)
        lab_uniq, lab_idx = np.unique(label.astype(str), return_inverse=True)
        box = np.clip(np.stack(coords, axis=1), 0.0, 1.0)
        cols: dict[str, np.ndarray] = {
            "box": box,
            "box_frac": (x1 - x0) * (y1 - y0),
            "mask_frac": np.full(n, np.nan),
            "width": np.full(n, np.nan),
            "height": np.full(n, np.nan),
            "predicted_iou": iou,
            "category_lower": lower(category),
            "category_id_lower": lower(label),
            "category_count": category_counts(img_idx, lab_idx),
            "crowd": np.full(n, -1, dtype=np.int8),
        }
        for flag in FLAG_COLUMNS:
            cols[flag] = flag_cols.get(flag, np.full(n, -1, dtype=np.int8))
        provides = {k for k in cols if k not in ("mask_frac", "width", "height", "crowd")}
        provides -= {f for f in FLAG_COLUMNS if f not in flag_cols}
        if self.segmentation_csv is None:  # box-only: the mask is the box
            cols["mask_frac"] = cols["box_frac"].copy()
            provides.add("mask_frac")
        self._rows = {"image": image, "mask_path": mask_path, "box": box}
        return Candidates(
            ann_key=np.asarray(ann_key, dtype=object),
            image_key=image,
            category=category,
            category_id=label,
            cols=cols,
            invalid=invalid,
            provides=provides,
            image_order=image.astype(str),
            ann_order=np.asarray(ann_order).astype(str),
        )

    @staticmethod
    def _join_flags(image, label, coords, b_image, b_label, b_coords, b_flags) -> dict[str, np.ndarray]:
        """Flags of each segmentation row's box (-1 where no box row matches)."""
        seg_key = _key(image, label, coords)
        box_key = _key(b_image, b_label, b_coords)
        order = np.argsort(box_key, kind="stable")
        sorted_keys = box_key[order]
        pos = np.searchsorted(sorted_keys, seg_key)
        pos = np.minimum(pos, max(len(sorted_keys) - 1, 0))
        found = (sorted_keys[pos] == seg_key) if len(sorted_keys) else np.zeros(len(seg_key), dtype=bool)
        out = {}
        for flag, values in b_flags.items():
            col = np.full(len(seg_key), -1, dtype=np.int8)
            col[found] = values[order[pos[found]]]
            out[flag] = col
        return out

    def later_columns(self) -> set[str]:
        later = {"width", "height"}
        if self.segmentation_csv is not None:
            later.add("mask_frac")
        return later

    # -- per image -------------------------------------------------------------------------
    def image_file(self, image_key: str) -> str | None:
        if image_key not in self._image_names:
            found = None
            for suffix in IMAGE_SUFFIXES:
                if self._index.exists(image_key + suffix):
                    found = image_key + suffix
                    break
            self._image_names[image_key] = found
        return self._image_names[image_key]

    def image_size(self, image_key: str) -> tuple[int, int]:
        name = self.image_file(image_key)
        if name is None:
            raise ImageError("missing image file")
        return read_image_size(self.images_root / name)

    def masks(self, rows: np.ndarray, width: int, height: int) -> dict[int, tuple[np.ndarray | str, str]]:
        from soebench.manifest.masks import box_mask

        out: dict[int, tuple[np.ndarray | str, str]] = {}
        for r in rows:
            r = int(r)
            if self._store is None:
                out[r] = (box_mask(self.bbox_pixels(r, width, height), width, height), "box")
                continue
            try:
                mask = self._store.read(self._rows["mask_path"][r])
            except ImageError as exc:
                out[r] = (str(exc), "")
                continue
            out[r] = (mask, "png")
        return out

    def bbox_pixels(self, row: int, width: int, height: int) -> list[float]:
        x0, y0, x1, y1 = self._rows["box"][row]
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
        return files

    def describe(self) -> dict[str, Any]:
        return {"masks": "png" if self.segmentation_csv is not None else "box"}

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
