"""Adapter edge cases a QA pass found: background helpers of a command, its stderr and cwd,
folder files in the wrong format, adapters that touch their inputs, return results out of
order, give a cache token JSON cannot hold, or print into `--json`."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from soebench.cli.app import main
from soebench.errors import ConfigError, InputError
from soebench.evaluation import evaluate
from soebench.models import MODELS, InpaintResult
from tests.evaluate.conftest import BG, manifest6  # noqa: F401 - the fixture

OPTS = dict(metrics=BG, batch_size=2, progress=False, report=False)


def test_a_background_helper_does_not_hold_the_batch_until_the_timeout(tmp_path, requests3):
    """The program exits at once, leaving a helper that keeps its stdout/stderr open; waiting on
    those pipes used to hold every batch until the timeout, reported as "timed out"."""
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\nsleep 60 &\necho 'model failed to load' >&2\nexit 0\n")
    wrapper.chmod(0o755)
    out = MODELS.create("command", f"argv={wrapper},timeout=20").inpaint(requests3[:1])
    assert not out[0].ok
    assert "wrote no output" in out[0].error and "timed out" not in out[0].error


def test_the_end_of_a_huge_stderr_is_reported(tmp_path, requests3):
    program = tmp_path / "noisy.py"
    program.write_text("import sys\nsys.stderr.write('x' * 3_000_000 + 'THE LAST WORDS')\nsys.exit(4)\n")
    out = MODELS.create("command", f"argv={sys.executable} {program}").inpaint(requests3[:1])
    assert "exited with status 4" in out[0].error and out[0].error.endswith("THE LAST WORDS")
    assert len(out[0].error) < 2000


@pytest.mark.parametrize("cwd", ["missing-folder", "a-file"])
def test_a_command_cwd_that_is_no_folder_fails_before_any_sample(tmp_path, cwd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match=r"cwd=.* is not a folder"):
        MODELS.create("command", f"argv={sys.executable},cwd={cwd}")


def _folder_of(tmp_path, requests, fmt: str, suffix: str):
    folder = tmp_path / "outs"
    folder.mkdir()
    for r in requests:
        Image.fromarray(np.asarray(r.image)).save(folder / f"{r.sample_id}.{suffix}", format=fmt, quality=30)
    return folder


def test_a_jpeg_saved_as_png_is_an_error_not_a_score(tmp_path, requests3):
    folder = _folder_of(tmp_path, requests3, "JPEG", "png")
    out = MODELS.create("folder", f"path={folder}").inpaint(requests3)
    assert all(not r.ok and "is a JPEG image, not the PNG its .png suffix names" in r.error for r in out)


def test_jpeg_outputs_are_read_when_ext_names_them(tmp_path, requests3):
    folder = _folder_of(tmp_path, requests3, "JPEG", "jpg")
    assert all(r.ok for r in MODELS.create("folder", f"path={folder},ext=jpg").inpaint(requests3))


@pytest.mark.parametrize("ext", ["*", "", "png/x", "p.ng"])
def test_a_folder_ext_must_be_a_suffix(tmp_path, ext):
    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="ext must be a file suffix"):
        MODELS.create("folder", {"path": str(tmp_path), "ext": ext})


def test_an_upper_case_suffix_is_named_as_it_is(tmp_path, requests3):
    _folder_of(tmp_path, requests3, "PNG", "PNG")
    with pytest.raises(InputError) as err:
        MODELS.create("folder", f"path={tmp_path / 'outs'}")
    assert "3 .PNG files" in err.value.hint and "case included" in err.value.hint


class _MaskEraser:
    """Clears the mask it is given before answering (a bug an adapter may have)."""

    name = "mask-eraser"

    def cache_token(self):
        return {"adapter": "mask-eraser"}

    def inpaint(self, requests):
        for r in requests:
            r.mask[:] = False
        return [np.asarray(r.image) for r in requests]


def test_an_adapter_cannot_change_the_mask_the_scores_use(tmp_path, manifest6):
    res = evaluate(manifest6, _MaskEraser(), tmp_path / "run", **OPTS)
    assert res.samples["error"].str.contains("read-only").all()


class _Reversed:
    name = "reversed"

    def cache_token(self):
        return None

    def inpaint(self, requests):
        return [InpaintResult(r.sample_id, np.asarray(r.image)) for r in reversed(requests)]


def test_results_returned_out_of_order_are_errors(requests3):
    from soebench.models.base import check_output

    outputs = _Reversed().inpaint(requests3)
    checked = [check_output(r, o) for r, o in zip(requests3, outputs)]
    assert checked[1].ok  # the middle one is in its place
    assert "returned the result of sample 's2' for sample 's0'" in checked[0].error


class _ArrayToken:
    name = "array-token"

    def __init__(self):
        self.calls = 0

    def cache_token(self):
        return {"weights": np.zeros(3)}

    def inpaint(self, requests):
        self.calls += len(requests)
        return [np.asarray(r.image) for r in requests]


class _RaisingToken(_ArrayToken):
    def cache_token(self):
        raise RuntimeError("weights file not found")


@pytest.mark.parametrize("adapter,message", [(_ArrayToken, "cache_token\\(\\) returned a value JSON cannot hold"),
                                             (_RaisingToken, "cache_token\\(\\) raised RuntimeError: weights file")])
def test_a_bad_cache_token_fails_before_any_sample(tmp_path, manifest6, adapter, message):
    model = adapter()
    with pytest.raises(ConfigError, match=message):
        evaluate(manifest6, model, tmp_path / "run", **OPTS)
    assert model.calls == 0 and not (tmp_path / "run" / "samples.parquet").exists()


def printing_adapter(requests):
    print("loading my model...")  # what research code does
    return [np.asarray(r.image) for r in requests]


def test_an_adapters_print_does_not_break_the_json_summary(tmp_path, manifest6, capsys):
    code = main(["evaluate", "--manifest", str(manifest6), "--model", "python", "--model-args",
                 "target=tests.models.test_adapter_edges:printing_adapter", "--metrics", "bg_psnr",
                 "--out", str(tmp_path / "run"), "--json", "--no-report"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.load(io.StringIO(captured.out))["manifest"]["num_samples"] == 6
    assert "loading my model..." in captured.err
