"""What an evaluate run checks before any sample, and what its resume key covers: a run that
cannot succeed fails once with a clear error; content replaced in place is never reused."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soebench.errors import ConfigError, InputError
from soebench.evaluation import evaluate
from tests.evaluate.conftest import BG
from tests.evaluate.test_resume_shards import Counting


def _run(manifest, out, **kw):
    kw.setdefault("metrics", BG)
    return evaluate(manifest, Counting(), out, progress=False, report=False, **kw)


def test_resume_after_the_manifest_changed_in_place_rescores(tmp_path, manifest6, tiny_nets, monkeypatch):
    from soebench.run.scoring import Scorer

    path = manifest6.parent / f"changed-{tmp_path.name}.parquet"  # beside it: the images root is relative
    shutil.copy(manifest6, path)
    opts = dict(metrics=["clip_score_local"], batch_size=6, **tiny_nets)
    first = _run(path, tmp_path / "run", **opts)
    table = pq.read_table(path)
    boxes = [[0.0, 0.0, float(w), float(h)] for w, h in zip(table.column("width").to_pylist(),
                                                            table.column("height").to_pylist())]
    i = table.schema.get_field_index("bbox")
    pq.write_table(table.set_column(i, table.schema.field("bbox"), pa.array(boxes, table.schema.field("bbox").type)), path)
    scored = []
    original_score = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda self, batch: scored.append(len(batch)) or original_score(self, batch))
    resumed = _run(path, tmp_path / "run", resume=True, **opts)
    assert scored == [6] and resumed.from_cache == 6  # outputs reused, scores computed again
    monkeypatch.setattr(Scorer, "score", original_score)
    fresh = _run(path, tmp_path / "fresh", **opts)
    assert resumed.samples["clip_score_local"].tolist() == fresh.samples["clip_score_local"].tolist()
    assert resumed.samples["clip_score_local"].tolist() != first.samples["clip_score_local"].tolist()
    path.unlink()


def test_resume_after_the_weights_changed_in_place_rescores(tmp_path, manifest6, tiny_nets, monkeypatch):
    from soebench.run.scoring import Scorer

    weights = tmp_path / "clip.pt"
    shutil.copy(tiny_nets["clip_weights"], weights)
    opts = dict(tiny_nets, clip_weights=str(weights), metrics=["clip_score_global"], batch_size=6)
    _run(manifest6, tmp_path / "run", **opts)
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced by a copy
    scored = []
    original_score = Scorer.score
    monkeypatch.setattr(Scorer, "score", lambda self, batch: scored.append(len(batch)) or original_score(self, batch))
    _run(manifest6, tmp_path / "run", resume=True, **opts)
    assert scored == [6]


def test_a_moved_manifest_fails_before_any_sample(tmp_path, manifest6):
    moved = tmp_path / "elsewhere" / "m.parquet"
    moved.parent.mkdir()
    shutil.copy(manifest6, moved)
    with pytest.raises(InputError, match="none of its first 6 image.s. exists under the images root") as err:
        _run(moved, tmp_path / "run")
    assert "relative to the manifest's folder" in err.value.message
    assert not (tmp_path / "run").exists()


def test_empty_manifest_is_an_error(tmp_path, manifest6):
    empty = tmp_path / "empty.parquet"
    table = pq.read_table(manifest6)
    pq.write_table(table.slice(0, 0), empty)
    with pytest.raises(InputError, match="has no rows"):
        _run(empty, tmp_path / "run")


@pytest.mark.parametrize("device, message", [("foo", "is not a torch device"), ("cuda:7", "CUDA|7")])
def test_a_device_this_machine_lacks_fails_once(tmp_path, manifest6, device, message):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ConfigError, match=message):
        _run(manifest6, tmp_path / "run", device=device)
    assert not (tmp_path / "run").exists()


def test_run_folder_options_checked_first(tmp_path, manifest6):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        _run(manifest6, tmp_path / "file")
    with pytest.raises(ConfigError, match="is not a writable folder"):
        _run(manifest6, tmp_path / "file" / "run")
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        _run(manifest6, tmp_path / "run", seed=-1)
    with pytest.raises(ConfigError, match="--metrics names no metric"):
        _run(manifest6, tmp_path / "run", metrics=[])


def test_metrics_named_twice_or_taxonomy(tmp_path, manifest6):
    res = _run(manifest6, tmp_path / "run", metrics=["bg_mse", "bg_mse", "taxonomy"])
    assert res.summary["metrics"]["available"] == ["bg_mse"]
    assert res.summary["taxonomy"]["available"]


def interrupting(requests):
    """A python-adapter target that behaves like Ctrl-C during generation."""
    raise KeyboardInterrupt


def test_cli_ctrl_c_says_how_to_continue(tmp_path, manifest6, capsys):
    from soebench.cli.app import main

    out = tmp_path / "run"
    code = main(["evaluate", "-m", str(manifest6), "--model", "python", "--model-args",
                 "target=tests.evaluate.test_run_setup:interrupting", "--metrics", "bg_mse", "--out", str(out), "-q"])
    assert code == 130
    assert "the same command with --resume continues" in capsys.readouterr().err


def test_a_run_that_failed_while_starting_does_not_block_the_corrected_one(tmp_path, manifest6):
    out = tmp_path / "run"
    (out / "images").mkdir(parents=True)
    (out / "run.json").write_text("{}")  # what a run leaves when it fails before its first output
    assert _run(manifest6, out).summary["manifest"]["num_samples"] == 6
    with pytest.raises(Exception, match="already exists"):  # now it holds results
        _run(manifest6, out)


def test_lora_pointing_at_a_soediff_run_folder_says_to_export_it(tmp_path):
    from soebench.errors import MissingWeightsError
    from soebench.models.diffusers_inpaint import DiffusersConfig, check_weights

    run = tmp_path / "soediff-run"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(MissingWeightsError, match="is a soediff run folder") as err:
        check_weights(DiffusersConfig(path=str(tmp_path / "pipe"), lora=str(run)))
    assert f"soediff export {run} --out DIR" in err.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="holds no LoRA weights"):
        check_weights(DiffusersConfig(path=str(tmp_path / "pipe"), lora=str(tmp_path / "empty")))


class _Fill:
    """An adapter object without a cache_token: its settings are its attributes."""

    def __init__(self, value):
        self.value = value

    def inpaint(self, requests):
        import numpy as np

        return [np.full_like(r.image, self.value) for r in requests]


def test_resume_never_reuses_another_functions_or_objects_outputs(tmp_path, manifest6):
    import numpy as np

    out = tmp_path / "run"

    def run(model, **kw):
        return evaluate(manifest6, model, out, metrics=["bg_mse"], progress=False, report=False, limit=2, **kw)

    run(lambda rs: [np.zeros_like(r.image) for r in rs])
    white = run(lambda rs: [np.full_like(r.image, 255) for r in rs], resume=True)
    assert white.adapter_calls == 2 and white.from_cache == 0
    again = run(lambda rs: [np.full_like(r.image, 255) for r in rs], resume=True)  # the same code
    assert again.adapter_calls == 0
    assert run(_Fill(0), resume=True).adapter_calls == 2
    assert run(_Fill(255), resume=True).adapter_calls == 2
    assert run(_Fill(255), resume=True).adapter_calls == 0
    assert run(_Fill(255), resume=True, model_args={"version": "2"}).adapter_calls == 2


@pytest.mark.parametrize("env, message", [({"WORLD_SIZE": "2", "RANK": "5"}, "rank 5 of world size 2"),
                                          ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a whole number")])
def test_bad_shard_environment_is_a_config_error(tmp_path, manifest6, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        _run(manifest6, tmp_path / "run")
    with pytest.raises(ConfigError, match="rank 2 of world size 2"):
        _run(manifest6, tmp_path / "run", shard=(2, 2))
