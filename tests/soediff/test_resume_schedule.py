"""Resume and learning-rate schedules: LoRA dropout resumes exactly, the logged rate is the one
the step's update used, and a resume cannot reshape a schedule laid out over max_steps."""

from __future__ import annotations

import pytest

from soebench.errors import ConfigError
from soediff.trainer import train


def _weights(result, name="lora.safetensors"):
    from safetensors.torch import load_file

    return load_file(str(result.checkpoint / name))


def test_resume_is_exact_with_lora_dropout(make_config, tmp_path, monkeypatch):
    import torch

    import soediff.trainer as trainer

    from soediff.config import LoraSettings

    # 3 batches an epoch, 2 per step: the resume after step 2 starts a new iterator mid-epoch
    cfg = dict(checkpointing_steps=2, gradient_accumulation_steps=2, lora=LoraSettings(rank=4, alpha=4.0, dropout=0.3))
    straight = train(make_config(out=str(tmp_path / "a"), max_steps=4, **cfg), progress=False)
    train(make_config(out=str(tmp_path / "b"), max_steps=2, **cfg), progress=False)
    # whatever else draws from torch's global generator in the resumed process (a DataLoader
    # iterator takes a seed from it; so may a library) must not move the dropout masks
    batches = trainer._Loop._epoch_batches

    def drawing(self, epoch, skip):
        torch.rand(7)
        return batches(self, epoch, skip)

    monkeypatch.setattr(trainer._Loop, "_epoch_batches", drawing)
    resumed = train(make_config(out=str(tmp_path / "b"), max_steps=4, **cfg), resume=True, progress=False)
    for ref, got in zip(straight.history[2:], resumed.history):
        for term in ("loss", "denoise", "csd"):
            assert got[term] == pytest.approx(ref[term], rel=1e-6, abs=1e-8), term
    a, b = _weights(straight), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_logged_rate_is_the_one_the_update_used(make_config):
    # linear warm-up over 2 steps then linear decay to 0 at step 4: updates use 0, 1/2, 1, 1/2 x lr
    result = train(make_config(max_steps=4, lr_scheduler="linear", lr_warmup_steps=2, checkpointing_steps=4),
                   progress=False)
    assert [r["lr"] for r in result.history] == pytest.approx([0.0, 5e-4, 1e-3, 5e-4])
    assert [r["vae_lr"] / result.history[2]["vae_lr"] for r in result.history] == pytest.approx([0, 0.5, 1, 0.5])


@pytest.mark.parametrize("schedule, refused", [("cosine", True), ("linear", True), ("constant_with_warmup", False)])
def test_resume_with_another_max_steps_keeps_the_schedule(make_config, tmp_path, schedule, refused):
    cfg = dict(lr_scheduler=schedule, lr_warmup_steps=1, checkpointing_steps=1)
    train(make_config(out=str(tmp_path / "r"), max_steps=1, **cfg), progress=False)
    longer = make_config(out=str(tmp_path / "r"), max_steps=2, **cfg)
    if refused:
        with pytest.raises(ConfigError, match="laid out over max_steps"):
            train(longer, resume=True, progress=False)
    else:
        assert [r["step"] for r in train(longer, resume=True, progress=False).history] == [2]


def test_a_resume_on_another_number_of_processes_is_refused(make_config, tmp_path):
    import json

    out = tmp_path / "r"
    train(make_config(out=str(out), max_steps=1, checkpointing_steps=1), progress=False)
    state_file = out / "checkpoints" / "checkpoint-00000001" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    assert state["num_processes"] == 1
    state_file.write_text(json.dumps({**state, "num_processes": 2}))  # as a 2-process run writes it
    with pytest.raises(ConfigError, match="with 1 process.*trained with 2") as err:
        train(make_config(out=str(out), max_steps=2, checkpointing_steps=1), resume=True, progress=False)
    assert "--nproc_per_node 2" in str(err.value)


def test_a_checkpoint_from_before_per_rank_generators_still_resumes_exactly(make_config, tmp_path):
    import shutil

    straight = train(make_config(out=str(tmp_path / "a"), max_steps=2, checkpointing_steps=1), progress=False)
    train(make_config(out=str(tmp_path / "b"), max_steps=1, checkpointing_steps=1), progress=False)
    checkpoint = tmp_path / "b" / "checkpoints" / "checkpoint-00000001"
    shutil.move(checkpoint / "step_generator_0.pt", checkpoint / "custom_checkpoint_0.pkl")  # the 0.1 layout
    resumed = train(make_config(out=str(tmp_path / "b"), max_steps=2, checkpointing_steps=1), resume=True,
                    progress=False)
    assert resumed.history[0]["loss"] == pytest.approx(straight.history[1]["loss"], rel=1e-6)
