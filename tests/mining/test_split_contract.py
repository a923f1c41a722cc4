"""Split ratios and build config values as written by people: any order, YAML's own types, and no
NaN slipping through as a "positive fraction"."""

from __future__ import annotations

import math

import pytest

from soebench.cli.app import main
from soebench.errors import ConfigError
from soebench.manifest.io import read_manifest
from soebench.mining.split import assign_splits, parse_split_ratios
from tests.mining.fixtures import write_coco
from tests.mining.test_build_coco import SIZE_OBJECTS
from tests.mining.test_cli_build import OBJECTS

KEYS = [str(i) for i in range(300)]


def test_the_order_the_names_are_written_in_changes_no_split():
    a = assign_splits(KEYS, {"train": 0.8, "val": 0.2}, 0, "coco")
    b = assign_splits(KEYS, {"val": 0.2, "train": 0.8}, 0, "coco")
    assert a == b
    three = [assign_splits(KEYS, dict(order), 0, "coco")
             for order in ([("a", 0.5), ("b", 0.3), ("c", 0.2)], [("c", 0.2), ("a", 0.5), ("b", 0.3)])]
    assert three[0] == three[1]
    assert list(parse_split_ratios("val=0.2,train=0.8")) == ["train", "val"]  # recorded in that order too


def test_builds_with_reordered_ratios_are_the_same_manifest(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS * 8)
    args = ["build-dataset", "--source", "coco", "--annotations", str(fx.annotations), "--images", str(fx.images),
            "--preset", "none", "--no-plots", "--quiet"]
    assert main([*args, "--split-ratios", "train=0.7,val=0.3", "--out", str(tmp_path / "a.parquet")]) == 0
    assert main([*args, "--split-ratios", "val=0.3,train=0.7", "--out", str(tmp_path / "b.parquet")]) == 0
    a, b = read_manifest(tmp_path / "a.parquet"), read_manifest(tmp_path / "b.parquet")
    assert set(a.table.column("split").to_pylist()) == {"train", "val"}
    assert a.table.equals(b.table) and a.metadata["split"] == b.metadata["split"]


@pytest.mark.parametrize("ratios", [
    "train=nan,val=1", "train=inf,val=1", "train=-inf,val=1",
    {"train": math.nan, "val": 1.0}, {"train": True, "val": 0.0}, {"train": [0.5], "val": 0.5},
])
def test_ratios_that_are_no_positive_fraction_are_refused(ratios):
    with pytest.raises(ConfigError, match=r"split ratio 'train=.*': .* is not a (positive fraction|number)"):
        parse_split_ratios(ratios)


def test_a_mapping_of_ratios_is_checked_like_the_text():
    assert parse_split_ratios({"val": "0.1", "train": 0.9}) == {"train": 0.9, "val": 0.1}
    with pytest.raises(ConfigError, match="name a split twice"):
        parse_split_ratios({"train": 0.5, " train": 0.5})


def _config_build(fx, tmp_path, text: str, *flags: str) -> int:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.format(annotations=fx.annotations, images=fx.images))
    return main(["build-dataset", "--config", str(cfg), "--out", str(tmp_path / "m.parquet"), "--no-plots", "--quiet",
                 *flags])


def test_source_can_come_from_the_config_file(tmp_path):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    assert _config_build(fx, tmp_path, "source: coco\nannotations: {annotations}\nimages: {images}\n") == 0
    assert read_manifest(tmp_path / "m.parquet").metadata["source"] == "coco"


def test_yaml_mapping_of_split_ratios_and_one_class_id_as_a_number(tmp_path):
    fx = write_coco(tmp_path / "coco", SIZE_OBJECTS * 4)
    text = ("source: coco\nannotations: {annotations}\nimages: {images}\npreset: none\n"
            "split_ratios: {{val: 0.5, train: 0.5}}\ninclude_classes: 47\n")
    assert _config_build(fx, tmp_path, text) == 0
    manifest = read_manifest(tmp_path / "m.parquet")
    assert manifest.metadata["split"]["ratios"] == {"train": 0.5, "val": 0.5}
    assert manifest.metadata["filters"]["include_classes"] == ["47"]
    assert set(manifest.table.column("category").to_pylist()) == {"cup"}
    assert set(manifest.table.column("split").to_pylist()) <= {"train", "val"}


def test_a_bad_ratio_in_the_config_names_the_file(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    text = "source: coco\nannotations: {annotations}\nimages: {images}\nsplit_ratios: {{train: .nan, val: 1}}\n"
    assert _config_build(fx, tmp_path, text) == 2
    assert "c.yaml: split ratio 'train=nan'" in capsys.readouterr().err
