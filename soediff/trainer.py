"""The accelerate training loop around :func:`soediff.step.compute_losses`.

Run folder layout (``config.out``)::

    config.yaml                     the resolved TrainConfig, its paths absolute (resume/export from any directory)
    inputs.json                     the training manifest's path and sha256 (a resume must train on the same rows),
                                    the pipeline's path and fingerprint, the paths as given, the code versions
    checkpoints/checkpoint-00000500 accelerate state: optimizers, schedulers, RNG states, the step
                                    generator, plus lora.safetensors / lora_config.json /
                                    vae_decoder.safetensors (only trained weights) and trainer_state.json
                                    (step, epoch, processes, code versions; written last: it marks a
                                    checkpoint complete)
    logs/losses.csv                 every loss term, learning rates, seconds per step (always)
    logs/tensorboard/               the same as TensorBoard scalars (report_to=tensorboard)
    validation/step-00001000.png    held-out rows: masked input | output, one row per sample

Resume is exact: the data order is a pure function of (seed, epoch) and the position is derived
from the step (gradient accumulation spans epoch ends, so a step is always exactly
``gradient_accumulation_steps`` micro-batches); every random draw of a step comes from a
checkpointed generator; and a resumed run must have the config it started with
(:func:`check_resume_config`).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soebench.errors import ConfigError, InputError, MissingDependencyError, OutputExistsError, SoebenchError
from soebench.fileio import atomic_path, write_text_atomic
from soediff.config import TrainConfig

log = logging.getLogger(__name__)

INPUTS_FILE = "inputs.json"
CSV_FIELDS = ("step", "epoch", "loss", "denoise", "csd", "vae", "lr", "vae_lr", "seconds_per_step")
OOM_HINT = ("lower memory use: a smaller --batch-size (with gradient_accumulation_steps to keep the effective "
            "batch), gradient_checkpointing: true, mixed_precision fp16/bf16, or turn off csd.enabled / "
            "vae.enabled in the config")


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    checkpoint: Path | None
    losses: dict[str, float]
    log_csv: Path
    history: list[dict[str, float]] = field(default_factory=list)
    validation_images: list[Path] = field(default_factory=list)
    models: Any = None  # the trained StepModels when train(..., keep_models=True)


class StepGenerator:
    """The generator every random draw of a step uses; checkpointed via accelerate."""

    def __init__(self, device, seed: int):
        import torch

        self.generator = torch.Generator(device=device).manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["state"])


def list_checkpoints(out: Path) -> list[Path]:
    folder = Path(out) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()),
                  key=lambda p: int(p.name.split("-")[1]))


#: the keys of :func:`code_versions` (top level, as in evaluate's summary.json)
CODE_KEYS = ("soediff_version", "versions", "git_commit", "git_dirty")


def code_versions() -> dict[str, Any]:
    """The code a run, checkpoint or export came from: soediff's version, the package versions and git
    commit that ``soebench evaluate`` records in its summary (the same helpers)."""
    import soediff
    from soebench.run.results import git_commit, package_versions

    git = git_commit()
    return {"soediff_version": soediff.__version__, "versions": package_versions(),
            "git_commit": git["commit"], "git_dirty": git["dirty"]}


def read_inputs(path: Path) -> dict[str, Any]:
    """A run's inputs.json; unreadable is an InputError naming it."""
    try:
        held = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(held, dict):
            raise ValueError(f"expected a JSON object, got {type(held).__name__}")
        return held
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable record of the run's inputs ({exc})",
                         hint="delete it to resume without the manifest check") from exc


#: inputs a run records as absolute paths in inputs.json as well as in config.yaml
RECORDED_PATHS = ("manifest", "pretrained", "validation_manifest")


def load_run_config(out: Path) -> TrainConfig:
    """A run's config.yaml. Runs of soediff <= 0.2.0 wrote its paths as typed: a relative one there
    is relative to a directory nobody recorded, so inputs.json's absolute path of the same input
    (recorded by those runs too) takes its place."""
    config = TrainConfig.from_yaml(out / "config.yaml")
    relative = [k for k in RECORDED_PATHS
                if getattr(config, k) and not Path(getattr(config, k)).expanduser().is_absolute()]
    if not relative or not (out / INPUTS_FILE).exists():
        return config
    recorded = read_inputs(out / INPUTS_FILE)
    return config.replace(**{k: recorded.get(k) for k in relative})


RUN_DIRS = ("checkpoints", "logs", "validation")


def _claim_out_dir(out: Path, resume: bool, overwrite: bool) -> tuple[Path | None, bool]:
    """Refuse to clobber a run; return the checkpoint to resume from (or None) and whether the old
    run's folders must be cleared before this one writes. Nothing is removed here: clearing waits
    until every check of the new run has passed (:func:`_clear_run`).

    A folder without a checkpoint (a run that failed before its first one) holds nothing to
    resume or lose, so a plain rerun reuses it; otherwise the rerun would be told to --resume and
    the resume that there is nothing to resume from."""
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other",
                          hint="--resume continues the run in --out; --overwrite discards it and starts over")
    existing = list_checkpoints(out)
    if resume:
        if not existing:
            raise InputError(f"--resume: no checkpoint in {out / 'checkpoints'}",
                             hint="start without --resume (a run folder without a checkpoint is reused)")
        return existing[-1], False
    if not any((out / sub).exists() for sub in RUN_DIRS):
        return None, False
    if existing and not overwrite:
        raise OutputExistsError(f"run folder {out} already holds a run (latest checkpoint {existing[-1].name})",
                                hint="pass --resume to continue it or --overwrite to start over")
    return None, True


def _clear_run(out: Path) -> None:
    """Remove an old run's checkpoints, logs and validation images (its config.yaml and inputs.json
    are rewritten by the new run)."""
    for sub in RUN_DIRS:
        shutil.rmtree(out / sub, ignore_errors=True)


# Fields a resumed run may change: they do not alter the trained state or the random draws.
RESUMABLE_CHANGES = frozenset({
    "manifest", "pretrained", "validation_manifest", "out", "max_steps", "num_workers", "checkpointing_steps",
    "checkpoints_total_limit", "log_every", "report_to", "validation_steps", "validation_inference_steps",
    "gradient_checkpointing",
})


#: schedules whose shape depends on max_steps: changing it on a resume would reshape them mid-run
STEPS_SHAPED_SCHEDULES = ("linear", "cosine")


def check_resume_config(config: TrainConfig, saved: Path) -> None:
    """``--resume`` continues the run exactly only with the config it was started with: any other
    change (LoRA shape, learning rate, batch, seed, ...) is an error naming the fields."""
    if not saved.exists():
        return
    before = _flat(TrainConfig.from_yaml(saved).to_dict())
    now = _flat(config.to_dict())
    changed = [k for k in before if before[k] != now.get(k) and k.split(".")[0] not in RESUMABLE_CHANGES]
    if before["max_steps"] != now["max_steps"] and now["lr_scheduler"] in STEPS_SHAPED_SCHEDULES:
        raise ConfigError(f"--resume with max_steps {now['max_steps']} instead of the run's {before['max_steps']}: "
                          f"the {now['lr_scheduler']!r} learning-rate schedule is laid out over max_steps, so the "
                          "rest of the run would jump to another point of another curve",
                          hint="resume with the run's max_steps, or train with lr_scheduler constant / "
                               "constant_with_warmup to extend runs later")
    if changed:
        diffs = "; ".join(f"{k}: {before[k]!r} -> {now.get(k)!r}" for k in changed)
        raise ConfigError(f"--resume with a config that differs from the run's {saved} ({diffs})",
                          hint="resume with the run's own config (soediff train --resume reads it when no --config "
                               "is given), or start a new run in another --out")
    moved = [k for k in ("manifest", "pretrained", "validation_manifest") if before[k] != now[k]]
    if moved:
        log.warning("resuming with changed %s (was %s)", ", ".join(moved), ", ".join(str(before[k]) for k in moved))


def check_resume_manifest(inputs: dict[str, str], recorded: Path) -> None:
    """``--resume`` must train on the rows and from the weights the run started with: the manifest and
    the pipeline may have moved (their paths are resumable changes) but the manifest's content (by
    sha256) and the pipeline's weights (:func:`soediff.models.pretrained_fingerprint`) may not. A
    run from before this record has nothing to compare; it gets the record when it resumes."""
    if not recorded.exists():
        return
    held = read_inputs(recorded)
    held_sha = held.get("manifest_sha256")
    if not isinstance(held_sha, str):
        raise InputError(f"{recorded}: not a readable record of the run's manifest (no manifest_sha256)",
                         hint="delete it to resume without the manifest check")
    held_model = held.get("pretrained_fingerprint")  # runs from before this record have none
    if held_model is not None and held_model != inputs["pretrained_fingerprint"]:
        raise ConfigError(
            f"--resume with pretrained {inputs['pretrained']}, but the run was started from other weights: "
            f"{held.get('pretrained')} (fingerprint {held_model[:12]}... vs {inputs['pretrained_fingerprint'][:12]}..., "
            f"{recorded})",
            hint="resume with the pipeline the run started from (it may have moved), or start over with --overwrite "
                 "(without --resume) or in another --out")
    if held_sha != inputs["manifest_sha256"]:
        raise ConfigError(
            f"--resume with manifest {inputs['manifest']} (sha256 {inputs['manifest_sha256'][:12]}...), but the run "
            f"was trained on different content: {held.get('manifest')} (sha256 {held_sha[:12]}..., {recorded})",
            hint="resume with the manifest the run started with, or start over with --overwrite (without --resume) "
                 "or in another --out")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


class CsvLog:
    """Append-only CSV of every logged step; on resume rows after the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        if resume_step is not None and path.exists():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=CSV_FIELDS).writerow({k: row.get(k, "") for k in CSV_FIELDS})


def _checkpoint_hooks(accelerator, unet_cls, lora_config: dict[str, Any]):
    """Save/load only trained weights (LoRA, decoder) instead of whole models."""
    from safetensors.torch import load_file

    from soediff.lora import load_lora_state_dict, lora_state_dict
    from soediff.outputs import save_safetensors

    def save_hook(models, weights, output_dir):
        out = Path(output_dir)
        for model in models:
            inner = accelerator.unwrap_model(model)
            if isinstance(inner, unet_cls):
                state = {k: v.detach().float().contiguous().cpu() for k, v in lora_state_dict(inner).items()}
                save_safetensors(state, out / "lora.safetensors")
                (out / "lora_config.json").write_text(json.dumps(lora_config, indent=2))
            else:
                state = {f"decoder.{k}": v.detach().float().contiguous().cpu() for k, v in inner.state_dict().items()}
                save_safetensors(state, out / "vae_decoder.safetensors")
        while weights:
            weights.pop()

    def load_hook(models, input_dir):
        folder = Path(input_dir)
        while models:
            inner = accelerator.unwrap_model(models.pop())
            if isinstance(inner, unet_cls):
                load_lora_state_dict(inner, load_file(str(folder / "lora.safetensors")))
            else:
                state = load_file(str(folder / "vae_decoder.safetensors"))
                inner.load_state_dict({k.removeprefix("decoder."): v for k, v in state.items()})

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
          keep_models: bool = False) -> TrainResult:
    """Train SO-LoRA (+ CSD, + VAE decoder) as ``config`` says; return where everything went.

    ``keep_models`` returns the trained (unwrapped) models in ``TrainResult.models`` (tests, notebooks).
    """
    config.validate()
    from soebench.run.results import manifest_sha256
    from soediff.data import load_training_manifest
    from soediff.models import check_pretrained, pretrained_fingerprint
    from soediff.outputs import check_out_folder

    out = check_out_folder(config.out)
    resume_from, clear = _claim_out_dir(out, resume, overwrite)
    manifest = load_training_manifest(config.manifest)  # check every input before touching the run folder
    check_pretrained(config.pretrained)
    val_manifest = load_training_manifest(config.validation_manifest) if config.validation_manifest else None
    record = config.absolute_paths()  # what config.yaml and inputs.json hold: valid from any directory
    inputs = {"manifest": record.manifest, "manifest_sha256": manifest_sha256(Path(config.manifest)),
              "pretrained": record.pretrained, "pretrained_fingerprint": pretrained_fingerprint(config.pretrained),
              "validation_manifest": record.validation_manifest,
              "given": {**{k: getattr(config, k) for k in RECORDED_PATHS}, "cwd": os.getcwd()},
              **code_versions()}
    if resume_from is not None:
        check_resume_manifest(inputs, out / INPUTS_FILE)
        check_resume_config(record, out / "config.yaml")
    import torch

    try:
        return _train(config, out, manifest, val_manifest, resume_from, clear, progress, keep_models, inputs)
    except torch.OutOfMemoryError as exc:  # while loading/preparing; the loop names the step itself
        raise SoebenchError(f"out of memory while setting up training ({str(exc).splitlines()[0]})",
                            hint=OOM_HINT) from exc
    finally:
        _release_accelerator_state()


def _release_accelerator_state() -> None:
    """accelerate keeps one process-wide AcceleratorState (mixed precision, ...) that a second
    Accelerator may not change; clear it (not the process group) so train() can run again in this
    process, e.g. with another precision (tests, notebooks)."""
    import sys

    if "accelerate" not in sys.modules:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _train(config: TrainConfig, out: Path, manifest, val_manifest, resume_from: Path | None, clear: bool,
           progress: bool, keep_models: bool, inputs: dict[str, str]) -> TrainResult:
    from soebench.compat import ensure_torchvision_ops

    ensure_torchvision_ops()
    from soediff.models import vae_scale_factor
    from soediff.step import StepModels

    # Every check that can fail comes before the old run is cleared: precision and launch, then the
    # data (cheap: prompts, image files, batch), then the models (slow: loading, LoRA blocks).
    accelerator = _make_accelerator(config, out)
    main = accelerator.is_main_process
    val_ds, loader = _setup_data(config, manifest, val_manifest, vae_scale_factor(config.pretrained),
                                 accelerator.num_processes)
    parts, targets, decoder, weight_dtype = _setup_models(config, accelerator)
    if main:
        if clear:
            _clear_run(out)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", config.absolute_paths().to_yaml())
        write_text_atomic(out / INPUTS_FILE, json.dumps(inputs, indent=2))
    accelerator.wait_for_everyone()  # the first process clears an overwritten run: nobody writes before it is done
    unet, decoder, optimizer, loader, scheduler = _setup_optimisation(config, accelerator, parts.unet, decoder, loader)
    step_gen = StepGenerator(accelerator.device, config.seed + 7919 * accelerator.process_index)
    _checkpoint_hooks(accelerator, type(parts.unet),
                      {"rank": config.lora.rank, "alpha": config.lora.alpha, "dropout": config.lora.dropout,
                       "target_modules": targets})

    step = 0
    if resume_from is not None:
        state = json.loads((resume_from / "trainer_state.json").read_text())
        _check_same_processes(state, accelerator.num_processes, resume_from)
        if (resume_from / "custom_checkpoint_0.pkl").exists():
            # a checkpoint of soediff 0.1 (or a run resumed from one): accelerate refuses to load it
            # unless the object it holds is registered; the per-rank file below then replaces it
            accelerator.register_for_checkpointing(step_gen)
        accelerator.load_state(str(resume_from))
        _load_step_generator(resume_from, accelerator.process_index, step_gen)
        step = state["step"]
        log.info("resumed from %s at step %d", resume_from, step)
    models = StepModels(unet=unet, base_unet=accelerator.unwrap_model(unet), vae=parts.vae,
                        text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                        noise_scheduler=parts.noise_scheduler, vae_scale_factor=parts.vae_scale_factor,
                        decoder=decoder)
    if main and config.report_to == "tensorboard":
        accelerator.init_trackers("soediff")
    loop = _Loop(config, out, accelerator, models, optimizer, scheduler, loader, step_gen, val_ds, weight_dtype,
                 csv_log=CsvLog(out / "logs" / "losses.csv", step if resume_from is not None else None) if main else None,
                 last_checkpoint=resume_from,
                 code={k: inputs[k] for k in CODE_KEYS})
    step = loop.run(step, _progress(progress and main, config.max_steps, step))
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(out_dir=out, step=step, checkpoint=loop.last_checkpoint,
                       losses=loop.history[-1] if loop.history else {}, log_csv=out / "logs" / "losses.csv",
                       history=loop.history, validation_images=loop.validation_images,
                       models=_unwrapped(models, accelerator) if keep_models else None)


def _make_accelerator(config: TrainConfig, out: Path):
    """The Accelerator of a run, after the checks that need torch (precision, tracker)."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin, ProjectConfiguration

    if config.report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise MissingDependencyError("report_to: tensorboard needs the tensorboard package",
                                     hint="pip install tensorboard, or set report_to: none (the CSV log is always written)")
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("mixed_precision fp16 needs a CUDA device", hint="use --mixed-precision no (or bf16) on CPU")
    # Accumulation spans epoch boundaries (sync_with_dataloader=False): every optimizer step then
    # takes exactly gradient_accumulation_steps micro-batches, so the data position on resume is
    # step * gradient_accumulation_steps. accelerate's default syncs early at each epoch end,
    # which makes the position depend on the epoch history and broke exact resume.
    accelerator = Accelerator(
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.gradient_accumulation_steps, sync_with_dataloader=False),
        mixed_precision=config.mixed_precision,
        log_with="tensorboard" if config.report_to == "tensorboard" else None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs" / "tensorboard")),
    )
    _check_world(accelerator)
    return accelerator


@dataclass
class _Loop:
    """The optimisation loop: micro-batches -> optimizer steps -> log rows, checkpoints, validation."""

    config: TrainConfig
    out: Path
    accelerator: Any
    models: Any  # soediff.step.StepModels
    optimizer: Any
    scheduler: Any
    loader: Any
    step_gen: StepGenerator
    val_ds: Any
    weight_dtype: Any
    csv_log: CsvLog | None
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    validation_images: list[Path] = field(default_factory=list)
    step_lrs: list[float] = field(default_factory=list)
    code: dict[str, Any] = field(default_factory=dict)  # code_versions(), recorded in every checkpoint

    def run(self, step: int, bar) -> int:
        """Train from optimizer step ``step`` to ``config.max_steps``; returns the last step."""
        import torch

        config, accelerator = self.config, self.accelerator
        trained = [m for m in (self.models.unet, self.models.decoder) if m is not None]
        micro = step * config.gradient_accumulation_steps  # micro-batches already consumed
        acc: dict[str, float] = {}
        acc_n = 0
        tick = time.perf_counter()
        self.models.unet.train()
        try:
            while step < config.max_steps:
                epoch, skip = divmod(micro, len(self.loader))
                for batch in self._epoch_batches(epoch, skip):
                    micro += 1
                    with accelerator.accumulate(*trained):
                        logs = self._micro_step(batch, step + 1)
                    for k, v in logs.items():
                        acc[k] = acc.get(k, 0.0) + v
                    acc_n += 1
                    if not accelerator.sync_gradients:
                        continue
                    step += 1
                    row = _mean_over_processes(accelerator, {k: v / acc_n for k, v in acc.items()})
                    acc, acc_n = {}, 0
                    now = time.perf_counter()
                    self._end_of_step(row, step, epoch, now - tick, bar)
                    tick = now
                    if step >= config.max_steps:
                        break
        except torch.OutOfMemoryError as exc:
            raise SoebenchError(f"out of memory at step {step + 1} ({str(exc).splitlines()[0]})", hint=OOM_HINT) from exc
        except SoebenchError as exc:
            from soediff.data import unwrap_worker_error

            original = unwrap_worker_error(exc)  # a data error from a DataLoader worker, as the worker raised it
            if original is None:
                raise
            raise original from exc
        finally:
            if bar is not None:
                bar[0].stop()
        return step

    def _epoch_batches(self, epoch: int, skip: int):
        """The batches of ``epoch`` after the first ``skip`` (consumed before a resume)."""
        self.loader.set_epoch(epoch)
        if not skip:
            return self.loader
        batches = self.accelerator.skip_first_batches(self.loader, skip)
        batches.set_epoch(epoch)
        return batches

    def _micro_step(self, batch, step: int) -> dict[str, float]:
        """Forward, backward and (on the last micro-batch of a step) the clipped optimizer step;
        a non-finite loss stops training before it reaches the weights."""
        import torch

        from soediff.step import compute_losses

        config, accelerator = self.config, self.accelerator
        # draws outside the step generator (peft's LoRA dropout) use torch's global generator,
        # which a resume cannot restore (each new DataLoader iterator takes a seed from it):
        # seeded from the checkpointed step generator, every micro-step draws the same masks
        gen = self.step_gen.generator
        torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item()))
        loss, logs = compute_losses(self.models, batch, gen, config, accelerator.autocast)
        self._check_finite_loss(logs, step)
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.max_grad_norm > 0:
            accelerator.unscale_gradients()  # once; then each group is clipped on its own
            for group in self.optimizer.param_groups:
                torch.nn.utils.clip_grad_norm_(group["params"], config.max_grad_norm)
        self.optimizer.step()
        if accelerator.sync_gradients:  # the rates this update used, for the step's log row
            self.step_lrs = self.scheduler.get_last_lr()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logs

    def _check_finite_loss(self, logs: dict[str, float], step: int) -> None:
        """Stop at the first NaN/inf loss: every later step would be NaN too and each checkpoint
        would rotate a good one away. Decided over all processes (one small all-reduce), so that
        every process stops here rather than one leaving the others waiting in backward."""
        bad = not all(math.isfinite(v) for v in logs.values())
        if self.accelerator.num_processes > 1:
            import torch

            flag = torch.tensor([float(bad)], device=self.accelerator.device)
            bad = bool(self.accelerator.reduce(flag, reduction="sum").item())
        if bad:
            parts = ", ".join(f"{k}={logs[k]:.4g}" for k in ("loss", "denoise", "csd", "vae") if k in logs)
            raise SoebenchError(f"training diverged at step {step}: the loss is not finite ({parts})",
                                hint=self._divergence_hint())

    def _check_finite_weights(self, step: int) -> None:
        """A checkpoint holds only finite weights: an update can overflow them even when the loss
        that made it was finite (the next loss would be NaN, but the checkpoint is written first)."""
        import torch

        trained = [self.models.base_unet] + ([self.models.decoder] if self.models.decoder is not None else [])
        params = [p for m in trained for p in m.parameters() if p.requires_grad]
        if not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # one device sync
            return
        raise SoebenchError(f"training diverged at step {step}: the trained weights are no longer finite, "
                            "so no checkpoint was written for this step", hint=self._divergence_hint())

    def _divergence_hint(self) -> str:
        lower = (f"lower learning_rate (now {self.config.learning_rate:g}) or vae.learning_rate "
                 f"(now {self.config.vae.learning_rate:g})")
        if self.last_checkpoint is None:
            return f"{lower}; no checkpoint was written yet, so a plain rerun reuses the run folder"
        return (f"{lower}, and start over (--overwrite or another --out: a resume keeps the run's learning rates); "
                f"the last good checkpoint, {self.last_checkpoint.name}, is kept: --resume continues from it and "
                "soediff export exports it")

    def _end_of_step(self, row: dict[str, float], step: int, epoch: int, seconds: float, bar) -> None:
        """Log the step's row; checkpoint and validate when their period comes (and at the end)."""
        config, accelerator = self.config, self.accelerator
        main = accelerator.is_main_process
        last = step == config.max_steps
        lrs = self.step_lrs
        row.update(step=step, epoch=epoch, lr=lrs[0], seconds_per_step=seconds)
        if self.models.decoder is not None:
            row["vae_lr"] = lrs[1]
        self.history.append(row)
        if main and (step % config.log_every == 0 or last):
            self.csv_log.write(row)
            if config.report_to == "tensorboard":
                accelerator.log({f"loss/{k}": row[k] for k in ("loss", "denoise", "csd", "vae") if k in row}
                                | {"lr": row["lr"]}, step=step)
        if bar is not None:
            bar[0].update(bar[1], completed=step, description=f"loss {row['loss']:.4f}")
        if step % config.checkpointing_steps == 0 or last:
            self._check_finite_weights(step)
            self.last_checkpoint = _save_checkpoint(accelerator, self.out, step, epoch, config.checkpoints_total_limit,
                                                    self.step_gen, self.code)
        if main and self.val_ds is not None and config.validation_steps and (step % config.validation_steps == 0 or last):
            self.validation_images.append(
                _validate(self.models, self.val_ds, config, self.out, step, self.weight_dtype, accelerator))


def _setup_optimisation(config: TrainConfig, accelerator, unet, decoder, loader):
    """One AdamW with a LoRA group and a decoder group (own learning rate), its schedule, and
    everything passed through ``accelerator.prepare``: ``(unet, decoder, optimizer, loader, scheduler)``.

    One optimizer keeps fp16 loss scaling right: accelerate unscales every optimizer on clip and
    updates the GradScaler on every optimizer step, which double-unscales a second optimizer's
    gradients."""
    import torch
    from diffusers.optimization import get_scheduler

    from soediff.lora import lora_parameters

    n = accelerator.num_processes
    groups = [{"params": lora_parameters(unet), "lr": config.learning_rate, "name": "lora"}]
    if decoder is not None:
        groups.append({"params": list(decoder.parameters()), "lr": config.vae.learning_rate, "name": "vae_decoder"})
    optimizer = torch.optim.AdamW(groups, betas=(config.adam_beta1, config.adam_beta2),
                                  weight_decay=config.adam_weight_decay, eps=config.adam_epsilon)
    scheduler = get_scheduler(config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps * n,
                              num_training_steps=config.max_steps * n)
    if decoder is None:
        unet, optimizer, loader, scheduler = accelerator.prepare(unet, optimizer, loader, scheduler)
        return unet, None, optimizer, loader, scheduler
    return accelerator.prepare(unet, decoder, optimizer, loader, scheduler)


def _mean_over_processes(accelerator, values: dict[str, float]) -> dict[str, float]:
    """The step's loss terms averaged over every process (each saw its own share of the batch), so
    the log and the progress bar do not depend on which rank writes them. One small all-reduce."""
    if accelerator.num_processes == 1 or not values:
        return values
    import torch

    keys = sorted(values)
    mean = accelerator.reduce(torch.tensor([values[k] for k in keys], device=accelerator.device,
                                           dtype=torch.float64), reduction="mean")
    return dict(zip(keys, mean.tolist()))


def _check_world(accelerator) -> None:
    """N launched processes that accelerate takes for N independent single-process runs would all
    write the same run folder: on a machine without GPUs ``accelerate launch --multi_gpu`` (or
    plain torchrun) starts the processes but accelerate sets up no process group."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and accelerator.num_processes != world:
        raise ConfigError(
            f"launched as {world} processes, but accelerate set up {accelerator.num_processes} "
            f"({accelerator.distributed_type}); every process would train and write the same run alone",
            hint="on GPUs: accelerate launch --multi_gpu --num_processes N ...; on CPUs: "
                 "ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m soediff train ...",
        )


def _setup_models(config: TrainConfig, accelerator):
    """Load the pipeline parts, add SO-LoRA, cast frozen weights to the mixed-precision dtype (trained
    ones stay fp32); return ``(parts, lora targets, decoder or None, weight dtype)``."""
    import torch

    from soediff.lora import add_so_lora, lora_parameters
    from soediff.models import load_parts

    parts = load_parts(config.pretrained)
    if config.csd.enabled and parts.noise_scheduler.config.prediction_type != "epsilon":
        raise ConfigError("cross-scale distillation maps noise predictions between scales and needs an "
                          f"epsilon-prediction model; this one predicts {parts.noise_scheduler.config.prediction_type}",
                          hint="set csd.enabled: false")
    torch.manual_seed(config.seed)  # LoRA init
    targets = add_so_lora(parts.unet, config.lora)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    device = accelerator.device
    cast = {"dtype": weight_dtype} if weight_dtype != torch.float32 else {}
    parts.unet.to(device, **cast)
    parts.text_encoder.to(device, **cast).requires_grad_(False)
    parts.vae.to(device, **cast).requires_grad_(False)
    for p in lora_parameters(parts.unet):
        p.data = p.data.float()  # trained parameters stay fp32 under mixed precision
    if config.gradient_checkpointing:
        parts.unet.enable_gradient_checkpointing()
    decoder = None
    if config.vae.enabled:
        decoder = parts.vae.decoder.to(dtype=torch.float32).requires_grad_(True)
        decoder.train()
    return parts, targets, decoder, weight_dtype


def _setup_data(config: TrainConfig, manifest, val_manifest, vae_scale_factor: int, num_processes: int):
    """The validation dataset (or None) and the training loader over an :class:`EpochSampler` (not yet prepared)."""
    import torch

    from soediff.data import EpochSampler, ManifestDataset, split_rows

    if val_manifest is not None:
        train_idx, val_idx = list(range(len(manifest))), list(range(min(config.validation_rows, len(val_manifest))))
    elif config.validation_rows:
        train_idx, val_idx = split_rows(manifest.table.column("sample_id").to_pylist(), config.validation_rows)
    else:
        train_idx, val_idx = list(range(len(manifest))), []
    ds_args = dict(resolution=config.resolution, vae_scale_factor=vae_scale_factor, prompt_key=config.prompt_key,
                   prompt_template=config.prompt_template)
    train_ds = ManifestDataset(manifest, indices=train_idx, **ds_args)
    val_ds = ManifestDataset(val_manifest or manifest, indices=val_idx, **ds_args) if val_idx else None
    for ds in (train_ds, val_ds):  # every row, before training: not when a worker first meets it
        if ds is not None:
            ds.check_prompts()
            ds.check_images()
    if len(train_ds) < config.train_batch_size * num_processes:
        raise InputError(f"manifest {config.manifest} has {len(train_ds)} training rows, fewer than one batch "
                         f"({config.train_batch_size} x {num_processes} processes)")
    sampler = EpochSampler(len(train_ds), config.seed)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=config.train_batch_size, sampler=sampler,
                                         num_workers=config.num_workers, drop_last=True)
    return val_ds, loader


def _unwrapped(models, accelerator):
    import dataclasses

    return dataclasses.replace(models, unet=models.base_unet,
                               decoder=accelerator.unwrap_model(models.decoder) if models.decoder is not None else None)


def _progress(enabled: bool, total: int, start: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    # stderr, like the summary and the errors: stdout stays clean for whatever reads it
    bar = Progress(TextColumn("[bold]soediff[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
    task = bar.add_task("training", total=total, completed=start)
    bar.start()
    return bar, task


def _save_checkpoint(accelerator, out: Path, step: int, epoch: int, limit: int | None,
                     step_gen: StepGenerator | None = None, code: dict[str, Any] | None = None) -> Path:
    """Save the state; trainer_state.json last, so that its presence marks a complete checkpoint."""
    folder = out / "checkpoints" / f"checkpoint-{step:08d}"
    accelerator.save_state(str(folder))
    accelerator.wait_for_everyone()  # the folder exists
    if step_gen is not None:  # every process its own: accelerate saves custom objects of rank 0 only
        _save_step_generator(folder, accelerator.process_index, step_gen)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_text_atomic(folder / "trainer_state.json",
                          json.dumps({"step": step, "epoch": epoch, "num_processes": accelerator.num_processes,
                                      **(code or {})}, indent=2))
        if limit is not None:
            for old in list_checkpoints(out)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return folder


def _step_generator_file(folder: Path, rank: int) -> Path:
    return folder / f"step_generator_{rank}.pt"


def _save_step_generator(folder: Path, rank: int, step_gen: StepGenerator) -> None:
    import torch

    with atomic_path(_step_generator_file(folder, rank)) as tmp:
        torch.save(step_gen.state_dict(), tmp)


def _load_step_generator(folder: Path, rank: int, step_gen: StepGenerator) -> None:
    """This process's step generator as the checkpoint saved it (a checkpoint of soediff 0.1 holds
    rank 0's only, which accelerate's load_state restored)."""
    import torch

    path = _step_generator_file(folder, rank)
    if path.exists():
        step_gen.load_state_dict(torch.load(path, weights_only=False))


def _check_same_processes(state: dict[str, Any], now: int, checkpoint: Path) -> None:
    """A resume on another number of processes is another run: the global batch, the data each
    process reads and the learning-rate schedule (laid out over steps x processes) all change."""
    before = state.get("num_processes")
    if before is not None and before != now:
        raise ConfigError(f"--resume from {checkpoint.name} with {now} process(es): the run was trained with {before}",
                          hint=f"resume with {before} processes (accelerate launch / torchrun --nproc_per_node {before})")


def _validate(models, dataset, config: TrainConfig, out: Path, step: int, weight_dtype, accelerator) -> Path:
    """Inpaint the held-out rows with the current weights; save masked input | output rows as one PNG."""
    import numpy as np
    import torch
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    from PIL import Image

    unet = models.base_unet
    was_training = unet.training
    unet.eval()
    vae = models.vae
    decoder_mode = vae.decoder.training
    vae.eval()
    pipe = StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=models.text_encoder, tokenizer=models.tokenizer, unet=unet,
        scheduler=DDIMScheduler.from_config(models.noise_scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    rows = []
    with torch.no_grad(), accelerator.autocast():
        for i in range(len(dataset)):
            item = dataset[i]
            to_img = lambda t: Image.fromarray(((t.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8))  # noqa: E731
            masked = to_img(item["masked_image"])
            mask = Image.fromarray((item["mask"][0].numpy() * 255).astype(np.uint8))
            gen = torch.Generator(device=accelerator.device).manual_seed(config.seed + i)
            result = pipe(item["prompt"], image=to_img(item["image"]), mask_image=mask, height=config.resolution,
                          width=config.resolution, num_inference_steps=config.validation_inference_steps,
                          generator=gen).images[0]
            rows.append(np.concatenate([np.asarray(masked), np.asarray(result.convert("RGB"))], axis=1))
    unet.train(was_training)
    vae.decoder.train(decoder_mode)
    path = out / "validation" / f"step-{step:08d}.png"
    with atomic_path(path) as tmp:
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp, format="PNG")
    return path

