"""QA findings on what a run records: absolute paths (resume and export from any working directory),
a complete-run hint that only suggests what is accepted, code versions, and export of an incomplete
checkpoint refused before anything is written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from soebench.errors import InputError
from soediff.cli import app
from soediff.config import TrainConfig
from soediff.export import export_run
from soediff.trainer import train


def _invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, " ".join(result.output.split())  # rich wraps long lines


# ---------------------------------------------------------------- 1. absolute paths
def test_run_records_absolute_paths_so_resume_and_export_work_elsewhere(make_config, train_manifest, tiny_pipe_dir,
                                                                        tmp_path, monkeypatch):
    start = tmp_path / "start"
    start.mkdir()
    monkeypatch.chdir(start)
    cfg = make_config(manifest=os.path.relpath(train_manifest), pretrained=os.path.relpath(tiny_pipe_dir),
                      out="run", max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    run = start / "run"
    saved = TrainConfig.from_yaml(run / "config.yaml")
    assert (saved.manifest, saved.pretrained, saved.out) == (str(train_manifest.resolve()),
                                                             str(tiny_pipe_dir.resolve()), str(run.resolve()))
    given = json.loads((run / "inputs.json").read_text())["given"]
    assert given["manifest"] == os.path.relpath(train_manifest) and given["cwd"] == str(start)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result, text = _invoke("train", "--out", run, "--resume", "--max-steps", 2, "--no-progress")
    assert result.exit_code == 0, (text, result.exception)
    assert "trained to step 2" in text
    result, text = _invoke("export", run, "--out", "export", "--pipeline")
    assert result.exit_code == 0, (text, result.exception)
    exported = json.loads((elsewhere / "export" / "export.json").read_text())
    assert exported["base_pipeline"] == str(tiny_pipe_dir.resolve())


def test_run_from_before_absolute_paths_uses_inputs_json(make_config, train_manifest, tiny_pipe_dir, tmp_path,
                                                         monkeypatch):
    """A config.yaml with relative paths (as runs wrote them before) resumes and exports from another
    directory with the absolute paths inputs.json recorded."""
    cfg = make_config(max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    run = Path(cfg.out)
    old = TrainConfig.from_yaml(run / "config.yaml").replace(
        manifest=os.path.relpath(train_manifest, tmp_path), pretrained=os.path.relpath(tiny_pipe_dir, tmp_path))
    (run / "config.yaml").write_text(old.to_yaml())
    monkeypatch.chdir(run)  # not the directory those relative paths were typed in
    result, text = _invoke("export", run, "--out", tmp_path / "export", "--pipeline")
    assert result.exit_code == 0, (text, result.exception)
    result, text = _invoke("train", "--out", run, "--resume", "--max-steps", 2, "--no-progress")
    assert result.exit_code == 0, (text, result.exception)
    assert TrainConfig.from_yaml(run / "config.yaml").manifest == str(train_manifest.resolve())


# ---------------------------------------------------------------- 2. the complete-run hint
@pytest.mark.parametrize("schedule", ["linear", "constant"])
def test_complete_run_hint_suggests_only_what_is_accepted(make_config, schedule):
    cfg = make_config(max_steps=1, checkpointing_steps=1, lr_scheduler=schedule)
    train(cfg, progress=False)
    result, text = _invoke("train", "--out", cfg.out, "--resume", "--no-progress")
    assert result.exit_code == 0, (text, result.exception)
    assert "already complete" in text and "soediff export" in text
    if schedule == "linear":
        assert "--resume --max-steps" not in text and "larger --max-steps" in text
        assert "--overwrite" in text and "laid out over max_steps" in text
        # what it suggests is accepted: a new run (here: --overwrite) with a larger --max-steps
        result, text = _invoke("train", "--out", cfg.out, "--overwrite", "--config", Path(cfg.out) / "config.yaml",
                               "--max-steps", 2, "--no-progress")
        assert result.exit_code == 0, (text, result.exception)
    else:
        assert "--resume --max-steps" in text
        result, text = _invoke("train", "--out", cfg.out, "--resume", "--max-steps", 2, "--no-progress")
        assert result.exit_code == 0, (text, result.exception)
    assert "trained to step 2" in text


# ---------------------------------------------------------------- 3. versions
def test_run_checkpoints_and_exports_record_code_versions(make_config, tmp_path):
    import diffusers
    import peft

    cfg = make_config(max_steps=1, checkpointing_steps=1)
    result = train(cfg, progress=False)
    exported = export_run(cfg.out, tmp_path / "export")
    records = {"inputs.json": json.loads((Path(cfg.out) / "inputs.json").read_text()),
               "trainer_state.json": json.loads((result.checkpoint / "trainer_state.json").read_text()),
               "export.json": json.loads((exported.out_dir / "export.json").read_text())}
    for name, record in records.items():
        versions = record["versions"]
        assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0], name
        assert versions["diffusers"] == diffusers.__version__ and versions["peft"] == peft.__version__, name
        assert versions["soebench"] and record["soediff_version"], name
        assert "git_commit" in record and "git_dirty" in record, name
    assert records["trainer_state.json"]["step"] == 1  # the keys the trainer reads are still there


# ---------------------------------------------------------------- 4. incomplete checkpoints
@pytest.fixture
def two_checkpoints(make_config):
    cfg = make_config(max_steps=2, checkpointing_steps=1)
    train(cfg, progress=False)
    return Path(cfg.out)


def _break(checkpoint: Path, how: str) -> None:
    if how == "no trainer_state":  # killed while saving: the state is written last
        (checkpoint / "trainer_state.json").unlink()
    elif how == "truncated lora":
        data = (checkpoint / "lora.safetensors").read_bytes()
        (checkpoint / "lora.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "no lora_config":
        (checkpoint / "lora_config.json").unlink()
    elif how == "no decoder":  # the run trained the decoder (vae.enabled), so a checkpoint holds it
        (checkpoint / "vae_decoder.safetensors").unlink()
    elif how == "bad trainer_state":
        (checkpoint / "trainer_state.json").write_text('{"step": ')


@pytest.mark.parametrize("how, missing", [
    ("no trainer_state", "trainer_state.json is missing"),
    ("bad trainer_state", "trainer_state.json is not readable"),
    ("truncated lora", "lora.safetensors is not readable"),
    ("no lora_config", "lora_config.json is missing"),
    ("no decoder", "vae_decoder.safetensors is missing"),
])
def test_export_of_an_incomplete_checkpoint_writes_nothing(two_checkpoints, tmp_path, how, missing):
    checkpoint = two_checkpoints / "checkpoints" / "checkpoint-00000002"
    _break(checkpoint, how)
    out = tmp_path / "export"
    with pytest.raises(InputError, match=f"checkpoint {checkpoint} is incomplete: {missing}") as err:
        export_run(two_checkpoints, out, checkpoint="checkpoint-00000002", pipeline=how != "no decoder")
    assert "checkpoint-00000001" in err.value.hint  # the complete one it can export instead
    assert not out.exists()


def test_export_of_an_incomplete_checkpoint_on_the_command_line(two_checkpoints, tmp_path):
    _break(two_checkpoints / "checkpoints" / "checkpoint-00000002", "no trainer_state")
    result, text = _invoke("export", two_checkpoints, "--out", tmp_path / "export", "--checkpoint",
                           "checkpoint-00000002")
    assert isinstance(result.exception, InputError) and "trainer_state.json is missing" in str(result.exception)
    assert not (tmp_path / "export").exists()
    # the default is the latest complete checkpoint
    result, text = _invoke("export", two_checkpoints, "--out", tmp_path / "export")
    assert result.exit_code == 0, (text, result.exception)
    assert "exported step 1" in text


def test_export_of_a_checkpoint_that_does_not_exist(two_checkpoints, tmp_path):
    with pytest.raises(InputError, match="checkpoint-00000009") as err:
        export_run(two_checkpoints, tmp_path / "export", checkpoint="checkpoint-00000009")
    assert "checkpoint-00000002" in err.value.hint


def test_the_longer_hint_counts_from_the_checkpoint_not_a_smaller_max_steps(tmp_path):
    """A resume with --max-steps 2 on a run checkpointed at step 4 trains nothing; N must pass 4."""
    from types import SimpleNamespace

    from soediff.cli import _longer_hint

    hint = _longer_hint(tmp_path, SimpleNamespace(lr_scheduler="constant", max_steps=2), 4)
    assert hint.endswith("--resume --max-steps N (N > 4)")


def test_train_help_states_the_defaults_of_the_config():
    """The options default to None (a --config may set them); their help gives TrainConfig's defaults."""
    from typer.testing import CliRunner

    from soediff.cli import app
    from soediff.config import TrainConfig

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output.split())
    d = TrainConfig()
    for option, value in (("max-steps", d.max_steps), ("batch-size", d.train_batch_size), ("resolution", d.resolution),
                          ("mixed-precision", d.mixed_precision), ("seed", d.seed), ("out", d.out)):
        assert f"Default: {value}" in text, option
    assert f"Default: {d.learning_rate:g}" in text
