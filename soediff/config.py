"""The training configuration: typed dataclasses, every field documented, validated, YAML in and out.

One :class:`TrainConfig` is built once (from YAML and/or CLI options) and handed to
:func:`soediff.trainer.train`; modules receive the sections they need, never a CLI namespace.
Defaults follow the public SOEDiff code where it states a value (LoRA rank 64 on the
mid/low-resolution blocks, learning rate 3e-7, 512 px, batch 8); values marked "ours" are choices
of this implementation.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soebench.errors import ConfigError
from soebench.manifest.schema import PROMPT_KEYS

LOSS_KINDS = ("masked_mse", "huber")
MIXED_PRECISION = ("no", "fp16", "bf16")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
NOISE_RESAMPLING = ("conditional", "nearest")
PROMPT_SOURCES = (*PROMPT_KEYS, "caption")
PROMPT_FIELDS = ("category", "color", "caption", *PROMPT_KEYS)
#: the fields that name files or folders (relative ones are relative to the working directory)
PATH_FIELDS = ("manifest", "pretrained", "validation_manifest", "out")

SOEDIFF_TARGET_MODULES = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "time_emb_proj",
)


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


def _commented(settings: Any, indent: str) -> list[str]:
    """YAML lines of a settings dataclass, each field after a ``# meaning`` line (a nested block's
    from its field, else its class docstring)."""
    import yaml

    lines: list[str] = []
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            about = f.metadata.get("doc") or (type(value).__doc__ or "").strip().split("\n")[0]
            lines += [f"{indent}# {about}"] if about else []
            lines += [f"{indent}{f.name}:", *_commented(value, indent + "  ")]
            continue
        if f.metadata.get("doc"):
            lines.append(f"{indent}# {f.metadata['doc']}")
        lines.append(indent + yaml.safe_dump({f.name: value}, default_flow_style=True, width=10**6).strip()[1:-1])
    return lines


@dataclass
class LoraSettings:
    """SO-LoRA: low-rank adapters on the inpainting UNet."""

    rank: int = field(default=64, metadata=_doc("LoRA rank r (SOEDiff: 64)."))
    alpha: float = field(default=64.0, metadata=_doc("LoRA alpha; the update is scaled by alpha / rank."))
    dropout: float = field(default=0.0, metadata=_doc("Dropout on the LoRA branch."))
    target_modules: list[str] = field(
        default_factory=lambda: list(SOEDIFF_TARGET_MODULES),
        metadata=_doc("Module name suffixes that get adapters (SOEDiff's list: attention, feed-forward, resnet convs, "
                      "samplers, time embedding projections)."),
    )
    blocks: list[str] | None = field(
        default=None,
        metadata=_doc("UNet blocks to adapt, as module-name prefixes (e.g. 'mid_block', 'down_blocks.1'). None: "
                      "SOEDiff's rule -- every block except the highest-resolution ones (down_blocks.0 and the "
                      "last up block), i.e. down_blocks 1-3, mid_block, up_blocks 0-2 on SD."),
    )


@dataclass
class CSDSettings:
    """Cross-scale score distillation from the adapter-free base UNet on the teacher crop."""

    enabled: bool = field(default=True, metadata=_doc("Add the cross-scale distillation term."))
    weight: float = field(default=1.0, metadata=_doc("lambda: weight of the distillation term (ours)."))
    noise_resampling: str = field(
        default="conditional",
        metadata=_doc("How the teacher's noise is made from the student's (see soediff.geometry): 'conditional' "
                      "(i.i.d. unit-variance teacher noise whose k x k block sums equal the student noise, ours) "
                      "or 'nearest' (repeat each student value k x k times: unit variance but block-correlated)."),
    )


@dataclass
class VaeSettings:
    """Fine-tuning of the VAE decoder on small regions (encoder frozen)."""

    enabled: bool = field(default=True, metadata=_doc("Fine-tune the VAE decoder."))
    learning_rate: float = field(default=1e-6, metadata=_doc("Decoder learning rate (its own AdamW parameter group, same schedule; ours)."))
    mask_weight: float = field(
        default=10.0, metadata=_doc("Reconstruction weight of mask pixels relative to 1 for the rest (ours).")
    )
    loss: str = field(default="l1", metadata=_doc("Reconstruction loss: 'l1' or 'l2'."))


@dataclass
class TrainConfig:
    """Everything one SOEDiff training run depends on."""

    manifest: str = field(default="", metadata=_doc("Training manifest (soebench Parquet file or folder)."))
    pretrained: str = field(default="", metadata=_doc("Stable Diffusion *inpainting* pipeline folder (diffusers)."))
    out: str = field(default="runs/soediff", metadata=_doc("Run folder: checkpoints, logs, validation images."))
    validation_manifest: str | None = field(
        default=None, metadata=_doc("Held-out manifest for validation images; None: hold out rows of `manifest`.")
    )
    validation_rows: int = field(
        default=4, metadata=_doc("Rows held out for validation (taken from `manifest` when no validation_manifest).")
    )
    prompt_key: str = field(
        default="color_label", metadata=_doc(f"Prompt source: one of {', '.join(PROMPT_SOURCES)} (manifest prompts).")
    )
    prompt_template: str | None = field(
        default=None,
        metadata=_doc("Training prompt as a format string over the row, e.g. 'a photo of a small {color} {category}'. "
                      f"Fields: {', '.join(f'{{{n}}}' for n in PROMPT_FIELDS)}; a missing colour or caption is "
                      "empty and the spaces around it collapse. None: the manifest prompt named by prompt_key."),
    )
    resolution: int = field(default=512, metadata=_doc("Square training resolution in pixels (SOEDiff: 512)."))
    train_batch_size: int = field(default=8, metadata=_doc("Batch size per device (SOEDiff: 8)."))
    gradient_accumulation_steps: int = field(default=1, metadata=_doc("Micro-batches per optimizer step."))
    max_steps: int = field(default=50000, metadata=_doc("Optimizer steps to train for."))
    learning_rate: float = field(default=3e-7, metadata=_doc("LoRA learning rate (SOEDiff: 3e-7)."))
    adam_beta1: float = field(default=0.9, metadata=_doc("AdamW beta1."))
    adam_beta2: float = field(default=0.999, metadata=_doc("AdamW beta2."))
    adam_weight_decay: float = field(default=1e-2, metadata=_doc("AdamW weight decay."))
    adam_epsilon: float = field(default=1e-8, metadata=_doc("AdamW epsilon."))
    max_grad_norm: float = field(default=1.0, metadata=_doc("Gradient clipping norm (0: off)."))
    lr_scheduler: str = field(default="constant", metadata=_doc(f"One of {', '.join(LR_SCHEDULERS)}."))
    lr_warmup_steps: int = field(default=0, metadata=_doc("Warm-up steps of the learning-rate schedule."))
    loss: str = field(
        default="masked_mse",
        metadata=_doc("Denoising loss: 'masked_mse' (L2 on the noise inside the latent mask) or 'huber' "
                      "(Huber over the whole latent)."),
    )
    huber_delta: float = field(default=0.1, metadata=_doc("Huber transition point (loss='huber')."))
    mixed_precision: str = field(
        default="fp16", metadata=_doc("'no', 'fp16' or 'bf16'; frozen weights in that dtype, trained ones in fp32.")
    )
    gradient_checkpointing: bool = field(default=False, metadata=_doc("Recompute UNet activations to save memory."))
    seed: int = field(default=0, metadata=_doc("Seed of noise, timesteps, data order and LoRA init."))
    num_workers: int = field(default=2, metadata=_doc("DataLoader worker processes."))
    checkpointing_steps: int = field(default=500, metadata=_doc("Save a resumable checkpoint every N steps."))
    checkpoints_total_limit: int | None = field(default=3, metadata=_doc("Keep at most this many checkpoints."))
    log_every: int = field(default=10, metadata=_doc("Write a CSV/TensorBoard row every N steps."))
    report_to: str = field(default="tensorboard", metadata=_doc("'tensorboard' or 'none' (the CSV log is always written)."))
    validation_steps: int = field(default=1000, metadata=_doc("Write validation images every N steps (0: never)."))
    validation_inference_steps: int = field(default=25, metadata=_doc("Sampler steps for validation images."))
    lora: LoraSettings = field(default_factory=LoraSettings, metadata=_doc("SO-LoRA settings."))
    csd: CSDSettings = field(default_factory=CSDSettings, metadata=_doc("Cross-scale distillation settings."))
    vae: VaeSettings = field(default_factory=VaeSettings, metadata=_doc("VAE decoder fine-tuning settings."))

    # ------------------------------------------------------------------ validation
    def validate(self) -> TrainConfig:
        """Raise one :class:`ConfigError` listing every invalid value; return self."""
        p: list[str] = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                p.append(msg)

        def finite(value: Any) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        # named as a user gives them: the flag, or the key of the --config file
        need(bool(self.manifest), "manifest is required (--manifest, or manifest: in the --config file)")
        need(bool(self.pretrained), "pretrained is required (--pretrained, or pretrained: in the --config file)")
        need(bool(self.out), "out is required (--out, or out: in the --config file)")
        need(self.prompt_key in PROMPT_SOURCES, f"prompt_key {self.prompt_key!r} is not one of {PROMPT_SOURCES}")
        if self.prompt_template is not None:
            problem = template_problem(self.prompt_template)
            need(problem is None, f"prompt_template {self.prompt_template!r}: {problem}")
        need(self.resolution >= 64 and self.resolution % 64 == 0,
             f"resolution must be a positive multiple of 64, got {self.resolution}")
        for name in ("train_batch_size", "gradient_accumulation_steps", "max_steps", "log_every",
                     "checkpointing_steps", "validation_inference_steps"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("validation_rows", "validation_steps", "num_workers", "lr_warmup_steps"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        # finite() first: NaN fails every comparison, but inf passes "> 0" and would train to NaN
        need(finite(self.learning_rate) and self.learning_rate > 0,
             f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        for name in ("adam_beta1", "adam_beta2"):  # torch's AdamW raises a bare ValueError otherwise
            need(finite(getattr(self, name)) and 0 <= getattr(self, name) < 1,
                 f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("adam_epsilon", "adam_weight_decay", "max_grad_norm"):
            need(finite(getattr(self, name)) and getattr(self, name) >= 0,
                 f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        need(self.lr_scheduler in LR_SCHEDULERS, f"lr_scheduler {self.lr_scheduler!r} is not one of {LR_SCHEDULERS}")
        need(self.loss in LOSS_KINDS, f"loss {self.loss!r} is not one of {LOSS_KINDS}")
        need(finite(self.huber_delta) and self.huber_delta > 0,
             f"huber_delta must be a finite number > 0, got {self.huber_delta}")
        need(self.mixed_precision in MIXED_PRECISION,
             f"mixed_precision {self.mixed_precision!r} is not one of {MIXED_PRECISION}")
        need(self.report_to in ("tensorboard", "none"), f"report_to {self.report_to!r} is not 'tensorboard' or 'none'")
        need(self.checkpoints_total_limit is None or self.checkpoints_total_limit >= 1,
             f"checkpoints_total_limit must be >= 1 or null, got {self.checkpoints_total_limit}")
        need(self.lora.rank >= 1, f"lora.rank must be >= 1, got {self.lora.rank}")
        need(finite(self.lora.alpha) and self.lora.alpha > 0,
             f"lora.alpha must be a finite number > 0, got {self.lora.alpha}")
        need(0 <= self.lora.dropout < 1, f"lora.dropout must be in [0, 1), got {self.lora.dropout}")
        need(bool(self.lora.target_modules), "lora.target_modules must not be empty")
        need(self.lora.blocks is None or bool(self.lora.blocks), "lora.blocks must be null or a non-empty list")
        need(finite(self.csd.weight) and self.csd.weight >= 0,
             f"csd.weight must be a finite number >= 0, got {self.csd.weight}")
        need(self.csd.noise_resampling in NOISE_RESAMPLING,
             f"csd.noise_resampling {self.csd.noise_resampling!r} is not one of {NOISE_RESAMPLING}")
        need(finite(self.vae.learning_rate) and self.vae.learning_rate > 0,
             f"vae.learning_rate must be a finite number > 0, got {self.vae.learning_rate}")
        need(finite(self.vae.mask_weight) and self.vae.mask_weight >= 1,
             f"vae.mask_weight must be a finite number >= 1, got {self.vae.mask_weight}")
        need(self.vae.loss in ("l1", "l2"), f"vae.loss {self.vae.loss!r} is not 'l1' or 'l2'")
        if p:
            raise ConfigError("invalid training config: " + "; ".join(p))
        return self

    # ------------------------------------------------------------------ dict / YAML
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Build from a (possibly partial) nested dict; unknown keys are an error naming the key."""
        return _from_dict(cls, data, where)

    def to_yaml(self, *, comments: bool = False) -> str:
        """The config as YAML; ``comments``: each option preceded by its meaning (``soediff config``)."""
        import yaml

        if not comments:
            return yaml.safe_dump(self.to_dict(), sort_keys=False)
        return "\n".join(_commented(self, "")) + "\n"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> TrainConfig:
        import yaml

        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if path.is_dir():
            raise ConfigError(f"config file {path} is a folder",
                              hint="pass a YAML file (soediff config --out writes one)")
        try:
            data = yaml.safe_load(_read_text(path)) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of config fields, got {type(data).__name__}")
        return cls.from_dict(data, where=str(path))

    def absolute_paths(self) -> TrainConfig:
        """A copy whose paths (:data:`PATH_FIELDS`) are absolute: ``~`` expanded, resolved against the
        working directory. A run records these, so that its resume and export work from any directory."""
        return self.replace(**{name: str(Path(value).expanduser().resolve())
                               for name in PATH_FIELDS if (value := getattr(self, name))})

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy (sections included) with top-level fields replaced (``None`` values are ignored)."""
        import copy

        return dataclasses.replace(copy.deepcopy(self), **{k: v for k, v in overrides.items() if v is not None})


def _read_text(path: Path) -> str:
    """A config file's text; unreadable or non-UTF-8 bytes are a ConfigError naming the file and byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                          f"{exc.start})", hint="pass a YAML file saved as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc


def template_problem(template: str) -> str | None:
    """What is wrong with a prompt template (None when it is usable)."""
    import string

    try:
        names = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return f"not a valid format string ({exc})"
    unknown = [n for n in names if n not in PROMPT_FIELDS]
    if unknown:
        return f"unknown field {{{unknown[0]}}} (fields: {', '.join(PROMPT_FIELDS)})"
    return None


def _from_dict(cls: type, data: dict[str, Any], where: str):
    import difflib

    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown field {key!r}{hint}")
        sub = _SECTIONS.get(fields[key].name) if cls is TrainConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: field {key!r} must be a mapping")
            value = _from_dict(sub, value, f"{where}:{key}")
        else:
            value = _yaml_bool_word(fields[key], value, where)
            value = _check_type(fields[key], value, where)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _yaml_bool_word(f: dataclasses.Field, value: Any, where: str) -> Any:
    """YAML 1.1 reads bare ``no``/``off`` as false and ``yes``/``on`` as true. ``mixed_precision: no``
    means "no" and is taken as such; any other boolean where a word is expected is refused with
    the quoting that keeps it a word."""
    if not isinstance(value, bool) or not isinstance(f.default, str):
        return value
    if f.name == "mixed_precision" and value is False:
        return "no"
    choices = {"mixed_precision": MIXED_PRECISION}.get(f.name)
    hint = f" (one of {', '.join(repr(c) for c in choices)})" if choices else ""
    raise ConfigError(f"{where}: field {f.name!r} must be str{hint}, got {value!r}: YAML reads bare yes/no/on/off "
                      f"as booleans; quote the word you meant, e.g. {f.name}: \"{'yes' if value else 'no'}\"")


def _check_type(f: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` if it has the field's type, else a ConfigError naming the field. A float field also
    takes a numeric string, returned as a float: PyYAML (YAML 1.1) reads ``1e-4`` -- no dot -- as a
    string. Whether the number is finite and in range is ``validate``'s to say."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    if value is None or default is None:
        return value
    if isinstance(default, float) and isinstance(value, str):
        value = _float_or_str(value)
    expected: tuple[type, ...] = (int, float) if isinstance(default, float) else (type(default),)
    ok = isinstance(value, expected) and not (isinstance(value, bool) and not isinstance(default, bool))
    if isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    if not ok:
        raise ConfigError(f"{where}: field {f.name!r} must be {type(default).__name__}, got {value!r}")
    return value


def _float_or_str(text: str) -> float | str:
    """``text`` as a float when it spells one (``1e-4``), else unchanged (and refused by the caller)."""
    try:
        return float(text)
    except ValueError:
        return text


_SECTIONS: dict[str, type] = {"lora": LoraSettings, "csd": CSDSettings, "vae": VaeSettings}


def describe_fields(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(name, default, doc)`` for every field, sections flattened as ``section.field``."""
    rows: list[tuple[str, Any, str]] = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if f.name in _SECTIONS and cls is TrainConfig:
            rows.extend(describe_fields(_SECTIONS[f.name], prefix=name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((name, default, f.metadata.get("doc", "")))
    return rows
