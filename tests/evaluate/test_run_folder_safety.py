"""A run folder is never mixed, overwritten or left behind: resume under another configuration,
folders that are not runs, a write that fails mid-run, and a SIGTERM with a command adapter."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from soebench.errors import OutputExistsError
from soebench.evaluation import PREVIOUS_SAMPLES, evaluate
from soebench.models import DiffusersConfig, FolderConfig
from soebench.models.base import config_from_args
from soebench.models.command import CommandConfig
from tests.evaluate.conftest import BG
from tests.evaluate.test_resume_shards import Counting

OPTS = dict(metrics=BG, batch_size=1, progress=False)


def test_an_interrupted_resume_under_another_config_leaves_no_stale_summary(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, Counting(), out, limit=3, **OPTS)
    frame = pd.read_parquet(out / "samples.parquet")
    judged = frame["sample_id"].iloc[0]
    frame["human_label"] = [("missing" if sid == judged else None) for sid in frame["sample_id"]]
    frame.to_parquet(out / "samples.parquet")
    # the limit changes the configuration; the three cached outputs are re-linked, the fourth interrupts
    with pytest.raises(KeyboardInterrupt):
        evaluate(manifest6, Counting(interrupt_after=0), out, resume=True, **OPTS)
    for stale in ("summary.json", "report.md", "report.html", "samples.parquet"):
        assert not (out / stale).exists(), stale  # they described the three-sample configuration
    assert (out / PREVIOUS_SAMPLES).is_file()
    done = evaluate(manifest6, Counting(), out, resume=True, **OPTS)
    assert len(done.samples) == 6 and (out / "summary.json").is_file()
    assert not (out / PREVIOUS_SAMPLES).exists()
    labels = dict(zip(done.samples["sample_id"], done.samples["human_label"]))
    assert labels[judged] == "missing"  # its image is unchanged: the human label is kept


def test_a_resume_under_the_same_config_keeps_the_results_until_rewritten(tmp_path, manifest6):
    out = tmp_path / "run"
    evaluate(manifest6, Counting(), out, **OPTS)
    summary = (out / "summary.json").read_text()
    again = evaluate(manifest6, Counting(), out, resume=True, **OPTS)
    assert again.adapter_calls == 0 and (out / "samples.parquet").is_file()
    assert (out / "summary.json").read_text().count('"means"') == summary.count('"means"')


@pytest.mark.parametrize("flag", ["resume", "overwrite"])
def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, manifest6, flag):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    (out / "summary.json").write_text('{"mine": true}\n')
    (out / "images").mkdir()
    (out / "images" / "figure.png").write_bytes(b"not ours")
    with pytest.raises(OutputExistsError, match=rf"not a soebench run folder \(no run.json\); refusing --{flag}"):
        evaluate(manifest6, "original", out, **{flag: True}, **OPTS)
    assert (out / "report.md").read_text() == "my own notes\n"
    assert (out / "summary.json").read_text() == '{"mine": true}\n'
    assert (out / "images" / "figure.png").read_bytes() == b"not ours"
    assert sorted(p.name for p in out.iterdir()) == ["images", "report.md", "summary.json"]


def test_a_failed_image_write_stops_the_run_at_the_next_batch(tmp_path, manifest6, monkeypatch):
    import soebench.run.cache as cache

    def disk_full(*_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "cache" / "x.png"))

    monkeypatch.setattr(cache, "persist_output", disk_full)
    counting = Counting()
    with pytest.raises(OSError) as raised:
        evaluate(manifest6, counting, tmp_path / "run", **OPTS)
    assert raised.value.errno == errno.ENOSPC
    assert counting.calls <= 2  # not every sample generated before the error shows


def test_recorded_model_paths_are_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("pipe", "lora", "outs", "work"):
        (tmp_path / name).mkdir()
    config = config_from_args(DiffusersConfig, {"path": "pipe", "lora": "./lora", "vae_decoder": "auto"})
    assert (config.path, config.lora, config.vae_decoder) == (str(tmp_path / "pipe"), str(tmp_path / "lora"), "auto")
    hub = config_from_args(DiffusersConfig, {"path": "org/some-inpainting"})
    assert hub.path == "org/some-inpainting"  # a hub id stays one
    assert str(config_from_args(FolderConfig, {"path": "outs"}).path) == str(tmp_path / "outs")
    assert config_from_args(CommandConfig, {"argv": "prog", "cwd": "work"}).cwd == str(tmp_path / "work")


def test_a_folder_run_records_the_absolute_folder(tmp_path, manifest6, monkeypatch):
    evaluate(manifest6, "original", tmp_path / "oracle", limit=2, **OPTS)
    monkeypatch.chdir(tmp_path)
    res = evaluate(manifest6, "folder", tmp_path / "again", model_args="path=oracle/images", limit=2, **OPTS)
    assert res.summary["model"]["args"]["path"] == str(tmp_path / "oracle" / "images")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_ends_the_command_adapter_program(tmp_path, manifest6):
    """The program runs in a session of its own (so a timeout can end all it started); a SIGTERM
    to soebench does not reach it, and used to leave it running after soebench was gone."""
    pid_file = tmp_path / "program.pid"
    program = tmp_path / "slow_inpainter.py"
    program.write_text(textwrap.dedent(f"""
        import os, time
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """))
    cmd = [sys.executable, "-m", "soebench", "evaluate", "--manifest", str(manifest6), "--model", "command",
           "--model-args", f"argv={sys.executable} {program}", "--metrics", "bg_psnr", "--out", str(tmp_path / "run"),
           "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.is_file() and pid_file.read_text()) and proc.poll() is None:
            assert time.monotonic() < deadline, "the command adapter's program never started"
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        child = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, err
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "soebench ended but its command adapter's program is still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        if pid_file.is_file() and pid_file.read_text() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("key", ["clip_weights", "inception_weights"])
def test_a_weights_path_that_does_not_exist_is_an_error_even_when_unused(tmp_path, manifest6, key):
    from soebench.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match=f"weights --{key.replace('_', '-')} .*nope.pt do not exist"):
        evaluate(manifest6, "original", tmp_path / "run", **{key: str(tmp_path / "nope.pt")}, **OPTS)
    assert not (tmp_path / "run").exists()


def test_a_moved_manifest_is_evaluated_with_images(tmp_path, manifest6, capsys):
    import shutil

    from soebench.cli.app import main

    moved = tmp_path / "elsewhere" / "deep" / "manifest.parquet"
    moved.parent.mkdir(parents=True)
    shutil.copy(manifest6, moved)
    args = ["evaluate", "--manifest", str(moved), "--model", "original", "--metrics", "bg_psnr", "-q", "--no-report"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    assert "pass --images DIR" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "run"), "--images", str(manifest6.parent / "images")]) == 0
    frame = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert len(frame) == 6 and frame["error"].isna().all()
    with pytest.raises(Exception, match="is not a folder"):
        evaluate(moved, "original", tmp_path / "bad", images_root=str(tmp_path / "nope"), **OPTS)
