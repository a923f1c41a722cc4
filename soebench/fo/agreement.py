"""Human tags from the App vs the automatic taxonomy labels: accuracy, Cohen's kappa, confusion.

Reviewers tag a run's samples in the App with ``human:<label>`` (``human:ok``,
``human:missing``, ...). :func:`collect` reads those tags back per run slice,
:func:`agreement` compares them with the ``failure`` labels, and :func:`write_human_labels`
stores them in the run's ``samples.parquet`` as a ``human_label`` column.

Cohen's kappa: ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed agreement and
``p_e = sum_k p_auto(k) * p_human(k)`` the agreement expected by chance from the two
labellers' marginals; it is undefined (NaN) when ``p_e == 1`` (both always say one label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import InputError, OutputExistsError
from soebench.fiftyone_export import HUMAN_TAG_PREFIX, ORIGINAL_SLICE

TAXONOMY_LABELS = ("ok", "missing", "mismatch", "distortion")


@dataclass
class Agreement:
    """Agreement of the automatic labels (rows) with the human labels (columns)."""

    labels: list[str]
    matrix: np.ndarray  # [auto, human] counts
    n: int
    accuracy: float
    kappa: float

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "matrix": self.matrix.tolist(), "n": self.n,
                "accuracy": None if math.isnan(self.accuracy) else self.accuracy,
                "kappa": None if math.isnan(self.kappa) else self.kappa}


@dataclass
class SliceTags:
    """What one run slice holds: per sample the automatic label and the human label (if any)."""

    slice: str
    run_name: str | None = None  # the run's own name where known (messages name the run by it)
    auto: dict[str, str | None] = field(default_factory=dict)
    human: dict[str, str] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # sample_id -> several human labels
    output_keys: dict[str, str | None] = field(default_factory=dict)  # sample_id -> generation key of the image shown
    on_labels: list[str] = field(default_factory=list)  # samples with human: tags on their failure label, not read

    def pairs(self) -> tuple[list[str], list[str], int]:
        """(auto, human) label lists over samples having both; and how many human tags lack an auto label."""
        auto, human, unlabelled = [], [], 0
        for sid, h in self.human.items():
            a = self.auto.get(sid)
            if a is None:
                unlabelled += 1
                continue
            auto.append(a)
            human.append(h)
        return auto, human, unlabelled

    @property
    def label(self) -> str:
        from soebench.fiftyone_export import run_label

        return run_label(self.run_name or self.slice, self.slice)


def confusion(auto: list[str], human: list[str], labels: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Counts ``matrix[i, j]`` of samples labelled ``labels[i]`` automatically and ``labels[j]`` by humans."""
    if len(auto) != len(human):
        raise ValueError("auto and human label lists differ in length")
    if labels is None:
        present = set(auto) | set(human)
        labels = [lab for lab in TAXONOMY_LABELS if lab in present] + sorted(present - set(TAXONOMY_LABELS))
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for a, h in zip(auto, human):
        matrix[index[a], index[h]] += 1
    return list(labels), matrix


def cohen_kappa(matrix: np.ndarray) -> float:
    """Cohen's kappa of a square confusion matrix of counts (NaN when undefined)."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.sum()
    if n == 0:
        return math.nan
    p_o = np.trace(m) / n
    p_e = float((m.sum(axis=1) / n) @ (m.sum(axis=0) / n))
    if math.isclose(p_e, 1.0):
        return math.nan
    return float((p_o - p_e) / (1.0 - p_e))


def agreement(auto: list[str], human: list[str], labels: list[str] | None = None) -> Agreement:
    labels, matrix = confusion(auto, human, labels)
    n = int(matrix.sum())
    accuracy = float(np.trace(matrix) / n) if n else math.nan
    return Agreement(labels=labels, matrix=matrix, n=n, accuracy=accuracy, kappa=cohen_kappa(matrix))


def human_labels(tags: list[str]) -> list[str]:
    """The distinct labels of ``human:<label>`` tags, in tag order. Prefix and label are read
    case-insensitively: a reviewer's ``Human:Missing`` is ``missing``, not an ignored tag."""
    out: list[str] = []
    for tag in tags or []:
        if tag.lower().startswith(HUMAN_TAG_PREFIX.lower()):
            label = tag[len(HUMAN_TAG_PREFIX):].strip().lower()
            if label and label not in out:
                out.append(label)
    return out


def check_labels(tags: "SliceTags") -> None:
    """A human label outside the taxonomy is a typo to fix in the App, never a class of its own:
    counted, it would change accuracy and kappa."""
    import difflib

    bad = {sid: lab for sid, lab in tags.human.items() if lab not in TAXONOMY_LABELS}
    bad |= {sid: lab for sid, labs in tags.conflicts.items() for lab in labs if lab not in TAXONOMY_LABELS}
    if not bad:
        return
    sid, label = next(iter(sorted(bad.items())))
    close = difflib.get_close_matches(label, TAXONOMY_LABELS, n=1)
    more = f" (and {len(bad) - 1} more sample(s))" if len(bad) > 1 else ""
    raise InputError(
        f"{tags.label}: sample {sid} is tagged {HUMAN_TAG_PREFIX}{label}, not a taxonomy label{more}",
        hint=(f"did you mean {HUMAN_TAG_PREFIX}{close[0]}? " if close else "")
        + f"labels: {', '.join(TAXONOMY_LABELS)}; retag it in the App",
    )


def collect(dataset: Any, slice_name: str, run_name: str | None = None) -> SliceTags:
    """Read automatic labels and human tags of one run slice of ``dataset`` (``run_name``: the
    run's own name, for messages)."""
    if slice_name == ORIGINAL_SLICE or slice_name not in (dataset.group_slices or []):
        runs = [s for s in dataset.group_slices or [] if s != ORIGINAL_SLICE]
        raise InputError(f"dataset {dataset.name!r} has no run {slice_name!r}",
                         hint=f"its runs: {', '.join(runs) or 'none'}")
    view = dataset.select_group_slices(slice_name)
    schema = view.get_field_schema()
    has_failure, has_key = "failure" in schema, "output_key" in schema
    fields = ["sample_id", "tags"] + (["failure.label", "failure.tags"] if has_failure else []) \
        + (["output_key"] if has_key else [])
    values = dict(zip(fields, view.values(fields)))
    sids, tags = values["sample_id"], values["tags"]
    autos = values.get("failure.label", [None] * len(sids))
    label_tags = values.get("failure.tags", [None] * len(sids))
    keys = values.get("output_key", [None] * len(sids))
    out = SliceTags(slice=slice_name, run_name=run_name)
    for sid, tag_list, auto, key, on_label in zip(sids, tags, autos, keys, label_tags):
        out.auto[sid] = auto
        out.output_keys[sid] = key
        if human_labels(on_label or []):
            out.on_labels.append(sid)
        labels = human_labels(tag_list)
        if len(labels) == 1:
            out.human[sid] = labels[0]
        elif len(labels) > 1:
            out.conflicts[sid] = labels
    return out


def tagged_originals(dataset: Any) -> list[str]:
    """sample_ids of ``original``-slice samples carrying ``human:`` tags.

    Such tags judge no model output (the App shows the ``original`` slice by default, so a tag
    set in the default grid lands there); agreement ignores them and the CLI says so.
    """
    if ORIGINAL_SLICE not in (dataset.group_slices or []):
        return []
    sids, tags = dataset.select_group_slices(ORIGINAL_SLICE).values(["sample_id", "tags"])
    return [sid for sid, tag_list in zip(sids, tags) if human_labels(tag_list)]


def stale_tags(run_dir: str | Path, tags: SliceTags) -> list[str]:
    """Tagged samples whose image in the dataset is no longer the run's (the run was re-evaluated
    after ``inspect``: another ``output_key`` in samples.parquet). Their tags judge an image the
    run does not hold, and the dataset's automatic labels are out of date too."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "samples.parquet"
    if not path.is_file() or "output_key" not in pq.read_schema(path).names:
        return []
    table = pq.read_table(path, columns=["sample_id", "output_key"]).to_pydict()
    now = dict(zip(table["sample_id"], table["output_key"]))
    tagged = set(tags.human) | set(tags.conflicts)
    return sorted(sid for sid in tagged if sid in now and now[sid] != tags.output_keys.get(sid))


def write_human_labels(run_dir: str | Path, human: dict[str, str], *, overwrite: bool = False) -> Path:
    """Write ``human`` (sample_id -> label) into ``run_dir/samples.parquet`` as ``human_label``.

    Atomic; every other column and the file's schema metadata are kept. An existing
    ``human_label`` column with other values is replaced only with ``overwrite``. Check
    :func:`stale_tags` first: a label must judge the image the run holds.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from soebench.fileio import atomic_path

    path = Path(run_dir) / "samples.parquet"
    if not path.is_file():
        raise InputError(f"cannot write human labels: {path} does not exist (was the run folder moved?)")
    table = pq.read_table(path)
    ids = table.column("sample_id").to_pylist()
    unknown = sorted(set(human) - set(ids))
    if unknown:
        raise InputError(f"{path}: tagged sample(s) not in the run: {', '.join(unknown[:5])}")
    column = pa.array([human.get(sid) for sid in ids], type=pa.string())
    if "human_label" in table.column_names:
        old = table.column("human_label").to_pylist()
        if old != column.to_pylist() and not overwrite:
            raise OutputExistsError(f"{path} already has a human_label column with other values",
                                    hint="pass overwrite=True (--overwrite) to replace it")
        table = table.set_column(table.column_names.index("human_label"), "human_label", column)
    else:
        table = table.append_column("human_label", column)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path
