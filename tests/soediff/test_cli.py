"""The soediff CLI: tiny-model writes a loadable pipeline; errors are rendered, not raised."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from soediff.cli import app


def test_tiny_model_command(tmp_path):
    result = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "pipe")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pipe" / "model_index.json").exists()
    again = CliRunner().invoke(app, ["tiny-model", str(tmp_path / "pipe")])
    assert again.exit_code != 0


def test_train_error_is_rendered(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "soediff", "train", "--manifest", str(tmp_path / "none.parquet"),
                           "--pretrained", str(tmp_path), "--out", str(tmp_path / "run"), "--mixed-precision", "no"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "none.parquet" in proc.stderr and "Traceback" not in proc.stderr


def test_config_command_writes_default_yaml(tmp_path):
    from soediff.config import TrainConfig

    result = CliRunner().invoke(app, ["config", "--out", str(tmp_path / "train.yaml")])
    assert result.exit_code == 0, result.output
    assert TrainConfig.from_yaml(tmp_path / "train.yaml") == TrainConfig()


def test_resume_reads_the_runs_config(make_config):
    """`soediff train --out RUN --resume` needs no other option: the run's config.yaml is the base."""
    import pandas as pd

    from soediff.trainer import train

    cfg = make_config(max_steps=1, checkpointing_steps=1)
    cfg.lora.rank = 4  # not the default: resuming with defaults would not fit the checkpoint
    train(cfg, progress=False)
    result = CliRunner().invoke(app, ["train", "--out", cfg.out, "--resume", "--max-steps", "2", "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert pd.read_csv(f"{cfg.out}/logs/losses.csv")["step"].tolist() == [1, 2]
