"""The build-dataset command through the CLI entry point."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from soebench.cli.app import app, main
from soebench.manifest.io import read_manifest
from tests.mining.fixtures import Obj, write_coco

OBJECTS = [[Obj((40, 40, 10, 10), "car", "blue"), Obj((100, 10, 20, 20), "cup", "green"), Obj((5, 5, 60, 60), "cup")]]


def _args(fx, out, *extra):
    return ["build-dataset", "--source", "coco", "--annotations", str(fx.annotations), "--images", str(fx.images),
            "--captions", str(fx.captions), "--out", str(out), "--no-plots", *extra]


def test_json_summary_on_stdout(tmp_path):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    result = CliRunner().invoke(app, _args(fx, tmp_path / "m.parquet", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kept"] == 2 and summary["rejected"] == {"crowd": 0, "area_fraction": 1}
    assert summary["preset"] == "soebench"


def test_overwrite_refusal_and_flags(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    out = tmp_path / "m.parquet"
    assert main(_args(fx, out, "--quiet")) == 0
    assert main(_args(fx, out, "--quiet")) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(_args(fx, out, "--quiet", "--overwrite", "--exclude-classes", "car")) == 0
    assert read_manifest(out).table.column("category").to_pylist() == ["cup"]


def test_config_file_with_flags_winning(tmp_path):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: none\nfilters:\n  include-classes: [cup]\n  max_pixels: 500\n")
    assert main(_args(fx, tmp_path / "a.parquet", "--quiet", "--config", str(cfg))) == 0
    assert read_manifest(tmp_path / "a.parquet").table.column("annotation_id").to_pylist() == ["102"]
    assert main(_args(fx, tmp_path / "b.parquet", "--quiet", "--config", str(cfg), "--include-classes", "car")) == 0
    assert read_manifest(tmp_path / "b.parquet").table.column("annotation_id").to_pylist() == ["101"]
    cfg.write_text("bogus_option: 1\n")
    assert main(_args(fx, tmp_path / "c.parquet", "--quiet", "--config", str(cfg))) == 2


def test_bad_json_is_reported_once(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    fx.annotations.write_text('{"images": [')
    assert main(_args(fx, tmp_path / "m.parquet", "--quiet")) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "instances_val2017.json" in err
    assert not (tmp_path / "m.parquet").exists()


def test_unknown_preset_suggests(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    assert main(_args(fx, tmp_path / "m.parquet", "--preset", "soe-evl")) == 2
    assert "did you mean 'soe-eval'" in capsys.readouterr().err


def test_config_values_get_their_flags_types(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", [[Obj((40, 40, 10, 10), "car", "blue"), Obj((100, 10, 20, 20), "cup", crowd=True)]])
    cfg = tmp_path / "c.yaml"
    # YAML gives text for a quoted "false" and for 1e-3 (no dot): neither may be taken at face value
    cfg.write_text('preset: none\ndrop_crowd: "false"\nmin_area_fraction: 1e-3\nmax_per_image: "2"\nseed: "3"\n')
    assert main(_args(fx, tmp_path / "a.parquet", "--quiet", "--json", "--config", str(cfg))) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 2 and summary["filters"]["drop_crowd"] is False
    assert summary["filters"]["min_area_fraction"] == 0.001 and summary["filters"]["max_per_image"] == 2
    for text, named in (("max_per_image: two\n", "max_per_image must be a whole number, got 'two'"),
                        ("drop_crowd: maybe\n", "drop_crowd must be true or false"),
                        ("max_area_fraction: [1]\n", "max_area_fraction must be a number"),
                        ("workers: 1.5\n", "workers must be a whole number")):
        cfg.write_text(text)
        assert main(_args(fx, tmp_path / "b.parquet", "--quiet", "--config", str(cfg))) == 2
        err = capsys.readouterr().err
        assert "c.yaml" in err and named in err, err
    assert not (tmp_path / "b.parquet").exists()


def test_unknown_class_names_are_errors_with_a_suggestion(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    assert main(_args(fx, tmp_path / "m.parquet", "--quiet", "--exclude-classes", "cupp")) == 2
    err = capsys.readouterr().err
    assert "--exclude-classes: 'cupp' is not a category name or id of coco" in err and "did you mean 'cup'" in err
    assert main(_args(fx, tmp_path / "m.parquet", "--quiet", "--include-classes", "cup,notaclass")) == 2
    assert "'notaclass'" in capsys.readouterr().err
    assert not (tmp_path / "m.parquet").exists()
    # names match case-insensitively, ids as text
    assert main(_args(fx, tmp_path / "m.parquet", "--quiet", "--preset", "none", "--include-classes", "CUP,3")) == 0
    assert sorted(read_manifest(tmp_path / "m.parquet").table.column("category").to_pylist()) == ["car", "cup", "cup"]


def test_out_that_is_a_folder_is_refused(tmp_path, capsys):
    fx = write_coco(tmp_path / "coco", OBJECTS)
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(_args(fx, folder, "--quiet", "--overwrite")) == 2
    assert "is a folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("precious")] == ["precious"]
    assert (folder / "notes.txt").read_text() == "keep me"
