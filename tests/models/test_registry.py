"""Registry errors and --model-args parsing into typed configs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from soebench.errors import ConfigError
from soebench.models import MODELS, Registry, build_model, config_from_args, parse_model_args
from soebench.models.baselines import OriginalBaseline


@dataclass(frozen=True)
class Cfg:
    path: str
    steps: int = 20
    guidance: float = 7.5
    lora: str | None = None
    fast: bool = False


def test_builtin_names():
    assert set(MODELS.names()) >= {
        "diffusers", "python", "command", "folder", "original", "opencv-telea", "opencv-ns", "mean-fill"
    }


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError) as err:
        MODELS.get("opencv-tela")
    assert "unknown model 'opencv-tela'" in str(err.value)
    assert "did you mean opencv-telea" in err.value.hint


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(ConfigError) as err:
        MODELS.get("zzzzzz")
    assert "did you mean" not in err.value.hint and "mean-fill" in err.value.hint


def test_duplicate_registration_is_an_error():
    reg = Registry()
    reg.register("a", Cfg, lambda c: c)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", Cfg, lambda c: c)


def test_config_must_be_a_dataclass():
    with pytest.raises(TypeError):
        Registry().register("a", dict, lambda c: c)


def test_parse_model_args_splits_only_before_keys():
    assert parse_model_args("path=/m,steps=20,argv=python x.py --a 1,2") == {
        "path": "/m", "steps": "20", "argv": "python x.py --a 1,2"
    }
    assert parse_model_args("") == {} and parse_model_args(None) == {}
    assert parse_model_args({"a": 1}) == {"a": 1}
    assert parse_model_args("lora-scale=0.5") == {"lora_scale": "0.5"}


@pytest.mark.parametrize("text, match", [("path", "key=value"), ("a=1,a=2", "given twice")])
def test_parse_model_args_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_model_args(text)


def test_config_types_are_converted():
    cfg = config_from_args(Cfg, "path=/m,steps=4,guidance=2,lora=none,fast=yes")
    assert cfg == Cfg("/m", 4, 2.0, None, True)
    assert isinstance(cfg.guidance, float)
    assert config_from_args(Cfg, "path=/m,lora=/l").lora == "/l"


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        config_from_args(Cfg, "path=/m,step=3", adapter="x")
    assert "unknown model argument 'step'" in str(err.value)
    assert "did you mean 'steps'" in err.value.hint
    assert "path, steps, guidance, lora, fast" in err.value.hint


@pytest.mark.parametrize("text, match", [
    ("path=/m,steps=abc", "expected an integer"),
    ("path=/m,steps=2.5", "expected an integer"),
    ("path=/m,guidance=high", "expected a number"),
    ("path=/m,fast=maybe", "expected a boolean"),
    ("steps=2", "needs model argument"),
])
def test_bad_values_are_config_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        config_from_args(Cfg, text)


def test_build_model_by_name_and_object():
    adapter, args = build_model("opencv-ns", "radius=5")
    assert adapter.name == "opencv-ns" and args == {"radius": 5.0, "dilate": 2}
    obj = OriginalBaseline()
    same, args = build_model(obj)
    assert same is obj and args == {}
    with pytest.raises(ConfigError, match="only used with a registered model name"):
        build_model(obj, "a=1")


def test_diffusers_config_validation():
    with pytest.raises(ConfigError, match="multiple of 8"):
        MODELS.create("diffusers", "path=/nowhere,resolution=60")
    with pytest.raises(ConfigError, match="dtype"):
        MODELS.create("diffusers", "path=/nowhere,dtype=float8")


def test_fingerprints_tell_callables_apart():
    from soebench.models.python_adapter import fingerprint

    def make(offset):
        return lambda rs: [r + offset for r in rs]

    assert fingerprint(make(1)) == fingerprint(make(1))
    assert fingerprint(make(1)) != fingerprint(make(2))  # closure values count
    assert fingerprint(lambda rs: rs) != fingerprint(lambda rs: list(rs))  # so does the code

    class Model:
        def __init__(self, strength):
            self.strength = strength

        def inpaint(self, requests):
            return requests

    assert fingerprint(Model(1)) == fingerprint(Model(1)) != fingerprint(Model(2))
    assert fingerprint(Model(1).inpaint) == fingerprint(Model(1).inpaint) != fingerprint(Model(3).inpaint)


def test_objects_take_a_version_and_nothing_else():
    obj = OriginalBaseline()
    with pytest.raises(ConfigError, match="a=1 .*only used with a registered model name|a are only used"):
        build_model(obj, "a=1")
    adapter, args = build_model(lambda rs: rs, {"version": "3", "per_sample": "true"})
    assert args == {"per_sample": True, "version": "3"}  # converted, as a registered adapter's are
    assert adapter.cache_token()["version"] == "3" and adapter.per_sample is True


def test_parse_model_args_drops_a_trailing_comma():
    assert parse_model_args("path=x,") == {"path": "x"}
    assert parse_model_args("path=x, steps=2 , ") == {"path": "x", "steps": "2"}
    assert parse_model_args(",") == {}
