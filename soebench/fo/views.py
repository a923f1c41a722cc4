"""Saved views of a soebench dataset, per run slice: each failure label, worst local CLIP-Score,
largest background change, generation errors.

Views are flat (``select_group_slices(run)``) so the App's grid shows that model's outputs.
They are re-saved on every export, so they follow the data. A score view is saved only for a
run that has values of that score (a run evaluated without CLIP weights has no CLIP-Score);
:func:`save_views` reports the views left out and why, so that ``inspect`` can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soebench.fiftyone_export import ORIGINAL_SLICE, TAG_ERROR

FAILURE_LABELS = ("ok", "missing", "mismatch", "distortion")
WORST_N = 100
VIEW_PREFIX = "soebench-"
REASON_CHARS = 100  # the full reason is in the run's summary.json
# score view: (name suffix, field, sort descending?)
SCORE_VIEWS = (("worst-clip-local", "clip_score_local", False), ("largest-bg-change", "bg_mse", True))


@dataclass
class SavedViews:
    """The names of the views saved, and ``{view name: why it was left out}``."""

    names: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def view_name(slice_name: str, what: str) -> str:
    return f"{VIEW_PREFIX}{slice_name}-{what}"


def build_views(dataset: Any, slice_name: str, skipped: dict[str, str] | None = None,
                why_absent: dict[str, str] | None = None, run_name: str | None = None) -> dict[str, Any]:
    """``{name: view}`` for one run slice; views left out are added to ``skipped`` with the reason
    (``why_absent``: score -> why the run has none, e.g. from its ``summary.json``; ``run_name``:
    the run's own name, for those reasons, where the slice is named otherwise)."""
    from fiftyone import ViewField as F

    from soebench.fiftyone_export import run_label

    base = dataset.select_group_slices(slice_name)
    schema = base.get_field_schema()
    views: dict[str, Any] = {}
    labels = list(FAILURE_LABELS)
    if "failure" in schema:
        labels += [lab for lab in base.distinct("failure.label") if lab not in labels]
        for label in labels:
            views[view_name(slice_name, f"failure-{label}")] = base.match(F("failure.label") == label)
    for what, score, descending in SCORE_VIEWS:
        name = view_name(slice_name, what)
        scored = base.match(F(score) != None) if score in schema else None  # noqa: E711
        if scored is None or scored.count() == 0:
            if skipped is not None:
                reason = (why_absent or {}).get(score)
                if reason and len(reason) > REASON_CHARS:
                    reason = reason[: REASON_CHARS - 1] + "…"
                label = run_label(run_name or slice_name, slice_name)
                skipped[name] = f"{label} has no {score} values" + (f" ({reason})" if reason else "")
            continue
        views[name] = scored.sort_by(score, reverse=descending).limit(WORST_N)
    views[view_name(slice_name, "errors")] = base.match_tags(TAG_ERROR)
    return views


def save_views(dataset: Any, why_absent: dict[str, dict[str, str]] | None = None,
               run_names: dict[str, str] | None = None) -> SavedViews:
    """(Re)save the views of every run slice; drop soebench views that no longer apply.

    ``why_absent``: slice -> {score: why that run has no values of it}; ``run_names``: slice -> run name."""
    out = SavedViews()
    for slice_name in dataset.group_slices or []:
        if slice_name == ORIGINAL_SLICE:
            continue
        reasons = (why_absent or {}).get(slice_name)
        run_name = (run_names or {}).get(slice_name)
        for name, view in build_views(dataset, slice_name, out.skipped, reasons, run_name).items():
            dataset.save_view(name, view, overwrite=True)
            out.names.append(name)
    for old in dataset.list_saved_views():
        if old.startswith(VIEW_PREFIX) and old not in out.names:
            dataset.delete_saved_view(old)
    return out
