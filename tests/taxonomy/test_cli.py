"""``soebench validate-taxonomy`` on a small synthetic manifest."""

from __future__ import annotations

import json

from soebench.cli.app import main
from tests.factories import make_manifest


def test_validate_taxonomy_prints_tables_and_writes_outputs(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=4, size=(200, 160), seed=3)
    out = tmp_path / "val"
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "truth \\ predicted" in printed and "held-out" in printed and "accuracy per method" in printed
    report = json.loads((out / "validation.json").read_text())
    (split,) = report["splits"]
    assert split["split"] == "test" and split["role"] == "held-out"
    assert split["n"] == 16 and sum(map(sum, split["confusion"])) == 16
    assert report["manifest"]["sha256"] and report["settings"]["seed"] == 0
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "cases.csv").read_text().strip().splitlines()) == 17

    # an existing output is refused without --overwrite, and nothing is lost
    before = (out / "validation.json").read_text()
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "validation.json").read_text() == before


def test_validate_taxonomy_json_limit_and_refit_errors(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=4, size=(200, 160), seed=4)
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--limit", "2", "--json", "--seed", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["objects"] == 2 and report["settings"]["seed"] == 5
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--refit", "--quiet"]) == 2
    assert "tuning split" in capsys.readouterr().err
    assert main(["validate-taxonomy", "--manifest", str(tmp_path / "nope.parquet")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_validate_taxonomy_cross_validates_the_refit_on_the_tuning_split(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n=8, size=(200, 160), seed=5)
    args = ["validate-taxonomy", "--manifest", str(manifest), "--tuning-split", "test", "--refit", "--cv", "2", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    roles = {s["role"]: s for s in report["splits"]}
    assert set(roles) == {"tuning", "2-fold cross-validation"} and report["settings"]["cv_folds"] == 2
    assert roles["2-fold cross-validation"]["n"] == roles["tuning"]["n"] == 32
    assert main(["validate-taxonomy", "--manifest", str(manifest), "--cv", "2", "--quiet"]) == 2
    assert "needs --refit" in capsys.readouterr().err
