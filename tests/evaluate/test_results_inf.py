"""Infinite bg_psnr (untouched background) in the means and in the size/category breakdowns:
counted in ``n_inf``, never in ``n_nan``, the same way for the run and for each group."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from soebench.evaluation import evaluate
from soebench.run.report import fmt_ci
from soebench.run.results import breakdown, metric_means
from tests.evaluate.conftest import BG

INF = math.inf


def _frame(psnr, buckets):
    return pd.DataFrame({"bg_psnr": np.asarray(psnr, dtype=np.float64), "size_bucket": buckets})


@pytest.mark.parametrize("psnr, n, n_nan, n_inf", [
    ([INF] * 4, 4, 0, 4),                 # the oracle: nothing finite, infinities kept (was n_nan -4)
    ([INF, INF, math.nan], 2, 1, 2),      # nothing finite, one real NaN
    ([INF, 30.0, math.nan], 1, 1, 1),     # infinities dropped from the mean, the NaN still counted
    ([30.0, 20.0, math.nan], 2, 1, 0),
])
def test_means_count_nan_and_inf_apart(psnr, n, n_nan, n_inf):
    d = metric_means(_frame(psnr, ["small"] * len(psnr)), ["bg_psnr"])["bg_psnr"]
    assert (d["n"], d["n_nan"], d.get("n_inf", 0)) == (n, n_nan, n_inf)


def test_all_infinite_group_next_to_a_finite_one():
    frame = _frame([30.0, INF, INF, INF], ["tiny", "tiny", "small", "small"])
    groups = breakdown(frame, ["bg_psnr"], "size_bucket", ["tiny", "small"])["bg_psnr"]
    assert list(groups) == ["tiny", "small"]
    small = groups["small"]
    assert (small["mean"], small["n"], small["n_nan"], small["n_inf"]) == (INF, 2, 0, 2)
    tiny = groups["tiny"]
    assert (tiny["mean"], tiny["n"], tiny["n_nan"], tiny["n_inf"]) == (30.0, 1, 0, 1)
    assert fmt_ci(small) == "inf (n=2, 2 inf)"


def test_breakdown_groups_match_the_means_of_their_rows():
    """Each group is summarised exactly as metric_means summarises the run (same seed)."""
    rng = np.random.default_rng(0)
    psnr = np.where(rng.random(40) < 0.4, INF, rng.uniform(20, 40, 40))
    psnr[[3, 17]] = math.nan
    buckets = rng.choice(["tiny", "small", "medium"], 40).tolist()
    psnr[[i for i, b in enumerate(buckets) if b == "medium"]] = INF
    frame = _frame(psnr, buckets)
    groups = breakdown(frame, ["bg_psnr"], "size_bucket", seed=3)["bg_psnr"]
    assert list(groups) == ["medium", "small", "tiny"]  # sorted without an order
    for name, d in groups.items():
        assert d == metric_means(frame[frame["size_bucket"] == name], ["bg_psnr"], seed=3)["bg_psnr"]


class OneTouched:
    """Copies the input, but inverts one background row of one sample (far from its object)."""

    name = "one-touched"

    def __init__(self, sample_id):
        self.sample_id = sample_id

    def cache_token(self):
        return {"adapter": "one-touched", "sample": self.sample_id}

    def inpaint(self, requests):
        out = []
        for r in requests:
            img = r.image.copy()
            if r.sample_id == self.sample_id:
                rows = np.arange(r.mask.shape[0])
                object_rows = rows[r.mask.any(axis=1)]
                far = int(rows[np.argmax([np.abs(object_rows - y).min() for y in rows])])
                img[far] = 255 - img[far]
            out.append(img)
        return out


def test_summary_and_report_of_one_touched_background(tmp_path, manifest6):
    import pyarrow.parquet as pq

    first = pq.read_table(manifest6).column("sample_id")[0].as_py()
    res = evaluate(manifest6, OneTouched(first), tmp_path / "run", metrics=BG, progress=False)
    frame = res.samples
    assert np.isfinite(frame["bg_psnr"]).sum() == 1 and np.isinf(frame["bg_psnr"]).sum() == 5
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    overall = summary["metrics"]["means"]["bg_psnr"]
    assert (overall["n"], overall["n_nan"], overall["n_inf"]) == (1, 0, 5)
    touched = frame.loc[frame["sample_id"] == first].iloc[0]
    for by in ("size_bucket", "category"):
        groups = summary["metrics"][f"by_{by}"]["bg_psnr"]
        assert sum(g.get("n_inf", 0) for g in groups.values()) == 5
        for name, g in groups.items():
            assert g["n_nan"] == 0
            if name != touched[by]:  # only untouched backgrounds: infinite, not "no value"
                assert g["mean"] == "inf" and g["n"] == g["n_inf"] == int((frame[by] == name).sum())
    report = (tmp_path / "run" / "report.md").read_text()
    by_size = report.split("## By object size")[1].split("## ")[0]
    assert "(n=0)" not in by_size and "n/a" not in by_size and " inf)" in by_size


def test_oracle_summary_has_no_negative_nan_count(tmp_path, manifest6):
    evaluate(manifest6, "original", tmp_path / "run", metrics=BG, progress=False, report=False)
    m = json.loads((tmp_path / "run" / "summary.json").read_text())["metrics"]
    assert m["means"]["bg_psnr"] == {**m["means"]["bg_psnr"], "mean": "inf", "n": 6, "n_nan": 0, "n_inf": 6}
    for by in ("by_size_bucket", "by_category"):
        for g in m[by]["bg_psnr"].values():
            assert g["mean"] == "inf" and g["n_nan"] == 0 and g["n_inf"] == g["n"]
