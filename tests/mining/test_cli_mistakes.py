"""Ordinary user mistakes with build-dataset and manifest merge: one clear line before any
work, never a traceback, a silently ignored input or an output that breaks its folder."""

from __future__ import annotations

import pytest

from soebench.cli.app import main
from soebench.errors import ConfigError, InputError
from soebench.fileio import check_output_file
from soebench.mining.build import build_dataset
from tests.mining.fixtures import write_coco, write_openimages
from tests.mining.test_cli_build import OBJECTS, _args


@pytest.fixture
def fx(tmp_path):
    return write_coco(tmp_path / "coco", OBJECTS)


def test_output_under_a_file_is_refused_before_mining(fx, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "x.png"
    blocker.write_bytes(b"png")
    import soebench.mining.build as build

    monkeypatch.setattr(build, "_mine", lambda *a, **k: pytest.fail("mined before checking --out"))
    assert main(_args(fx, blocker / "m.parquet", "--quiet")) == 2
    err = capsys.readouterr().err
    assert f"{blocker} is a file, not a folder" in err and "Traceback" not in err


def test_check_output_file(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    check_output_file(tmp_path / "new" / "deeper" / "m.parquet")  # folders are made later
    with pytest.raises(InputError, match="is a folder; expected a file"):
        check_output_file(tmp_path / "d")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_output_file(tmp_path / "f" / "a" / "m.parquet")


def test_merge_into_its_own_parts_folder_is_refused(fx, tmp_path, capsys):
    parts = tmp_path / "parts"
    for i in range(2):
        assert main(_args(fx, parts, "--quiet", "--num-shards", "2", "--shard-index", str(i))) == 0
    before = sorted(p.name for p in parts.iterdir())
    assert main(["manifest", "merge", str(parts), "--out", str(parts / "all.parquet")]) == 2
    assert "inside the parts folder" in capsys.readouterr().err
    assert sorted(p.name for p in parts.iterdir()) == before
    assert main(["manifest", "validate", str(parts)]) == 0
    (tmp_path / "adir").mkdir()
    assert main(["manifest", "merge", str(parts), "--out", str(tmp_path / "adir"), "--overwrite"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_inputs_of_the_other_source_are_refused(fx, tmp_path):
    with pytest.raises(InputError, match="--masks, --classes apply to --source openimages only"):
        build_dataset("coco", tmp_path / "m.parquet", images=fx.images, annotations=fx.annotations,
                      masks=tmp_path, classes=tmp_path / "c.csv", plots=False)
    oi = write_openimages(tmp_path / "oi", {})
    with pytest.raises(InputError, match="--captions applies to --source coco only"):
        build_dataset("openimages", tmp_path / "o.parquet", images=oi.images, classes=oi.classes,
                      bbox_csv=oi.bbox_csv, captions=fx.captions, plots=False)


def test_predicted_iou_filter_needs_a_source_that_has_it(fx, tmp_path):
    with pytest.raises(ConfigError, match="min_predicted_iou.*needs predicted_iou"):
        build_dataset("coco", tmp_path / "m.parquet", images=fx.images, annotations=fx.annotations,
                      filters={"min_predicted_iou": 0.5}, plots=False)


def test_a_bbox_csv_given_as_the_class_list(tmp_path):
    from tests.mining.fixtures import OiObj

    oi = write_openimages(tmp_path / "oi", {"aaaa000000000001": [OiObj((0.1, 0.1, 0.25, 0.25))]})
    with pytest.raises(InputError, match=r"line 2 starts with .*not a class MID"):
        build_dataset("openimages", tmp_path / "o.parquet", images=oi.images, classes=oi.bbox_csv,
                      bbox_csv=oi.bbox_csv, plots=False)


def test_config_that_is_not_text(fx, tmp_path, capsys):
    config = tmp_path / "x.yaml"
    config.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(_args(fx, tmp_path / "m.parquet", "--config", str(config))) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text (byte 0x89 at offset 0)" in err and "Traceback" not in err


def test_wrong_kind_of_path_is_named_as_such(fx, tmp_path):
    with pytest.raises(InputError, match="is a folder; expected the instances JSON file"):
        build_dataset("coco", tmp_path / "m.parquet", images=fx.images, annotations=tmp_path, plots=False)
    with pytest.raises(InputError, match="images folder .* is a file, not a folder"):
        build_dataset("coco", tmp_path / "m.parquet", images=fx.annotations, annotations=fx.annotations, plots=False)


def test_summary_goes_to_stdout(fx, tmp_path, capsys):
    assert main(_args(fx, tmp_path / "m.parquet")) == 0
    captured = capsys.readouterr()
    assert "2 objects" in captured.out and "objects" not in captured.err


def test_the_missing_required_option_is_the_one_named(fx, tmp_path, capsys):
    args = _args(fx, tmp_path / "m.parquet")
    i = args.index("--out")
    without_out = args[:i] + args[i + 2:]
    assert main(without_out) == 2
    err = capsys.readouterr().err
    assert "error: --out is required" in err and "--images" not in err.split("hint:")[0]


def test_resume_of_a_finished_build_says_it_is_finished(fx, tmp_path, capsys):
    out = tmp_path / "m.parquet"
    assert main(_args(fx, out, "--quiet")) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert main(_args(fx, out, "--quiet", "--resume")) == 2
    err = capsys.readouterr().err
    assert "is complete (no saved progress): nothing to resume" in err and "pass --overwrite to replace" not in err
    assert out.read_bytes() == before


def test_a_captions_file_given_as_annotations_says_where_it_goes(fx, tmp_path, capsys):
    args = _args(fx, tmp_path / "m.parquet")
    args[args.index("--annotations") + 1] = str(fx.captions)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--captions" in err and "Traceback" not in err
