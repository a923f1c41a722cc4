"""Integration on the real COCO 2017 sample: the soebench preset checked row by row with pycocotools."""

from __future__ import annotations

import pytest

from soebench.manifest.io import read_manifest
from soebench.manifest.masks import decode_mask
from soebench.mining.build import build_dataset


@pytest.fixture(scope="module")
def val_manifest(coco_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "coco-val-soebench.parquet"
    res = build_dataset(
        "coco", out, images=coco_sample / "val2017", annotations=coco_sample / "annotations" / "instances_val2017.json",
        captions=coco_sample / "annotations" / "captions_val2017.json", preset="soebench",
    )
    return res, read_manifest(res.manifest_path)


def test_soebench_preset_equals_the_rule_by_pycocotools(coco_sample, val_manifest):
    from pycocotools.coco import COCO

    coco = COCO(str(coco_sample / "annotations" / "instances_val2017.json"))
    expected = set()
    for ann in coco.dataset["annotations"]:
        img = coco.imgs[ann["image_id"]]
        frac = ann["bbox"][2] * ann["bbox"][3] / (img["width"] * img["height"])
        if not ann["iscrowd"] and (1 / 16) ** 2 <= frac <= (1 / 6) ** 2:
            expected.add(str(ann["id"]))
    res, manifest = val_manifest
    assert set(manifest.table.column("annotation_id").to_pylist()) == expected
    assert res.summary["invalid"] == {}
    for row in manifest.table.to_pylist()[:40]:
        ann = coco.anns[int(row["annotation_id"])]
        assert row["category"] == coco.cats[ann["category_id"]]["name"]
        assert row["bbox"] == pytest.approx(ann["bbox"])
        mask = decode_mask(row["mask_rle"])
        assert (mask == coco.annToMask(ann).astype(bool)).all()


def test_captions_and_colours(coco_sample, val_manifest):
    import json

    caps = json.loads((coco_sample / "annotations" / "captions_val2017.json").read_text())
    by_image: dict[str, list[str]] = {}
    for c in caps["annotations"]:
        by_image.setdefault(str(c["image_id"]), []).append(c["caption"])
    _, manifest = val_manifest
    rows = manifest.table.to_pylist()
    from soebench.mining.colour import COLOUR_TERMS

    for row in rows:
        assert sorted(row["captions"]) == sorted(by_image[row["image_id"]])
        assert row["color"] in COLOUR_TERMS
        assert row["prompts"]["color_label"] == f"{row['color']} {row['category']}"
        assert manifest.image_path(row["image_path"]).is_file()
    assert len({r["color"] for r in rows}) >= 6


def test_workers_on_real_photos_give_the_same_manifest(coco_sample, val_manifest, tmp_path):
    """Real JPEGs, polygons and crowd RLE through forked workers: byte-identical."""
    res, _ = val_manifest
    again = build_dataset(
        "coco", tmp_path / res.manifest_path.name, images=coco_sample / "val2017",
        annotations=coco_sample / "annotations" / "instances_val2017.json",
        captions=coco_sample / "annotations" / "captions_val2017.json", preset="soebench", workers=2,
    )
    assert again.manifest_path.read_bytes() == res.manifest_path.read_bytes()
    assert again.summary == res.summary
