"""CLIP-Score through the real open_clip loading path with a tiny model saved to disk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from soebench.metrics import CLIPScore, ClipSpec, load_clip
from soebench.metrics.functional import clip_score
from soebench.metrics.preprocess import clip_pixels, crop_box, pad_to_square


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    config, weights = tiny_clip
    return load_clip(config, pretrained=None, weights=weights)


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(48 + 8 * i, 64, 3), dtype=np.uint8) for i in range(n)]


def _direct_scores(model, tokenizer, crops, texts, mean, std, size):
    """Independent computation: hand-written padding + PIL resize + model towers + cosine."""
    from PIL import Image

    batch = []
    for crop in crops:
        h, w = crop.shape[:2]
        side = max(h, w)
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        canvas[:] = [round(255 * m) for m in mean]
        canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = crop
        pil = Image.fromarray(canvas).resize((size, size), Image.BICUBIC)
        x = torch.tensor(np.asarray(pil), dtype=torch.float32).permute(2, 0, 1) / 255.0
        batch.append((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))
    with torch.no_grad():
        img = model.encode_image(torch.stack(batch))
        txt = model.encode_text(tokenizer(texts))
    cos = (img / img.norm(dim=-1, keepdim=True) * (txt / txt.norm(dim=-1, keepdim=True))).sum(-1)
    return torch.clamp(100 * cos, min=0).numpy()


def test_loaded_weights_equal_saved_weights(tiny_clip, encoder):
    _, weights = tiny_clip
    saved = torch.load(weights, weights_only=True)
    loaded = encoder.model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert encoder.image_size == 32
    assert encoder.source["checkpoint"] == str(weights)


def test_local_clip_score_matches_direct_computation(encoder):
    images = _images(3)
    bboxes = [[5.5, 4.2, 20.0, 9.0], [0.0, 0.0, 64.0, 56.0], [30.0, 10.0, 7.0, 30.0]]
    texts = ["a red cup", "a small blue ball", "a photo of a clock"]
    metric = CLIPScore(encoder, region="local")
    got = metric.update(images, texts, bboxes)
    crops = [crop_box(img, (b[0], b[1], b[0] + b[2], b[1] + b[3])) for img, b in zip(images, bboxes)]
    assert crops[0].shape[:2] == (10, 21)  # floor/ceil of the float box
    want = _direct_scores(encoder.model, encoder.tokenizer, crops, texts, encoder.mean, encoder.std, 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert metric.compute() == pytest.approx(float(np.mean(got)), rel=1e-9)
    assert metric.std() == pytest.approx(float(np.std(got, ddof=1)), rel=1e-6)


def test_global_clip_score_uses_whole_image(encoder):
    images = _images(2, seed=1)
    texts = ["a dog", "a cat"]
    got = CLIPScore(encoder, region="global").update(images, texts)
    want = _direct_scores(encoder.model, encoder.tokenizer, images, texts, encoder.mean, encoder.std, 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_clip_score_formula_and_clipping():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [-1.0, 0.0], [4.0, 3.0]])
    np.testing.assert_allclose(clip_score(a, b), [100.0, 0.0, 96.0])
    t = clip_score(torch.tensor(a), torch.tensor(b))
    np.testing.assert_allclose(t.numpy(), [100.0, 0.0, 96.0], rtol=1e-6)


def test_states_merge_and_reset(encoder):
    a, b, whole = CLIPScore(encoder), CLIPScore(encoder), CLIPScore(encoder)
    a.update_scores([10.0, 20.0])
    b.update_scores([30.0])
    whole.update_scores([10.0, 20.0, 30.0])
    assert (a + b).compute() == whole.compute() == 20.0
    with pytest.raises(ValueError, match="different settings"):
        a.merge(CLIPScore(encoder, region="global"))
    a.reset()
    assert math.isnan(a.compute())


def test_local_needs_bbox(encoder):
    with pytest.raises(ValueError, match="bbox"):
        CLIPScore(encoder, region="local").update(_images(1), ["x"])


def test_pad_square_keeps_content_and_fills_mean():
    img = np.full((4, 10, 3), 7, dtype=np.uint8)
    sq = pad_to_square(img, (1, 2, 3))
    assert sq.shape == (10, 10, 3)
    assert (sq[3:7] == 7).all() and (sq[0] == [1, 2, 3]).all() and (sq[-1] == [1, 2, 3]).all()
    out = clip_pixels(img, 32, (0.5, 0.5, 0.5))
    assert out.shape == (32, 32, 3)


def test_spec_with_missing_weights_file(tiny_clip, tmp_path):
    from soebench.errors import MissingWeightsError

    config, _ = tiny_clip
    with pytest.raises(MissingWeightsError, match="do not exist") as info:
        load_clip(ClipSpec(config, None, str(tmp_path / "nope.pt")))
    assert "--clip-weights" in str(info.value)


def test_weights_folder_is_searched(tiny_clip, tmp_path):
    import shutil

    config, weights = tiny_clip
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(weights, folder / "model.pth")
    enc = load_clip(config, pretrained=None, weights=folder)
    assert enc.source["checkpoint"] == str(folder / "model.pth")


def test_open_clip_folder_with_config(tiny_clip, tmp_path):
    """A folder as open_clip saves it (open_clip_config.json + safetensors) loads via local-dir."""
    import json

    from safetensors.torch import save_file

    from tests.helpers.tiny_nets import TINY_CLIP_CONFIG

    _, weights = tiny_clip
    folder = tmp_path / "hf_style"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))
    state = torch.load(weights, weights_only=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    enc = load_clip(ClipSpec("ViT-B-32", "openai", str(folder)))
    assert enc.source["resolved_model"] == f"local-dir:{folder}"
    assert all(torch.equal(state[k], v) for k, v in enc.model.state_dict().items())
