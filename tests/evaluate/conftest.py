"""Fixtures of the evaluate tests: a synthetic manifest and tiny metric networks on disk."""

from __future__ import annotations

import pytest

from tests.factories import make_manifest
from tests.helpers.tiny_nets import make_tiny_clip, make_tiny_inception

BG = ("bg_psnr", "bg_ssim", "bg_mse")


@pytest.fixture(scope="session")
def manifest6(tmp_path_factory):
    """Six synthetic samples (one object per image)."""
    return make_manifest(tmp_path_factory.mktemp("manifest"), 6)


@pytest.fixture(scope="session")
def tiny_nets(tmp_path_factory):
    """Evaluate options loading the tiny CLIP and Inception from disk (the real loading path)."""
    folder = tmp_path_factory.mktemp("nets")
    config, weights = make_tiny_clip(folder)
    inception = make_tiny_inception(folder, dim=16)
    return {"clip_model": config, "clip_pretrained": None, "clip_weights": str(weights),
            "inception_weights": str(inception)}


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures the plot functions save, kept for inspection after they are closed."""
    from matplotlib.figure import Figure

    figures = []
    real = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures
