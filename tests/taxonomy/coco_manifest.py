"""A SOEBench-style manifest of the real COCO sample, built directly with pycocotools.

Used by the taxonomy tests and the dev fitting script until (and independently of) the mining
helper's ``build_dataset``: non-crowd objects whose bbox covers (1/16)^2 .. (1/6)^2 of the image,
colour word named by :func:`soebench.mining.colour.colour_of_mask` on the real photo.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from soebench.manifest.io import write_manifest
from soebench.manifest.masks import encode_mask
from soebench.manifest.schema import SCHEMA
from soebench.mining.colour import colour_of_mask, exposure_gain
from soebench.mining.crops import eval_crop, teacher_crop
from soebench.mining.prompts import make_prompts

LOW, HIGH = (1 / 16) ** 2, (1 / 6) ** 2


def coco_rows(root: Path, split: str, *, max_objects: int | None = None) -> list[dict]:
    import contextlib
    import io

    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    rows: list[dict] = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        w, h = info["width"], info["height"]
        anns = [
            a
            for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
            if LOW <= a["bbox"][2] * a["bbox"][3] / (w * h) <= HIGH
        ]
        if not anns:
            continue
        image = np.asarray(Image.open(root / split / info["file_name"]).convert("RGB"))
        gain = exposure_gain(image)
        for a in anns:
            mask = coco.annToMask(a).astype(bool)
            if mask.sum() < 16:
                continue
            colour = colour_of_mask(image, mask, gain=gain)
            bbox = [float(v) for v in a["bbox"]]
            category = cats[a["category_id"]]
            rows.append(
                {
                    "sample_id": hashlib.sha1(f"coco:{split}:{a['id']}".encode()).hexdigest()[:16],
                    "source": "coco",
                    "split": split,
                    "image_id": str(image_id),
                    "image_path": f"{split}/{info['file_name']}",
                    "width": w,
                    "height": h,
                    "annotation_id": str(a["id"]),
                    "category": category,
                    "category_id": str(a["category_id"]),
                    "bbox": bbox,
                    "bbox_area_fraction": bbox[2] * bbox[3] / (w * h),
                    "mask_rle": encode_mask(mask),
                    "mask_source": "polygon" if isinstance(a["segmentation"], list) else "rle",
                    "mask_area_fraction": float(mask.mean()),
                    "color": colour.name,
                    "color_confidence": float(colour.confidence),
                    "prompts": make_prompts(category, colour.name),
                    "captions": [],
                    "teacher_crop": list(teacher_crop(bbox, w, h)),
                    "eval_crop": list(eval_crop(bbox, w, h)),
                    "crowd": False,
                    "occluded": None,
                    "truncated": None,
                    "group": None,
                    "depiction": None,
                    "inside": None,
                    "predicted_iou": None,
                    "license": str(info.get("license")),
                }
            )
            if max_objects is not None and len(rows) >= max_objects:
                return rows
    return rows


def build_coco_manifest(root: Path, out: Path, *, splits=("val2017", "train2017"), max_objects: int | None = None) -> Path:
    """Write the manifest of ``splits`` of the COCO sample at ``root`` to ``out``."""
    rows: list[dict] = []
    for split in splits:
        rows.extend(coco_rows(Path(root), split, max_objects=max_objects))
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    write_manifest(table, out, {"preset": "soebench-coco-sample", "images_root": str(Path(root).resolve())}, overwrite=True)
    return out


if __name__ == "__main__":  # dev helper: python -m tests.taxonomy.coco_manifest ROOT OUT
    import sys

    print(build_coco_manifest(Path(sys.argv[1]), Path(sys.argv[2])))
