"""The training dataset: student/teacher views, masked image, prompts from key or template."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from soebench.errors import InputError
from soebench.manifest.io import read_manifest
from soediff.data import ManifestDataset, render_prompt


def _rec(**kw):
    rec = {"sample_id": "s1", "category": "Traffic light", "color": "red", "captions": ["  A street at night. "],
           "prompts": {"label": "traffic light", "small_label": "a small traffic light",
                       "color_label": "red traffic light", "small_color_label": "a small red traffic light"}}
    rec.update(kw)
    return rec


def test_render_prompt_fields_and_missing_colour():
    template = "a photo of a small {color} {category}"
    assert render_prompt(template, _rec()) == "a photo of a small red traffic light"
    assert render_prompt(template, _rec(color=None)) == "a photo of a small traffic light"
    assert render_prompt("{caption} with {small_color_label}", _rec()) == \
        "A street at night. with a small red traffic light"
    assert render_prompt("{category}: {caption}", _rec(captions=[])) == "traffic light:"


def test_dataset_item_views_and_template(train_manifest):
    man = read_manifest(train_manifest)
    rows = man.table.to_pylist()
    ds = ManifestDataset(man, resolution=64, vae_scale_factor=8, prompt_key="label",
                         prompt_template="a photo of a {color} {category}")
    item = ds[0]
    assert item["prompt"] == f"a photo of a {rows[0]['color']} {rows[0]['category']}"
    for key in ("image", "teacher_image", "masked_image", "teacher_masked_image"):
        assert item[key].shape == (3, 64, 64) and item[key].min() >= -1 and item[key].max() <= 1
    views = (("image", "mask", "masked_image"), ("teacher_image", "teacher_mask", "teacher_masked_image"))
    for img, mask, masked in views:
        m = item[mask]
        assert set(m.unique().tolist()) == {0.0, 1.0}
        assert torch.equal(item[masked], item[img] * (1 - m))  # masked pixels are 0 (grey), as SD inpainting does
    # the teacher sees the object k = 2 times larger (SOEBench crop side 0.5)
    assert item["teacher_mask"].sum() == pytest.approx(4 * item["mask"].sum(), rel=0.5)
    by_key = ManifestDataset(man, resolution=64, vae_scale_factor=8, prompt_key="small_color_label")
    assert by_key[1]["prompt"] == rows[1]["prompts"]["small_color_label"]


def test_missing_prompt_names_the_row_before_training(train_manifest, tmp_path):
    table = pq.read_table(train_manifest)
    captions = pa.array([["a cup on a table"]] + [[]] * (len(table) - 1), type=pa.list_(pa.string()))
    path = tmp_path / "no-captions.parquet"
    pq.write_table(table.set_column(table.column_names.index("captions"), "captions", captions), path)
    (tmp_path / "images").symlink_to(train_manifest.parent / "images")
    man = read_manifest(path)
    second = man.table.column("sample_id")[1].as_py()
    ds = ManifestDataset(man, resolution=64, vae_scale_factor=8, prompt_key="caption")
    with pytest.raises(InputError, match=f"row {second}: no caption"):
        ds.check_prompts()
    assert ManifestDataset(man, resolution=64, vae_scale_factor=8, prompt_key="caption", indices=[0])[0]["prompt"] == \
        "a cup on a table"
