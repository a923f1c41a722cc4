"""The metric names ``soebench evaluate`` knows, what weights each needs, and which can run.

Default: every metric whose weights are on this machine; the run's summary names the ones
skipped for lack of weights. Asking for a metric explicitly when its weights are missing is an
error that says how to provide them; an unknown name is an error with "did you mean".
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field

from soebench.errors import ConfigError, MissingWeightsError
from soebench.metrics.features import ClipSpec, clip_available, inception_available


@dataclass(frozen=True)
class MetricInfo:
    """A metric's name, the weights it needs (``"clip"``, ``"inception"`` or ``None``), whether
    it is per sample (else a set-level distance), and its direction."""

    name: str
    needs: str | None
    per_sample: bool
    higher_is_better: bool
    description: str
    label: str = ""  # what a plot axis calls it (defaults to the name)
    unit: str = ""  # of the values as stored ("" for a unitless score)

    @property
    def axis_label(self) -> str:
        """``label (unit) ↑`` / ``↓``: a plot axis says what it shows, in what unit, and which way is better."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.label or self.name}{unit} {'↑' if self.higher_is_better else '↓'}"


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("clip_score_local", "clip", True, True, "CLIP-Score of the tight object box crop vs the prompt",
                   "local CLIP-Score", "100·cos"),
        MetricInfo("clip_score_global", "clip", True, True, "CLIP-Score of the whole image vs the prompt",
                   "global CLIP-Score", "100·cos"),
        MetricInfo("fid_crop", "inception", False, False, "FID of generated vs original eval crops (clean resize)",
                   "FID, eval crops"),
        MetricInfo("kid_crop", "inception", False, False, "KID of generated vs original eval crops (clean resize)",
                   "KID, eval crops"),
        MetricInfo("fid_full", "inception", False, False, "FID of generated vs original full images", "FID, full images"),
        MetricInfo("kid_full", "inception", False, False, "KID of generated vs original full images", "KID, full images"),
        MetricInfo("bg_psnr", None, True, True, "PSNR (dB) outside the dilated object mask", "bg PSNR", "dB"),
        MetricInfo("bg_ssim", None, True, True, "SSIM outside the dilated object mask", "bg SSIM"),
        MetricInfo("bg_mse", None, True, False, "MSE (values in [0,1]) outside the dilated object mask", "bg MSE",
                   "[0,1] scale"),
    )
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)


def axis_label(name: str) -> str:
    """The plot axis label of metric ``name``; a name this version does not know (a summary
    written by another one) is shown as it is rather than failing the plot."""
    info = METRICS.get(name)
    return info.axis_label if info else name


@dataclass(frozen=True)
class MetricAvailability:
    """Which metrics can run: ``available`` in registry order, ``skipped`` name -> reason, and
    where the weights were found (``weights``: ``"clip"``/``"inception"`` -> location)."""

    available: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)


def _weights_status(clip_spec: ClipSpec | None, inception_path,
                    needs: tuple[str, ...] = ("clip", "inception")) -> tuple[dict[str, tuple[bool, str]], dict[str, str]]:
    """Which of the networks ``needs`` have their weights on disk (looking for CLIP imports
    open_clip and torch, seconds: only when a requested metric needs it)."""
    status: dict[str, tuple[bool, str]] = {}
    if "clip" in needs:
        status["clip"] = clip_available(clip_spec or ClipSpec())
    if "inception" in needs:
        status["inception"] = inception_available(inception_path)
    found = {k: v[1] for k, v in status.items() if v[0]}
    return status, found


def _require(need: str, clip_spec: ClipSpec, inception_path) -> None:
    """Resolve the weights of ``need``, raising the loader's own error (message + how-to)."""
    from soebench.metrics.features import find_inception_weights, resolve_clip

    if need == "clip":
        resolve_clip(clip_spec)
    else:
        find_inception_weights(inception_path)


def available_metrics(clip_spec: ClipSpec | None = None, inception_path=None) -> MetricAvailability:
    """Every registered metric whose weights are present (no model is loaded). Weights the user
    named (an Inception path, a CLIP weights path) must be there: a typo in a path is an error,
    not a metric quietly skipped."""
    status, found = _weights_status(clip_spec, inception_path)
    named = {"inception": inception_path is not None, "clip": clip_spec is not None and clip_spec.weights is not None}
    for need, given in named.items():
        if given and not status[need][0]:
            _require(need, clip_spec or ClipSpec(), inception_path)
            raise MissingWeightsError(f"{need} weights: {status[need][1]}")
    available, skipped = [], {}
    for name, info in METRICS.items():
        if info.needs is None or status[info.needs][0]:
            available.append(name)
        else:
            skipped[name] = status[info.needs][1]
    return MetricAvailability(tuple(available), skipped, found)


def check_metric_names(names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for unknown names, with close matches."""
    for name in names:
        if name not in METRICS:
            close = difflib.get_close_matches(name, METRIC_NAMES, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"known metrics: {', '.join(METRIC_NAMES)} (the failure taxonomy always runs)"
            raise ConfigError(f"unknown metric {name!r}", hint=hint)


def resolve_metrics(
    requested: Sequence[str] | None, clip_spec: ClipSpec | None = None, inception_path=None
) -> MetricAvailability:
    """``requested=None``: the default set (all available, others listed as skipped). Explicit
    names: all must be known and have their weights, else ConfigError / MissingWeightsError."""
    if requested is None:
        return available_metrics(clip_spec, inception_path)
    check_metric_names(requested)
    needs = tuple(dict.fromkeys(METRICS[n].needs for n in requested if METRICS[n].needs is not None))
    status, found = _weights_status(clip_spec, inception_path, needs)
    for name in requested:
        need = METRICS[name].needs
        if need is not None and not status[need][0]:
            try:
                _require(need, clip_spec or ClipSpec(), inception_path)
            except MissingWeightsError as exc:
                raise MissingWeightsError(f"metric {name} needs {need} weights: {exc.message}", hint=exc.hint) from exc
            raise MissingWeightsError(f"metric {name} needs {need} weights: {status[need][1]}")
    ordered = tuple(n for n in METRIC_NAMES if n in set(requested))
    return MetricAvailability(ordered, {}, found)
