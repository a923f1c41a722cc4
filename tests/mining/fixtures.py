"""Writers of small COCO- and OpenImages-format datasets with objects drawn at known sizes.

Objects are axis-aligned filled rectangles, so box, polygon and mask areas are known exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [(1, "person"), (3, "car"), (37, "sports ball"), (47, "cup")]
RGB = {"red": (210, 25, 25), "blue": (25, 50, 210), "green": (30, 170, 40), "yellow": (235, 215, 30)}


@dataclass
class Obj:
    """A rectangle (x, y, w, h) in pixels of a category and colour."""

    box: tuple[int, int, int, int]
    category: str = "cup"
    colour: str = "red"
    crowd: bool = False
    segmentation: object = None  # override the polygon (bad-input tests)
    category_id: int | None = None  # override (unknown id tests)


@dataclass
class CocoFixture:
    annotations: Path
    images: Path
    captions: Path
    data: dict = field(default_factory=dict)


def _draw(size: tuple[int, int], objects: list[Obj], seed: int) -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, dtype=np.uint8) + rng.integers(0, 6, (h, w, 3), dtype=np.uint8)
    for obj in objects:
        x, y, bw, bh = obj.box
        img[y : y + bh, x : x + bw] = RGB[obj.colour]
    return img


def write_coco(
    root: Path,
    images: list[list[Obj]],
    *,
    size: tuple[int, int] = (160, 120),
    split: str = "val2017",
    indent: int | None = None,
    seg_last: bool = False,
) -> CocoFixture:
    """Images 1..N (PNG) with the given objects and the instances/captions JSON files."""
    root = Path(root)
    img_dir = root / split
    img_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    cat_ids = {name: cid for cid, name in CATEGORIES}
    data = {
        "info": {"description": "test fixture"},
        "licenses": [{"id": 1, "name": "CC BY 2.0", "url": ""}],
        "images": [],
        "annotations": [],
        "categories": [{"id": cid, "name": name, "supercategory": "x"} for cid, name in CATEGORIES],
    }
    captions = {"info": {}, "images": [], "annotations": []}
    ann_id = 100
    for i, objects in enumerate(images, start=1):
        w, h = size
        name = f"{i:012d}.png"
        Image.fromarray(_draw(size, objects, i)).save(img_dir / name)
        data["images"].append({"license": 1, "file_name": name, "height": h, "width": w, "id": i})
        for k in range(2):
            captions["annotations"].append({"image_id": i, "id": 10 * i + k, "caption": f"Image {i} caption {k} \"quoted\"."})
        for obj in objects:
            ann_id += 1
            x, y, bw, bh = obj.box
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            seg = obj.segmentation if obj.segmentation is not None else [[float(v) for v in poly]]
            ann = {
                "segmentation": seg,
                "area": float(bw * bh),
                "iscrowd": int(obj.crowd),
                "image_id": i,
                "bbox": [float(x), float(y), float(bw), float(bh)],
                "category_id": obj.category_id if obj.category_id is not None else cat_ids[obj.category],
                "id": ann_id,
            }
            if seg_last:
                ann = {k: ann[k] for k in ("id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")}
            data["annotations"].append(ann)
    ann_path = root / "annotations" / f"instances_{split}.json"
    ann_path.write_text(json.dumps(data, indent=indent))
    cap_path = root / "annotations" / f"captions_{split}.json"
    cap_path.write_text(json.dumps(captions))
    return CocoFixture(ann_path, img_dir, cap_path, data)


# --- OpenImages ----------------------------------------------------------------------------

OI_CLASSES = [("/m/01", "Cup"), ("/m/02", "Ball"), ("/m/03", "Person"), ("/m/04", "Wheel"), ("/m/05", "Human hand")]


@dataclass
class OiObj:
    """A box in normalised coordinates (x0, y0, x1, y1) with flags; the mask fills the box."""

    box: tuple[float, float, float, float]
    label: str = "Cup"
    colour: str = "blue"
    flags: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # occluded truncated group depiction inside
    iou: float = 0.9
    mask_scale: float = 0.5  # mask PNG size relative to the image (masks need not match images)
    write_mask: bool = True


@dataclass
class OiFixture:
    root: Path
    images: Path
    masks: Path
    segmentation_csv: Path
    bbox_csv: Path
    classes: Path


def write_openimages(
    root: Path,
    images: dict[str, list[OiObj]],
    *,
    size: tuple[int, int] = (200, 160),
    classes_header: bool = False,
    split: str = "validation",
) -> OiFixture:
    root = Path(root)
    img_dir, mask_dir = root / "images", root / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    mids = {name: mid for mid, name in OI_CLASSES}
    classes = root / "class-descriptions-boxable.csv"
    lines = (["LabelName,DisplayName"] if classes_header else []) + [f"{m},{n}" for m, n in OI_CLASSES]
    classes.write_text("\n".join(lines) + "\n")
    seg_rows = ["MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks"]
    box_rows = ["ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"]
    w, h = size
    for image_id, objects in images.items():
        img = np.full((h, w, 3), 120, dtype=np.uint8)
        for k, obj in enumerate(objects):
            x0, y0, x1, y1 = obj.box
            img[int(round(y0 * h)) : int(round(y1 * h)), int(round(x0 * w)) : int(round(x1 * w))] = RGB[obj.colour]
            mid = mids[obj.label]
            box_id = f"{k:08x}"
            mask_name = f"{image_id}_{mid.replace('/', '')}_{box_id}.png"
            mw, mh = int(w * obj.mask_scale), int(h * obj.mask_scale)
            mask = np.zeros((mh, mw), dtype=np.uint8)
            mask[int(round(y0 * mh)) : int(round(y1 * mh)), int(round(x0 * mw)) : int(round(x1 * mw))] = 255
            if obj.write_mask:
                Image.fromarray(mask).save(mask_dir / mask_name)
            seg_rows.append(f"{mask_name},{image_id},{mid},{box_id},{x0:.6f},{x1:.6f},{y0:.6f},{y1:.6f},{obj.iou},0.5 0.5 1")
            flags = ",".join(str(f) for f in obj.flags)
            box_rows.append(f"{image_id},xclick,{mid},1,{x0:.6f},{x1:.6f},{y0:.6f},{y1:.6f},{flags}")
        Image.fromarray(img).save(img_dir / f"{image_id}.jpg", quality=95)
    seg = root / f"{split}-annotations-object-segmentation.csv"
    seg.write_text("\n".join(seg_rows) + "\n")
    bbox = root / f"{split}-annotations-bbox.csv"
    bbox.write_text("\n".join(box_rows) + "\n")
    return OiFixture(root, img_dir, mask_dir, seg, bbox, classes)
