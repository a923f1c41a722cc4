"""soediff command line: thin commands over :mod:`soediff.trainer`, :mod:`soediff.export`, :mod:`soediff.tiny`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from soebench.errors import SoebenchError, storage_error
from soediff.config import TrainConfig

app = typer.Typer(name="soediff", no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None,  # plain help: full option names at 80 columns, no <bool> on flags
                  help="SOEDiff training: SO-LoRA + cross-scale score distillation + VAE decoder fine-tuning.")


#: TrainConfig's defaults, stated in the help: the options default to None, so a --config can set them
_DEFAULTS = TrainConfig()


def _with_default(text: str, value: object, note: str = "") -> str:
    return f"{text} Default: {value}{' ' + note if note else ''}."


@app.command()
def train(
    manifest: Annotated[Optional[Path], typer.Option(
        help="Training manifest (soebench Parquet). Required, here or in --config.")] = None,
    pretrained: Annotated[Optional[Path], typer.Option(
        help="Stable Diffusion inpainting pipeline folder. Required, here or in --config.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help=_with_default("Run folder (checkpoints, logs, validation images).", _DEFAULTS.out))] = None,
    config: Annotated[Optional[Path], typer.Option(
        help="YAML TrainConfig; CLI options override it (with --resume, default: the run's config.yaml).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(
        help=_with_default("Optimizer steps.", _DEFAULTS.max_steps))] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        help=_with_default("Batch size per device.", _DEFAULTS.train_batch_size))] = None,
    learning_rate: Annotated[Optional[float], typer.Option(
        help=_with_default("LoRA learning rate.", f"{_DEFAULTS.learning_rate:g}"))] = None,
    resolution: Annotated[Optional[int], typer.Option(
        help=_with_default("Training resolution (px).", _DEFAULTS.resolution))] = None,
    mixed_precision: Annotated[Optional[str], typer.Option(
        help=_with_default("no | fp16 | bf16.", _DEFAULTS.mixed_precision,
                           "(fp16/bf16 need a GPU: no on a CPU)"))] = None,
    seed: Annotated[Optional[int], typer.Option(help=_with_default("Random seed.", _DEFAULTS.seed))] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run's latest checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Discard an existing run in --out.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train SO-LoRA (+ cross-scale distillation, + VAE decoder) on a soebench manifest."""
    from rich.console import Console

    from soediff.config import TrainConfig
    from soediff.trainer import load_run_config
    from soediff.trainer import train as run_training

    if config is None and resume and out is not None and (out / "config.yaml").exists():
        cfg = load_run_config(out)  # resume with the run's own settings unless told otherwise
    else:
        cfg = TrainConfig.from_yaml(config) if config else TrainConfig()
    cfg = cfg.replace(manifest=str(manifest) if manifest else None, pretrained=str(pretrained) if pretrained else None,
                      out=str(out) if out else None, max_steps=max_steps, train_batch_size=batch_size,
                      learning_rate=learning_rate, resolution=resolution, mixed_precision=mixed_precision, seed=seed)
    result = run_training(cfg, resume=resume, overwrite=overwrite, progress=progress)
    # soft_wrap: paths stay whole to copy; markup off: a path may hold [brackets]
    Console(stderr=True).print(_train_summary(result, cfg), soft_wrap=True, markup=False)


def _train_summary(result, cfg) -> str:
    """What a train command did; a resume at or past max_steps trained nothing and has no losses."""
    if not result.history:
        return (f"run {result.out_dir} is already complete: its checkpoint is at step {result.step} "
                f"(max_steps {cfg.max_steps}), nothing to train\ncheckpoint: {result.checkpoint}\n"
                f"export it with: soediff export {result.out_dir} --out DIR\n{_longer_hint(result.out_dir, cfg, result.step)}")
    losses = ", ".join(f"{k}={result.losses[k]:.4f}" for k in ("loss", "denoise", "csd", "vae") if k in result.losses)
    return f"trained to step {result.step}: {losses}\ncheckpoint: {result.checkpoint}\nlog: {result.log_csv}"


def _longer_hint(out, cfg, step: int) -> str:
    """How to train a complete run further, as :func:`soediff.trainer.check_resume_config` accepts it:
    a resume may extend only a schedule that is not laid out over max_steps."""
    from soediff.trainer import STEPS_SHAPED_SCHEDULES

    if cfg.lr_scheduler in STEPS_SHAPED_SCHEDULES:
        return (f"to train longer, start over with a larger --max-steps: soediff train --config {out / 'config.yaml'} "
                f"--out {out} --overwrite --max-steps N (or --out NEW to keep this run); a resume cannot extend it, "
                f"its {cfg.lr_scheduler!r} learning-rate schedule is laid out over max_steps")
    return f"to train longer: soediff train --out {out} --resume --max-steps N (N > {max(cfg.max_steps, step)})"


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="Run folder written by `soediff train`.")],
    out: Annotated[Path, typer.Option(help="Export folder.")],
    checkpoint: Annotated[Optional[str], typer.Option(help="Checkpoint name or folder (default: latest).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export.")] = False,
    pipeline: Annotated[bool, typer.Option(help="Also write OUT/pipeline: the base pipeline with the fine-tuned "
                                                "VAE (evaluate it with path=OUT/pipeline,lora=OUT).")] = False,
    pretrained: Annotated[Optional[Path], typer.Option(help="Base pipeline for --pipeline (default: the run's).")] = None,
) -> None:
    """Write the LoRA (diffusers format, for load_lora_weights) and the fine-tuned VAE decoder."""
    from rich.console import Console

    from soediff.export import export_run

    result = export_run(run, out, checkpoint=checkpoint, overwrite=overwrite, pipeline=pipeline,
                        pretrained=pretrained)
    Console(stderr=True).print(f"exported step {result.step} of {result.checkpoint}\nLoRA: {result.lora}\n"
                               f"VAE decoder: {result.vae_decoder or '(not trained)'}"
                               + (f"\npipeline with the fine-tuned VAE: {result.pipeline}" if result.pipeline else ""))


@app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Argument(help="Folder to write the pipeline into.")],
    seed: Annotated[int, typer.Option(help="Weight seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing folder.")] = False,
) -> None:
    """Write a tiny random-weight SD inpainting pipeline (for smoke tests; loads with from_pretrained)."""
    from soebench.fileio import refuse_existing
    from soediff.outputs import check_out_folder
    from soediff.tiny import save_tiny_inpaint_pipeline

    check_out_folder(out, "OUT")
    refuse_existing(out / "model_index.json", overwrite, what="pipeline")
    path = save_tiny_inpaint_pipeline(out, seed=seed)
    typer.echo(str(path))


@app.command("config")
def show_config(
    out: Annotated[Optional[Path], typer.Option(help="Write the default config YAML here instead of listing.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """List every training config field with its default and meaning (or write the default YAML)."""
    from soediff.config import TrainConfig, describe_fields

    if out is not None:
        from soebench.fileio import write_text_atomic

        _check_out_file(out, overwrite)
        write_text_atomic(out, TrainConfig().to_yaml(comments=True))
        typer.echo(str(out))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("field", "default", "meaning")
    for name, default, doc in describe_fields():
        table.add_row(name, repr(default), doc)
    Console().print(table)


def _check_out_file(out: Path, overwrite: bool) -> None:
    """``--out`` of a file: not a folder, not below a file, and an existing file only with --overwrite
    (a config someone edited is not silently replaced by the defaults)."""
    from soebench.fileio import check_output_file, refuse_existing

    check_output_file(out, what="--out")
    refuse_existing(out, overwrite, what="config file")


def run() -> None:
    from soebench.cli.app import render_error

    try:
        app(standalone_mode=True)
    except SoebenchError as err:
        render_error(err)
        sys.exit(err.exit_code)
    except Exception as exc:  # a disk-full error may arrive wrapped (a writer thread re-raises it)
        err = storage_error(exc)
        if err is None:
            raise
        render_error(err)
        sys.exit(err.exit_code)
