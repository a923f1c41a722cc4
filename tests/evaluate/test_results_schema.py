"""samples.parquet has one schema whatever happened in the run, so runs concatenate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soebench.evaluation import evaluate
from tests.evaluate.conftest import BG


class _FailsFirst:
    name = "fails-first"

    def cache_token(self):
        return None

    def inpaint(self, requests):
        if any(r.sample_id == self.failing for r in requests):
            raise RuntimeError("out of memory")
        return [np.asarray(r.image) for r in requests]


def test_runs_with_and_without_errors_share_one_schema(tmp_path, manifest6):
    opts = dict(metrics=BG, batch_size=1, progress=False, report=False)
    clean = evaluate(manifest6, "original", tmp_path / "clean", **opts)
    adapter = _FailsFirst()
    adapter.failing = clean.samples["sample_id"].iloc[0]
    failing = evaluate(manifest6, adapter, tmp_path / "failing", **opts)
    assert clean.samples["error"].isna().all() and failing.samples["error"].notna().sum() == 1
    a, b = pq.read_table(tmp_path / "clean" / "samples.parquet"), pq.read_table(tmp_path / "failing" / "samples.parquet")
    shared = [n for n in a.schema.names if n in b.schema.names]
    assert a.schema.field("error").type == b.schema.field("error").type == pa.large_string()
    assert pa.concat_tables([a.select(shared), b.select(shared)]).num_rows == 12
