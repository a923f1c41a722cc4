"""QA findings: one-line errors instead of tracebacks, weights readable like every other output,
YAML's bare `no`, a resume with nothing to do, per-part weight names, resume on other manifest content."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys

import pyarrow.parquet as pq
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soebench.errors import ConfigError, InputError, MissingWeightsError
from soediff.cli import app
from soediff.config import TrainConfig
from soediff.models import check_pretrained
from soediff.trainer import train


# ---------------------------------------------------------------- 1. one-line errors
def test_config_that_is_a_folder_or_not_utf8(tmp_path):
    with pytest.raises(ConfigError, match=f"config file {tmp_path} is a folder"):
        TrainConfig.from_yaml(tmp_path)
    for name, data in (("binary.yaml", b"\x89PNG\r\n\x1a\n\x00\xff"),
                       ("latin1.yaml", "max_steps: 4 # caf\xe9\n".encode("latin-1"))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=f"{path} is not UTF-8 text \\(byte 0x[0-9a-f]{{2}} at offset \\d+\\)"):
            TrainConfig.from_yaml(path)


def test_unet_config_that_is_not_json(tiny_pipe_dir, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_pipe_dir, copy)
    cfg = copy / "unet" / "config.json"
    cfg.write_text('{"in_channels": 9,\n')
    with pytest.raises(InputError, match=f"{cfg} is not valid JSON: .* at line 2, column 1"):
        check_pretrained(copy)
    cfg.write_text("[9]")
    with pytest.raises(InputError, match="expected a JSON object"):
        check_pretrained(copy)
    cfg.unlink()
    with pytest.raises(InputError, match="has no config.json"):
        check_pretrained(copy)


def test_out_in_a_folder_that_cannot_be_written(make_config, tmp_path, monkeypatch):
    """Found before the models load (as root a chmod does not stop writes, so access is patched)."""
    import os

    from soediff.export import export_run

    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real(p, mode, **k))
    with pytest.raises(InputError, match=f"folder {locked} is not writable"):
        train(make_config(out=str(locked / "run")), progress=False)
    with pytest.raises(InputError, match="is not writable"):
        export_run(tmp_path, locked / "export")


def test_out_that_is_a_file(make_config, tmp_path, monkeypatch, capsys):
    from soediff.cli import run
    from soediff.export import export_run

    file = tmp_path / "afile"
    file.write_text("x")
    with pytest.raises(InputError, match=f"--out {file} is a file; --out must be a folder"):
        train(make_config(out=str(file)), progress=False)
    with pytest.raises(InputError, match=f"--out {file / 'sub'}: {file} is a file"):
        train(make_config(out=str(file / "sub")), progress=False)
    with pytest.raises(InputError, match=f"--out {file} is a file"):
        export_run(tmp_path, file)
    # the CLI renders it as one line with exit status 2 (was FileExistsError, exit 1)
    monkeypatch.setattr(sys, "argv", ["soediff", "export", str(tmp_path), "--out", str(file)])
    with pytest.raises(SystemExit) as exit_:
        run()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


# ---------------------------------------------------------------- 2. file modes
def _modes(folder):
    """``{relative name: (mode, what the umask 002 gives it)}`` for everything under ``folder``."""
    return {p.relative_to(folder).as_posix(): (stat.S_IMODE(p.stat().st_mode), 0o775 if p.is_dir() else 0o664)
            for p in folder.rglob("*")}


def test_weights_follow_the_umask(make_config, tiny_pipe_dir, tmp_path):
    """safetensors writes its files 0600; every output must have the umask's mode like the rest."""
    from soediff.export import export_run
    from soediff.tiny import save_tiny_inpaint_pipeline

    before = os.umask(0o002)  # not the usual 022, so the modes cannot be right by accident
    try:
        cfg = make_config(max_steps=1, checkpointing_steps=1)
        train(cfg, progress=False)
        export_run(cfg.out, tmp_path / "export", pipeline=True)
        tiny = save_tiny_inpaint_pipeline(tmp_path / "tiny")
    finally:
        os.umask(before)
    run_modes = _modes(tmp_path / "run" / "checkpoints")
    assert {"checkpoint-00000001/lora.safetensors", "checkpoint-00000001/vae_decoder.safetensors"} <= set(run_modes)
    export_modes = _modes(tmp_path / "export")
    assert {"pytorch_lora_weights.safetensors", "vae_decoder.safetensors",
            "pipeline/vae/diffusion_pytorch_model.safetensors"} <= set(export_modes)
    # pipeline/'s other files are hard links to the base pipeline's: they keep its modes
    export_modes = {k: v for k, v in export_modes.items()
                    if not k.startswith("pipeline/") or k.startswith("pipeline/vae/") or v[1] == 0o775}
    for name, (mode, want) in {**run_modes, **export_modes, **_modes(tiny)}.items():
        assert mode == want, (name, oct(mode))


# ---------------------------------------------------------------- 3. minor ones
def test_yaml_bare_no_for_mixed_precision(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mixed_precision: no\n")
    assert TrainConfig.from_yaml(path).mixed_precision == "no"
    path.write_text("mixed_precision: yes\n")
    with pytest.raises(ConfigError, match="'no', 'fp16', 'bf16'.*quote the word you meant"):
        TrainConfig.from_yaml(path)
    path.write_text("report_to: no\n")
    with pytest.raises(ConfigError, match='report_to.*quote the word you meant, e.g. report_to: "no"'):
        TrainConfig.from_yaml(path)


def test_resume_of_a_complete_run_says_so(make_config):
    cfg = make_config(max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    result = CliRunner().invoke(app, ["train", "--out", cfg.out, "--resume", "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "already complete" in text and "step 1 (max_steps 1)" in text
    assert "checkpoint-00000001" in text and "soediff export" in text


def test_missing_weights_name_the_parts_files(tiny_pipe_dir, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_pipe_dir, copy)
    (copy / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match="text_encoder holds no weight file") as err:
        check_pretrained(copy)
    assert "model.safetensors or pytorch_model.bin" in err.value.message
    assert "diffusion_pytorch_model" not in err.value.message
    # a diffusers part with a transformers file name is not loadable either
    os.rename(copy / "unet" / "diffusion_pytorch_model.safetensors", copy / "unet" / "model.safetensors")
    with pytest.raises(MissingWeightsError, match="unet holds no weight file \\(diffusion_pytorch_model.safetensors"):
        check_pretrained(copy)


def test_resume_refuses_other_manifest_content(make_config, train_manifest, tmp_path):
    cfg = make_config(max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    inputs = tmp_path / "run" / "inputs.json"
    assert json.loads(inputs.read_text())["manifest_sha256"]
    table = pq.read_table(train_manifest)
    other = train_manifest.parent / "reversed.parquet"  # same rows, other order: other training
    pq.write_table(table.take(list(reversed(range(len(table))))), other)
    with pytest.raises(ConfigError, match="--resume with manifest .*reversed.parquet.*different content") as err:
        train(cfg.replace(manifest=str(other), max_steps=2), resume=True, progress=False)
    assert "--overwrite" in err.value.hint
    moved = train_manifest.parent / "moved.parquet"  # the same content elsewhere resumes
    shutil.copy(train_manifest, moved)
    inputs.unlink()  # a run from before the record: resumes, and is recorded
    assert train(cfg.replace(manifest=str(moved), max_steps=2), resume=True, progress=False).step == 2
    assert json.loads(inputs.read_text())["manifest"] == str(moved.resolve())
    with pytest.raises(ConfigError, match="different content"):
        train(cfg.replace(manifest=str(other), max_steps=3), resume=True, progress=False)


def test_resume_refuses_other_pretrained_weights(make_config, tiny_pipe_dir, tmp_path):
    """The same architecture with other weights (another seed) is another starting point; the same
    pipeline copied elsewhere is not."""
    from soediff.models import pretrained_fingerprint
    from soediff.tiny import save_tiny_inpaint_pipeline

    cfg = make_config(max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    other = save_tiny_inpaint_pipeline(tmp_path / "other-seed", seed=1)
    assert pretrained_fingerprint(other) != pretrained_fingerprint(tiny_pipe_dir)
    with pytest.raises(ConfigError, match="--resume with pretrained .*other-seed.*other weights") as err:
        train(cfg.replace(pretrained=str(other), max_steps=2), resume=True, progress=False)
    assert "--overwrite" in err.value.hint
    copy = tmp_path / "copied"
    shutil.copytree(tiny_pipe_dir, copy)
    assert train(cfg.replace(pretrained=str(copy), max_steps=2), resume=True, progress=False).step == 2
