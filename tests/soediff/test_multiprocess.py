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


def _losses(out):
    with open(out / "logs" / "losses.csv", newline="") as fh:
        return {r["step"]: (float(r["loss"]), float(r["denoise"])) for r in csv.DictReader(fh)}


@pytest.mark.slow  # three 2-process launches
def test_two_process_resume_is_exact_and_each_rank_keeps_its_generator(tmp_path, tiny_pipe_dir, train_manifest):
    import torch
    from safetensors.torch import load_file

    def launch(out, steps, *extra):
        args = _args(tmp_path, tiny_pipe_dir, train_manifest, out)
        args[args.index("--max-steps") + 1] = str(steps)
        proc = _torchrun(tmp_path, [*args, *extra], ACCELERATE_USE_CPU="true")
        assert proc.returncode == 0, proc.stderr[-3000:]

    launch(tmp_path / "a", 4)
    launch(tmp_path / "b", 2)
    checkpoint = tmp_path / "b" / "checkpoints" / "checkpoint-00000002"
    assert (checkpoint / "step_generator_0.pt").is_file() and (checkpoint / "step_generator_1.pt").is_file()
    launch(tmp_path / "b", 4, "--resume")
    straight, resumed = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    for step in ("3", "4"):
        assert resumed[step] == pytest.approx(straight[step], rel=1e-5), step
    a = load_file(str(tmp_path / "a" / "checkpoints" / "checkpoint-00000004" / "lora.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "checkpoint-00000004" / "lora.safetensors"))
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
