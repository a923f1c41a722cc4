"""Training launched as several processes: a real process group (gloo on CPU) or a clear error.

On a machine without GPUs, ``accelerate launch --multi_gpu`` (and plain torchrun) start the
processes but accelerate builds no process group; without a check each process would train alone
and write the same run folder."""

from __future__ import annotations

import csv
import sys

import pytest

from tests.helpers.processes import free_port, run_group

TRAIN_YAML = """\
resolution: 64
train_batch_size: 1
mixed_precision: "no"
num_workers: 0
checkpointing_steps: 2
validation_rows: 0
log_every: 1
report_to: none
lora: {rank: 4, alpha: 4}
"""


def _torchrun(tmp_path, args, **env):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "soediff", "train", *args]
    return run_group(cmd, cwd=tmp_path, env=env)


def _args(tmp_path, tiny_pipe_dir, train_manifest, out):
    (tmp_path / "train.yaml").write_text(TRAIN_YAML)
    return ["--manifest", str(train_manifest), "--pretrained", str(tiny_pipe_dir), "--out", str(out),
            "--config", str(tmp_path / "train.yaml"), "--max-steps", "3", "--no-progress"]


def test_two_cpu_processes_train_one_run(tmp_path, tiny_pipe_dir, train_manifest):
    out = tmp_path / "run"
    proc = _torchrun(tmp_path, _args(tmp_path, tiny_pipe_dir, train_manifest, out), ACCELERATE_USE_CPU="true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "logs" / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["1", "2", "3"]  # one writer, one row per step
    assert (out / "checkpoints" / "checkpoint-00000003" / "lora.safetensors").is_file()


def test_processes_without_a_process_group_are_refused(tmp_path, tiny_pipe_dir, train_manifest):
    import torch

    if torch.cuda.is_available():
        pytest.skip("with GPUs torchrun gets a real process group")
    out = tmp_path / "run"
    proc = _torchrun(tmp_path, _args(tmp_path, tiny_pipe_dir, train_manifest, out))
    assert proc.returncode != 0
    assert "launched as 2 processes, but accelerate set up 1" in proc.stderr
    assert "ACCELERATE_USE_CPU=true torchrun" in proc.stderr
    assert not (out / "checkpoints").exists()
