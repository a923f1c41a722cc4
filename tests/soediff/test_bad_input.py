"""Bad inputs get clear errors naming what is wrong."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from soebench.errors import ConfigError, InputError, MissingWeightsError, OutputExistsError, SoebenchError
from soediff.trainer import train


def test_manifest_without_teacher_crop(make_config, train_manifest, tmp_path):
    table = pq.read_table(train_manifest)
    bad = tmp_path / "old.parquet"
    pq.write_table(table.drop(["teacher_crop"]), bad)
    with pytest.raises(InputError, match="teacher_crop") as err:
        train(make_config(manifest=str(bad)), progress=False)
    assert "rebuild" in str(err.value)


def test_pretrained_not_inpainting(make_config, tiny_pipe_dir, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_pipe_dir, copy)
    cfg_path = copy / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["in_channels"] = 4
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="not an inpainting pipeline.*in_channels=4"):
        train(make_config(pretrained=str(copy)), progress=False)


def test_missing_weights(make_config, tiny_pipe_dir, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_pipe_dir, copy)
    (copy / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingWeightsError, match=str(copy / "unet")):
        train(make_config(pretrained=str(copy)), progress=False)
    with pytest.raises(MissingWeightsError, match="does not exist"):
        train(make_config(pretrained=str(tmp_path / "nowhere")), progress=False)


def test_out_of_memory_suggests_options(make_config, monkeypatch):
    import torch

    import soediff.step

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(soediff.step, "compute_losses", oom)
    with pytest.raises(SoebenchError, match="out of memory") as err:
        train(make_config(), progress=False)
    for option in ("batch", "gradient_checkpointing", "mixed_precision", "csd.enabled", "vae.enabled"):
        assert option in err.value.hint


def test_existing_run_is_not_overwritten(make_config, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-00000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"step": 1, "epoch": 0}')
    with pytest.raises(OutputExistsError, match="already holds a run \\(latest checkpoint checkpoint-00000001\\)"):
        train(make_config(), progress=False)
    shutil.rmtree(checkpoint)  # a folder without a checkpoint has nothing to resume (and a rerun reuses it)
    with pytest.raises(InputError, match="no checkpoint") as err:
        train(make_config(), resume=True, progress=False)
    assert "reused" in err.value.hint


def test_fp16_on_cpu_and_invalid_config(make_config):
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
            train(make_config(mixed_precision="fp16"), progress=False)
    with pytest.raises(ConfigError, match="train_batch_size"):
        train(make_config(train_batch_size=0), progress=False)
