"""QA pass on training runs: divergence stops cleanly, --overwrite checks first, reruns of failed
runs, inputs checked before training (vocabulary, image files), worker errors, config values."""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from soebench.errors import ConfigError, InputError, MissingWeightsError, OutputExistsError, SoebenchError
from soediff.cli import app
from soediff.config import TrainConfig
from soediff.models import check_pretrained
from soediff.trainer import list_checkpoints, train
from tests.factories import make_manifest


def _lora_is_finite(checkpoint) -> bool:
    from safetensors.torch import load_file

    return all(torch.isfinite(t).all() for t in load_file(str(checkpoint / "lora.safetensors")).values())


def _run_cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """``soediff ARGS`` as the console script runs it (errors rendered); ``(exit status, stderr)``."""
    from soediff.cli import run

    monkeypatch.setattr(sys, "argv", ["soediff", *args])
    with pytest.raises(SystemExit) as exit_:
        run()
    return exit_.value.code, capsys.readouterr().err


# ---------------------------------------------------------------- 1. divergence
@pytest.mark.parametrize("field", ["learning_rate", "vae.learning_rate"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_learning_rates_must_be_finite(field, value):
    cfg = TrainConfig(manifest="m", pretrained="p")
    section, _, name = field.rpartition(".")
    setattr(getattr(cfg, section) if section else cfg, name, value)
    with pytest.raises(ConfigError, match=f"{field} must be a finite number > 0"):
        cfg.validate()


def test_yaml_inf_learning_rate_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("manifest: m\npretrained: p\nvae:\n  learning_rate: .inf\n")
    with pytest.raises(ConfigError, match="vae.learning_rate must be a finite number > 0, got inf"):
        TrainConfig.from_yaml(path).validate()


def test_diverged_run_stops_and_keeps_its_good_checkpoints(make_config):
    """learning rate 1e4: the first step's loss is finite, then the weights blow up. Training stops
    at the first non-finite loss, no NaN checkpoint is written and none rotates a good one away."""
    cfg = make_config(learning_rate=1e4, max_steps=6, checkpointing_steps=1, checkpoints_total_limit=2)
    with pytest.raises(SoebenchError, match=r"training diverged at step \d+: the loss is not finite \(loss=nan") as err:
        train(cfg, progress=False)
    assert "denoise=" in err.value.message and "csd=" in err.value.message
    checkpoints = list_checkpoints(cfg.out)
    step = int(err.value.message.split("step ")[1].split(":")[0])
    assert [p.name for p in checkpoints] == [f"checkpoint-{s:08d}" for s in range(max(1, step - 2), step)]
    assert all(_lora_is_finite(p) for p in checkpoints)
    assert "lower learning_rate (now 10000)" in err.value.hint
    assert f"{checkpoints[-1].name}, is kept: --resume continues from it" in err.value.hint
    rows = Path(cfg.out, "logs", "losses.csv").read_text().splitlines()[1:]
    assert len(rows) == step - 1 and "nan" not in "".join(rows)


def test_non_finite_weights_are_never_checkpointed(make_config, monkeypatch):
    """An update can overflow the weights while the loss that made it was finite: the checkpoint of
    that step is refused too."""
    from soediff.trainer import _Loop

    micro_step = _Loop._micro_step

    def poisoned(self, batch, step):
        logs = micro_step(self, batch, step)
        next(p for n, p in self.models.base_unet.named_parameters() if "lora_" in n).data.fill_(math.nan)
        return logs

    monkeypatch.setattr(_Loop, "_micro_step", poisoned)
    cfg = make_config(max_steps=2, checkpointing_steps=1)
    with pytest.raises(SoebenchError, match="diverged at step 1: the trained weights are no longer finite") as err:
        train(cfg, progress=False)
    assert list_checkpoints(cfg.out) == []
    assert "no checkpoint was written yet, so a plain rerun reuses the run folder" in err.value.hint


def test_diverged_cli_run_exits_2_with_one_line(make_config, monkeypatch, capsys, tmp_path):
    cfg = make_config(max_steps=4, checkpointing_steps=4)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    status, err = _run_cli(monkeypatch, capsys, "train", "--config", str(tmp_path / "c.yaml"),
                           "--learning-rate", "1e4", "--no-progress")
    assert status == 2
    assert "error: training diverged at step" in err and "hint: lower learning_rate" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- 2. --overwrite checks before it deletes
def _manifest_without_caption(manifest, tmp_path):
    """A copy of ``manifest`` (beside it, so its images resolve) whose first row has no caption."""
    table = pq.read_table(manifest)
    captions = pa.array([[]] + table.column("captions").to_pylist()[1:], type=pa.list_(pa.string()))
    path = manifest.parent / "no-caption.parquet"
    pq.write_table(table.set_column(table.column_names.index("captions"), "captions", captions), path)
    return path


def test_overwrite_removes_nothing_until_every_check_passed(make_config, tmp_path):
    data = make_manifest(tmp_path / "data", n=6)
    cfg = make_config(manifest=str(data), max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    kept = list_checkpoints(cfg.out)
    assert kept

    no_caption = _manifest_without_caption(data, tmp_path)
    bad_blocks = cfg.replace()
    bad_blocks.lora.blocks = ["down_blocks.7"]
    failing = [
        (cfg.replace(train_batch_size=50), InputError, "fewer than one batch"),
        (cfg.replace(manifest=str(no_caption), prompt_key="caption"), InputError, "no caption"),
        (bad_blocks, ConfigError, "lora.blocks"),
    ]
    if not torch.cuda.is_available():
        failing.append((cfg.replace(mixed_precision="fp16"), ConfigError, "fp16 needs a CUDA device"))
    for bad, error, message in failing:
        with pytest.raises(error, match=message):
            train(bad, overwrite=True, progress=False)
        assert list_checkpoints(cfg.out) == kept, message
        assert TrainConfig.from_yaml(f"{cfg.out}/config.yaml") == cfg, message
    (data.parent / "images" / "000003.png").unlink()
    with pytest.raises(InputError, match="image files are missing"):
        train(cfg, overwrite=True, progress=False)
    assert list_checkpoints(cfg.out) == kept


# ---------------------------------------------------------------- 3. tokenizer vocabulary
def test_tokenizer_without_vocabulary_is_refused(tiny_pipe_dir, tmp_path):
    copy = tmp_path / "sd"
    shutil.copytree(tiny_pipe_dir, copy)
    tokenizer = copy / "tokenizer"
    (tokenizer / "tokenizer.json").unlink()
    with pytest.raises(MissingWeightsError, match="has no tokenizer.json and no vocab.json or merges.txt") as err:
        check_pretrained(copy)
    assert str(tokenizer) in err.value.message
    (tokenizer / "vocab.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="has no tokenizer.json and no merges.txt"):
        check_pretrained(copy)
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    assert check_pretrained(copy) == copy  # the BPE pair alone is a vocabulary (older pipelines)


# ---------------------------------------------------------------- 4. image files before training
def test_a_missing_image_of_several_objects_is_counted_once(tmp_path):
    from soebench.manifest.io import read_manifest
    from soediff.data import ManifestDataset

    data = make_manifest(tmp_path / "data", n=3, objects_per_image=2)
    missing = sorted((data.parent / "images").iterdir())[0]
    missing.unlink()
    ds = ManifestDataset(read_manifest(data), resolution=64, vae_scale_factor=8, prompt_key="label")
    with pytest.raises(InputError) as err:
        ds.check_images()
    assert err.value.message.endswith(f"1 of 3 image files are missing: {missing}")


def test_missing_images_are_found_before_training(make_config, tmp_path):
    from soebench.manifest.io import read_manifest
    from soediff.data import ManifestDataset

    data = make_manifest(tmp_path / "data", n=6)
    for i in (1, 2, 4, 5):
        (data.parent / "images" / f"{i:06d}.png").unlink()
    ds = ManifestDataset(read_manifest(data), resolution=64, vae_scale_factor=8, prompt_key="label")
    images = data.parent / "images"
    with pytest.raises(InputError) as err:
        ds.check_images()
    assert err.value.message.endswith(f"4 of 6 image files are missing: {images / '000001.png'}, "
                                      f"{images / '000002.png'}, {images / '000004.png'} and 1 more")
    assert str(images) in err.value.hint
    cfg = make_config(manifest=str(data))
    with pytest.raises(InputError, match="image files are missing"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()  # nothing of a run was started


# ---------------------------------------------------------------- 5. errors from DataLoader workers
class _Failing(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise InputError(f"manifest row r{i}: cannot read image x.png", hint="restore x.png")


def test_worker_error_comes_back_as_raised():
    from soediff.data import unwrap_worker_error

    loader = torch.utils.data.DataLoader(_Failing(), batch_size=1, num_workers=1)
    with pytest.raises(InputError) as err:
        next(iter(loader))
    assert "DataLoader worker" in err.value.message and err.value.hint is None  # what torch gives
    original = unwrap_worker_error(err.value)
    assert type(original) is InputError
    assert (original.message, original.hint) == ("manifest row r0: cannot read image x.png", "restore x.png")
    assert unwrap_worker_error(InputError("a plain one")) is None


def test_unreadable_image_in_a_worker_is_one_line(make_config, monkeypatch, capsys, tmp_path):
    data = make_manifest(tmp_path / "data", n=6)
    for image in (data.parent / "images").iterdir():
        image.write_bytes(b"not a png")  # present (the stat passes), unreadable when a worker decodes it
    cfg = make_config(manifest=str(data), num_workers=1)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    status, err = _run_cli(monkeypatch, capsys, "train", "--config", str(tmp_path / "c.yaml"), "--no-progress")
    assert status == 2
    assert "error: manifest row " in err and "cannot read image" in err
    assert "Caught" not in err and "Traceback" not in err


# ---------------------------------------------------------------- 6. AdamW settings
def test_adam_settings_are_validated():
    cfg = TrainConfig(manifest="m", pretrained="p", adam_beta1=1.0, adam_beta2=-0.1, adam_epsilon=-1e-8,
                      adam_weight_decay=-0.01)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    for part in ("adam_beta1 must be in [0, 1), got 1.0", "adam_beta2 must be in [0, 1), got -0.1",
                 "adam_epsilon must be a finite number >= 0", "adam_weight_decay must be a finite number >= 0"):
        assert part in err.value.message
    TrainConfig(manifest="m", pretrained="p", adam_beta1=0.0, adam_epsilon=0.0, adam_weight_decay=0.0).validate()


# ---------------------------------------------------------------- 7. YAML 1.1's 1e-4
def test_numeric_strings_in_float_fields(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nadam_epsilon: 1E-6\nvae:\n  learning_rate: 5e-6\n")
    cfg = TrainConfig.from_yaml(path)
    assert (cfg.learning_rate, cfg.adam_epsilon, cfg.vae.learning_rate) == (1e-4, 1e-6, 5e-6)
    assert isinstance(cfg.learning_rate, float)
    path.write_text("learning_rate: fast\n")
    with pytest.raises(ConfigError, match="'learning_rate' must be float, got 'fast'"):
        TrainConfig.from_yaml(path)
    path.write_text("resolution: 5e2\n")  # int fields stay strict
    with pytest.raises(ConfigError, match="'resolution' must be int"):
        TrainConfig.from_yaml(path)


# ---------------------------------------------------------------- 8. a run that failed before its first checkpoint
def test_folder_without_checkpoint_is_reused_by_a_plain_rerun(make_config):
    failed = make_config(learning_rate=1e4, max_steps=4, checkpointing_steps=4)
    with pytest.raises(SoebenchError, match="diverged"):
        train(failed, progress=False)
    assert list_checkpoints(failed.out) == [] and Path(failed.out, "logs", "losses.csv").exists()
    result = train(make_config(max_steps=2), progress=False)  # neither "already holds a run" nor --resume
    assert result.step == 2 and [p.name for p in list_checkpoints(result.out_dir)] == ["checkpoint-00000002"]
    rows = result.log_csv.read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]  # the failed run's rows are gone
    assert TrainConfig.from_yaml(result.out_dir / "config.yaml").learning_rate == 1e-3
    with pytest.raises(OutputExistsError, match="already holds a run"):  # a run with a checkpoint is kept
        train(make_config(max_steps=2), progress=False)


# ---------------------------------------------------------------- 9. soediff config --out
def test_config_out_refuses_existing_file_and_folder(tmp_path, monkeypatch, capsys):
    path = tmp_path / "train.yaml"
    path.write_text("max_steps: 3\n")
    result = CliRunner().invoke(app, ["config", "--out", str(path)])
    assert isinstance(result.exception, OutputExistsError) and path.read_text() == "max_steps: 3\n"
    result = CliRunner().invoke(app, ["config", "--out", str(path), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert TrainConfig.from_yaml(path) == TrainConfig()
    status, err = _run_cli(monkeypatch, capsys, "config", "--out", str(tmp_path))
    assert status == 2 and f"--out {tmp_path} is a folder" in err and "Traceback" not in err


# ---------------------------------------------------------------- 10. progress on stderr
def test_progress_bar_goes_to_stderr(make_config, tmp_path):
    cfg = make_config(max_steps=1, checkpointing_steps=1)
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "soediff" not in result.stdout and "1/1" not in result.stdout
    assert "soediff" in result.stderr and "1/1" in result.stderr and "trained to step 1" in result.stderr


# ---------------------------------------------------------------- 11. --resume --overwrite
def test_resume_and_overwrite_exclude_each_other(make_config, monkeypatch, capsys):
    cfg = make_config(max_steps=1, checkpointing_steps=1)
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="--resume and --overwrite exclude each other"):
        train(cfg.replace(max_steps=2), resume=True, overwrite=True, progress=False)
    assert [p.name for p in list_checkpoints(cfg.out)] == ["checkpoint-00000001"]
    status, err = _run_cli(monkeypatch, capsys, "train", "--out", cfg.out, "--resume", "--overwrite", "--no-progress")
    assert status == 2 and "exclude each other" in err
