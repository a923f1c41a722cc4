"""Fixtures for soediff tests: a tiny inpainting pipeline on disk and a synthetic manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.factories import make_manifest


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The tiny models are latency-bound; several threads on a shared 2-core box are 100x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_pipe_dir(tmp_path_factory) -> Path:
    from soediff.tiny import save_tiny_inpaint_pipeline

    return save_tiny_inpaint_pipeline(tmp_path_factory.mktemp("soediff-tiny") / "pipe", seed=0)


@pytest.fixture(scope="session")
def train_manifest(tmp_path_factory) -> Path:
    """6 rows of 96x80 synthetic images, each with one small coloured object."""
    return make_manifest(tmp_path_factory.mktemp("soediff-manifest"), n=6)


@pytest.fixture
def make_config(tiny_pipe_dir, train_manifest, tmp_path):
    """A fast CPU TrainConfig for the tiny pipeline; keyword arguments override fields."""
    from soediff.config import TrainConfig

    def make(**overrides):
        base = dict(manifest=str(train_manifest), pretrained=str(tiny_pipe_dir), out=str(tmp_path / "run"),
                    resolution=64, train_batch_size=2, max_steps=2, learning_rate=1e-3, mixed_precision="no",
                    num_workers=0, checkpointing_steps=2, validation_rows=1, validation_steps=0,
                    validation_inference_steps=2, log_every=1, report_to="none")
        base.update(overrides)
        return TrainConfig(**base)

    return make
