"""build_dataset(workers=N): the per-image stage in forked processes gives the manifest, summary and
examples of one process, byte for byte; bad input and limits behave the same."""

from __future__ import annotations

import zipfile

import pytest

from soebench.errors import ConfigError
from soebench.mining import checkpoint, per_image
from soebench.mining.build import build_dataset
from tests.mining.fixtures import Obj, OiObj, write_coco, write_openimages

IMAGES = 40  # more than one task of per_image.GROUPS_PER_TASK images


@pytest.fixture
def coco(tmp_path):
    images = [[Obj((10 + (i % 9) * 7, 10, 12, 12), "cup", "red"), Obj((60, 40, 15, 15), "car", "blue"),
               Obj((100, 60, 14, 14), "cup", "green")] for i in range(IMAGES)]
    fx = write_coco(tmp_path / "coco", images)
    for i in (3, 21, 33):
        (fx.images / f"{i:012d}.png").write_bytes(b"not a png")  # dropped inside the stage, with examples
    (fx.images / "000000000006.png").unlink()
    return fx


def _build(fx, out, **kw):
    kw.setdefault("preset", "none")
    return build_dataset("coco", out, images=fx.images, annotations=fx.annotations, captions=fx.captions, **kw)


@pytest.mark.parametrize("options", [{}, {"filters": {"max_per_image": 2}}, {"limit": 50}, {"limit": 1}],
                         ids=["plain", "capped", "limit-mid-task", "limit-1"])
def test_workers_write_the_one_process_manifest(coco, tmp_path, options):
    one = _build(coco, tmp_path / "one" / "m.parquet", **options)
    two = _build(coco, tmp_path / "two" / "m.parquet", workers=2, **options)
    assert two.manifest_path.read_bytes() == one.manifest_path.read_bytes()
    assert two.summary_path.read_bytes() == one.summary_path.read_bytes()
    if "limit" not in options:  # 3 corrupt images of 3 objects each, named by their first 5 ids
        assert one.summary["invalid"]["corrupt image file"] == 9 and len(one.summary["invalid_examples"]["corrupt image file"]) == 5


def test_workers_read_zipped_openimages_masks(tmp_path):
    images = {f"{h}{i:03x}000000000{i:03x}": [OiObj((0.1, 0.1, 0.25, 0.25), "Cup", "blue"),
                                               OiObj((0.5, 0.5, 0.65, 0.65), "Ball", "red", mask_scale=1.0)]
              for h in "ab" for i in range(12)}
    fx = write_openimages(tmp_path / "oi", images)
    for h in "ab":  # masks in the shipped layout: one archive per first hex digit
        with zipfile.ZipFile(fx.masks / f"validation-masks-{h}.zip", "w") as archive:
            for path in sorted(fx.masks.glob(f"{h}*.png")):
                archive.write(path, path.name)
                path.unlink()

    def build(out, **kw):
        return build_dataset("openimages", out, images=fx.images, segmentation_csv=fx.segmentation_csv,
                             masks=fx.masks, classes=fx.classes, bbox_csv=fx.bbox_csv, preset="soe-train", **kw)

    one = build(tmp_path / "one" / "m.parquet")
    two = build(tmp_path / "two" / "m.parquet", workers=2)
    assert one.num_rows == 48
    assert two.manifest_path.read_bytes() == one.manifest_path.read_bytes()
    assert two.summary == one.summary


def test_resume_with_workers(coco, tmp_path, monkeypatch):
    """A crash while the results of forked workers are being added up resumes like any other."""
    monkeypatch.setattr(checkpoint, "SAVE_EVERY_S", 0.0)
    single = _build(coco, tmp_path / "single" / "m.parquet")
    added = [0]
    inner = per_image.GroupResult.add_to

    def add_to(self, tally, frun):
        added[0] += 1
        if added[0] > 20:
            raise KeyboardInterrupt
        inner(self, tally, frun)

    monkeypatch.setattr(per_image.GroupResult, "add_to", add_to)
    out = tmp_path / "run" / "m.parquet"
    with pytest.raises(KeyboardInterrupt):
        _build(coco, out, workers=2)
    monkeypatch.setattr(per_image.GroupResult, "add_to", inner)
    resumed = _build(coco, out, workers=2, resume=True)
    assert resumed.manifest_path.read_bytes() == single.manifest_path.read_bytes()
    assert resumed.summary == single.summary


def test_workers_must_be_positive(coco, tmp_path):
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        _build(coco, tmp_path / "m.parquet", workers=0)


def test_cli_workers(coco, tmp_path):
    from soebench.cli.app import main
    from soebench.manifest.io import read_manifest

    def args(out, *extra):
        return ["build-dataset", "--source", "coco", "--annotations", str(coco.annotations), "--images",
                str(coco.images), "--preset", "none", "--out", str(out), "--no-plots", "--quiet", *extra]

    assert main(args(tmp_path / "a.parquet", "--workers", "2")) == 0
    assert main(args(tmp_path / "b.parquet")) == 0
    assert read_manifest(tmp_path / "a.parquet").table.equals(read_manifest(tmp_path / "b.parquet").table)


def test_workers_are_forked_with_no_other_thread_alive(coco, tmp_path, monkeypatch):
    """fork copies only the calling thread: the input hashing and the progress bar threads must not
    be running then (a lock one of them held would stay locked in every worker). Threads that
    were running before the call (another library's) are the caller's business."""
    import multiprocessing.context
    import threading

    alive = []
    pool = multiprocessing.context.ForkContext.Pool

    def recording_pool(self, *args, **kwargs):
        alive.append(set(threading.enumerate()))
        return pool(self, *args, **kwargs)

    monkeypatch.setattr(multiprocessing.context.ForkContext, "Pool", recording_pool)
    before = set(threading.enumerate())
    _build(coco, tmp_path / "m.parquet", workers=2, progress=True)
    assert len(alive) == 1 and alive[0] <= before, [t.name for t in alive[0] - before]
