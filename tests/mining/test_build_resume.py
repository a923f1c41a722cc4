"""build_dataset after a crash: --resume continues from the saved progress and writes the manifest a
single run writes; nothing done is redone, nothing is mixed across configurations."""

from __future__ import annotations

import json

import pytest
from soebench.errors import ConfigError, InputError, OutputExistsError
from soebench.manifest.io import read_manifest
from soebench.mining import per_image
from soebench.mining import checkpoint
from soebench.mining.build import build_dataset
from tests.mining.fixtures import Obj, write_coco

IMAGES = 9


@pytest.fixture
def coco(tmp_path):
    images = [[Obj((10 + 7 * i, 10, 12, 12), "cup", "red"), Obj((60, 40, 15, 15), "car", "blue"),
               Obj((100, 60, 14, 14), "cup", "green")] for i in range(IMAGES)]
    fx = write_coco(tmp_path / "coco", images)
    (fx.images / "000000000003.png").write_bytes(b"not a png")  # a drop counted inside the per-image stage
    (fx.images / "000000000006.png").unlink()  # a drop counted before it
    return fx


def _build(fx, out, **kw):
    kw.setdefault("preset", "none")
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, captions=fx.captions, **kw)


class Crash(Exception):
    pass


def _crash_after(monkeypatch, groups: int, error: type[BaseException] = Crash) -> list[int]:
    """Make the per-image stage raise ``error`` on its ``groups + 1``-th image; returns the call counter."""
    calls = [0]
    inner = per_image.Stage.mine

    def mine(self, gi, pixels):
        calls[0] += 1
        if calls[0] > groups:
            raise error
        return inner(self, gi, pixels)

    monkeypatch.setattr(per_image.Stage, "mine", mine)
    return calls


def _crashed(monkeypatch, run, groups: int) -> None:
    """``run()`` saving its progress at every image and failing on image ``groups + 1``; the
    patches are gone afterwards (the resumed run is a plain one)."""
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "SAVE_EVERY_S", 0.0)
        _crash_after(patch, groups)
        with pytest.raises(Crash):
            run()


def _count_calls(monkeypatch) -> list[int]:
    return _crash_after(monkeypatch, groups=1 << 30)


# 8 images reach the per-image stage (one file is missing); the crash comes on the 6th. With limit
# 14 (3 objects an image, none from the corrupt 3rd) the 6th image is the last one a run needs.
@pytest.mark.parametrize(("options", "left"), [({}, 3), ({"filters": {"max_per_image": 1}}, 3), ({"limit": 14}, 1)],
                         ids=["plain", "capped", "limited"])
def test_resume_after_a_crash_writes_the_single_run_manifest(coco, tmp_path, monkeypatch, options, left):
    whole = _build(coco, tmp_path / "whole" / "m.parquet", **options)

    out = tmp_path / "run" / "m.parquet"
    _crashed(monkeypatch, lambda: _build(coco, out, **options), 5)
    assert not out.exists() and checkpoint.partial_dir(out).is_dir()
    state = json.loads((checkpoint.partial_dir(out) / "state.json").read_text())
    assert state["snapshot"]["next_group"] == 5  # saved before the image that failed

    calls = _count_calls(monkeypatch)
    resumed = _build(coco, out, resume=True, **options)
    assert calls[0] == left  # nothing done is done again
    assert resumed.manifest_path.read_bytes() == whole.manifest_path.read_bytes()
    assert resumed.summary == whole.summary
    assert not checkpoint.partial_dir(out).exists()
    for name in ("m.sizes.png", "m.categories.png"):
        assert (out.parent / name).is_file()


def test_an_interrupted_build_is_not_dropped_or_mixed_silently(coco, tmp_path, monkeypatch):
    out = tmp_path / "m.parquet"
    _crashed(monkeypatch, lambda: _build(coco, out), 3)
    partial = checkpoint.partial_dir(out)

    with pytest.raises(OutputExistsError, match="interrupted build") as exc:
        _build(coco, out)  # neither --resume nor --overwrite: the progress stays
    assert "--resume" in exc.value.hint and partial.is_dir()
    with pytest.raises(ConfigError, match="exclude each other"):
        _build(coco, out, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="other inputs, filters or options"):
        _build(coco, out, resume=True, filters={"min_pixels": 50})
    with pytest.raises(ConfigError, match="other inputs, filters or options"):
        _build(coco, out, resume=True, seed=3)
    captions = coco.captions.read_bytes()
    coco.captions.write_bytes(captions.replace(b"caption 0", b"caption 9"))  # same size, other sha256
    with pytest.raises(ConfigError, match="other inputs, filters or options"):
        _build(coco, out, resume=True)
    coco.captions.write_bytes(captions)
    assert partial.is_dir()

    stray = partial / "rows-999999.arrow"
    stray.write_bytes(b"cut short")  # a save interrupted between its chunk and its state
    fresh = _build(coco, tmp_path / "fresh" / "m.parquet")
    resumed = _build(coco, out, resume=True)
    assert read_manifest(resumed.manifest_path).table.equals(read_manifest(fresh.manifest_path).table)
    assert resumed.summary == fresh.summary and not partial.exists()


def test_resume_without_progress_starts_and_overwrite_starts_over(coco, tmp_path, monkeypatch):
    first = _build(coco, tmp_path / "a" / "m.parquet", resume=True)  # nothing to resume: a normal run
    out = tmp_path / "b" / "m.parquet"
    _crashed(monkeypatch, lambda: _build(coco, out), 2)
    calls = _count_calls(monkeypatch)
    again = _build(coco, out, overwrite=True)
    assert calls[0] == IMAGES - 1  # started over
    assert again.summary == first.summary and not checkpoint.partial_dir(out).exists()


def test_damaged_progress_is_a_clear_error(coco, tmp_path, monkeypatch):
    out = tmp_path / "m.parquet"
    _crashed(monkeypatch, lambda: _build(coco, out), 4)
    partial = checkpoint.partial_dir(out)
    chunk = sorted(partial.glob("rows-*.arrow"))[0]
    chunk.write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable build progress") as exc:
        _build(coco, out, resume=True)
    assert str(chunk) in exc.value.message and "--overwrite" in exc.value.hint
    (partial / "state.json").write_text("{")
    with pytest.raises(InputError, match="not a soebench build progress file"):
        _build(coco, out, resume=True)


def test_cli_resume(coco, tmp_path, monkeypatch, capsys):
    from soebench.cli.app import main


    def args(target, *extra):
        return ["build-dataset", "--source", "coco", "--annotations", str(coco.annotations), "--images",
                str(coco.images), "--preset", "none", "--out", str(target), "--no-plots", "--quiet", *extra]

    out = tmp_path / "m.parquet"
    with monkeypatch.context() as patch:  # Ctrl-C on the 5th image
        patch.setattr(checkpoint, "SAVE_EVERY_S", 0.0)
        _crash_after(patch, 4, KeyboardInterrupt)
        capsys.readouterr()
        assert main(args(out)) == 130
    assert f"progress saved in {checkpoint.partial_dir(out)}" in capsys.readouterr().err.replace("\n", "")
    assert main(args(out)) == 2
    assert "interrupted build" in capsys.readouterr().err
    assert main(args(out, "--resume")) == 0
    assert main(args(tmp_path / "single" / "m.parquet")) == 0
    assert read_manifest(out).table.equals(read_manifest(tmp_path / "single" / "m.parquet").table)


def test_openimages_resume(tmp_path, monkeypatch):
    """The OpenImages path fills image sizes and mask areas inside the per-image stage."""
    from tests.mining.fixtures import OiObj, write_openimages

    images = {f"{i:04x}00000000000{i}": [OiObj((0.1, 0.1, 0.25, 0.25), "Cup", "blue"),
                                          OiObj((0.5, 0.5, 0.65, 0.65), "Ball", "red", mask_scale=1.0),
                                          OiObj((0.2, 0.6, 0.5, 0.9), "Cup", "green")] for i in range(1, 7)}
    fx = write_openimages(tmp_path / "oi", images)

    def build(out, **kw):
        return build_dataset("openimages", out, images=fx.images, segmentation_csv=fx.segmentation_csv,
                             masks=fx.masks, classes=fx.classes, bbox_csv=fx.bbox_csv, preset="soe-train", **kw)

    whole = build(tmp_path / "whole" / "m.parquet")
    assert whole.num_rows > 0 and whole.summary["rejected"]["area_fraction"] > 0
    out = tmp_path / "run" / "m.parquet"
    _crashed(monkeypatch, lambda: build(out), 3)
    resumed = build(out, resume=True)
    assert resumed.manifest_path.read_bytes() == whole.manifest_path.read_bytes()
    assert resumed.summary == whole.summary


def test_a_shard_resumes_on_its_own(coco, tmp_path, monkeypatch):
    whole = _build(coco, tmp_path / "whole", num_shards=2, shard_index=1)
    out = tmp_path / "parts"
    _build(coco, out, num_shards=2, shard_index=0)
    _crashed(monkeypatch, lambda: _build(coco, out, num_shards=2, shard_index=1), 2)
    partial = checkpoint.partial_dir(out / whole.manifest_path.name)
    assert partial.is_dir()
    with pytest.raises(InputError, match="incomplete"):  # the unfinished part is not there yet
        read_manifest(out)
    resumed = _build(coco, out, num_shards=2, shard_index=1, resume=True)
    assert resumed.manifest_path.read_bytes() == whole.manifest_path.read_bytes() and not partial.exists()
    first = read_manifest(out / "part-00000-of-00002.parquet", validate=False)  # a part alone is no manifest
    assert read_manifest(out).table.num_rows == resumed.num_rows + first.table.num_rows


@pytest.mark.parametrize("killed_in", ["manifest", "summary"])
def test_a_build_killed_while_writing_its_outputs_is_finished_by_resume(coco, tmp_path, monkeypatch, killed_in):
    """A short build (no periodic save yet) killed while it wrote its outputs: the plots or the
    manifest are there, the summary (written last: it says a build finished) is not. A plain rerun
    points to --resume; --resume writes them from the saved progress without mining again."""
    import soebench.manifest.io as manifest_io
    from soebench.mining import build as build_module

    whole = _build(coco, tmp_path / "whole" / "m.parquet")
    out = tmp_path / "run" / "m.parquet"
    summary = out.with_name("m.summary.json")
    with monkeypatch.context() as patch:
        def crash(*a, **k):
            raise Crash

        if killed_in == "manifest":
            patch.setattr(manifest_io, "write_manifest", crash)
        else:
            real = build_module.write_text_atomic
            patch.setattr(build_module, "write_text_atomic", lambda p, text: crash() if p == summary else real(p, text))
        with pytest.raises(Crash):
            _build(coco, out)
    assert not summary.exists() and out.exists() == (killed_in == "summary")
    assert (out.parent / "m.sizes.png").exists() and checkpoint.partial_dir(out).is_dir()
    stale = [out.parent / ".m.summary.json.k1ll3d.tmp", checkpoint.partial_dir(out) / ".state.json.k1ll3d.tmp"]
    for p in stale:
        p.write_bytes(b"half")

    with pytest.raises(OutputExistsError, match="interrupted build") as exc:
        _build(coco, out)
    assert "--resume" in exc.value.hint
    calls = _count_calls(monkeypatch)
    res = _build(coco, out, resume=True)
    assert calls[0] == 0  # every image was mined before the kill
    assert out.read_bytes() == whole.manifest_path.read_bytes() and res.summary == whole.summary
    assert json.loads(summary.read_text()) == whole.summary
    assert not checkpoint.partial_dir(out).exists() and not any(p.exists() for p in stale)
    with pytest.raises(OutputExistsError, match="is complete .no saved progress.: nothing to resume"):  # a finished build is not resumed over
        _build(coco, out, resume=True)


def test_a_progress_folder_without_saved_state_is_no_interrupted_build(coco, tmp_path):
    """Killed during its very first save (a chunk written, no state yet): nothing to resume."""
    out = tmp_path / "m.parquet"
    partial = checkpoint.partial_dir(out)
    partial.mkdir()
    (partial / "rows-000001.arrow").write_bytes(b"cut short")
    res = _build(coco, out)
    assert res.num_rows > 0 and not partial.exists()


def test_a_second_build_of_the_same_manifest_is_refused_while_the_first_runs(coco, tmp_path, monkeypatch):
    from soebench.mining.build import lock_path

    out = tmp_path / "m.parquet"
    seen = {}
    inner = per_image.Stage.mine

    def mine(self, gi, pixels):
        if not seen:
            with pytest.raises(OutputExistsError, match="another soebench process is writing manifest") as err:
                _build(coco, out, overwrite=True)
            seen["error"] = str(err.value)
        return inner(self, gi, pixels)

    monkeypatch.setattr(per_image.Stage, "mine", mine)
    _build(coco, out)
    assert seen and out.exists() and not lock_path(out).exists()


def test_a_killed_writes_temp_files_are_removed_by_the_next_build(coco, tmp_path):
    out = tmp_path / "run" / "m.parquet"
    out.parent.mkdir(parents=True)
    leftovers = [out.parent / ".m.parquet.k1ll3d.tmp", out.parent / ".m.sizes.png.k1ll3d.tmp"]
    for p in leftovers:
        p.write_bytes(b"")
    keep = out.parent / ".notes.txt.k1ll3d.tmp"  # not one of this build's outputs
    keep.write_bytes(b"")
    _build(coco, out)
    assert not any(p.exists() for p in leftovers) and keep.exists()
