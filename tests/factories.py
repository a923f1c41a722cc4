"""Factories for test data: synthetic photos with small coloured objects and a valid manifest.

Images have a smooth textured background and one or two small filled ellipses of a known colour,
so tests know the ground truth (mask, colour, category) exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image, ImageDraw

from soebench.manifest.io import write_manifest
from soebench.manifest.masks import encode_mask
from soebench.manifest.schema import SCHEMA
from soebench.mining.crops import eval_crop, teacher_crop
from soebench.mining.prompts import make_prompts

COLOURS = {
    "red": (200, 30, 30),
    "blue": (30, 60, 200),
    "yellow": (230, 210, 40),
    "green": (40, 160, 50),
}
CATEGORIES = [("cup", "47"), ("ball", "37"), ("clock", "85"), ("vase", "86")]


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, low-contrast textured background (greys/browns), uint8 HxWx3."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(90, 160, size=3)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    wave = 18 * np.sin(xx / width * 6.0 + phase[0]) * np.cos(yy / height * 4.0 + phase[1])
    noise = rng.normal(0, 4, size=(height, width, 1))
    img = base[None, None, :] + wave[..., None] + noise
    return np.clip(img, 0, 255).astype(np.uint8)


def draw_object(
    image: np.ndarray, box: tuple[int, int, int, int], rgb: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a filled, shaded ellipse inside box (x, y, w, h); return (image, mask)."""
    h, w = image.shape[:2]
    x, y, bw, bh = box
    mask_img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask_img).ellipse([x, y, x + bw - 1, y + bh - 1], fill=255)
    mask = np.asarray(mask_img) > 127
    yy, xx = np.mgrid[0:h, 0:w]
    shade = 1.0 - 0.25 * ((yy - y) / max(bh, 1))  # light from above
    out = image.astype(np.float32)
    for c in range(3):
        out[..., c] = np.where(mask, np.clip(rgb[c] * shade, 0, 255), out[..., c])
    return out.astype(np.uint8), mask


def make_manifest(
    tmp_path: Path,
    n: int = 4,
    *,
    size: tuple[int, int] = (96, 80),
    seed: int = 0,
    name: str = "manifest.parquet",
    objects_per_image: int = 1,
) -> Path:
    """Write ``n`` images with small objects under tmp_path/images and a manifest; return its path."""
    rng = np.random.default_rng(seed)
    width, height = size
    images_dir = Path(tmp_path) / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    colour_names = list(COLOURS)
    for i in range(n):
        img = background(width, height, rng)
        image_id = f"{i:06d}"
        placed: list[tuple[int, int, int, int]] = []
        objs = []
        for k in range(objects_per_image):
            bw = int(rng.integers(max(6, width // 10), max(8, width // 6)))
            bh = int(rng.integers(max(6, height // 10), max(8, height // 6)))
            x = int(rng.integers(2, width - bw - 2))
            y = int(rng.integers(2, height - bh - 2))
            placed.append((x, y, bw, bh))
            colour = colour_names[(i + k) % len(colour_names)]
            category, category_id = CATEGORIES[(i + 2 * k) % len(CATEGORIES)]
            img, mask = draw_object(img, (x, y, bw, bh), COLOURS[colour])
            objs.append((k, mask, colour, category, category_id))
        rel = f"{image_id}.png"
        Image.fromarray(img).save(images_dir / rel)
        for k, mask, colour, category, category_id in objs:
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            ann_id = f"{i * 10 + k}"
            rows.append(
                {
                    "sample_id": hashlib.sha1(f"synthetic:test:{ann_id}".encode()).hexdigest()[:16],
                    "source": "coco",
                    "split": "test",
                    "image_id": image_id,
                    "image_path": rel,
                    "width": width,
                    "height": height,
                    "annotation_id": ann_id,
                    "category": category,
                    "category_id": category_id,
                    "bbox": bbox,
                    "bbox_area_fraction": bbox[2] * bbox[3] / (width * height),
                    "mask_rle": encode_mask(mask),
                    "mask_source": "polygon",
                    "mask_area_fraction": float(mask.mean()),
                    "color": colour,
                    "color_confidence": 1.0,
                    "prompts": make_prompts(category, colour),
                    "captions": [f"a {colour} {category} on a table"],
                    "teacher_crop": list(teacher_crop(bbox, width, height)),
                    "eval_crop": list(eval_crop(bbox, width, height)),
                    "crowd": False,
                    "occluded": None,
                    "truncated": None,
                    "group": None,
                    "depiction": None,
                    "inside": None,
                    "predicted_iou": None,
                    "license": "synthetic",
                }
            )
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    out = Path(tmp_path) / name
    write_manifest(table, out, {"preset": "synthetic", "images_root": "images"}, overwrite=True)
    return out
