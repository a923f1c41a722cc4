"""The taxonomy columns and summary: wiring with a stand-in classifier, then the real one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from soebench.evaluation import evaluate
from tests.evaluate.conftest import BG


@dataclass
class _Result:
    label: str
    evidence: dict


def _stand_in(original, generated, mask, *, expected_color=None, bbox=None, judge=None):
    """'missing' when the masked pixels changed a lot, else 'ok'; evidence has a number and a string."""
    change = float(np.abs(original[mask].astype(float) - generated[mask].astype(float)).mean())
    return _Result("missing" if change > 10 else "ok",
                   {"mask_change": np.float32(change), "expected": expected_color, "box_w": bbox[2]})


def test_failure_columns_and_summary(tmp_path, manifest6, monkeypatch):
    monkeypatch.setattr("soebench.evaluation._taxonomy", lambda: (_stand_in, None))
    res = evaluate(manifest6, "opencv-telea", tmp_path / "telea", metrics=BG, progress=False)
    frame = res.samples
    assert set(frame["failure"]) == {"missing"}
    ev = [json.loads(e) for e in frame["failure_evidence"]]
    assert all(set(e) == {"mask_change", "expected", "box_w"} for e in ev)
    assert [e["expected"] for e in ev] == list(frame["prompt"].str.split().str[0])  # colour of the row
    np.testing.assert_allclose(frame["evidence_mask_change"], [e["mask_change"] for e in ev])
    assert "evidence_expected" not in frame.columns  # only numbers become columns
    tax = res.summary["taxonomy"]
    assert tax["available"] and tax["counts"]["missing"] == 6 and tax["fractions"]["missing"] == 1.0
    assert sum(sum(c.values()) for c in tax["by_size_bucket"].values()) == 6
    assert (tmp_path / "telea" / "plots" / "taxonomy.png").is_file()
    oracle = evaluate(manifest6, "original", tmp_path / "orig", metrics=BG, progress=False, report=False)
    assert set(oracle.samples["failure"]) == {"ok"}


def test_real_classifier_if_installed(tmp_path, manifest6):
    taxonomy = pytest.importorskip("soebench.taxonomy")
    if not hasattr(taxonomy, "classify"):
        pytest.skip("soebench.taxonomy.classify not available yet")
    oracle = evaluate(manifest6, "original", tmp_path / "orig", metrics=BG, progress=False, report=False)
    removed = evaluate(manifest6, "opencv-telea", tmp_path / "telea", metrics=BG, progress=False, report=False)
    labels = {"ok", "missing", "mismatch", "distortion"}
    assert set(oracle.samples["failure"]) <= labels and set(removed.samples["failure"]) <= labels
    assert (oracle.samples["failure"] == "ok").sum() >= 5  # the input itself is a correct edit
    assert (removed.samples["failure"] == "missing").sum() >= 4  # classical inpainting removes the object
    for text in removed.samples["failure_evidence"]:
        assert isinstance(json.loads(text), dict)


def test_taxonomy_breakdown_runs_from_small_to_large_buckets():
    import pandas as pd

    from soebench.run.results import taxonomy_summary

    frame = pd.DataFrame({
        "error": [None] * 5, "failure": ["ok", "missing", "ok", "mismatch", "ok"],
        "size_bucket": ["large", "tiny", "medium", "tiny", "small"], "category": ["cup"] * 5,
    })
    tax = taxonomy_summary(frame)
    assert list(tax["by_size_bucket"]) == ["tiny", "small", "medium", "large"]
    assert tax["by_size_bucket"]["tiny"] == {"ok": 0, "missing": 1, "mismatch": 1, "distortion": 0}


def test_classifier_failure_on_one_sample_is_recorded_and_the_run_goes_on(tmp_path, manifest6, monkeypatch):
    import pandas as pd

    from soebench.manifest.io import read_manifest

    bad = read_manifest(manifest6).table.column("sample_id").to_pylist()[2]
    seen = []

    def fragile(original, generated, mask, *, expected_color=None, bbox=None, judge=None):
        seen.append(1)
        if len(seen) == 3:
            raise ZeroDivisionError("empty ring")
        return _stand_in(original, generated, mask, expected_color=expected_color, bbox=bbox)

    monkeypatch.setattr("soebench.evaluation._taxonomy", lambda: (fragile, None))
    res = evaluate(manifest6, "opencv-telea", tmp_path / "run", metrics=BG, progress=False, report=False)
    frame = res.samples.set_index("sample_id")
    assert frame["failure"].isna().sum() == 1 and pd.isna(frame.loc[bad, "failure"])
    assert "ZeroDivisionError: empty ring" in json.loads(frame.loc[bad, "failure_evidence"])["classifier_error"]
    assert frame["error"].isna().all() and not np.isnan(frame.loc[bad, "bg_mse"])
    assert res.summary["taxonomy"]["unlabelled"] == 1 and res.summary["taxonomy"]["counts"]["missing"] == 5
