"""The harness on real COCO photographs (skips when ../shared/data is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from soebench.evaluation import evaluate
from soebench.manifest.io import read_manifest
from tests.evaluate.conftest import BG


@pytest.fixture(scope="module")
def coco_manifest(coco_sample, tmp_path_factory):
    from soebench.mining.build import build_dataset

    out = tmp_path_factory.mktemp("coco") / "coco-val.parquet"
    build_dataset("coco", out, images=coco_sample / "val2017",
                  annotations=coco_sample / "annotations" / "instances_val2017.json", limit=6, plots=False)
    return out


def test_baselines_on_real_photographs(coco_manifest, tmp_path):
    man = read_manifest(coco_manifest)
    rows = man.table.to_pylist()
    oracle = evaluate(coco_manifest, "original", tmp_path / "original", metrics=BG, progress=False, report=False)
    removed = evaluate(coco_manifest, "opencv-telea", tmp_path / "telea", metrics=BG, progress=False)
    assert oracle.summary["errors"]["count"] == removed.summary["errors"]["count"] == 0
    assert (oracle.samples["bg_mse"] == 0).all()
    for rec, rel in zip(rows, removed.samples["output_path"]):
        out = np.asarray(Image.open(tmp_path / "telea" / rel))
        assert out.shape == (rec["height"], rec["width"], 3)
    # Telea fills the object from its surroundings, touching nothing outside the (slightly dilated) mask
    assert (removed.samples["bg_ssim"] > 0.99).all()
    if removed.samples["failure"].notna().all():  # taxonomy installed
        assert (oracle.samples["failure"] == "ok").mean() >= 0.8
        assert (removed.samples["failure"] == "missing").mean() >= 0.6
    assert (tmp_path / "telea" / "plots" / "worst_samples.png").is_file()
