"""The embedded demo sample: official COCO format, polygons that fit their photographs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import soebench.sample as sample
from soebench.errors import MissingDependencyError
from soebench.sample import SamplePaths, sample_paths

BAND = ((1 / 16) ** 2, (1 / 6) ** 2)


@pytest.fixture(scope="module")
def paths() -> SamplePaths:
    return sample_paths()


@pytest.fixture(scope="module")
def instances(paths):
    return json.loads(paths.annotations.read_text())


def test_loads_with_pycocotools(paths):
    from pycocotools.coco import COCO

    coco = COCO(str(paths.annotations))
    assert len(coco.getImgIds()) >= 5
    assert len(coco.getAnnIds()) >= 15
    captions = COCO(str(paths.captions))
    for img_id in coco.getImgIds():
        assert captions.getAnnIds(imgIds=img_id), f"image {img_id} has no caption"
        for ann in captions.loadAnns(captions.getAnnIds(imgIds=img_id)):
            assert ann["caption"].strip()


def test_has_the_official_coco_structure(instances, paths):
    assert set(instances) == {"info", "licenses", "images", "annotations", "categories"}
    license_ids = {lic["id"] for lic in instances["licenses"]}
    assert all(lic["name"] and lic["url"] for lic in instances["licenses"])
    for img in instances["images"]:
        assert {"id", "file_name", "width", "height", "license"} <= set(img)
        assert img["license"] in license_ids
    category_ids = {c["id"] for c in instances["categories"]}
    ann_ids = [a["id"] for a in instances["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    image_ids = {img["id"] for img in instances["images"]}
    for ann in instances["annotations"]:
        assert {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd"} <= set(ann)
        assert ann["iscrowd"] == 0
        assert ann["image_id"] in image_ids and ann["category_id"] in category_ids
    captions = json.loads(paths.captions.read_text())
    assert {"info", "licenses", "images", "annotations"} <= set(captions)
    assert [i["id"] for i in captions["images"]] == [i["id"] for i in instances["images"]]


def test_categories_use_official_coco_ids_and_extras_above_90(instances, coco_sample):
    official = json.loads((coco_sample / "annotations" / "instances_val2017.json").read_text())
    by_name = {c["name"]: c["id"] for c in official["categories"]}
    for cat in instances["categories"]:
        if cat["name"] in by_name:
            assert cat["id"] == by_name[cat["name"]], cat
        else:
            assert cat["id"] > 90, f"extra category {cat['name']} must use an id above COCO's 90"
    assert any(c["name"] in by_name for c in instances["categories"])


def test_every_image_exists_with_its_declared_size(instances, paths):
    for img in instances["images"]:
        path = paths.images / img["file_name"]
        assert path.is_file(), path
        with Image.open(path) as im:
            assert im.size == (img["width"], img["height"]), img["file_name"]
            assert im.mode == "RGB", f"{img['file_name']} is {im.mode}; the sample uses colour photos"


def test_polygons_are_valid_and_inside_their_image(instances):
    images = {img["id"]: img for img in instances["images"]}
    for ann in instances["annotations"]:
        img = images[ann["image_id"]]
        assert isinstance(ann["segmentation"], list) and ann["segmentation"]
        for poly in ann["segmentation"]:
            assert len(poly) >= 6 and len(poly) % 2 == 0, f"annotation {ann['id']}: fewer than 3 points"
            xs, ys = np.asarray(poly[0::2]), np.asarray(poly[1::2])
            assert xs.min() >= 0 and xs.max() <= img["width"], ann["id"]
            assert ys.min() >= 0 and ys.max() <= img["height"], ann["id"]
            # a real outline, not a degenerate sliver: shoelace area of at least 20 px²
            shoelace = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
            assert shoelace >= 20, ann["id"]


def test_area_and_bbox_match_the_polygons(instances):
    from pycocotools import mask as mask_utils

    images = {img["id"]: img for img in instances["images"]}
    for ann in instances["annotations"]:
        img = images[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"]))
        assert ann["area"] == pytest.approx(float(mask_utils.area(rle))), ann["id"]
        xs = [v for p in ann["segmentation"] for v in p[0::2]]
        ys = [v for p in ann["segmentation"] for v in p[1::2]]
        expected = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        np.testing.assert_allclose(ann["bbox"], expected, atol=0.051, err_msg=str(ann["id"]))
        # the rasterised mask lies inside the polygon box (to a pixel of rounding)
        x, y, w, h = mask_utils.toBbox(rle)
        bx, by, bw, bh = ann["bbox"]
        assert bx - 1 <= x and by - 1 <= y and x + w <= bx + bw + 1 and y + h <= by + bh + 1, ann["id"]


def test_most_objects_are_inside_the_soebench_size_band(instances):
    images = {img["id"]: img for img in instances["images"]}
    fractions = [
        a["bbox"][2] * a["bbox"][3] / (images[a["image_id"]]["width"] * images[a["image_id"]]["height"])
        for a in instances["annotations"]
    ]
    inside = [BAND[0] <= f <= BAND[1] for f in fractions]
    assert sum(inside) >= 0.75 * len(inside)
    assert not all(inside), "a few objects outside the band let the demo show the filters at work"
    per_image = {img_id: 0 for img_id in images}
    for a in instances["annotations"]:
        per_image[a["image_id"]] += 1
    assert all(n >= 1 for n in per_image.values())


def test_the_colour_namer_reads_the_unambiguous_sample_objects(instances, paths):
    """Ties the sample to the namer the miner uses: objects whose colour is not in doubt."""
    from pycocotools import mask as mask_utils

    from soebench.mining.colour import colour_of_mask

    expected = {("motorcycle_left.png", 14): "red", ("motorcycle_left.png", 9): "yellow",
                ("rocket.jpg", 8): "white", ("coffee.png", 7): "red", ("motorcycle_left.png", 13): "white"}
    images = {img["id"]: img for img in instances["images"]}
    for ann in instances["annotations"]:
        img = images[ann["image_id"]]
        key = (img["file_name"], ann["id"])
        if key not in expected:
            continue
        pixels = np.asarray(Image.open(paths.images / img["file_name"]).convert("RGB"))
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], img["height"], img["width"]))
        assert colour_of_mask(pixels, mask_utils.decode(rle).astype(bool)).name == expected[key], key


def test_missing_scikit_image_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sample.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="scikit-image"):
        sample_paths()


def test_missing_photographs_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(sample, "skimage_data_dir", lambda: tmp_path)
    with pytest.raises(MissingDependencyError, match="astronaut.png"):
        sample_paths()
    assert sample_paths(check_images=False).images == tmp_path
