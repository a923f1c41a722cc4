"""TrainConfig: YAML round trip, documented fields, validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from soebench.errors import ConfigError
from soediff.config import CSDSettings, LoraSettings, TrainConfig, VaeSettings, describe_fields


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(manifest="m.parquet", pretrained="sd", out="runs/x", max_steps=7)
    cfg.csd.weight = 0.25
    cfg.lora.blocks = ["mid_block"]
    cfg.vae.enabled = False
    path = tmp_path / "train.yaml"
    path.write_text(cfg.to_yaml())
    assert TrainConfig.from_yaml(path) == cfg


def test_partial_yaml_keeps_defaults(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 3\ncsd:\n  weight: 2.0\n")
    cfg = TrainConfig.from_yaml(path)
    assert cfg.max_steps == 3 and cfg.csd.weight == 2.0
    assert cfg.csd.enabled is True and cfg.learning_rate == 3e-7 and cfg.lora.rank == 64


def test_every_field_documented():
    rows = describe_fields()
    names = {name for name, _, _ in rows}
    assert {"learning_rate", "lora.rank", "csd.weight", "vae.learning_rate"} <= names
    assert all(doc for _, _, doc in rows)
    sections = {"lora": LoraSettings, "csd": CSDSettings, "vae": VaeSettings}
    expected = sum(len(dataclasses.fields(sections[f.name])) if f.name in sections else 1
                   for f in dataclasses.fields(TrainConfig))
    assert len(rows) == expected


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("max_step: 3\n", "did you mean 'max_steps'"),
        ("csd:\n  wieght: 1\n", "did you mean 'weight'"),
        ("resolution: big\n", "'resolution' must be int"),
        ("csd: 3\n", "must be a mapping"),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_yaml_errors(tmp_path, yaml_text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_yaml(path)


def test_validate_lists_every_problem():
    cfg = TrainConfig(manifest="m", pretrained="p", resolution=100, loss="l3", mixed_precision="fp8")
    cfg.csd.noise_resampling = "bilinear"
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    text = str(err.value)
    for part in ("resolution", "loss 'l3'", "mixed_precision 'fp8'", "csd.noise_resampling"):
        assert part in text


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("template", "message"),
    [("a {colour} {category}", "unknown field {colour}"), ("a {category", "not a valid format string"),
     ("{} thing", "unknown field {}")],
)
def test_prompt_template_is_checked(template, message):
    cfg = TrainConfig(manifest="m", pretrained="p", prompt_template=template)
    with pytest.raises(ConfigError, match="prompt_template") as err:
        cfg.validate()
    assert message in str(err.value)
    TrainConfig(manifest="m", pretrained="p", prompt_template="a photo of a small {color} {category}").validate()


def test_resume_refuses_a_changed_config(tmp_path):
    from soediff.trainer import check_resume_config

    saved = TrainConfig(manifest="m", pretrained="p", max_steps=10)
    (tmp_path / "config.yaml").write_text(saved.to_yaml())
    check_resume_config(saved.replace(max_steps=20, log_every=5, manifest="moved/m"), tmp_path / "config.yaml")
    changed = saved.replace(learning_rate=1e-4)
    changed.lora.rank = 8
    assert saved.lora.rank == 64  # replace copies the sections too
    with pytest.raises(ConfigError, match="differs") as err:
        check_resume_config(changed, tmp_path / "config.yaml")
    assert "learning_rate: 3e-07 -> 0.0001" in str(err.value) and "lora.rank: 64 -> 8" in str(err.value)


def test_written_defaults_say_what_each_option_means_and_read_back():
    import dataclasses

    import yaml

    from soediff.config import TrainConfig

    cfg = TrainConfig()
    text = cfg.to_yaml(comments=True)
    assert "# LoRA rank r (SOEDiff: 64).\n  rank: 64" in text
    assert "# SO-LoRA settings.\nlora:" in text
    assert TrainConfig.from_dict(yaml.safe_load(text)).to_dict() == cfg.to_dict()
    documented = [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("doc")]
    assert all(f"# {f.metadata['doc']}\n{f.name}:" in text for f in documented)
