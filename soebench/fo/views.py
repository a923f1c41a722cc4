"""Saved views of a soebench dataset, per run slice: each failure label, worst local CLIP-Score,
largest background change, generation errors.

Views are flat (``select_group_slices(run)``) so the App's grid shows that model's outputs.
They are re-saved on every export, so they follow the data; views of a field no run has
(e.g. CLIP-Score of a run evaluated without CLIP weights) are left out.
"""

from __future__ import annotations

from typing import Any

from soebench.fiftyone_export import ORIGINAL_SLICE, TAG_ERROR

FAILURE_LABELS = ("ok", "missing", "mismatch", "distortion")
WORST_N = 100
VIEW_PREFIX = "soebench-"


def view_name(slice_name: str, what: str) -> str:
    return f"{VIEW_PREFIX}{slice_name}-{what}"


def build_views(dataset: Any, slice_name: str) -> dict[str, Any]:
    """``{name: view}`` for one run slice."""
    from fiftyone import ViewField as F

    base = dataset.select_group_slices(slice_name)
    schema = base.get_field_schema()
    views: dict[str, Any] = {}
    labels = list(FAILURE_LABELS)
    if "failure" in schema:
        labels += [lab for lab in base.distinct("failure.label") if lab not in labels]
        for label in labels:
            views[view_name(slice_name, f"failure-{label}")] = base.match(F("failure.label") == label)
    if "clip_score_local" in schema:
        views[view_name(slice_name, "worst-clip-local")] = (
            base.match(F("clip_score_local") != None).sort_by("clip_score_local").limit(WORST_N)  # noqa: E711
        )
    if "bg_mse" in schema:
        views[view_name(slice_name, "largest-bg-change")] = (
            base.match(F("bg_mse") != None).sort_by("bg_mse", reverse=True).limit(WORST_N)  # noqa: E711
        )
    views[view_name(slice_name, "errors")] = base.match_tags(TAG_ERROR)
    return views


def save_views(dataset: Any) -> list[str]:
    """(Re)save the views of every run slice; drop soebench views of slices that are gone."""
    names: list[str] = []
    for slice_name in dataset.group_slices or []:
        if slice_name == ORIGINAL_SLICE:
            continue
        for name, view in build_views(dataset, slice_name).items():
            dataset.save_view(name, view, overwrite=True)
            names.append(name)
    for old in dataset.list_saved_views():
        if old.startswith(VIEW_PREFIX) and old not in names:
            dataset.delete_saved_view(old)
    return names
