import numpy as np

from soebench.manifest import read_manifest
from soebench.manifest.masks import decode_mask
from tests.factories import make_manifest


def test_make_manifest_round_trip(tmp_path):
    path = make_manifest(tmp_path, n=3, objects_per_image=2)
    m = read_manifest(path)
    assert len(m) == 6
    row = m.table.slice(0, 1).to_pylist()[0]
    assert m.image_path(row["image_path"]).exists()
    mask = decode_mask(row["mask_rle"])
    assert mask.shape == (row["height"], row["width"])
    assert np.isclose(mask.mean(), row["mask_area_fraction"])
