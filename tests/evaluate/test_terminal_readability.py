"""What the terminal tables of ``evaluate`` and ``compare`` say beside their numbers: how to provide
the weights of a skipped metric, report.md's caveats of a FID on few samples and of a negative KID
(as footnotes), and taxonomy rates in one format (percentages)."""

from __future__ import annotations

import html
from types import SimpleNamespace

from soebench.cli.app import main
from soebench.cli.evaluate import _print_summary
from soebench.run.compare import compare_runs
from soebench.run.results import write_json

FID_REASON = "fewer samples than feature dimensions (4 <= 2048): covariances are singular and FID is biased upward"


def _cell(out: str, row: str) -> list[str]:
    """The cells of a rich table's row, by its first cell."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == row:
            return cells[1:]
    raise AssertionError(f"no row {row!r} in\n{out}")


def test_evaluate_says_how_to_provide_the_weights_it_lacks(tmp_path, manifest6, tiny_nets, monkeypatch, capsys):
    monkeypatch.setenv("SOEBENCH_INCEPTION_WEIGHTS", tiny_nets["inception_weights"])
    for cache in ("XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # no cached CLIP
        monkeypatch.setenv(cache, str(tmp_path / "empty-cache"))
    args = ["evaluate", "-m", str(manifest6), "--out", str(tmp_path / "run"), "--model", "original", "--limit", "3",
            "--quiet", "--no-report"]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    hint = [i for i, line in enumerate(lines) if line.startswith("  how to provide the weights: ")]
    assert hint, out
    # the two ways the hint gives: a local file, or fetching it into the cache
    assert "pass --clip-weights PATH" in lines[hint[0]] and "open_clip.create_model('ViT-B-32'" in lines[hint[0]]
    # under the line naming the metrics, said once for the two that lack the same weights
    assert [line for line in lines if line.startswith("skipped")] == [lines[hint[0] - 1]] and len(hint) == 1
    assert lines[hint[0] - 1].startswith("skipped clip_score_local, clip_score_global: CLIP weights for ViT-B-32/openai")
    # 3 samples under the tiny Inception's 16 features: the caveat report.md writes beside the FID
    assert _cell(out, "fid_crop")[0].endswith(" *")
    assert "* fewer samples than feature dimensions (3 <= 16): covariances are singular" in out


def _summary(kid_crop: float, kid_full: float, fid_reason: str | None = FID_REASON) -> dict:
    distances = {"fid_crop": {"value": 80.0, "n_real": 4, "n_fake": 4, "mode": "clean", "reason": fid_reason},
                 "kid_crop": {"value": kid_crop, "n_real": 4, "n_fake": 4, "mode": "clean"},
                 "kid_full": {"value": kid_full, "n_real": 4, "n_fake": 4, "mode": "clean"}}
    return {"run_name": None, "prompt_key": "color_label", "model": {"name": "m"},
            "manifest": {"sha256": "ab" * 32, "num_samples": 4},
            "metrics": {"means": {}, "by_size_bucket": {}, "distances": distances},
            "taxonomy": {"available": True, "fractions": {"ok": 0.75, "missing": 0.25}},
            "errors": {"count": 0, "examples": []}}


def test_evaluate_footnotes_a_negative_kid(capsys):
    summary = _summary(kid_crop=-0.03, kid_full=0.01)
    _print_summary(SimpleNamespace(summary=summary, run_dir="run", adapter_calls=4, from_cache=0))
    out = capsys.readouterr().out
    assert _cell(out, "kid_crop") == ["-0.03 †"] and _cell(out, "kid_full") == ["0.01"]
    assert _cell(out, "fid_crop") == ["80 *"]
    notes = [line for line in out.splitlines() if line.startswith(("*", "†"))]
    assert notes[0] == f"* {FID_REASON}"
    assert len(notes) == 2 and notes[1].startswith("† KID < 0: KID is an unbiased estimate")
    assert _cell(out, "taxonomy") == ["ok 75%, missing 25%"]


def test_compare_table_has_the_footnotes_and_rates_of_evaluate(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for run, summary in ((a, _summary(-0.02, -0.01)), (b, _summary(0.05, 0.01, fid_reason=None))):
        run.mkdir()
        write_json(run / "summary.json", summary)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert _cell(out, "fid_crop") == ["80 *", "80"]
    assert _cell(out, "kid_crop") == ["-0.02 †", "0.05"] and _cell(out, "kid_full") == ["-0.01 †", "0.01"]
    assert [line for line in out.splitlines() if line.startswith(("*", "†"))][0] == f"* {FID_REASON}"
    assert sum(line.startswith("† KID < 0") for line in out.splitlines()) == 1  # once for both rows
    assert _cell(out, "taxonomy: ok") == ["75%", "75%"] and _cell(out, "taxonomy: missing") == ["25%", "25%"]
    # the same footnotes under compare.md's and compare.html's table; --json keeps the numbers
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"\\* {FID_REASON}" in md and "† KID < 0" in md and "| taxonomy: ok | 75% | 75% |" in md
    assert f"<p class='note'>* {html.escape(FID_REASON)}</p>" in (tmp_path / "cmp" / "compare.html").read_text()
    assert compare_runs([a, b])["values"]["taxonomy: ok"] == {"a": 0.75, "b": 0.75}


def test_the_terminal_marks_intervals_from_few_values_as_report_md_does(tmp_path, capsys):
    few = {"mean": 30.0, "lo": 28.0, "hi": 32.0, "n": 4, "method": "student-t", "small_sample": True}
    many = {"mean": 30.0, "lo": 29.0, "hi": 31.0, "n": 40, "method": "bca-expanded", "small_sample": False}
    summary = _summary(0.01, 0.01)
    summary["metrics"]["means"] = {"bg_psnr": few, "bg_ssim": many}
    _print_summary(SimpleNamespace(summary=summary, run_dir="run", adapter_calls=4, from_cache=0))
    out = capsys.readouterr().out
    assert _cell(out, "bg_psnr") == ["30 [28, 32] (n=4) ‡"] and _cell(out, "bg_ssim") == ["30 [29, 31] (n=40)"]
    assert any(line.startswith("‡ fewer than 10 values") for line in out.splitlines())
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        run.mkdir()
        write_json(run / "summary.json", summary)
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert _cell(out, "bg_psnr") == ["30 [28, 32] (n=4) ‡"] * 2
    assert sum(line.startswith("‡ fewer than 10 values") for line in out.splitlines()) == 1
