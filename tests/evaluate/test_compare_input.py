"""``soebench compare``: summaries without the keys it reads are one InputError; ``--json`` gives
numbers (non-finite ones as summary.json writes them), the table keeps its formatting."""

from __future__ import annotations

import json
import math

import pytest

from soebench.cli.app import main
from soebench.errors import InputError
from soebench.evaluation import evaluate
from soebench.run.compare import compare_runs, comparison_table, comparison_values
from soebench.run.results import write_json
from tests.evaluate.conftest import BG


def _summary(bg_psnr, bg_mse, fid=1.5):
    """A summary with the keys compare reads (written as evaluate writes them)."""
    return {
        "run_name": None,
        "prompt_key": "prompt_short",
        "manifest": {"sha256": "ab" * 32, "num_samples": 10},
        "metrics": {"means": {"bg_psnr": bg_psnr, "bg_mse": bg_mse}, "by_size_bucket": {},
                    "distances": {"fid_crop": {"value": fid, "n_real": 10, "n_fake": 10, "mode": "clean"}}},
        "taxonomy": {"available": True, "fractions": {"ok": 0.75, "missing": 0.25}},
        "errors": {"count": 0, "examples": []},
    }


def _mean(mean, lo, hi, n, n_nan=0, **extra):
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "n_nan": n_nan, "level": 0.95, "n_resamples": 1000, **extra}


@pytest.fixture
def two_runs(tmp_path):
    a, b = tmp_path / "oracle", tmp_path / "tiny"
    for run, s in ((a, _summary(_mean(math.inf, math.inf, math.inf, 10, n_inf=10), _mean(0.0, 0.0, 0.0, 10), 0.0)),
                   (b, _summary(_mean(41.25, 40.0, 42.5, 4, n_inf=6), _mean(5.684e-14, 0.0, 1.1e-13, 10), math.nan))):
        run.mkdir()
        write_json(run / "summary.json", s)
    return a, b


@pytest.mark.parametrize("content, missing", [
    ("{}", "metrics, manifest, prompt_key, errors, taxonomy"),
    ('{"metrics": {"means": {}}, "manifest": {"sha256": "x"}, "prompt_key": "p", "errors": {}, "taxonomy": {}}',
     "metrics.by_size_bucket, manifest.num_samples, errors.count"),
    ('{"metrics": [], "manifest": {"sha256": "x", "num_samples": 1}, "prompt_key": "p", "errors": {"count": 0},'
     ' "taxonomy": {}}', "metrics (not an object)"),
])
def test_summary_without_the_keys_compare_reads(two_runs, content, missing):
    a, b = two_runs
    (b / "summary.json").write_text(content)
    with pytest.raises(InputError) as err:
        compare_runs([a, b])
    assert err.value.message == f"{b / 'summary.json'} is not a soebench summary: missing key(s) {missing}"


def test_summary_that_is_not_an_object(two_runs):
    a, b = two_runs
    (b / "summary.json").write_text("[]")
    with pytest.raises(InputError, match=r"expected a soebench summary \(a JSON object\), got list"):
        compare_runs([a, b])


def test_cli_renders_a_keyless_summary_as_one_line(two_runs, capsys):
    a, b = two_runs
    (b / "summary.json").write_text("{}")
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyError" not in err
    assert err.strip().splitlines() == [f"error: {b / 'summary.json'} is not a soebench summary: missing key(s) "
                                        "metrics, manifest, prompt_key, errors, taxonomy"]


def test_cli_json_gives_numbers(two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a), str(b), "--json"]) == 0
    out = capsys.readouterr().out
    assert "Infinity" not in out and "NaN" not in out  # standard JSON
    values = json.loads(out)["values"]
    assert values["bg_psnr"]["oracle"] == _mean("inf", "inf", "inf", 10, n_inf=10)
    assert values["bg_psnr"]["tiny"] == _mean(41.25, 40.0, 42.5, 4, n_inf=6)
    assert values["bg_mse"]["tiny"] == _mean(5.684e-14, 0.0, 1.1e-13, 10, n_inf=0)  # not "5.684e-14"
    assert values["fid_crop"] == {"oracle": 0.0, "tiny": None}
    assert values["taxonomy: ok"] == {"oracle": 0.75, "tiny": 0.75}
    assert values["samples"] == {"oracle": 10, "tiny": 10} and values["errors"] == {"oracle": 0, "tiny": 0}


def test_the_table_keeps_its_formatting(two_runs, capsys):
    a, b = two_runs
    result = compare_runs([a, b])
    rows = {r[0]: r[1:] for r in result["rows"]}
    assert rows["bg_psnr"] == ["inf (n=10, 10 inf)", "41.25 [40, 42.5] (n=4, 6 inf)"]
    assert rows["bg_mse"] == ["0 (n=10)", "5.684e-14 [0, 1.1e-13] (n=10)"]
    assert rows["fid_crop"] == ["0", "n/a"] and rows["samples"] == ["10", "10"]
    assert list(result["values"]) == [r[0] for r in result["rows"]]  # one value per table cell
    assert main(["compare", str(a), str(b)]) == 0
    assert "inf (n=10, 10 inf)" in capsys.readouterr().out


def test_values_of_in_memory_summaries_are_standard_json():
    """Summaries straight from evaluate hold float inf/NaN: the values follow summary.json."""
    s = _summary(_mean(math.inf, math.inf, math.inf, 3, n_inf=3), _mean(math.nan, math.nan, math.nan, 0, 3))
    values = comparison_values({"run": s})
    assert values["bg_psnr"]["run"]["mean"] == "inf" and values["bg_mse"]["run"]["mean"] is None
    json.dumps(values, allow_nan=False)
    assert comparison_table({"run": s})[1][0] == ["bg_psnr", "inf (n=3, 3 inf)"]


def test_json_of_real_runs_matches_their_summaries(tmp_path, manifest6, capsys):
    a, b = tmp_path / "original", tmp_path / "mean-fill"
    evaluate(manifest6, "original", a, metrics=BG, progress=False, report=False)
    evaluate(manifest6, "mean-fill", b, metrics=BG, progress=False, report=False)
    assert main(["compare", str(a), str(b), "--json"]) == 0
    values = json.loads(capsys.readouterr().out)["values"]
    for run in (a, b):
        means = json.loads((run / "summary.json").read_text())["metrics"]["means"]
        for name in BG:
            assert values[name][run.name] == {"n_inf": 0, **means[name]}
    assert values["bg_psnr"]["original"]["mean"] == "inf" and values["bg_mse"]["original"]["mean"] == 0.0
