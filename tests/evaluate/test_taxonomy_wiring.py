"""The taxonomy columns and summary: wiring with a stand-in classifier, then the real one."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from soebench.evaluate import evaluate
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
    monkeypatch.setattr("soebench.evaluate._taxonomy", lambda: (_stand_in, None))
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
