"""COCO exports from other tools write absolute or ``../`` file names: the manifest stores every
image path relative to --images (so its own readers accept it), or drops the object when the
file is not under --images at all."""

from __future__ import annotations

import json

from soebench.manifest.inspect import validate_manifest
from soebench.manifest.io import read_manifest
from soebench.mining.build import build_dataset
from tests.mining.fixtures import Obj, write_coco


def _rename(fx, names):
    data = json.loads(fx.annotations.read_text())
    for image, name in zip(data["images"], names):
        image["file_name"] = name(image["file_name"])
    fx.annotations.write_text(json.dumps(data))


def test_absolute_and_parent_file_names_inside_images_are_stored_relative(tmp_path):
    fx = write_coco(tmp_path / "coco", [[Obj((40, 40, 10, 10))], [Obj((40, 40, 10, 10))], [Obj((40, 40, 10, 10))]])
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    _rename(fx, [lambda n: str(fx.images / n),  # absolute, inside --images
                 lambda n: f"../{fx.images.name}/{n}",  # a detour that comes back
                 lambda n: str(outside / n)])  # absolute, somewhere else
    res = build_dataset("coco", tmp_path / "m.parquet", images=fx.images, annotations=fx.annotations, preset="none",
                        plots=False)
    rows = read_manifest(res.manifest_path).table.to_pylist()
    assert sorted(r["image_path"] for r in rows) == ["000000000001.png", "000000000002.png"]
    assert res.summary["invalid"] == {"missing image file": 1}
    assert validate_manifest(res.manifest_path)["rows"] == 2
