"""Built-in adapters: baselines, python, command, folder; output checks."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soebench.errors import ConfigError, InputError
from soebench.models import MODELS, InpaintResult, build_model, check_output
from tests.models.conftest import make_request


# -- output normalisation ----------------------------------------------------------------------


def test_check_output_accepts_arrays_pil_and_unit_floats():
    r = make_request()
    assert check_output(r, r.image).ok
    assert check_output(r, Image.fromarray(r.image)).ok
    as_float = check_output(r, r.image.astype(np.float32) / 255.0)
    assert as_float.ok and np.abs(as_float.image.astype(int) - r.image).max() <= 1


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 10, 3), np.uint8), "returned a 10x10 image; the input is 48x40"),
    (np.zeros((40, 48), np.uint8), "shape"),
    (np.full((40, 48, 3), 300, np.int32), "dtype"),
    (None, "no image"),
    (InpaintResult("s0", None, "boom"), "boom"),
])
def test_check_output_errors(bad, match):
    res = check_output(make_request(), bad)
    assert not res.ok and match in res.error


@pytest.mark.parametrize("fill, match", [
    (np.nan, "non-finite"), (np.inf, "non-finite"), (-0.5, "values in [-0.5"), (2.0, ", 2]"),
])
def test_check_output_rejects_floats_outside_unit_range(fill, match):
    """NaN, inf and negative floats are not clipped into an image that gets scored (an output in
    [-1, 1] or a broken model's NaNs would read as a valid edit)."""
    r = make_request()
    bad = r.image.astype(np.float32) / 255.0
    bad[r.mask] = fill
    res = check_output(r, bad)
    assert not res.ok and match in res.error
    assert check_output(r, r.image / 255.0).ok


# -- baselines ---------------------------------------------------------------------------------


def test_original_returns_the_input(requests3):
    out = MODELS.create("original").inpaint(requests3)
    for r, res in zip(requests3, out):
        assert res.sample_id == r.sample_id and np.array_equal(res.image, r.image)


@pytest.mark.parametrize("name", ["opencv-telea", "opencv-ns"])
def test_opencv_removes_the_object(name, requests3):
    out = MODELS.create(name).inpaint(requests3)
    for r, res in zip(requests3, out):
        assert res.image.shape == r.image.shape
        inside_before = r.image[r.mask].astype(float).mean(axis=0)
        inside_after = res.image[r.mask].astype(float).mean(axis=0)
        ring = ~r.mask
        bg = r.image[ring].astype(float).mean(axis=0)
        # the masked region now looks like the background, not like the object
        assert np.linalg.norm(inside_after - bg) < 0.3 * np.linalg.norm(inside_before - bg)
        far = np.ones_like(r.mask)
        ys, xs = np.nonzero(r.mask)
        far[max(0, ys.min() - 8): ys.max() + 9, max(0, xs.min() - 8): xs.max() + 9] = False
        assert np.array_equal(res.image[far], r.image[far])  # pixels far from the mask are untouched


def _disc_dilate(mask, radius):
    from scipy import ndimage

    if radius == 0:
        return mask.copy()
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return ndimage.binary_dilation(mask, structure=(yy**2 + xx**2) <= radius**2)


@pytest.mark.parametrize("dilate", [0, 2, 3])
def test_mean_fill_uses_the_ring_colour(requests3, dilate):
    ring = 4
    args = f"ring={ring}" if dilate == 2 else f"ring={ring},dilate={dilate}"  # 2 is the default
    out = MODELS.create("mean-fill", args).inpaint(requests3)
    for r, res in zip(requests3, out):
        # independent reference: discs of radius `dilate`, then `ring` (edges may differ by a pixel)
        hole = _disc_dilate(r.mask, dilate)
        core = hole if dilate == 0 else _disc_dilate(r.mask, dilate - 1)
        filled = res.image[core]
        assert (filled == filled[0]).all()  # one colour
        outside = ~_disc_dilate(hole, 1)
        assert np.array_equal(res.image[outside], r.image[outside])
        band = _disc_dilate(hole, ring) & ~hole
        expected = r.image[band].astype(float).mean(axis=0)
        assert np.abs(filled[0].astype(float) - expected).max() <= 3.0


def test_mean_fill_covers_the_objects_rim(requests3):
    """The default dilation fills the pixels just outside the polygon too (the object's rim),
    so the removed object leaves no outline; ``dilate=0`` keeps the exact mask."""
    exact = MODELS.create("mean-fill", "dilate=0").inpaint(requests3)
    default = MODELS.create("mean-fill").inpaint(requests3)
    for r, a, b in zip(requests3, exact, default):
        rim = _disc_dilate(r.mask, 1) & ~r.mask
        assert np.array_equal(a.image[rim], r.image[rim])
        assert (b.image[rim] == b.image[r.mask][0]).all()
    assert MODELS.create("mean-fill").cache_token() != MODELS.create("mean-fill", "dilate=0").cache_token()


# -- python ------------------------------------------------------------------------------------


def test_python_target_batched_and_per_sample(requests3):
    batched = MODELS.create("python", "target=tests.models._adapters:invert_batch")
    out = batched.inpaint(requests3)
    r = requests3[0]
    assert np.array_equal(out[0][r.mask], 255 - r.image[r.mask])
    per = MODELS.create("python", "target=tests.models._adapters:grey_one,per_sample=true")
    assert (per.inpaint(requests3)[1] == 128).all()
    assert batched.cache_token()["target"] == "tests.models._adapters:invert_batch"


def test_python_target_object_class(requests3):
    painter = MODELS.create("python", "target=tests.models._adapters:Painter")
    out = painter.inpaint(requests3)
    assert (out[0][requests3[0].mask] == (0, 255, 0)).all()


@pytest.mark.parametrize("target, match", [
    ("tests.models._adapters", "package.module:callable"),
    ("tests.models.nope:f", "cannot import module"),
    ("tests.models._adapters:missing", "no attribute"),
    ("tests.models._adapters:NOT_CALLABLE", "neither callable"),
])
def test_python_target_errors(target, match):
    with pytest.raises(ConfigError, match=match):
        MODELS.create("python", f"target={target}")


def test_python_target_is_found_in_the_current_folder(tmp_path, monkeypatch, requests3):
    """The `soebench` console script does not put the current folder on sys.path (python -m
    does): target=mod:fn next to mod.py must work either way."""
    import os

    (tmp_path / "soebench_cwd_mod.py").write_text("def same(requests):\n    return [r.image for r in requests]\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or ".") != str(tmp_path)])
    monkeypatch.delitem(sys.modules, "soebench_cwd_mod", raising=False)
    try:
        adapter = MODELS.create("python", "target=soebench_cwd_mod:same")
        assert np.array_equal(adapter.inpaint(requests3)[0], requests3[0].image)
    finally:
        sys.modules.pop("soebench_cwd_mod", None)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_mod_here'") as err:
        MODELS.create("python", "target=no_such_mod_here:f")
    assert "current folder" in err.value.hint
    assert sys.path[-1] == str(tmp_path)  # appended last: a local file never shadows an installed package


def test_python_object_from_api(requests3):
    adapter, _ = build_model(lambda reqs: [q.image for q in reqs])
    assert np.array_equal(adapter.inpaint(requests3)[2], requests3[2].image)


# -- folder ------------------------------------------------------------------------------------


def test_folder_reads_outputs_and_reports_missing(tmp_path, requests3):
    Image.fromarray(255 - requests3[0].image).save(tmp_path / "s0.png")
    (tmp_path / "s1.png").write_bytes(b"not a png")
    out = MODELS.create("folder", f"path={tmp_path}").inpaint(requests3)
    assert out[0].ok and np.array_equal(out[0].image, 255 - requests3[0].image)
    assert not out[1].ok and "cannot read" in out[1].error
    assert not out[2].ok and "no output file" in out[2].error and "s2.png" in out[2].error
    assert MODELS.create("folder", f"path={tmp_path}").cache_token() is None


def test_folder_must_exist(tmp_path):
    with pytest.raises(InputError, match="is not a folder"):
        MODELS.create("folder", f"path={tmp_path / 'nope'}")


def test_folder_without_any_output_file_is_refused_up_front(tmp_path, requests3):
    """No file with the suffix at all: every sample would fail, so the adapter says so once (and
    what the folder does hold)."""
    with pytest.raises(InputError, match="holds no .png file") as err:
        MODELS.create("folder", f"path={tmp_path}")
    assert "<sample_id>.png" in err.value.hint and "empty" in err.value.hint
    for r in requests3:
        Image.fromarray(r.image).save(tmp_path / f"{r.sample_id}.jpg")
    with pytest.raises(InputError, match="holds no .png file") as err:
        MODELS.create("folder", f"path={tmp_path}")
    assert "3 .jpg files" in err.value.hint
    assert MODELS.create("folder", f"path={tmp_path},ext=jpg").inpaint(requests3)[0].ok


def test_folder_missing_file_names_the_file_expected_and_a_near_miss(tmp_path, requests3):
    Image.fromarray(requests3[0].image).save(tmp_path / "s0.png")
    Image.fromarray(requests3[1].image).save(tmp_path / "s1.jpg")
    out = MODELS.create("folder", f"path={tmp_path}").inpaint(requests3)
    assert out[0].ok
    assert f"no output file {tmp_path / 's1.png'}" in out[1].error and "found s1.jpg" in out[1].error
    assert "reads <sample_id>.png from" in out[2].error and "found" not in out[2].error


# -- command -----------------------------------------------------------------------------------

SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    from PIL import Image, ImageOps
    mode, requests = sys.argv[1], sys.argv[2]
    lines = [json.loads(l) for l in open(requests) if l.strip()]
    if mode == "stdin":
        sys.stdin.read()  # waits for EOF
    for i, req in enumerate(lines):
        if mode == "sleep":
            time.sleep(30)
        if mode == "partial" and i == 1:
            print("model crashed on sample", req["sample_id"], file=sys.stderr)
            sys.exit(3)
        img = Image.open(req["image"]).convert("RGB")
        mask = Image.open(req["mask"]).convert("L")
        assert img.size == (req["width"], req["height"]) == mask.size
        out = Image.composite(ImageOps.invert(img), img, mask)
        if mode == "small":
            out = out.resize((8, 8))
        if mode == "by_id":  # what an old README said: <sample_id>.png, not the 'output' path
            out.save(os.path.join(os.path.dirname(req["output"]), req["sample_id"] + ".png"))
            continue
        out.save(req["output"], format="JPEG" if mode == "jpeg" else None)
''')


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "inpaint_prog.py"
    path.write_text(SCRIPT)
    return path


def _command(script, mode, **extra):
    args = {"argv": f"{sys.executable} {script} {mode}", **extra}
    return MODELS.create("command", ",".join(f"{k}={v}" for k, v in args.items()))


def test_command_runs_program_on_jsonl(script, requests3):
    out = _command(script, "ok").inpaint(requests3)
    for r, res in zip(requests3, out):
        assert res.ok
        assert np.array_equal(res.image[r.mask], 255 - r.image[r.mask])
        assert np.array_equal(res.image[~r.mask], r.image[~r.mask])


def test_command_nonzero_exit_keeps_written_outputs(script, requests3):
    out = _command(script, "partial").inpaint(requests3)
    assert out[0].ok
    for res in out[1:]:
        assert not res.ok and "exited with status 3" in res.error and "model crashed on sample s1" in res.error


def test_command_timeout_is_per_sample_error(script, requests3):
    out = _command(script, "sleep", timeout=1).inpaint(requests3[:1])
    assert not out[0].ok and "timed out after 1 s" in out[0].error


def test_command_stdin_is_closed(script, requests3):
    """A program that reads stdin gets EOF at once instead of waiting for the timeout (soebench's
    own stdin, here a pipe nobody writes to, is not passed on)."""
    import os
    import time

    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    try:
        started = time.monotonic()
        out = _command(script, "stdin", timeout=5).inpaint(requests3[:1])
        elapsed = time.monotonic() - started
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert out[0].ok, out[0].error
    assert elapsed < 4


@pytest.mark.parametrize("timeout", ["inf", "nan", "0", "-5"])
def test_command_timeout_must_be_finite_and_positive(script, timeout):
    with pytest.raises(ConfigError, match="timeout must be a finite number of seconds > 0"):
        _command(script, "ok", timeout=timeout)


def test_command_output_must_be_a_png_at_the_output_path(script, requests3):
    """The contract is each line's 'output' path: a file named after the sample id is not read,
    and the error names the path expected; a JPEG under the .png name is refused, not scored."""
    missing = _command(script, "by_id").inpaint(requests3[:1])[0]
    assert not missing.ok and "expected a PNG at " in missing.error and "00000_output.png" in missing.error
    jpeg = _command(script, "jpeg").inpaint(requests3[:1])[0]
    assert not jpeg.ok and "is a JPEG image, not a PNG" in jpeg.error


def test_command_timeout_ends_the_programs_children_too(tmp_path, requests3):
    """A wrapper script's model process must not outlive the timeout (it would hold the GPU)."""
    import os
    import time

    pid_file = tmp_path / "child.pid"
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    wrapper.chmod(0o755)
    out = MODELS.create("command", f"argv={wrapper},timeout=1").inpaint(requests3[:1])
    assert not out[0].ok and "timed out" in out[0].error
    child = int(pid_file.read_text())
    def running(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, waiting for a reaper

    for _ in range(50):  # SIGKILL is delivered asynchronously
        if not running(child):
            break
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        pytest.fail(f"the program's child {child} is still running after the timeout")


def test_command_wrong_size_caught_by_check(script, requests3):
    res = _command(script, "small").inpaint(requests3[:1])[0]
    checked = check_output(requests3[0], res)
    assert not checked.ok and "8x8" in checked.error


def test_command_argv_list_from_the_api_is_never_split(tmp_path, requests3):
    """An argv list passes each element as one argument: a path with spaces and shell characters
    stays whole (a shell or a naive split would break it)."""
    folder = tmp_path / "my models; $(touch pwned)"
    folder.mkdir()
    (folder / "inpaint prog.py").write_text(SCRIPT)
    adapter, args = build_model("command", {"argv": [sys.executable, str(folder / "inpaint prog.py"), "ok"]})
    out = adapter.inpaint(requests3[:2])
    assert all(res.ok for res in out)
    assert args["argv"] == (sys.executable, str(folder / "inpaint prog.py"), "ok")
    assert adapter.cache_token()["argv"] == list(args["argv"])
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_command_missing_program_and_placeholder(tmp_path, script, requests3):
    with pytest.raises(ConfigError, match="program .*no-such-program' not found or not executable"):
        MODELS.create("command", f"argv={tmp_path / 'no-such-program'}")
    with pytest.raises(ConfigError, match="'no-such-program-on-path' not found"):
        MODELS.create("command", "argv=no-such-program-on-path --flag")
    (tmp_path / "not-executable.sh").write_text("#!/bin/sh\n")
    with pytest.raises(ConfigError, match="not found or not executable"):
        MODELS.create("command", f"argv=./not-executable.sh,cwd={tmp_path}")
    adapter = MODELS.create("command", f"argv={sys.executable} {script} ok {{requests}}")
    assert adapter.inpaint(requests3[:1])[0].ok
    with pytest.raises(ConfigError, match="argv is empty"):
        MODELS.create("command", "argv=")


def test_folder_holding_none_of_the_runs_samples_is_refused_before_the_run(tmp_path):
    """Outputs of another manifest: PNGs are there, but none for this run's samples."""
    from soebench.evaluation import evaluate
    from tests.factories import make_manifest

    manifest = make_manifest(tmp_path / "m", 3)
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (8, 8)).save(other / "someone-else.png")
    with pytest.raises(InputError, match="holds none of this run's 3 outputs") as err:
        evaluate(manifest, "folder", tmp_path / "run", model_args={"path": str(other)}, metrics=("bg_psnr",),
                 progress=False)
    assert "someone-else.png" in err.value.hint and not (tmp_path / "run" / "samples.parquet").exists()
