"""Write a manifest and its evaluation runs into one persistent, grouped FiftyOne dataset.

Why a grouped dataset (one group per manifest object; slice ``original`` plus one slice per run)
rather than per-model media fields: every generated image is then a sample of its own, with its
own scores, ``failure`` label and -- what matters for human review -- its own tags, so a tag such
as ``human:missing`` unambiguously judges one model's output. The App shows the group's slices
side by side in the sample modal (original next to each model's output, the ground-truth
box/mask drawn on all of them), the grid can be switched between slices, and
``select_group_slices(run)`` gives a flat view per model for the saved views. Media fields
would show one image at a time and mix all models' judgements into one tag list.

Re-running adds or updates: samples are keyed on ``(slice, sample_id)``; existing samples are
updated in place, new ones added, and a run's samples no longer in its ``samples.parquet``
removed. Human tags are kept on an updated sample only while its generated image is the same one
(the run's ``output_key``): a judgement of one image is never carried over to another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soebench.errors import InputError, OutputExistsError
from soebench.fiftyone_export import (
    AUTO_TAGS,
    HUMAN_TAG_PREFIX,
    ORIGINAL_SLICE,
    TAG_ERROR,
    TAG_MISSING_MEDIA,
    Sources,
    check_dataset_name,
    default_dataset_name,
    manifest_sample_dicts,
    run_sample_dicts,
)

INFO_KEY = "soebench"
BATCH = 500


@dataclass
class SliceReport:
    """What writing one slice did."""

    slice: str
    samples: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    missing_media: int = 0
    errors: int = 0
    tags_dropped: int = 0  # human tags of outputs that changed since they were set
    run_dir: str | None = None
    run_name: str | None = None  # the run's own name (None for the manifest's slice)
    model: str | None = None
    first_missing: str | None = None  # one media file not found, to show where they were looked for


@dataclass
class ExportResult:
    dataset: Any
    name: str
    slices: list[SliceReport] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    skipped_views: dict[str, str] = field(default_factory=dict)  # view name -> why it was left out


def export(sources: Sources, *, name: str | None = None, progress: bool = False, overwrite: bool = False) -> ExportResult:
    """Create or update the dataset ``name`` from ``sources``; save the views; return a report.

    A slice that holds another run folder (same run name) is replaced only with ``overwrite``;
    human tags survive an update only on samples whose output is unchanged."""
    from soebench.fo.db import connect
    from soebench.fo.views import save_views

    check_dataset_name(name)
    fo = connect()
    name = default_dataset_name(sources.manifest.path, sources.manifest_sha256) if name is None else name
    dataset = open_dataset(fo, name, sources)
    if not overwrite:
        _refuse_other_runs(dataset, sources.runs)
    base = manifest_sample_dicts(sources.manifest)
    by_id = {d["sample_id"]: d for d in base}
    result = ExportResult(dataset=dataset, name=name)
    with _Progress(progress) as bar:
        result.slices.append(write_slice(fo, dataset, ORIGINAL_SLICE, base, bar=bar))
        for run in sources.runs:
            dicts = run_sample_dicts(run, by_id)
            report = write_slice(fo, dataset, run.slice, dicts, bar=bar)
            report.run_dir, report.run_name, report.model = str(run.run_dir), run.name, run.model_name
            result.slices.append(report)
            _record_run(dataset, run)
    runs = dataset_runs(dataset)
    saved = save_views(dataset, {sl: r.get("skipped_metrics") or {} for sl, r in runs.items()},
                       run_names={sl: r["run_name"] for sl, r in runs.items() if r.get("run_name")})
    result.views, result.skipped_views = saved.names, saved.skipped
    return result


def _refuse_other_runs(dataset: Any, runs: list[Any]) -> None:
    """A run folder must not take over a slice of another one by sharing its run name."""
    from pathlib import Path

    held = dataset_runs(dataset)
    for run in runs:
        entry = held.get(run.slice, {})
        old = entry.get("run_dir")
        if old and Path(old) != Path(run.run_dir):
            model = (entry.get("model") or {}).get("name", "?")
            old_name = entry.get("run_name", run.name)
            same = "the same run name" if old_name == run.name else f"run name {run.name!r}, which maps to that slice"
            raise OutputExistsError(
                f"slice {run.slice!r} of dataset {dataset.name!r} holds run {old_name!r} from {old} (model {model}); "
                f"{run.run_dir} has {same}",
                hint="evaluate it with --run-name NAME for a slice of its own, use another dataset name (--name), "
                     "or pass overwrite=True (--overwrite) to replace that slice (human tags stay only on "
                     "identical outputs)",
            )


def open_dataset(fo: Any, name: str, sources: Sources) -> Any:
    """Load ``name`` (checking it holds the same manifest) or create it persistent and grouped."""
    manifest_info = {"path": str(sources.manifest.path), "sha256": sources.manifest_sha256,
                     "num_rows": len(sources.manifest)}
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        held = (dataset.info or {}).get(INFO_KEY, {}).get("manifest", {})
        if not held:
            raise InputError(f"FiftyOne dataset {name!r} exists but was not made by soebench",
                             hint="choose another dataset name (--name)")
        if held.get("sha256") != sources.manifest_sha256:
            raise InputError(
                f"FiftyOne dataset {name!r} holds manifest {held.get('path')} (sha256 {str(held.get('sha256'))[:12]}…), "
                f"not {sources.manifest.path} (sha256 {sources.manifest_sha256[:12]}…)",
                hint="a dataset holds one manifest and its runs; choose another dataset name (--name)",
            )
        return dataset
    try:
        dataset = fo.Dataset(name)
    except ValueError as exc:  # FiftyOne refuses a name whose URL slug another dataset has ("QA" vs "qa")
        raise InputError(f"FiftyOne cannot create dataset {name!r}: {exc}",
                         hint="choose another dataset name (--name); FiftyOne compares names by their lower-case URL slug") from None
    dataset.persistent = True
    dataset.add_group_field("group", default=ORIGINAL_SLICE)
    dataset.info = {INFO_KEY: {"manifest": manifest_info, "runs": {}}}
    dataset.description = f"soebench: {sources.manifest.path}"
    dataset.save()
    return dataset


def dataset_runs(dataset: Any) -> dict[str, dict[str, Any]]:
    """``slice -> {run_dir, run_name, model, ...}`` recorded for the dataset's runs."""
    return dict((dataset.info or {}).get(INFO_KEY, {}).get("runs", {}))


def _record_run(dataset: Any, run: Any) -> None:
    info = dict(dataset.info or {})
    sb = dict(info.get(INFO_KEY, {}))
    runs = dict(sb.get("runs", {}))
    summary = run.summary
    runs[run.slice] = {
        "run_dir": str(run.run_dir),
        "run_name": run.name,
        "model": summary.get("model"),
        "prompt_key": summary.get("prompt_key"),
        "created": summary.get("created"),
        "git_commit": summary.get("git_commit"),
        "num_samples": len(run.samples),
        # run-level scores (FID/KID on crops and full images) and metrics the run could not compute
        "distances": _distance_values(summary),
        "skipped_metrics": {k: str(v).splitlines()[0] for k, v in (_metrics(summary).get("skipped") or {}).items()},
    }
    sb["runs"] = runs
    info[INFO_KEY] = sb
    dataset.info = info
    dataset.save()


def _metrics(summary: dict[str, Any]) -> dict[str, Any]:
    metrics = summary.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _distance_values(summary: dict[str, Any]) -> dict[str, Any]:
    """``{fid_crop: value, ...}`` from ``summary.json`` (values as recorded; absent ones left out)."""
    distances = _metrics(summary).get("distances")
    if not isinstance(distances, dict):
        return {}
    return {k: v.get("value") for k, v in distances.items() if isinstance(v, dict) and "value" in v}


def write_slice(fo: Any, dataset: Any, slice_name: str, dicts: list[dict[str, Any]], *, bar: Any = None) -> SliceReport:
    """Upsert ``dicts`` as the samples of ``slice_name`` (keyed on sample_id)."""
    report = SliceReport(slice=slice_name, samples=len(dicts))
    report.missing_media = sum(TAG_MISSING_MEDIA in d["tags"] for d in dicts)
    report.errors = sum(TAG_ERROR in d["tags"] for d in dicts)
    report.first_missing = next((d["filepath"] for d in dicts if TAG_MISSING_MEDIA in d["tags"]), None)
    wanted = {d["sample_id"]: d for d in dicts}
    task = bar.add(f"{dataset.name}: {slice_name}", len(dicts)) if bar else None
    existing: dict[str, str] = {}
    if slice_name in (dataset.group_slices or []):
        view = dataset.select_group_slices(slice_name)
        existing = dict(zip(*view.values(["sample_id", "id"])))
        stale = [sid for sid in existing if sid not in wanted]
        if stale:
            dataset.delete_samples([existing[s] for s in stale])
            report.removed = len(stale)
        update_ids = [existing[s] for s in wanted if s in existing]
        if update_ids:
            for sample in view.select(update_ids).iter_samples(autosave=True):
                d = wanted[sample["sample_id"]]
                keep = sample.tags
                changed = _output_changed(sample, d)
                if changed:  # a human tag judged the old image, not this one
                    keep = [t for t in keep if not t.lower().startswith(HUMAN_TAG_PREFIX)]
                    report.tags_dropped += len(sample.tags) - len(keep)
                _fill(fo, sample, d, keep_tags=keep, output_changed=changed)
                report.updated += 1
                if bar:
                    bar.advance(task)
    groups = _group_ids(dataset) if slice_name != ORIGINAL_SLICE else {}
    new = [d for d in dicts if d["sample_id"] not in existing]
    for start in range(0, len(new), BATCH):
        samples = []
        for d in new[start : start + BATCH]:
            if slice_name == ORIGINAL_SLICE:
                element = fo.Group().element(slice_name)
            else:
                if d["sample_id"] not in groups:
                    raise InputError(f"sample {d['sample_id']} of slice {slice_name!r} has no original in the dataset")
                element = fo.Group(id=groups[d["sample_id"]]).element(slice_name)
            sample = fo.Sample(filepath=d["filepath"], group=element)
            _fill(fo, sample, d, keep_tags=[])
            samples.append(sample)
        dataset.add_samples(samples, progress=False)
        report.added += len(samples)
        if bar:
            bar.advance(task, len(samples))
    return report


def _output_changed(sample: Any, d: dict[str, Any]) -> bool:
    """Whether ``d`` carries another generated image than ``sample`` (by the runs' output keys;
    samples written before runs had one count as unchanged)."""
    new = d["fields"].get("output_key")
    old = sample["output_key"] if sample.has_field("output_key") else None
    return old is not None and old != new


def _group_ids(dataset: Any) -> dict[str, str]:
    view = dataset.select_group_slices(ORIGINAL_SLICE)
    sids, gids = view.values(["sample_id", "group.id"])
    return dict(zip(sids, gids))


def _fill(fo: Any, sample: Any, d: dict[str, Any], *, keep_tags: list[str], output_changed: bool = False) -> None:
    """Set every field, label and automatic tag of ``d`` on ``sample``. User tags are kept, and so
    are the tags reviewers put on its labels (the App's label tagging): always on the manifest's
    object, on the failure label only while the generated image is the one it judged."""
    label_tags = _label_tags(sample, [*d["labels"], *([] if output_changed else ["failure"])])
    if sample.filepath != d["filepath"]:
        sample.filepath = d["filepath"]
    sample["metadata"] = fo.ImageMetadata(width=d["width"], height=d["height"])
    for key, value in d["fields"].items():
        if value is None and sample.in_dataset and not sample.has_field(key):
            continue  # FiftyOne cannot infer a field type from None alone
        sample[key] = value
    for key, lab in d["labels"].items():
        sample[key] = _detection(fo, lab)
    if "failure" in d:
        failure = d["failure"]
        if failure is not None or not sample.in_dataset or sample.has_field("failure"):
            sample["failure"] = None if failure is None else _classification(fo, failure)
    user = [t for t in keep_tags if t not in AUTO_TAGS]
    sample.tags = user + [t for t in d["tags"] if t not in user]
    for key, tags in label_tags.items():
        if sample[key] is not None:
            sample[key].tags = tags


def _label_tags(sample: Any, keys: list[str]) -> dict[str, list[str]]:
    """The tags of ``sample``'s labels ``keys`` (those that exist and carry some)."""
    if not sample.in_dataset:
        return {}
    out = {}
    for key in keys:
        label = sample[key] if sample.has_field(key) else None
        if label is not None and getattr(label, "tags", None):
            out[key] = list(label.tags)
    return out


def _detection(fo: Any, lab: dict[str, Any]) -> Any:
    det = fo.Detection(label=lab["label"], bounding_box=lab["bounding_box"])
    if lab.get("mask") is not None:
        det.mask = lab["mask"]
    for k, v in lab.get("attributes", {}).items():
        det[k] = v
    return det


def _classification(fo: Any, lab: dict[str, Any]) -> Any:
    cls = fo.Classification(label=lab["label"])
    for k, v in lab.get("attributes", {}).items():
        cls[k] = v
    return cls


class _Progress:
    """A rich progress bar with one task per slice (a no-op when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None

    def __enter__(self) -> "_Progress | None":
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=Console(stderr=True))  # stdout is for results
        self._bar.__enter__()
        return self

    def add(self, label: str, total: int) -> Any:
        return self._bar.add_task(label, total=total)

    def advance(self, task: Any, n: int = 1) -> None:
        self._bar.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
