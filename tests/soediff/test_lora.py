"""SO-LoRA placement and the teacher = adapters disabled identity."""

from __future__ import annotations

import copy

import torch

from soediff.config import LoraSettings
from soediff.lora import adapters_disabled, add_so_lora, default_lora_blocks, lora_parameters


def _unet(tiny_pipe_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_pipe_dir, subfolder="unet")


def test_blocks_and_targets_skip_highest_resolution(tiny_pipe_dir):
    unet = _unet(tiny_pipe_dir)
    assert default_lora_blocks(unet) == ["down_blocks.1", "mid_block", "up_blocks.0"]
    targets = add_so_lora(unet, LoraSettings(rank=4, alpha=4))
    assert targets and all(t.startswith(("down_blocks.1.", "mid_block.", "up_blocks.0.")) for t in targets)
    kinds = {t.rsplit(".", 1)[-1] for t in targets}
    assert {"to_q", "to_k", "to_v", "conv1", "conv2", "conv_shortcut", "time_emb_proj", "proj_in", "proj_out"} <= kinds
    assert any(t.endswith("upsamplers.0.conv") for t in targets)
    trainable = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(n.startswith(("down_blocks.0.", "up_blocks.1.")) for n in trainable)


def test_adapters_disabled_equals_base_model(tiny_pipe_dir):
    base = _unet(tiny_pipe_dir).eval()
    unet = add_lora_with_nonzero_weights(copy.deepcopy(base))
    g = torch.Generator().manual_seed(0)
    x, t, text = torch.randn(2, 9, 8, 8, generator=g), torch.tensor([10, 500]), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        ref = base(x, t, text).sample
        with adapters_disabled(unet):
            teacher = unet(x, t, text).sample
        student = unet(x, t, text).sample
    assert torch.equal(teacher, ref)
    assert (student - ref).abs().max() > 1e-4  # and the adapters are back on afterwards


def add_lora_with_nonzero_weights(unet):
    add_so_lora(unet, LoraSettings(rank=4, alpha=4))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lora_parameters(unet):
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return unet.eval()
