"""``evaluate(manifest, model, out)``: run an inpainter on a SOEBench manifest and score it.

manifest rows -> (this process's shard) -> batches -> decoded inputs -> adapter through the
generation cache -> ``images/<sample_id>.png`` -> per-sample metrics + taxonomy and set-level
FID/KID states -> (rank 0: merge shards) -> ``samples.parquet``, ``summary.json``, report.

``model`` is a registered adapter name (``soebench.models.MODELS``) with ``model_args``, an
object with ``inpaint(requests)``, or a plain function. A run folder that exists is refused
unless ``overwrite`` (start again) or ``resume`` (reuse every cached output) is given.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from soebench.errors import ConfigError, InputError, MissingWeightsError, OutputExistsError
from soebench.fileio import exclusive_lock, remove_stale_temps

log = logging.getLogger(__name__)

RUN_FILES = ("samples.parquet", "summary.json", "report.md", "report.html", "run.json", ".samples-previous.parquet")
PREVIOUS_SAMPLES = RUN_FILES[-1]  # samples.parquet of a run resumed under another configuration
RUN_DIRS = ("images", "cache", "scores", "shards", "plots")
#: ``auto``: the model tier (CLIP zero-shot checks averaged into the weight-free scores) whenever
#: the run loads CLIP for its CLIP-Scores, the weight-free tier alone otherwise; ``model``: always
#: (loads CLIP, an error without its weights); ``weight-free``: never (the tier that is validated here)
TAXONOMY_TIERS = ("auto", "weight-free", "model")


@dataclass(frozen=True)
class EvalOptions:
    """Options of a run (the CLI flags of ``soebench evaluate``).

    ``metrics`` None: every metric whose weights are available (the summary lists the others);
    ``clip_model``/``clip_pretrained``/``clip_weights`` and ``inception_weights`` go to the metric
    loaders; ``seed`` is the base of the per-sample seeds; ``shard`` (rank, world size) defaults to
    the ``RANK``/``WORLD_SIZE`` environment; ``shard_timeout`` is how long rank 0 waits for the
    other shards; ``taxonomy_tier`` one of :data:`TAXONOMY_TIERS`."""

    prompt_key: str = "color_label"
    metrics: tuple[str, ...] | None = None
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = "openai"
    clip_weights: str | None = None
    inception_weights: str | None = None
    batch_size: int = 8
    device: str = "cpu"
    limit: int | None = None
    seed: int = 0
    overwrite: bool = False
    resume: bool = False
    report: bool = True
    progress: bool = True
    run_name: str | None = None
    shard: tuple[int, int] | None = None
    shard_timeout: float = 3600.0
    taxonomy_tier: str = "auto"
    images_root: str | None = None  # the images' folder, for a manifest moved away from them

    def check(self) -> None:
        from soebench.manifest.schema import PROMPT_KEYS

        if self.prompt_key not in PROMPT_KEYS:
            raise ConfigError(f"unknown prompt key {self.prompt_key!r}", hint=f"choose one of {', '.join(PROMPT_KEYS)}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1; got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1; got {self.limit}")
        if self.overwrite and self.resume:
            raise ConfigError("--overwrite and --resume exclude each other")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0; got {self.seed}")
        if self.metrics is not None and not self.metrics:
            raise ConfigError("--metrics names no metric", hint="leave it out for every metric whose weights are available")
        if self.taxonomy_tier not in TAXONOMY_TIERS:
            close = difflib.get_close_matches(str(self.taxonomy_tier), TAXONOMY_TIERS, n=1)
            raise ConfigError(f"unknown taxonomy tier {self.taxonomy_tier!r}",
                              hint=f"did you mean {close[0]}?" if close else f"choose one of {', '.join(TAXONOMY_TIERS)}")


@dataclass
class RunResult:
    """What a run produced. ``summary`` and ``samples`` are None on a rank other than 0;
    ``adapter_calls`` counts the samples the adapter generated (not its batches), ``from_cache``
    those taken from the generation cache."""

    run_dir: Path
    summary: dict[str, Any] | None
    samples: Any = None  # pandas DataFrame
    adapter_calls: int = 0
    from_cache: int = 0
    shard_path: Path | None = None


@dataclass
class _Run:
    """Everything the loop needs, built (and checked) before any work starts."""

    run_dir: Path
    manifest: Any
    rows: list[dict[str, Any]]
    adapter: Any
    model_name: str
    model_args: dict[str, Any]
    scorer: Any
    opts: EvalOptions
    shard: Any
    metrics_info: dict[str, Any] = field(default_factory=dict)
    config_hash: str = ""
    manifest_sha256: str | None = None  # hashed once: the resume key and the summary both record it
    token: dict[str, Any] | None = None  # the adapter's cache_token(), checked before any sample


def evaluate(
    manifest: str | Path | Any,
    model: str | Any,
    out: str | Path,
    *,
    model_args: Mapping[str, Any] | str | None = None,
    options: EvalOptions | None = None,
    judge: Any = None,
    **overrides: Any,
) -> RunResult:
    """Evaluate ``model`` on ``manifest`` into the run folder ``out`` (see module docstring).
    Keyword ``overrides`` set :class:`EvalOptions` fields. ``judge``: the failure taxonomy's model
    tier as an object (a detector, a VQA model: anything with ``assess_batch(crops, categories=,
    expected_colors=)`` or ``assess(crop, category=, expected_color=)``, see
    :mod:`soebench.taxonomy.clip_judge`) instead of the CLIP one ``taxonomy_tier`` loads; its
    ``describe()`` (or class name) keys the resume and is recorded."""
    opts = _options(options, overrides)
    with contextlib.ExitStack() as held:
        run = _prepare(manifest, model, Path(out), model_args, opts, held, judge)
        return _execute(run)


def _options(options: EvalOptions | None, overrides: dict[str, Any]) -> EvalOptions:
    base = asdict(options) if options is not None else {}
    unknown = set(overrides) - set(EvalOptions.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown evaluate option(s): {', '.join(sorted(unknown))}")
    values = {**base, **overrides}
    if isinstance(values.get("metrics"), str):  # "clip_score_local,bg_psnr", as the CLI takes it
        values["metrics"] = [m.strip() for m in values["metrics"].split(",") if m.strip()]
        if not values["metrics"]:
            raise ConfigError("metrics: no metric named; give names such as 'bg_psnr,bg_ssim' or None for all available")
    if values.get("metrics") is not None:
        values["metrics"] = tuple(dict.fromkeys(values["metrics"]))  # each once, in the order given
    if values.get("shard") is not None:
        values["shard"] = tuple(values["shard"])
    for key in ("clip_weights", "clip_pretrained", "inception_weights"):
        if not isinstance(values.get(key), (str, os.PathLike)):
            continue
        path = Path(values[key]).expanduser()
        if path.exists():  # recorded with the run: a path relative to where it ran would name nothing later
            values[key] = str(path.resolve())
        elif key != "clip_pretrained":  # (a pretrained tag such as "openai" is no path)
            # a weights path given is a path, whether or not a chosen metric reads it: a typo would
            # otherwise pass unnoticed (and key the run) until the metric is asked for
            option, what = "--" + key.replace("_", "-"), "CLIP" if key.startswith("clip") else "Inception"
            raise MissingWeightsError(f"{what} weights {option} {values[key]} do not exist",
                                      hint=f"give the weights file (or folder) that exists, or leave {option} out")
    opts = EvalOptions(**values)
    opts.check()
    return opts


def _prepare(manifest: Any, model: Any, run_dir: Path, model_args: Any, opts: EvalOptions,
             held: contextlib.ExitStack, judge: Any = None) -> _Run:
    """Check everything and claim the run folder (its lock goes on ``held`` for the run)."""
    from soebench.manifest.io import Manifest, read_manifest
    from soebench.models import build_model
    from soebench.manifest.schema import check_rows
    from soebench.run.generate import CHECKED_COLUMNS, ROW_COLUMNS, adapter_token
    from soebench.run.shard import Shard, detect_shard, local_device

    shard = Shard(*opts.shard) if opts.shard else detect_shard()
    opts = replace(opts, device=local_device(opts.device, shard))
    check_device(opts.device)
    man = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
    if opts.images_root is not None:
        man = man.with_images_root(opts.images_root)
    if man.table.num_rows == 0:
        raise InputError(f"manifest {man.path} has no rows: nothing to evaluate")
    _check_images_root(man)
    # a NaN box or an image path outside the root: named now, before the models load, not after the run
    selected = man.table if opts.limit is None else man.table.slice(0, opts.limit)
    check_rows(selected, CHECKED_COLUMNS, where=str(man.path))
    if shard.is_main:
        _check_run_dir_path(run_dir)
    adapter, args_dict = build_model(model, model_args, device=opts.device)
    if isinstance(args_dict.get("device"), str) and args_dict["device"] != opts.device:
        check_device(args_dict["device"], "--model-args device=")  # the adapter's own, checked the same way
    model_name = model if isinstance(model, str) else str(getattr(adapter, "name", type(adapter).__name__))
    rows = selected.select(list(ROW_COLUMNS)).to_pylist()
    for i, row in enumerate(rows):
        row["_index"] = i
    if callable(check := getattr(adapter, "check_samples", None)):  # optional: an adapter's own look before work
        check([row["sample_id"] for row in rows])
    token = adapter_token(adapter)
    if judge is not None:
        _check_judge(judge, opts)
    scorer, info = _build_scorer(opts, judge)  # after the cheap checks: it may load networks for seconds
    # one process per run folder and shard: a second `evaluate --out` on it would mix its files with ours
    suffix = "" if shard.world_size == 1 else f".rank{shard.rank}"
    held.enter_context(exclusive_lock(run_dir.parent / f".{run_dir.name}{suffix}.lock", what=f"run folder {run_dir}"))
    if shard.is_main:
        _claim_run_dir(run_dir, opts)
        if shard.world_size == 1:  # other ranks may be writing beside us; alone, the lock says nobody is
            remove_stale_temps(run_dir / name for name in RUN_FILES)
    return _Run(run_dir, man, rows, adapter, model_name, args_dict, scorer, opts, shard, info,
                manifest_sha256=_manifest_sha256(man), token=token)


def check_device(device: str, option: str = "--device") -> None:
    """A device this machine cannot use fails the run here, once, not on every sample (``option``
    names where it was given)."""
    if device == "cpu":
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{option} {device!r} is not a torch device", hint="e.g. cpu, cuda, cuda:1, mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {device}: CUDA is not available here (torch {torch.__version__})",
                              hint="use cpu, or install a CUDA build of torch on a machine with a GPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{option} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {device}: MPS is not available here", hint="use cpu")
    elif dev.type == "meta":  # tensors without data: a model "runs" there but produces nothing
        raise ConfigError(f"{option} {device}: the meta device holds no data and cannot run a model", hint="use cpu or cuda")


#: images looked for before a run: when none exists, the manifest's images root is wrong
_IMAGES_PROBED = 32


def _check_images_root(man) -> None:
    """A moved manifest (its images root is stored relative to its folder) or one without its
    metadata would make every sample an error: say so once, before any work."""
    root = man.images_root
    # the first rows are enough (an image's rows are adjacent): no Python list of a whole column
    head = man.table.column("image_path").slice(0, 64 * _IMAGES_PROBED).to_pylist()
    paths = list(dict.fromkeys(head))[:_IMAGES_PROBED]
    if any((root / p).is_file() for p in paths):
        return
    recorded = man.metadata.get("images_root")
    where = (f"recorded as {recorded!r} relative to the manifest's folder" if recorded is not None
             else "the manifest has no soebench metadata, so its own folder is assumed")
    raise InputError(
        f"manifest {man.path}: none of its first {len(paths)} image(s) exists under the images root {root} ({where})",
        hint="pass --images DIR (the folder its image_path values are relative to), keep the manifest where it "
             "was built, or rebuild it with soebench build-dataset --images PATH",
    )


def _check_run_dir_path(run_dir: Path) -> None:
    """--out must be (or become) a folder we can write, checked before the models load."""
    from soebench.fileio import folder_problem

    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; a run is written into a folder")
    if (problem := folder_problem(run_dir)) is not None:
        raise ConfigError(f"cannot create the run folder {run_dir}: {problem[1]} is not a writable folder")


def _build_scorer(opts: EvalOptions, judge: Any = None):
    """Resolve the metrics (fail before any generation when weights are missing) and load their
    networks; taxonomy's ``classify`` when that module is installed."""
    from soebench.metrics import ClipSpec, load_clip, load_inception, resolve_metrics
    from soebench.run.scoring import CLIP_METRICS, DISTANCE_METRICS, Scorer

    spec = ClipSpec(opts.clip_model, opts.clip_pretrained, opts.clip_weights)
    # the failure taxonomy always runs; naming it in --metrics is allowed and changes nothing
    requested = [m for m in opts.metrics if m != "taxonomy"] if opts.metrics is not None else None
    chosen = resolve_metrics(requested, spec, opts.inception_weights)
    names = set(chosen.available)
    clip = load_clip(spec, device=opts.device) if names & set(CLIP_METRICS) else None
    inception = load_inception(opts.inception_weights, device=opts.device) if names & set(DISTANCE_METRICS) else None
    classify, taxonomy_reason = _taxonomy()
    judge = (judge or _judge(opts, spec, clip)) if classify else None
    info = {
        "requested": list(opts.metrics) if opts.metrics is not None else "default (all with weights)",
        "available": list(chosen.available),
        "skipped": dict(chosen.skipped),
        "weights": dict(chosen.weights),
        "clip": getattr(clip, "source", None),
        "inception": getattr(inception, "source", None),
        "taxonomy": _taxonomy_info(opts, judge) if classify else f"unavailable: {taxonomy_reason}",
    }
    from soebench.run.gate import ComputeGate

    gate = ComputeGate.for_device(opts.device)
    return Scorer(chosen, clip=clip, inception=inception, classify=classify, judge=judge, gate=gate), info


def _check_judge(judge: Any, opts: EvalOptions) -> None:
    if opts.taxonomy_tier == "weight-free":
        raise ConfigError("a judge was given with taxonomy_tier='weight-free'",
                          hint="leave taxonomy_tier at 'auto' (or 'model') to label with the judge, or drop the judge")
    if not callable(getattr(judge, "assess_batch", None)) and not callable(getattr(judge, "assess", None)):
        raise ConfigError(f"judge {type(judge).__name__} has neither assess_batch(crops, categories=, expected_colors=) "
                          "nor assess(crop, category=, expected_color=)")


def judge_description(judge: Any) -> dict[str, Any]:
    """What a run records of (and keys its scores by) a model-tier judge."""
    describe = getattr(judge, "describe", None)
    return dict(describe()) if callable(describe) else {"judge": f"{type(judge).__module__}.{type(judge).__qualname__}"}


def _judge(opts: EvalOptions, spec: Any, clip: Any) -> Any:
    """The taxonomy's model tier for ``opts.taxonomy_tier`` (None: weight-free only). It shares
    the CLIP encoder of the CLIP-Scores; ``model`` without CLIP metrics loads one."""
    from soebench.metrics import load_clip
    from soebench.taxonomy.clip_judge import ClipJudge

    if opts.taxonomy_tier == "weight-free" or (opts.taxonomy_tier == "auto" and clip is None):
        return None
    if clip is None:
        try:
            clip = load_clip(spec, device=opts.device)
        except MissingWeightsError as exc:
            raise MissingWeightsError(f"--taxonomy-tier model needs CLIP weights: {exc.message}", hint=exc.hint) from exc
    return ClipJudge(clip)


def _taxonomy_info(opts: EvalOptions, judge: Any = None) -> dict[str, Any]:
    """How the failure labels were made: enough to tell two runs labelled by other rules apart."""
    import soebench.taxonomy as taxonomy
    from soebench.mining.prompts import names_colour
    from soebench.taxonomy.rules import DEFAULT_RULES

    info = {"classifier": "soebench.taxonomy.classify", "tier": taxonomy.tier_name(judge is not None),
            "requested_tier": opts.taxonomy_tier, "version": taxonomy.TAXONOMY_VERSION,
            "colour_checked": names_colour(opts.prompt_key), "rules": json.loads(DEFAULT_RULES.to_json())}
    if judge is not None:
        info["judge"] = judge_description(judge)
    return info


def _taxonomy() -> tuple[Callable | None, str | None]:
    try:
        from soebench.taxonomy import classify
    except ImportError as exc:
        return None, str(exc)
    return classify, None


def _claim_run_dir(run_dir: Path, opts: EvalOptions) -> None:
    """Refuse an existing run folder unless --overwrite (cleared) or --resume (kept). A folder
    that holds no result yet (a run that failed while starting, e.g. on a wrong model argument)
    is reused: there is nothing to lose, and the corrected command must not need a flag. A folder
    that is not a run's is never written into: its report.md or images/ are someone else's."""
    if run_dir.exists() and any(run_dir.iterdir()) and not _nothing_done(run_dir):
        if not opts.resume and not opts.overwrite:
            raise OutputExistsError(
                f"run folder {run_dir} already exists", hint="pass --resume to continue it or --overwrite to start again"
            )
        if not _is_run_folder(run_dir):
            flag = "--resume" if opts.resume else "--overwrite"
            raise OutputExistsError(
                f"{run_dir} is not a soebench run folder (no run.json); refusing {flag}, which would "
                f"{'write into' if opts.resume else 'clear'} it",
                hint="choose another --out or remove the folder yourself",
            )
        if opts.resume:
            return
        for p in (run_dir / n for n in RUN_FILES + RUN_DIRS):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def _is_run_folder(run_dir: Path) -> bool:
    """``run.json`` (written first by every run), or the shard/score folders only soebench writes
    (another rank may have started before the main one wrote ``run.json``)."""
    return (run_dir / "run.json").is_file() or (run_dir / "shards").is_dir() or (run_dir / "scores").is_dir()


def _retire_results_of_another_config(run_dir: Path, config_hash: str) -> None:
    """A resume under a changed configuration re-links images/ to the new outputs as it goes:
    the summary, report and plots of the old one would describe images that are no longer there,
    so they go now, and samples.parquet moves aside (its human labels are carried over, where the
    judged image is unchanged, when the new samples.parquet is written)."""
    from soebench.fileio import read_json_object

    if not (run_dir / "run.json").is_file():
        return
    try:
        previous = read_json_object(run_dir / "run.json").get("config_hash")
    except InputError:  # unreadable: which configuration made the results is unknown, so they go
        previous = None
    if previous == config_hash:
        return
    samples = run_dir / "samples.parquet"
    if samples.is_file():
        os.replace(samples, run_dir / PREVIOUS_SAMPLES)
    for name in ("summary.json", "report.md", "report.html"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "plots", ignore_errors=True)
    log.warning("run %s was made with another configuration: its summary and report are removed and "
                "rewritten when this run finishes", run_dir)


def _nothing_done(run_dir: Path) -> bool:
    """Only ``run.json`` and empty run folders: no output, score or report was ever written."""
    for entry in run_dir.iterdir():
        if entry.name == "run.json":
            continue
        if entry.name not in RUN_DIRS or not entry.is_dir() or any(entry.rglob("*")):
            return False
    return True


def _config(run: _Run) -> dict[str, Any]:
    """What defines the run's results (hashed to tell shards of different runs apart)."""
    from soebench.taxonomy import tier_name

    opts = run.opts
    inception = run.scorer.inception
    inception_path = inception.source["path"] if inception is not None else opts.inception_weights
    return {
        # the device differs between ranks (cuda:0, cuda:1) and does not change results
        "model": {"name": run.model_name, "args": {k: v for k, v in run.model_args.items() if k != "device"}},
        "manifest": str(run.manifest.path),
        "prompt_key": opts.prompt_key,
        "metrics": list(run.scorer.names),
        # content, not only names: a manifest or weights file replaced in place must not reuse old scores
        "manifest_sha256": run.manifest_sha256,
        "clip": {"model": opts.clip_model, "pretrained": opts.clip_pretrained, "weights": opts.clip_weights,
                 "stamp": _stamp(opts.clip_weights), "pretrained_stamp": _stamp(opts.clip_pretrained)},
        "inception_weights": opts.inception_weights,
        "inception_stamp": _stamp(inception_path),
        "limit": opts.limit,
        "seed": opts.seed,
        # the model tier changes labels: its CLIP is the one keyed above
        "taxonomy_tier": tier_name(run.scorer.judge is not None),
        "taxonomy_judge": judge_description(run.scorer.judge) if run.scorer.judge is not None else None,
        # the code that turns outputs into numbers and labels: a resume after an upgrade re-scores
        "scoring_code": _scoring_versions(),
    }


def _scoring_versions() -> dict[str, str]:
    import soebench
    import soebench.taxonomy as taxonomy
    from soebench.mining.colour import COLOUR_NAMER_VERSION
    from soebench.taxonomy.rules import DEFAULT_RULES

    # the rules' content too: the labels a summary records must be those its rules made
    rules = hashlib.sha256(DEFAULT_RULES.to_json().encode()).hexdigest()[:16]
    return {"soebench": soebench.__version__, "taxonomy": taxonomy.TAXONOMY_VERSION, "taxonomy_rules": rules,
            "colour_namer": COLOUR_NAMER_VERSION}


def _stamp(path: str | None) -> float | None:
    """Modification time of a weights file or folder (None: not a local path)."""
    from soebench.fileio import tree_mtime

    if not path or not Path(path).expanduser().exists():
        return None
    return tree_mtime(Path(path).expanduser())


def _manifest_sha256(manifest) -> str | None:
    from soebench.run.results import manifest_sha256

    path = getattr(manifest, "path", None)
    return manifest_sha256(path) if path is not None and Path(path).exists() else None


def _config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _execute(run: _Run) -> RunResult:
    from soebench.run.cache import GenerationCache
    from soebench.run.generate import CachedAdapter
    from soebench.run.results import write_json
    from soebench.run.shard import barrier, read_shards, write_shard

    config = _config(run)
    config_hash = run.config_hash = _config_hash(config)
    if run.shard.is_main:
        _retire_results_of_another_config(run.run_dir, config_hash)
        write_json(run.run_dir / "run.json", {"config": config, "config_hash": config_hash,
                                              "started": _now(), "world_size": run.shard.world_size})
    barrier()
    source = CachedAdapter(run.adapter, GenerationCache(run.run_dir / "cache"), run.token)
    started = time.perf_counter()
    rows = _process(run, source)
    stats = {"adapter_calls": source.calls, "from_cache": sum(1 for r in rows if r.get("_from_cache")),
             "seconds": time.perf_counter() - started}
    states = run.scorer.state_dict()
    shard_file = None
    if run.shard.world_size > 1:
        shard_file = write_shard(run.run_dir, run.shard, config_hash, rows, states, stats)
        barrier()
        if not run.shard.is_main:
            return RunResult(run.run_dir, None, None, source.calls, stats["from_cache"], shard_file)
        parts = read_shards(run.run_dir, run.shard.world_size, config_hash, timeout=run.opts.shard_timeout)
    else:
        parts = [{"rows": rows, "states": states, "stats": stats}]
    summary, frame = finalize(run, config, parts)
    return RunResult(run.run_dir, summary, frame, source.calls, stats["from_cache"], shard_file)


def _process(run: _Run, source: Any) -> list[dict[str, Any]]:
    """Generate and score this shard's samples batch by batch, with a progress bar."""
    from soebench.run.generate import load_inputs
    from soebench.run.cache import BackgroundWriter, ScoreCheckpoints
    from soebench.run.progress import progress_bar

    todo = run.shard.select(run.rows)
    out: list[dict[str, Any]] = []
    batches = [todo[i : i + run.opts.batch_size] for i in range(0, len(todo), run.opts.batch_size)]
    checkpoints = ScoreCheckpoints(run.run_dir / "scores") if source.cache is not None else None
    gate = run.scorer.gate  # workers wait while torch computes on the CPU (soebench.run.gate)
    writer = BackgroundWriter(gate=gate)
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soebench-decode")
    try:  # on Ctrl-C the pending PNG writes still finish: nothing generated is lost
        with progress_bar(run.opts.progress, len(todo), run.model_name) as advance:
            # decode batch k+1 on a thread while batch k is generated and scored
            load = lambda b: load_inputs(run.manifest, b, run.opts.prompt_key, run.opts.seed, pause=gate.wait)  # noqa: E731
            upcoming = reader.submit(load, batches[0]) if batches else None
            for k, batch in enumerate(batches):
                items = upcoming.result()
                upcoming = reader.submit(load, batches[k + 1]) if k + 1 < len(batches) else None
                with gate.compute():
                    generated = source.run(items)
                out.extend(_score_or_restore(run, items, generated, source, writer, checkpoints))
                writer.raise_failures()
                advance(len(batch))
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.close()
    return out


def _score_or_restore(run: _Run, items: Sequence[Any], generated: Sequence[Any], source: Any, writer: Any,
                      checkpoints: Any) -> list[dict[str, Any]]:
    """Score a batch, or restore it from its checkpoint when exactly this batch (same samples,
    same outputs, same configuration) was scored before."""
    from soebench.run.cache import link_or_copy

    if checkpoints is None:
        return _score(run, items, generated, source, writer)
    key = checkpoints.key(run.config_hash, [(i.sample_id, g.key, g.error) for i, g in zip(items, generated)])
    saved = checkpoints.get(key)
    if saved is None or not all(g.from_cache or g.error for g in generated):
        rows = _score(run, items, generated, source, writer)
        checkpoints.put(key, {"rows": rows, "features": run.scorer.last_features})
        return rows
    run.scorer.add_features(saved["features"])
    for row, gen in zip(saved["rows"], generated):
        row["_from_cache"] = True
        if row["output_path"]:  # images/ may hold another configuration's output: always re-link
            writer.submit(link_or_copy, gen.cache_path, run.run_dir / row["output_path"])
    return saved["rows"]


def _score(run: _Run, items: Sequence[Any], generated: Sequence[Any], source: Any, writer: Any) -> list[dict[str, Any]]:
    from soebench.metrics import size_bucket
    from soebench.run.cache import link_or_copy, persist_output
    from soebench.mining.prompts import names_colour
    from soebench.run.results import evidence_columns
    from soebench.run.scoring import ScoredSample

    asks_colour = names_colour(run.opts.prompt_key)  # "tv" asked for no colour: none is checked
    rows, ok = [], []
    for item, gen in zip(items, generated):
        r = item.row
        row = {
            "_index": r["_index"], "_from_cache": gen.from_cache,
            "sample_id": item.sample_id, "image_id": r["image_id"], "category": r["category"],
            "size_bucket": size_bucket(r["mask_area_fraction"]), "mask_area_fraction": r["mask_area_fraction"],
            "prompt": item.prompt, "seed": item.seed, "output_path": None,
            # the generation-cache key: what the output is (adapter, arguments, weights, sample, seed,
            # prompt, input); a human judgement of an output holds only while this key is the same
            "output_key": gen.key if gen.error is None else None, "error": gen.error,
        }
        if gen.error is None:
            rel = f"images/{item.sample_id}.png"
            if gen.from_cache:
                writer.submit(link_or_copy, gen.cache_path, run.run_dir / rel)
            else:
                writer.submit(persist_output, source.cache, gen.key, gen.image, run.run_dir / rel)
            row["output_path"] = rel
            ok.append((row, ScoredSample(item.sample_id, item.image, gen.image, item.mask, item.prompt, r["bbox"],
                                         r["eval_crop"], r["color"] if asks_colour else None, r["_index"],
                                         row["size_bucket"], r["category"])))
        else:
            row["failure"] = "error"
        rows.append(row)
    scores = run.scorer.score([s for _, s in ok])
    for (row, _), values in zip(ok, scores):
        evidence = values.pop("_evidence", None)
        row.update(values)
        row.update(evidence_columns(evidence))
    return rows


def finalize(run: _Run, config: dict[str, Any], parts: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """Merge shard rows and metric states; write samples.parquet, summary.json and the report."""
    from soebench.run.results import carry_human_labels, samples_frame, write_json, write_samples
    from soebench.run.summary import build_summary

    rows = sorted((r for p in parts for r in p["rows"]), key=lambda r: r["_index"])
    run.scorer.load_merged([p["states"] for p in parts])
    frame = samples_frame(rows)
    # a resume keeps the human labels of `agreement --write`, where the image judged is unchanged
    previous = run.run_dir / "samples.parquet"
    if not previous.is_file():
        previous = run.run_dir / PREVIOUS_SAMPLES
    frame, dropped = carry_human_labels(frame, previous)
    if dropped:
        log.warning("%d human label(s) judged generated images that this run replaced: left out of samples.parquet",
                    dropped)
    write_samples(run.run_dir / "samples.parquet", frame)
    (run.run_dir / PREVIOUS_SAMPLES).unlink(missing_ok=True)
    summary = build_summary(run, config, frame, parts)
    write_json(run.run_dir / "summary.json", summary)
    if run.opts.report:
        from soebench.run.report import write_report

        write_report(run.run_dir, summary, frame, run.manifest)
    return summary, frame


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
