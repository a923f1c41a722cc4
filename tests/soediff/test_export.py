"""Export -> load_lora_weights: the pipeline reproduces the trained UNet and differs from the base."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soebench.errors import InputError, OutputExistsError
from soediff.export import DECODER_WEIGHT_NAME, LORA_WEIGHT_NAME, export_run, load_exported
from soediff.trainer import train


def test_export_loads_with_load_lora_weights(make_config, tiny_pipe_dir, tmp_path):
    from diffusers import AutoPipelineForInpainting
    from PIL import Image

    cfg = make_config(max_steps=2, learning_rate=1e-2)
    cfg.lora.alpha = 8.0  # alpha != rank: the scale must travel with the export
    cfg.lora.rank = 4
    result = train(cfg, progress=False, keep_models=True)
    exported = export_run(result.out_dir, tmp_path / "export")
    assert exported.lora.name == LORA_WEIGHT_NAME and exported.vae_decoder.name == DECODER_WEIGHT_NAME
    assert exported.step == 2

    base = AutoPipelineForInpainting.from_pretrained(tiny_pipe_dir)
    tuned = AutoPipelineForInpainting.from_pretrained(tiny_pipe_dir)
    load_exported(tuned, exported.out_dir)

    g = torch.Generator().manual_seed(0)
    x, t, text = torch.randn(1, 9, 8, 8, generator=g), torch.tensor([400]), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        ref = result.models.unet.eval()(x, t, text).sample
        got = tuned.unet(x, t, text).sample
        untouched = base.unet(x, t, text).sample
        z = torch.randn(1, 4, 8, 8, generator=g)
        torch.testing.assert_close(tuned.vae.decode(z).sample, result.models.vae.decode(z).sample)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert (got - untouched).abs().max() > 1e-4

    image = Image.fromarray(np.full((64, 64, 3), 110, np.uint8))
    mask = Image.fromarray(np.pad(np.full((16, 16), 255, np.uint8), 24))
    outs = []
    for pipe in (base, tuned):
        pipe.set_progress_bar_config(disable=True)
        outs.append(np.asarray(pipe("a red cup", image=image, mask_image=mask, num_inference_steps=2, height=64,
                                    width=64, generator=torch.Generator().manual_seed(0)).images[0]))
    assert not np.array_equal(outs[0], outs[1])

    with pytest.raises(OutputExistsError):
        export_run(result.out_dir, tmp_path / "export")
    again = export_run(result.out_dir, tmp_path / "export", overwrite=True, pipeline=True)

    # the pipeline export: base parts + the fine-tuned VAE, loadable as a whole; with the LoRA on top
    # it is the trained model (what `soebench evaluate --model-args path=OUT/pipeline,lora=OUT` runs)
    assert again.pipeline == tmp_path / "export" / "pipeline"
    whole = AutoPipelineForInpainting.from_pretrained(again.pipeline)
    whole.load_lora_weights(str(again.out_dir))
    with torch.no_grad():
        torch.testing.assert_close(whole.vae.decode(z).sample, result.models.vae.decode(z).sample)
        torch.testing.assert_close(whole.unet(x, t, text).sample, ref, rtol=1e-4, atol=1e-5)
        img = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
        torch.testing.assert_close(whole.vae.encode(img).latent_dist.mean, base.vae.encode(img).latent_dist.mean)
    assert (again.pipeline / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == \
        (tiny_pipe_dir / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert (tiny_pipe_dir / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() != \
        (again.pipeline / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()  # the base is untouched
    (tmp_path / "export3" / "pipeline").mkdir(parents=True)
    with pytest.raises(OutputExistsError, match="pipeline"):
        export_run(result.out_dir, tmp_path / "export3", pipeline=True)


def test_export_without_checkpoints(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match="no checkpoints"):
        export_run(tmp_path / "run", tmp_path / "out")
