"""The diffusers adapter: protocol resize, per-sample seeds, LoRA, missing weights.

The end-to-end test loads the tiny random inpainting pipeline of ``soediff.tiny`` from disk
through ``AutoPipelineForInpainting.from_pretrained`` (the real loading path)."""

from __future__ import annotations

import numpy as np
import pytest

from soebench.errors import MissingWeightsError
from soebench.models import MODELS, DiffusersConfig, DiffusersInpainter
from tests.models.conftest import make_request


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tmp_path_factory):
    tiny = pytest.importorskip("soediff.tiny", reason="soediff.tiny (tiny inpainting pipeline) not available yet")
    return tiny.save_tiny_inpaint_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipe")


def test_missing_local_path_says_how_to_provide_weights(tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        MODELS.create("diffusers", f"path={tmp_path / 'sd-inpainting'}")
    assert "does not exist" in str(err.value) and "save_pretrained" in err.value.hint


def test_folder_without_model_index_is_not_a_pipeline(tmp_path):
    with pytest.raises(MissingWeightsError, match="no model_index.json"):
        MODELS.create("diffusers", f"path={tmp_path}")


def test_hub_id_not_in_cache_is_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError, match="not in the local Hugging Face cache"):
        MODELS.create("diffusers", "path=someorg/some-inpainting-model")


def test_missing_lora_is_missing_weights(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="LoRA weights"):
        MODELS.create("diffusers", f"path={tmp_path},lora={tmp_path / 'nope'}")


class FakePipe:
    """Records what the adapter passes; returns noise drawn from each sample's generator."""

    def __init__(self):
        self.calls = []

    def __call__(self, *, prompt, image, mask_image, height, width, generator, output_type, **kw):
        import torch

        self.calls.append(dict(prompt=prompt, image=image, mask_image=mask_image, height=height, width=width, **kw))
        assert output_type == "np"
        imgs = np.stack([torch.rand((height, width, 3), generator=g).numpy() for g in generator])

        class Out:
            images = imgs

        return Out()


def _adapter_with(pipe, tmp_path, **cfg):
    if not (tmp_path / "model_index.json").exists():
        (tmp_path / "model_index.json").write_text("{}")
    adapter = DiffusersInpainter(DiffusersConfig(path=str(tmp_path), **cfg))
    adapter._pipe = pipe
    return adapter


def test_protocol_resize_seeds_and_output_size(tmp_path):
    pipe = FakePipe()
    adapter = _adapter_with(pipe, tmp_path, resolution=64, steps=3, guidance=2.0)
    tiny_object = make_request("a", size=(200, 150), seed=5)
    reqs = [tiny_object, make_request("b", size=(48, 40), seed=6)]
    out = adapter.inpaint(reqs)
    call = pipe.calls[0]
    assert (call["height"], call["width"]) == (64, 64)
    assert all(im.size == (64, 64) for im in call["image"] + call["mask_image"])
    assert call["num_inference_steps"] == 3 and call["guidance_scale"] == 2.0
    assert call["prompt"] == [r.prompt for r in reqs]
    for r, res, m in zip(reqs, out, call["mask_image"]):
        assert res.image.shape == r.image.shape and res.image.dtype == np.uint8
        assert np.asarray(m).max() == 255  # the object survives the downscale
    # per-sample generators: a sample's output does not depend on its batch
    alone = adapter.inpaint([reqs[1]])[0].image
    assert np.array_equal(alone, out[1].image)
    assert not np.array_equal(adapter.inpaint([make_request("b", size=(48, 40), seed=7)])[0].image, alone)


def test_cache_token_ignores_device_but_not_settings(tmp_path):
    a = _adapter_with(FakePipe(), tmp_path, steps=3, dtype="float32", device="cpu").cache_token()
    b = _adapter_with(FakePipe(), tmp_path, steps=3, dtype="float32", device="cuda").cache_token()
    c = _adapter_with(FakePipe(), tmp_path, steps=4, dtype="float32").cache_token()
    assert a == b and a != c
    assert _adapter_with(FakePipe(), tmp_path, steps=3, dtype="float32", paste_back=True).cache_token() != a
    (tmp_path / "model_index.json").write_text('{"changed": 1}')  # weights replaced in place
    import os

    os.utime(tmp_path / "model_index.json", (1e9, 2e9))
    assert _adapter_with(FakePipe(), tmp_path, steps=3, dtype="float32").cache_token() != a


def test_cache_token_keys_the_dtype_auto_resolves_to(tmp_path):
    """dtype=auto is float16 on CUDA and float32 on the CPU: a resume on the other device must
    not reuse outputs computed at the other precision."""
    cpu = _adapter_with(FakePipe(), tmp_path, device="cpu").cache_token()
    cuda = _adapter_with(FakePipe(), tmp_path, device="cuda:1").cache_token()
    assert cpu["dtype"] == "float32" and cuda["dtype"] == "float16"
    assert _adapter_with(FakePipe(), tmp_path, device="cpu", dtype="float32").cache_token() == cpu


class IdentityPipe(FakePipe):
    """Returns its input image, with the mask painted magenta (a model that edits only the mask)."""

    def __call__(self, *, image, mask_image, generator, **kw):
        outs = []
        for im, m in zip(image, mask_image):
            arr = np.asarray(im, dtype=np.float32) / 255.0
            arr[np.asarray(m) > 127] = (1.0, 0.0, 1.0)
            outs.append(arr)

        class Out:
            images = np.stack(outs)

        return Out()


def _textured_request(sample_id, w, h, seed):
    """Noise (where a resize round trip shows) with a few rectangles to edit."""
    from soebench.models import InpaintRequest

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    for _ in range(3):
        bw, bh = int(rng.integers(1, max(2, w // 6))), int(rng.integers(1, max(2, h // 6)))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        mask[y:y + bh, x:x + bw] = True
    return InpaintRequest(sample_id, img, mask, "a magenta thing", seed)


@pytest.mark.parametrize("w, h, res", [(333, 517, 512), (1024, 683, 512), (101, 77, 512), (900, 120, 64)])
def test_paste_back_restores_the_background_beyond_the_resampling_blur(tmp_path, w, h, res):
    """Without paste_back the 512 round trip changes the whole background; with it, every pixel
    beyond the grown mask is the input's own, and the margin holds all of the edit's spread (no
    seam where the pasted input meets the output)."""
    from soebench.metrics.functional import dilate_mask
    from soebench.models.diffusers_inpaint import paste_margin

    r = _textured_request("a", w, h, seed=w)
    raw = _adapter_with(IdentityPipe(), tmp_path, resolution=res).inpaint([r])[0].image
    pasted = _adapter_with(IdentityPipe(), tmp_path, resolution=res, paste_back=True).inpaint([r])[0].image
    ry, rx = paste_margin(w, h, res)
    grown = dilate_mask(r.mask, ry, rx)
    assert not np.array_equal(raw[~grown], r.image[~grown])  # the round trip shows in the raw output
    assert np.array_equal(pasted[~grown], r.image[~grown])
    assert np.array_equal(pasted[grown], raw[grown])
    # the edit's spread (magenta bleeding out of the mask) lies inside the margin: on a flat
    # image the raw output differs from the input only there
    flat = type(r)("f", np.full_like(r.image, 100), r.mask, r.prompt, r.seed)
    changed = np.abs(_adapter_with(IdentityPipe(), tmp_path, resolution=res).inpaint([flat])[0].image.astype(int)
                     - 100).max(axis=2) > 0
    assert not (changed & ~grown).any()


def test_tiny_pipeline_end_to_end(tiny_pipeline_dir, tmp_path):
    from tests.factories import make_manifest

    from soebench.evaluation import evaluate

    manifest = make_manifest(tmp_path, 2)
    args = f"path={tiny_pipeline_dir},steps=2,resolution=64,guidance=1.0"
    res = evaluate(manifest, "diffusers", tmp_path / "run", model_args=args, metrics=["bg_mse"], progress=False,
                   report=False, batch_size=2)
    assert res.summary["errors"]["count"] == 0, res.summary["errors"]
    assert res.adapter_calls == 2 and res.summary["model"]["args"]["steps"] == 2
    from PIL import Image

    img = Image.open(tmp_path / "run" / res.samples["output_path"][0])
    assert img.size == (96, 80)
    # the same seeds give the same outputs through a fresh pipeline load
    again = evaluate(manifest, "diffusers", tmp_path / "run2", model_args=args, metrics=["bg_mse"], progress=False,
                     report=False, batch_size=1)
    for rel in res.samples["output_path"]:
        a = np.asarray(Image.open(tmp_path / "run" / rel), dtype=int)
        b = np.asarray(Image.open(tmp_path / "run2" / rel), dtype=int)
        assert np.abs(a - b).max() <= 2  # batch of 2 vs 1: equal up to float rounding


def test_tiny_pipeline_with_lora(tiny_pipeline_dir, tmp_path):
    """LoRA weights saved the diffusers way load with load_lora_weights and change the output."""
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    import torch
    from diffusers import AutoPipelineForInpainting, StableDiffusionInpaintPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = AutoPipelineForInpainting.from_pretrained(tiny_pipeline_dir)
    pipe.unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                     init_lora_weights=False))
    StableDiffusionInpaintPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=get_peft_model_state_dict(pipe.unet))
    req = [make_request("a", size=(64, 64), seed=1)]
    base = MODELS.create("diffusers", f"path={tiny_pipeline_dir},steps=2,resolution=64").inpaint(req)[0].image
    lora = MODELS.create("diffusers", f"path={tiny_pipeline_dir},steps=2,resolution=64,lora={tmp_path / 'lora'}")
    assert lora.cache_token()["lora"] == str(tmp_path / "lora")
    assert not np.array_equal(lora.inpaint(req)[0].image, base)
    torch.manual_seed(0)


def test_missing_explicit_decoder_is_missing_weights(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="VAE decoder weights") as err:
        MODELS.create("diffusers", f"path={tmp_path},vae_decoder={tmp_path / 'nope.safetensors'}")
    assert "vae_decoder=none" in err.value.hint


def test_decoder_beside_the_lora_is_loaded_and_checked(tiny_pipeline_dir, tmp_path):
    """``soediff export`` puts vae_decoder.safetensors beside the LoRA: found by default, applied to
    the VAE (outputs change), ignored with vae_decoder=none; wrong keys are a clear error."""
    from safetensors.torch import save_file

    from soebench.compat import ensure_torchvision_ops
    from soebench.errors import ConfigError

    ensure_torchvision_ops()
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_pipeline_dir / "vae")
    torch.manual_seed(3)
    state = {f"decoder.{k}": v + 0.05 * torch.randn_like(v) for k, v in vae.decoder.state_dict().items()}
    folder = tmp_path / "export"
    folder.mkdir()
    save_file(state, str(folder / "vae_decoder.safetensors"))
    args = f"path={tiny_pipeline_dir},steps=2,resolution=64"
    req = [make_request("a", size=(64, 64), seed=1)]
    base = MODELS.create("diffusers", args).inpaint(req)[0].image
    auto = MODELS.create("diffusers", f"{args},lora={folder / 'vae_decoder.safetensors'}")
    assert auto.cache_token()["vae_decoder"] == str(folder / "vae_decoder.safetensors")
    assert MODELS.create("diffusers", f"{args},vae_decoder=none").cache_token()["vae_decoder"] is None
    explicit = MODELS.create("diffusers", f"{args},vae_decoder={folder / 'vae_decoder.safetensors'}")
    tuned = explicit.inpaint(req)[0].image
    assert not np.array_equal(tuned, base)
    loaded = explicit.load().vae.decoder.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(loaded[k.removeprefix("decoder.")], v)
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="outside 'decoder.'"):
        MODELS.create("diffusers", f"{args},vae_decoder={tmp_path / 'bad.safetensors'}").load()


def test_a_pipeline_that_fails_to_load_stops_the_run_once(tmp_path, monkeypatch):
    """A load failure (CUDA missing, out of memory, ...) is a ConfigError naming the cause: the
    harness stops at once instead of retrying, and reloading, for every sample."""
    pytest.importorskip("diffusers")
    import diffusers

    from soebench.errors import ConfigError
    from soebench.run.generate import _call

    loads = []

    def failing_load(path, **kw):
        loads.append(path)
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(diffusers.AutoPipelineForInpainting, "from_pretrained", failing_load)
    (tmp_path / "model_index.json").write_text("{}")
    adapter = DiffusersInpainter(DiffusersConfig(path=str(tmp_path), device="cpu"))
    with pytest.raises(ConfigError, match="cannot load diffusers pipeline .* on device 'cpu': RuntimeError: CUDA error"):
        _call(adapter, [make_request(f"s{i}", seed=i) for i in range(4)])
    assert len(loads) == 1


@pytest.mark.parametrize("device, match", [("cuda:99", "on device 'cuda:99'"), ("meta", "hold no data"),
                                           ("bogus", "on device 'bogus'")])
def test_tiny_pipeline_on_an_unusable_device_is_a_config_error(tiny_pipeline_dir, device, match):
    from soebench.errors import ConfigError
    from soebench.run.generate import _call

    adapter = MODELS.create("diffusers", f"path={tiny_pipeline_dir},steps=1,resolution=64,device={device}")
    with pytest.raises(ConfigError, match=match):
        _call(adapter, [make_request("a", seed=1), make_request("b", seed=2)])


@pytest.mark.parametrize("arg", ["guidance=inf", "guidance=nan", "guidance=-1", "lora_scale=nan"])
def test_diffusers_rejects_non_finite_settings(tmp_path, arg):
    from soebench.errors import ConfigError

    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(ConfigError, match=arg.split("=")[0]):
        MODELS.create("diffusers", f"path={tmp_path},{arg}")


def test_loading_draws_no_library_progress_bars(tiny_pipeline_dir, capfd):
    import diffusers.utils.logging as diffusers_logging

    adapter = DiffusersInpainter(DiffusersConfig(path=str(tiny_pipeline_dir), steps=1, resolution=64))
    capfd.readouterr()
    adapter.inpaint([make_request("a", (32, 32))])
    err = capfd.readouterr().err
    assert "Loading pipeline components" not in err and "Loading weights" not in err
    assert diffusers_logging.is_progress_bar_enabled()  # the library's own setting is back
