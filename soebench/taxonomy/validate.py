"""Validation of the classifier on labelled cases made from real objects.

``validate(manifest, ...)`` builds the cases of :mod:`soebench.taxonomy.cases`, labels each with
:func:`soebench.taxonomy.classify`, and reports, **per split**, the confusion matrix, overall
accuracy, each class's recall and each method's accuracy. The split the rules were tuned on
(``tuning_split``, val2017 for the shipped rules) is reported as "tuning" -- optimistic by
construction -- and every other split as "held-out", the figure to quote.

``refit=True`` re-fits the rules on the tuning split's cases in this run (with
:func:`soebench.taxonomy.fit.fit_rules`) before labelling every split: the protocol that
produced the shipped numbers, rerun end to end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soebench.taxonomy import LABELS, tier_name
from soebench.taxonomy.cases import method_family

COLOUR_KEYS = ("colour_named", "colour_confidence", "colour_named_foreground", "colour_expected", "colour_expected_share")
#: The split the shipped rules were tuned on: reported as "tuning" when the manifest has it.
DEFAULT_TUNING_SPLIT = "val2017"
#: What :func:`write_outputs` writes under its folder, by the key it returns them under.
OUTPUT_FILES = {"json": "validation.json", "cases": "cases.csv", "plot": "confusion.png"}


@dataclass
class CaseRow:
    case_id: str
    sample_id: str
    split: str
    truth: str
    method: str
    category: str
    predicted: str
    evidence: dict[str, Any]


@dataclass
class SplitReport:
    split: str
    role: str  # "tuning" | "held-out"
    n: int
    accuracy: float
    per_class: dict[str, float]
    confusion: list[list[int]]  # rows: truth, columns: predicted, in LABELS order
    per_method: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "role": self.role,
            "n": self.n,
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "labels": list(LABELS),
            "confusion": self.confusion,
            "per_method": self.per_method,
        }


@dataclass
class ValidationResult:
    splits: list[SplitReport]
    rows: list[CaseRow]
    rules: Any
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        import json

        return {
            "settings": self.settings,
            "rules": json.loads(self.rules.to_json()),
            "splits": [s.to_dict() for s in self.splits],
        }


def summarise(rows: Sequence[CaseRow], split: str, role: str) -> SplitReport:
    """Confusion matrix, accuracy, per-class recall and per-method accuracy of one split's rows."""
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    methods: dict[str, list[bool]] = {}
    truths: dict[str, str] = {}
    for r in rows:
        confusion[index[r.truth], index[r.predicted]] += 1
        family = method_family(r.method)
        methods.setdefault(family, []).append(r.truth == r.predicted)
        truths[family] = r.truth
    n = int(confusion.sum())
    per_class = {
        label: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else float("nan"))
        for i, label in enumerate(LABELS)
    }
    per_method = {
        m: {"label": truths[m], "n": len(v), "accuracy": float(np.mean(v))} for m, v in sorted(methods.items(), key=lambda kv: (LABELS.index(truths[kv[0]]), kv[0]))
    }
    return SplitReport(
        split=split,
        role=role,
        n=n,
        accuracy=float(np.trace(confusion) / n) if n else float("nan"),
        per_class=per_class,
        confusion=confusion.tolist(),
        per_method=per_method,
    )


def _verdict_of(evidence: dict[str, Any]) -> dict[str, Any] | None:
    """The model tier's verdict a case was labelled with (its ``judge_*`` evidence), None for weight-free."""
    return {k[len("judge_"):]: v for k, v in evidence.items() if k.startswith("judge_")} or None


def relabel(rows: Sequence[CaseRow], rules: Any) -> None:
    """Recompute every row's label from its stored evidence under ``rules`` (in place); a row the
    model tier labelled keeps its judge's verdict (the ``judge_*`` evidence)."""
    from soebench.taxonomy.rules import decide, derived_features

    for r in rows:
        colour = {k: r.evidence.get(k) for k in COLOUR_KEYS}
        label, scores = decide(derived_features(r.evidence), colour, rules, judge=_verdict_of(r.evidence))
        r.predicted = label
        r.evidence.update(scores)


def validate(
    manifest: Any,
    *,
    limit: int | None = None,
    seed: int = 0,
    all_methods: bool = False,
    tuning_split: str | None = None,
    refit: bool = False,
    rules: Any = None,
    splits: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cv_folds: int | None = None,
    judge: Any = None,
) -> ValidationResult:
    """Build the cases of ``manifest``'s objects (at most ``limit`` objects, balanced over splits),
    classify them and summarise per split (only ``splits`` when given; with ``refit`` the tuning
    split is always included). ``tuning_split`` (default :data:`DEFAULT_TUNING_SPLIT`, which
    the manifest may lack) and each of ``splits`` must be splits of the manifest when given.
    ``progress(done, total)`` is called per object. ``cv_folds`` (with ``refit``): also report a
    ``cv_folds``-fold cross-validation of the fit on the tuning split's objects (role
    ``"K-fold cross-validation"``), the figure to make design decisions on. ``judge``: the model
    tier to measure (e.g. :class:`soebench.taxonomy.clip_judge.ClipJudge`); None: weight-free."""
    from soebench.errors import InputError
    from soebench.taxonomy import classify
    from soebench.taxonomy.cases import iter_cases, objects_of
    from soebench.taxonomy.rules import DEFAULT_RULES

    rules = rules or DEFAULT_RULES
    have = splits_of(manifest)
    for name in splits or ():
        check_split(manifest, name, have, option="--split")
    if tuning_split is not None:
        check_split(manifest, tuning_split, have, option="--tuning-split")
    tuning_split = tuning_split or DEFAULT_TUNING_SPLIT
    if cv_folds is not None and (not refit or cv_folds < 2):
        raise InputError(f"--cv {cv_folds}: cross-validation needs --refit and at least 2 folds")
    if refit and tuning_split not in have:
        raise InputError(
            f"--refit: manifest {manifest.path} has no objects of the tuning split {tuning_split!r} "
            f"(its splits: {', '.join(have) or 'none'}); name one with --tuning-split"
        )
    wanted = None if splits is None else sorted(set(splits) | ({tuning_split} if refit else set()))
    refs = objects_of(manifest, limit=limit, seed=seed, splits=wanted)
    if not refs:
        where = "" if wanted is None else f" in split(s) {', '.join(wanted)}"
        raise InputError(f"manifest {manifest.path}: no object with a colour word{where}; validation needs them (mismatch cases)")
    rows: list[CaseRow] = []
    for done, (ref, cases) in enumerate(iter_cases(manifest, refs, seed=seed, all_methods=all_methods), start=1):
        for case in cases:
            result = classify(case.original, case.generated, case.mask, expected_color=case.expected_color, bbox=case.bbox,
                              rules=rules, judge=judge, category=case.category)
            rows.append(CaseRow(case.case_id, case.sample_id, case.split, case.label, case.method, case.category, result.label, dict(result.evidence)))
        if progress is not None:
            progress(done, len(refs))
    if refit:
        tune = [r for r in rows if r.split == tuning_split]
        if not tune:
            raise InputError(f"--refit: no object of the tuning split {tuning_split!r} in manifest {manifest.path} has a colour word")
        rules = fit_on_rows(tune, fitted_on=f"{tuning_split} (refit in this run, seed {seed}, {len(tune)} cases)")
        relabel(rows, rules)
    splits = sorted({r.split for r in rows}, key=lambda s: (s == tuning_split, s))
    reports = [summarise([r for r in rows if r.split == s], s, "tuning" if s == tuning_split else "held-out") for s in splits]
    if refit and cv_folds:
        reports.append(cross_validate([r for r in rows if r.split == tuning_split], folds=cv_folds, seed=seed, split=tuning_split))
    settings = {
        "limit": limit,
        "seed": seed,
        "all_methods": all_methods,
        "tuning_split": tuning_split,
        "refit": refit,
        "cv_folds": cv_folds,
        "tier": tier_name(judge is not None),
        "judge": judge.describe() if judge is not None and callable(getattr(judge, "describe", None)) else None,
        "splits": wanted,
        "objects": len(refs),
        "cases": len(rows),
    }
    return ValidationResult(reports, rows, rules, settings)


def fit_on_rows(rows: Sequence[CaseRow], *, fitted_on: str, **fit_kwargs: Any) -> Any:
    """Rules fitted on measured case rows (their evidence, truths and methods)."""
    from soebench.taxonomy.fit import fit_rules
    from soebench.taxonomy.rules import derived_features

    return fit_rules([derived_features(r.evidence) for r in rows], [{k: r.evidence.get(k) for k in COLOUR_KEYS} for r in rows],
                     [r.truth for r in rows], methods=[r.method for r in rows], fitted_on=fitted_on, **fit_kwargs)


def _fold_of(sample_id: str, folds: int, seed: int) -> int:
    import hashlib

    return int(hashlib.sha256(f"cv|{seed}|{sample_id}".encode()).hexdigest()[:8], 16) % folds


def cross_validate(rows: Sequence[CaseRow], *, folds: int = 5, seed: int = 0, split: str = "", **fit_kwargs: Any) -> SplitReport:
    """K-fold cross-validation of the fitting protocol on ``rows`` (one split's cases): the rules
    are fitted on the objects of k-1 folds (:func:`soebench.taxonomy.fit.fit_rules`) and label the
    objects of the remaining one; every case is labelled once, by rules that never saw its
    object. The design-decision figure: it needs only the fitting half, so the held-out half can
    stay unseen. ``rows`` are not modified. ``fit_kwargs`` go to ``fit_rules`` (e.g. feature
    lists to compare)."""
    import copy

    from soebench.taxonomy.rules import decide, derived_features

    if folds < 2:
        raise ValueError(f"cross_validate: need at least 2 folds, got {folds}")
    fold = [_fold_of(r.sample_id, folds, seed) for r in rows]
    labelled: list[CaseRow] = []
    for k in range(folds):
        train = [r for r, f in zip(rows, fold) if f != k]
        test = [r for r, f in zip(rows, fold) if f == k]
        if not test or not train:
            continue
        rules = fit_on_rows(train, fitted_on=f"cv fold {k}", **fit_kwargs)
        for r in test:
            label, _ = decide(derived_features(r.evidence), {c: r.evidence.get(c) for c in COLOUR_KEYS}, rules,
                              judge=_verdict_of(r.evidence))
            row = copy.copy(r)
            row.predicted = label
            labelled.append(row)
    return summarise(labelled, split or (rows[0].split if rows else ""), f"{folds}-fold cross-validation")


def splits_of(manifest: Any) -> list[str]:
    """The distinct splits of ``manifest``'s rows, sorted."""
    import pyarrow.compute as pc

    return sorted(s for s in pc.unique(manifest.table.column("split")).to_pylist() if s is not None)


def check_split(manifest: Any, name: str, have: Sequence[str], *, option: str) -> None:
    """``InputError`` (naming ``option`` and the manifest's splits) unless ``name`` is in ``have``."""
    from soebench.errors import InputError

    if name not in have:
        raise InputError(f"{option} {name}: manifest {manifest.path} has no such split (its splits: {', '.join(have) or 'none'})")


def output_paths(out_dir: Any) -> dict[str, Any]:
    """The files :func:`write_outputs` writes under ``out_dir``, by the key it returns them under."""
    from pathlib import Path

    return {key: Path(out_dir) / name for key, name in OUTPUT_FILES.items()}


def plot_confusion(result: ValidationResult, path: Any) -> None:
    """One confusion-matrix panel per split (row-normalised colours, counts written in), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soebench.fileio import atomic_path

    n = len(result.splits)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, rep in zip(axes[0], result.splits):
        counts = np.array(rep.confusion, dtype=float)
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                ax.text(j, i, f"{int(counts[i, j])}\n{norm[i, j]:.0%}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=30)
        ax.set_yticks(range(len(LABELS)), LABELS)
        ax.set_xlabel("predicted")
        ax.set_ylabel("truth")
        ax.set_title(f"{rep.split} ({rep.role}): {rep.accuracy:.1%} of {rep.n}")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write_outputs(result: ValidationResult, out_dir: Any, *, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """``validation.json`` (settings, rules, per-split reports), ``cases.csv`` (one row per case
    with its truth, method, prediction and scores) and ``confusion.png`` under ``out_dir``."""
    import csv
    import io
    import json
    from pathlib import Path

    from soebench.fileio import write_text_atomic

    paths = output_paths(out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    payload = {**(extra or {}), **result.to_dict()}
    write_text_atomic(paths["json"], json.dumps(payload, indent=2, sort_keys=True, default=str))
    buf = io.StringIO()
    keys = ("presence_score", "distortion_score", "colour_agreement", "colour_named", "colour_named_foreground", "colour_expected", "colour_expected_share")
    writer = csv.writer(buf)
    writer.writerow(["case_id", "sample_id", "split", "truth", "method", "category", "predicted", *keys])
    for r in result.rows:
        writer.writerow([r.case_id, r.sample_id, r.split, r.truth, r.method, r.category, r.predicted, *(r.evidence.get(k) for k in keys)])
    write_text_atomic(paths["cases"], buf.getvalue())
    plot_confusion(result, paths["plot"])
    return {key: str(path) for key, path in paths.items()}
