"""Tiny random-weight feature networks, saved to disk so the real loading paths run.

- :func:`make_tiny_clip`: an open_clip ViT (width 32, 2 layers, 32x32 input) from a model-config
  JSON, with open_clip's real BPE tokenizer; weights saved with ``torch.save(state_dict)``.
  Load it with ``soebench.metrics.load_clip(config_path, pretrained=None, weights=weights_path)``.
- :func:`make_tiny_inception`: a small TorchScript conv net mapping (N, 3, 299, 299) inputs scaled
  as ``(x - 128) / 128`` to (N, D) features, loadable with ``load_inception(path)``.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP_NAME = "soebench-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def make_tiny_clip(tmp_path: Path, seed: int = 0) -> tuple[str, Path]:
    """Write the tiny CLIP config and random weights under ``tmp_path``.

    Returns ``(config_json_path, weights_path)``; the config path is what ``ClipSpec.model`` /
    ``load_clip(model=...)`` accept (it is registered with open_clip under its file stem).
    """
    import torch

    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    import open_clip

    folder = Path(tmp_path) / "tiny_clip"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{TINY_CLIP_NAME}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    open_clip.add_model_config(config_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP_NAME, pretrained=None)
    weights_path = folder / "tiny_clip.pt"
    torch.save(model.state_dict(), weights_path)
    return str(config_path), weights_path


def _tiny_inception_module(dim: int):
    import torch
    from torch import nn

    class TinyInception(nn.Module):
        """299x299 -> dim features: strided convs, ReLU, global average pool."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, kernel_size=7, stride=4, padding=3)
            self.conv2 = nn.Conv2d(8, dim, kernel_size=5, stride=4, padding=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            return x.mean(dim=(2, 3))

    return TinyInception()


def _cleanfid_layout_module(dim: int):
    """Same features behind clean-fid's file layout: a ``layers`` submodule taking normalised
    299x299 input, and a top-level forward that takes [0, 255] images of any size (resizing and
    rescaling itself) -- the part soebench must *not* call."""
    import torch
    from torch import nn

    class CleanFidLayout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = _tiny_inception_module(dim)

        def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
            x = torch.nn.functional.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False)
            return self.layers((x - 128.0) / 128.0 * 0.5)  # deliberately different from layers()

    return CleanFidLayout()


def make_tiny_inception(tmp_path: Path, dim: int = 16, seed: int = 0, *, cleanfid_layout: bool = False,
                        filename: str = "tiny_inception.pt") -> Path:
    """Save a TorchScript tiny Inception stand-in under ``tmp_path``; returns its path.

    ``cleanfid_layout=True`` wraps it like clean-fid's ``inception-2015-12-05.pt`` (features
    through ``.layers``)."""
    import torch

    torch.manual_seed(seed)
    net = _cleanfid_layout_module(dim) if cleanfid_layout else _tiny_inception_module(dim)
    module = torch.jit.script(net.eval())
    path = Path(tmp_path) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(path))
    return path
