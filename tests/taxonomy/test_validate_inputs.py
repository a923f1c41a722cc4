"""``soebench validate-taxonomy``'s inputs: rules files, output folders and split names."""

from __future__ import annotations

import json
import math

from pathlib import Path

import pytest

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.taxonomy.rules import DEFAULT_RULES, RuleSet, derived_features
from tests.factories import make_manifest


def _rules() -> dict:
    return json.loads(DEFAULT_RULES.to_json())


def _write(tmp_path, data, name: str = "rules.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _set(path: str, value):
    """A mutation of the default rules: ``path`` is ``key`` or ``key.sub`` or ``key.sub[i]``."""

    def mutate(data: dict) -> dict:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[key]
        if last.endswith("]"):
            key, index = last[:-1].split("[")
            node[key][int(index)] = value
        else:
            node[last] = value
        return data

    return mutate


def _drop(key: str):
    def mutate(data: dict) -> dict:
        del data[key]
        return data

    return mutate


# --------------------------------------------------------------------------- rules files


def test_every_derived_feature_is_a_known_feature_name():
    from soebench.taxonomy.rules import DERIVED_FEATURES

    evidence = {k: 1.0 for k in (
        "departure_ratio", "novel_share", "edge_ratio", "foreground_share", "contour_ratio", "contour_ratio_inner",
        "energy_ratio", "noise_ratio", "contour_step", "ring_texture", "contour_step_inner", "novel_median",
        "departure", "ring_spread", "energy_region", "fine_coarse_region", "fine_coarse_ring", "corr_ring",
        "corr_region", "coherence_ring", "coherence_region", "blockiness", "edge_region", "edge_ring", "noise_region",
        "noise_ring", "contour_step_ring", "sharpness_region", "sharpness_ring", "ring_change",
    )}
    assert set(derived_features(evidence)) == set(DERIVED_FEATURES)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set("presence.features[0]", "no_such_feature"), r"field 'presence\.features\[0\]': unknown feature 'no_such_feature'.*known features: log_departure_ratio"),
        (_set("presence.features[1]", "log_departure_ratio"), r"field 'presence\.features\[1\]': feature 'log_departure_ratio' is listed twice"),
        (_set("distortion.scale[0]", 0.0), r"field 'distortion\.scale\[0\]' must be positive"),
        (_set("distortion.scale[2]", -1.0), r"field 'distortion\.scale\[2\]' must be positive"),
        (_set("colour_share_min", math.nan), r"field 'colour_share_min' must be a finite number, got nan"),
        (_set("presence.mean[3]", math.inf), r"field 'presence\.mean\[3\]' must be a finite number, got inf"),
        (_set("presence.bias", math.nan), r"field 'presence\.bias' must be a finite number"),
        (_set("colour_share_min", 1.5), r"field 'colour_share_min' is a share of the colour votes, between 0 and 1; got 1\.5"),
        (_set("colour_share_min", None), r"field 'colour_share_min' must be a number, got null"),
        (_set("colour_share_min", "high"), r"field 'colour_share_min' must be a number, got 'high'"),
        (_set("colour_share_min", True), r"field 'colour_share_min' must be a number, got True"),
        (_set("distortion.weight", "1,2"), r"field 'distortion\.weight' must be a list of numbers, one per feature, got '1,2'"),
        (_set("distortion.weight[1]", "2"), r"field 'distortion\.weight\[1\]' must be a number, got '2'"),
        (_set("presence", [1, 2]), r"field 'presence' must be a JSON object of score fields features, mean, scale, weight, bias; got a JSON list"),
        (_set("presence.features", []), r"field 'presence\.features' must be a non-empty list of feature names"),
        (_set("fitted_on", 3), r"field 'fitted_on' must be a string, got 3"),
        (_set("notes", "none"), r"field 'notes' must be a JSON object, got 'none'"),
        (_drop("colour_share_min"), r"required field 'colour_share_min' is missing; required rules fields: presence, distortion, colour_share_min"),
        (_drop("presence"), r"required field 'presence' is missing"),
        (_set("colour_shar_min", 0.1), r"unknown field 'colour_shar_min'; did you mean 'colour_share_min'\?"),
        (_set("presence.biass", 0.1), r"unknown field 'presence\.biass'; did you mean 'presence\.bias'\?"),
    ],
)
def test_a_bad_rules_file_is_an_input_error_naming_the_file_and_the_field(tmp_path, mutate, expected):
    path = _write(tmp_path, json.dumps(mutate(_rules())))  # NaN/inf are written as JSON's NaN/Infinity
    with pytest.raises(InputError, match=r"rules\.json: not a taxonomy rules file \(" + expected) as info:
        RuleSet.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", r"not valid JSON: Expecting value: line 1 column 1"),
        ('{"a": ', r"not valid JSON"),
        ("[1, 2]", r"expected a JSON object of rules fields presence, distortion, colour_share_min, fitted_on, notes; got a JSON list"),
        ('{"manifest": {}}', r"unknown field 'manifest'"),
    ],
)
def test_a_rules_file_that_is_not_a_rules_object_says_what_it_is(tmp_path, text, expected):
    with pytest.raises(InputError, match=r"rules\.json: not a taxonomy rules file \(" + expected):
        RuleSet.load(_write(tmp_path, text))


def test_a_binary_rules_file_is_an_input_error(tmp_path):
    path = tmp_path / "rules.json"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(InputError, match=r"rules\.json: not a taxonomy rules file \(not UTF-8 text"):
        RuleSet.load(path)


def test_a_whole_validation_json_gives_its_rules_block(tmp_path):
    whole = {"manifest": {"objects": 3}, "settings": {"seed": 0}, "splits": [], "rules": _rules()}
    assert RuleSet.load(_write(tmp_path, whole, "validation.json")) == DEFAULT_RULES
    whole["rules"]["distortion"]["scale"][0] = 0
    with pytest.raises(InputError, match=r"validation\.json: not a taxonomy rules file \(field 'rules\.distortion\.scale\[0\]' must be positive"):
        RuleSet.load(_write(tmp_path, whole, "validation.json"))


def test_cli_renders_a_bad_rules_file_as_one_line_and_exit_2(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    rules = _write(tmp_path, _set("presence.features[0]", "no_such_feature")(_rules()))
    code = main(["validate-taxonomy", "--manifest", str(manifest), "--limit", "1", "-q", "--rules", str(rules)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert "rules.json" in err and "presence.features[0]" in err and "no_such_feature" in err


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize("name", ["cases.csv", "confusion.png"])
def test_any_existing_output_is_refused_without_overwrite(tmp_path, capsys, name):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    out = tmp_path / "val"
    out.mkdir()
    (out / name).write_bytes(b"keep me")
    args = ["validate-taxonomy", "--manifest", str(manifest), "--limit", "1", "--out", str(out), "-q"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{name} already exists" in err and "--overwrite" in err
    assert (out / name).read_bytes() == b"keep me" and not (out / "validation.json").exists()
    assert main([*args, "--overwrite"]) == 0
    assert (out / name).read_bytes() != b"keep me"


@pytest.mark.parametrize("below", ["", "sub"])
def test_out_that_is_or_lies_under_a_file_is_a_one_line_error(tmp_path, capsys, below):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    out = afile / below if below else afile
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--limit", "1", "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{afile} is a file, not a folder" in err
    assert afile.read_text() == "not a folder"


def test_out_in_a_folder_that_cannot_be_written_fails_before_the_cases(tmp_path, capsys, monkeypatch):
    import os

    import soebench.taxonomy.validate as validate_module

    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == locked else real(p, mode, **k))
    monkeypatch.setattr(validate_module, "validate", lambda *a, **k: pytest.fail("cases built before --out was checked"))
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--out", str(locked / "tax"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"folder {locked} is not writable" in err and "Traceback" not in err


# --------------------------------------------------------------------------- splits


def test_a_split_the_manifest_lacks_is_named_with_the_splits_it_has(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "-q", "--split", "train2017"]) == 2
    err = capsys.readouterr().err
    assert "--split train2017" in err and "has no such split (its splits: test)" in err


def test_a_tuning_split_the_manifest_lacks_is_refused(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "-q", "--tuning-split", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "--tuning-split nosuch" in err and "has no such split (its splits: test)" in err


def test_refit_without_the_default_tuning_split_fails_before_building_cases(tmp_path, capsys, monkeypatch):
    import soebench.taxonomy.cases as cases

    monkeypatch.setattr(cases, "iter_cases", lambda *a, **k: pytest.fail("cases were built"))
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "-q", "--refit"]) == 2
    err = capsys.readouterr().err
    assert "tuning split 'val2017'" in err and "its splits: test" in err and "--tuning-split" in err


def test_an_existing_tuning_split_is_reported_as_tuning(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=2, size=(200, 160), seed=3)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--limit", "1", "--json", "--tuning-split", "test"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["tuning_split"] == "test"
    assert [s["role"] for s in report["splits"]] == ["tuning"]
