"""Test data for the FiftyOne tests: a manifest of the real COCO sample and run folders that
follow the evaluation-run contract (summary.json + samples.parquet + images/)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from soebench.manifest.io import read_manifest, write_manifest
from soebench.manifest.masks import decode_mask, encode_mask
from soebench.manifest.schema import SCHEMA
from soebench.metrics import size_bucket
from soebench.mining.colour import colour_of_mask
from soebench.mining.crops import eval_crop, teacher_crop
from soebench.mining.prompts import make_prompts
from soebench.run.results import manifest_sha256

LABELS = ("ok", "missing", "mismatch", "distortion")


def coco_manifest(root: Path, out: Path, *, split: str = "val2017", max_objects: int = 12) -> Path:
    """SOEBench-style rows (non-crowd, bbox area (1/16)^2..(1/6)^2 of the image) of the real COCO sample."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(root / "annotations" / f"instances_{split}.json"))
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    rows = []
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs(image_id)[0]
        w, h = info["width"], info["height"]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
                if (1 / 16) ** 2 <= a["bbox"][2] * a["bbox"][3] / (w * h) <= (1 / 6) ** 2]
        if not anns:
            continue
        image = np.asarray(Image.open(root / split / info["file_name"]).convert("RGB"))
        for a in anns:
            mask = coco.annToMask(a).astype(bool)
            if mask.sum() < 16:
                continue
            colour = colour_of_mask(image, mask)
            bbox = [float(v) for v in a["bbox"]]
            category = cats[a["category_id"]]
            rows.append({
                "sample_id": hashlib.sha1(f"coco:{split}:{a['id']}".encode()).hexdigest()[:16],
                "source": "coco", "split": split, "image_id": str(image_id),
                "image_path": f"{split}/{info['file_name']}", "width": w, "height": h,
                "annotation_id": str(a["id"]), "category": category, "category_id": str(a["category_id"]),
                "bbox": bbox, "bbox_area_fraction": bbox[2] * bbox[3] / (w * h), "mask_rle": encode_mask(mask),
                "mask_source": "polygon" if isinstance(a["segmentation"], list) else "rle",
                "mask_area_fraction": float(mask.mean()), "color": colour.name,
                "color_confidence": float(colour.confidence), "prompts": make_prompts(category, colour.name),
                "captions": [], "teacher_crop": list(teacher_crop(bbox, w, h)), "eval_crop": list(eval_crop(bbox, w, h)),
                "crowd": False, "occluded": None, "truncated": None, "group": None, "depiction": None,
                "inside": None, "predicted_iou": None, "license": str(info.get("license")),
            })
            if len(rows) >= max_objects:
                break
        if len(rows) >= max_objects:
            break
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    write_manifest(table, out, {"preset": "soebench-coco-sample", "images_root": str(Path(root).resolve())},
                   overwrite=True)
    return out


def make_run(
    run_dir: Path,
    manifest_path: Path,
    *,
    name: str,
    model: str = "fixture",
    seed: int = 0,
    errors: tuple[str, ...] = (),
    missing_images: tuple[str, ...] = (),
    limit: int | None = None,
) -> Path:
    """A run folder by the contract: generated images (object region grey-filled or kept), per-sample
    scores drawn from a seeded generator, a failure label per sample and evidence JSON."""
    manifest = read_manifest(manifest_path)
    rng = np.random.default_rng(seed)
    images = run_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in enumerate(manifest.table.to_pylist()[:limit]):
        sid = row["sample_id"]
        base = {"sample_id": sid, "image_id": row["image_id"], "category": row["category"],
                "size_bucket": size_bucket(row["mask_area_fraction"]),
                "mask_area_fraction": row["mask_area_fraction"],
                "prompt": row["prompts"]["color_label"], "seed": int(seed * 1000 + i)}
        if sid in errors:
            rows.append({**base, "output_path": None, "error": "RuntimeError: CUDA out of memory (fixture)",
                         "clip_score_local": None, "clip_score_global": None, "bg_psnr": None, "bg_ssim": None,
                         "bg_mse": None, "failure": "error", "failure_evidence": None})
            continue
        label = LABELS[int(rng.integers(len(LABELS)))]
        rel = f"images/{sid}.png"
        if sid not in missing_images:
            image = np.asarray(Image.open(manifest.image_path(row["image_path"])).convert("RGB")).copy()
            mask = decode_mask(row["mask_rle"])
            if label != "ok":
                image[mask] = image[~mask].mean(axis=0).astype(np.uint8)
            Image.fromarray(image).save(run_dir / rel)
        mse = float(rng.uniform(1e-5, 1e-2))
        rows.append({**base, "output_path": rel, "output_key": f"{model}:{seed}:{sid}", "error": None,
                     "clip_score_local": float(rng.uniform(10, 35)), "clip_score_global": float(rng.uniform(15, 35)),
                     "bg_psnr": float(10 * np.log10(1 / mse)), "bg_ssim": float(rng.uniform(0.5, 1.0)), "bg_mse": mse,
                     "failure": label,
                     "failure_evidence": json.dumps({"presence_score": float(rng.uniform()), "colour_named": "red",
                                                     "rules": "fixture", "bad": float("nan")}, allow_nan=True)})
    frame = pd.DataFrame(rows)
    frame.to_parquet(run_dir / "samples.parquet", index=False)
    summary = {
        "run_name": name, "model": {"name": model, "args": {}},
        "manifest": {"path": str(manifest.path), "sha256": manifest_sha256(manifest.path), "num_samples": len(rows)},
        "prompt_key": "color_label", "metrics": {}, "versions": {}, "git_commit": None,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return run_dir
