"""``soebench-accelerate``: accelerate's launcher works here (torchvision shim first) and shards a run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.factories import make_manifest
from tests.helpers.processes import free_port, run_group

BIN = Path(sys.executable).parent


def _cli(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if path is None:
        pytest.skip(f"console script {name} is not installed (pip install -e .)")
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return run_group(args, cwd=cwd)


@pytest.mark.parametrize("processes", [2])
def test_launched_evaluate_merges_shards_like_one_process(tmp_path, processes):
    manifest = make_manifest(tmp_path, 6, seed=5)
    common = ["--manifest", str(manifest), "--model", "opencv-telea", "--metrics", "bg_psnr,bg_ssim,bg_mse",
              "--no-report", "-q"]
    single = _run([_cli("soebench"), "evaluate", *common, "--out", str(tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr
    # --multi_gpu starts one torchrun process per rank (gloo on a CPU machine); --cpu alone would
    # start a single process unless run under MPI
    launched = _run([_cli("soebench-accelerate"), "launch", "--num_processes", str(processes), "--multi_gpu",
                     "--num_machines", "1", "--main_process_port", str(free_port()), "--mixed_precision", "no", "--dynamo_backend", "no",
                     "-m", "soebench", "evaluate", *common, "--out", str(tmp_path / "many")], tmp_path)
    assert launched.returncode == 0, launched.stderr[-3000:]
    one = pd.read_parquet(tmp_path / "one" / "samples.parquet")
    many = pd.read_parquet(tmp_path / "many" / "samples.parquet")
    assert list(many["sample_id"]) == list(one["sample_id"])  # back in manifest order
    for column in ("bg_mse", "bg_ssim"):
        assert many[column].tolist() == pytest.approx(one[column].tolist(), rel=1e-9)
    import json

    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["world_size"] == processes
