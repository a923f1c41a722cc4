"""The tiny inpainting pipeline loads the standard way and runs."""

from __future__ import annotations

import numpy as np


def test_tiny_pipeline_loads_with_autopipeline_and_runs(tiny_pipe_dir):
    import torch
    from diffusers import AutoPipelineForInpainting, StableDiffusionInpaintPipeline
    from PIL import Image

    pipe = AutoPipelineForInpainting.from_pretrained(tiny_pipe_dir)
    assert isinstance(pipe, StableDiffusionInpaintPipeline)
    assert pipe.unet.config.in_channels == 9
    assert pipe.vae_scale_factor == 8
    pipe.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.full((64, 64, 3), 120, np.uint8))
    mask = Image.fromarray(np.pad(np.full((16, 16), 255, np.uint8), 24))
    out = pipe("a red cup", image=image, mask_image=mask, num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0)).images[0]
    assert out.size == (64, 64)
    assert np.asarray(out).std() > 0


def test_tiny_tokenizer_matches_open_clip_bpe(tiny_pipe_dir):
    """The offline-built CLIP vocabulary tokenizes exactly like open_clip's reference tokenizer."""
    from transformers import CLIPTokenizer

    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    import open_clip

    hf = CLIPTokenizer.from_pretrained(tiny_pipe_dir, subfolder="tokenizer")
    ref = open_clip.tokenizer.SimpleTokenizer()
    for text in ("a small red cup on a wooden table", "Zebra's stripes, 2 giraffes!", "photo of a teddy-bear"):
        assert hf(text).input_ids == [49406, *ref.encode(text), 49407]


def test_tiny_model_seeded(tmp_path):
    from soediff.tiny import build_tiny_inpaint_pipeline

    a, b = build_tiny_inpaint_pipeline(seed=3), build_tiny_inpaint_pipeline(seed=3)
    for (name, p), (_, q) in zip(a.unet.named_parameters(), b.unet.named_parameters()):
        assert (p == q).all(), name
