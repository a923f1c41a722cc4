"""Object filters: named, vectorised predicates that return which candidates they reject.

Every filter has a name (the reject reason counted in the build summary), a description, the
candidate columns it needs and a function ``(columns, config) -> bool array`` (True = reject).
The runner applies a filter as soon as the columns it needs are known -- box geometry and class
before any file is read, image size after the image header, mask area after the mask -- so that
expensive work happens only for objects that passed every cheap test. A candidate is counted
against the first filter that rejects it.

Geometry conventions: ``box`` is the object box normalised to the image ``(x0, y0, x1, y1)``;
``box_frac`` its area fraction; ``mask_frac`` the mask area fraction (COCO: the annotation's own
``area`` field, as COCO's evaluation uses it; OpenImages: the PNG mask's own pixel fraction).
Area-fraction bands are inclusive on both ends; pixel bounds are half-open ``[min, max)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from soebench.errors import ConfigError

AreaBy = Literal["box", "mask"]
FLAG_NAMES = ("crowd", "occluded", "truncated", "group", "depiction", "inside")


@dataclass(frozen=True)
class FilterConfig:
    """Resolved filter values (presets fill these; every flag of ``build-dataset`` maps to one).

    Attributes:
        min_area_fraction / max_area_fraction: inclusive band on the object's area / image area.
        area_by: measure the band (and the pixel bounds) on the ``box`` or on the ``mask``.
        min_pixels / max_pixels: half-open band ``[min, max)`` on the object's area in pixels.
        max_aspect_ratio: longest box side / shortest box side, in pixels.
        include_classes / exclude_classes: category names or ids (COCO id, OpenImages MID),
            matched case-insensitively.
        drop_crowd ... drop_inside: drop objects carrying that flag (COCO iscrowd; OpenImages
            IsOccluded, IsTruncated, IsGroupOf, IsDepiction, IsInside).
        min_predicted_iou: OpenImages ``PredictedIoU`` lower bound (objects without one pass).
        border_margin: the box must keep this fraction of the image side from every border.
        max_per_image: keep at most K objects per image (a seeded, stable choice).
        unique_category: keep an object only if no other object of its category is annotated
            in the image (so the prompt names one thing).
    """

    min_area_fraction: float | None = None
    max_area_fraction: float | None = None
    area_by: AreaBy = "box"
    min_pixels: float | None = None
    max_pixels: float | None = None
    max_aspect_ratio: float | None = None
    include_classes: tuple[str, ...] = ()
    exclude_classes: tuple[str, ...] = ()
    drop_crowd: bool = False
    drop_occluded: bool = False
    drop_truncated: bool = False
    drop_group: bool = False
    drop_depiction: bool = False
    drop_inside: bool = False
    min_predicted_iou: float | None = None
    border_margin: float | None = None
    max_per_image: int | None = None
    unique_category: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, coerce_filter_value(f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Raise ConfigError naming the first inconsistent value."""
        if self.area_by not in ("box", "mask"):
            raise ConfigError(f"area_by must be 'box' or 'mask', got {self.area_by!r}")
        for name in ("min_area_fraction", "max_area_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {value}")
        lo, hi = self.min_area_fraction, self.max_area_fraction
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"min_area_fraction {lo} is larger than max_area_fraction {hi}")
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels >= self.max_pixels:
            raise ConfigError(f"min_pixels {self.min_pixels} must be below max_pixels {self.max_pixels}")
        if self.max_aspect_ratio is not None and self.max_aspect_ratio < 1:
            raise ConfigError(f"max_aspect_ratio must be >= 1, got {self.max_aspect_ratio}")
        if self.border_margin is not None and not 0 <= self.border_margin < 0.5:
            raise ConfigError(f"border_margin must lie in [0, 0.5), got {self.border_margin}")
        if self.max_per_image is not None and self.max_per_image < 1:
            raise ConfigError(f"max_per_image must be >= 1, got {self.max_per_image}")
        if self.min_predicted_iou is not None and not 0 <= self.min_predicted_iou <= 1:
            raise ConfigError(f"min_predicted_iou must lie in [0, 1], got {self.min_predicted_iou}")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["include_classes"] = list(self.include_classes)
        out["exclude_classes"] = list(self.exclude_classes)
        return out

    def replace(self, **changes: Any) -> FilterConfig:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown filter option(s): {', '.join(unknown)}")
        for key in ("include_classes", "exclude_classes"):
            # other iterables as tuples; text ("cup,ball") is split by coerce_filter_value, never into letters
            if changes.get(key) is not None and not isinstance(changes[key], (str, int)):
                changes[key] = tuple(changes[key])
        return dataclasses.replace(self, **changes)

    def flags_needed(self) -> tuple[str, ...]:
        return tuple(name for name in FLAG_NAMES if getattr(self, f"drop_{name}"))


_FLOAT_KEYS = ("min_area_fraction", "max_area_fraction", "min_pixels", "max_pixels", "max_aspect_ratio",
               "min_predicted_iou", "border_margin")
_BOOL_TEXT = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def as_bool(name: str, value: Any) -> bool:
    """``value`` as a boolean: a bool, 0/1, or true/false/yes/no/on/off text; ConfigError otherwise."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
        return _BOOL_TEXT[value.strip().lower()]
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def coerce_filter_value(name: str, value: Any) -> Any:
    """A filter value as its field's type, from Python, a flag or a config file (where YAML reads
    ``1e-3`` as text and users quote ``"false"``); ConfigError naming the option otherwise.
    Text booleans are converted, never taken as truthy: ``"false"`` must not drop anything."""
    if value is None:
        return None
    if name in _FLOAT_KEYS:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if name == "max_per_image":
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if isinstance(number, (int, float, np.integer, np.floating)) and not isinstance(number, bool) \
                and float(number).is_integer():
            return int(number)
        raise ConfigError(f"max_per_image must be a whole number, got {value!r}")
    if name.startswith("drop_") or name == "unique_category":
        return as_bool(name, value)
    if name in ("include_classes", "exclude_classes"):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = [value]  # one COCO id, as YAML reads `include_classes: 47`
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{name} must be a list of category names or ids, got {value!r}")
        return tuple(str(v).strip() for v in items if str(v).strip())
    return value


Columns = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Filter:
    """One named predicate: ``reject(columns, config)`` -> bool array (True = rejected)."""

    name: str
    description: str
    needs: tuple[str, ...]
    reject: Callable[[Columns, FilterConfig], np.ndarray]
    active: Callable[[FilterConfig], bool]


def _area_fraction(cols: Columns, cfg: FilterConfig) -> np.ndarray:
    return cols["mask_frac"] if cfg.area_by == "mask" else cols["box_frac"]


#: Relative tolerance of the inclusive area band's edges. A box exactly on an edge computes to a
#: hair below or above it in floating point: an 80x60 px OpenImages box on a 640x480 image is
#: (1/8)^2 exactly, but from normalised coordinates 0.015624999999999993. Far below any real
#: difference between two annotations (a pixel of a 1-megapixel image is 1e-6).
BAND_RTOL = 1e-9
#: An optional source column: how far a row's box area fraction may lie from the true one
#: because the source rounded its coordinates (OpenImages writes 6 decimals, so a box that is
#: exactly 1/6 of the image a side reads 0.166667: 4e-6 relative above (1/6)^2). The band's
#: edges widen by it, which is far below a pixel.
BOX_FRAC_TOL = "box_frac_tol"


def _reject_area_band(cols: Columns, cfg: FilterConfig) -> np.ndarray:
    frac = _area_fraction(cols, cfg)
    tol = cols[BOX_FRAC_TOL] if cfg.area_by == "box" and BOX_FRAC_TOL in cols else 0.0
    out = np.zeros(len(frac), dtype=bool)
    if cfg.min_area_fraction is not None:
        out |= ~(frac >= cfg.min_area_fraction * (1.0 - BAND_RTOL) - tol)
    if cfg.max_area_fraction is not None:
        out |= ~(frac <= cfg.max_area_fraction * (1.0 + BAND_RTOL) + tol)
    return out


def _reject_pixels(cols: Columns, cfg: FilterConfig) -> np.ndarray:
    # rounded: a 20x20 box is 400 px, not 399.99999999999994 after fraction * width * height
    pixels = np.round(_area_fraction(cols, cfg) * cols["width"] * cols["height"], 6)
    out = np.zeros(len(pixels), dtype=bool)
    if cfg.min_pixels is not None:
        out |= ~(pixels >= cfg.min_pixels)
    if cfg.max_pixels is not None:
        out |= ~(pixels < cfg.max_pixels)
    return out


def _reject_aspect(cols: Columns, cfg: FilterConfig) -> np.ndarray:
    box = cols["box"]
    w = (box[:, 2] - box[:, 0]) * cols["width"]
    h = (box[:, 3] - box[:, 1]) * cols["height"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.maximum(w, h) / np.minimum(w, h)
    return ~(ratio <= cfg.max_aspect_ratio)


def _class_keys(cols: Columns) -> tuple[np.ndarray, np.ndarray]:
    return cols["category_lower"], cols["category_id_lower"]


def _matches(cols: Columns, classes: Sequence[str]) -> np.ndarray:
    """Hash-based membership (Arrow): np.isin sorts object arrays, slow for millions of rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(sorted({c.strip().lower() for c in classes}), type=pa.string())
    out = np.zeros(len(cols["category_lower"]), dtype=bool)
    for values in _class_keys(cols):
        if len(values):
            hit = pc.is_in(pa.array(values, type=pa.string()), value_set=wanted)
            out |= np.asarray(hit.to_numpy(zero_copy_only=False), dtype=bool)
    return out


def _flag_filter(flag: str) -> Filter:
    def reject(cols: Columns, cfg: FilterConfig) -> np.ndarray:
        return cols[flag] == 1  # -1 = unknown passes only where no flag filter asks (checked upfront)

    return Filter(
        name=flag,
        description=f"object flagged {flag} (drop_{flag})",
        needs=(flag,),
        reject=reject,
        active=lambda cfg, f=flag: getattr(cfg, f"drop_{f}"),
    )


FILTERS: tuple[Filter, ...] = (
    *(_flag_filter(f) for f in FLAG_NAMES),
    Filter(
        "include_classes",
        "category not in include_classes",
        ("category_lower", "category_id_lower"),
        lambda c, cfg: ~_matches(c, cfg.include_classes),
        lambda cfg: bool(cfg.include_classes),
    ),
    Filter(
        "exclude_classes",
        "category in exclude_classes",
        ("category_lower", "category_id_lower"),
        lambda c, cfg: _matches(c, cfg.exclude_classes),
        lambda cfg: bool(cfg.exclude_classes),
    ),
    Filter(
        "min_predicted_iou",
        "PredictedIoU below min_predicted_iou",
        ("predicted_iou",),
        lambda c, cfg: c["predicted_iou"] < cfg.min_predicted_iou,  # NaN (unknown) passes
        lambda cfg: cfg.min_predicted_iou is not None,
    ),
    Filter(
        "border_margin",
        "box closer than border_margin to an image border",
        ("box",),
        lambda c, cfg: (c["box"][:, :2] < cfg.border_margin).any(axis=1)
        | (c["box"][:, 2:] > 1.0 - cfg.border_margin).any(axis=1),
        lambda cfg: cfg.border_margin is not None,
    ),
    Filter(
        "unique_category",
        "another object of the same category is annotated in the image",
        ("category_count",),
        lambda c, cfg: c["category_count"] > 1,
        lambda cfg: cfg.unique_category,
    ),
    Filter(
        "area_fraction",
        "area fraction outside [min_area_fraction, max_area_fraction]",
        ("area_measure",),
        _reject_area_band,
        lambda cfg: cfg.min_area_fraction is not None or cfg.max_area_fraction is not None,
    ),
    Filter(
        "max_aspect_ratio",
        "box aspect ratio above max_aspect_ratio",
        ("box", "width"),
        _reject_aspect,
        lambda cfg: cfg.max_aspect_ratio is not None,
    ),
    Filter(
        "pixels",
        "area in pixels outside [min_pixels, max_pixels)",
        ("area_measure", "width"),
        _reject_pixels,
        lambda cfg: cfg.min_pixels is not None or cfg.max_pixels is not None,
    ),
)

def _needs(flt: Filter, cfg: FilterConfig) -> set[str]:
    needs = set(flt.needs)
    if "area_measure" in needs:
        needs.discard("area_measure")
        needs.add("mask_frac" if cfg.area_by == "mask" else "box_frac")
    return needs


@dataclass
class FilterRun:
    """Applies the active :data:`FILTERS` as their columns become known; counts rejections.

    ``apply(cols, rows, available)`` runs every not-yet-finished filter whose columns are in
    ``available`` on ``rows`` (indices) and returns the rows that pass. With ``final=True`` the
    filters applied are marked finished (the whole candidate set went through them); batch-wise
    stages (masks) call it per batch with ``final=False`` and call :meth:`finish` at the end.
    """

    config: FilterConfig
    finished: set[str] = field(default_factory=set)
    rejected: dict[str, int] = field(default_factory=dict)

    def active(self) -> list[Filter]:
        return [f for f in FILTERS if f.active(self.config)]

    def apply(self, cols: Columns, rows: np.ndarray, available: set[str], *, final: bool = True) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        for flt in self.active():
            if flt.name in self.finished:
                continue
            needs = _needs(flt, self.config)
            if not needs <= available:
                continue
            self.rejected.setdefault(flt.name, 0)
            if len(rows):
                sub = {k: cols[k][rows] for k in needs | {"width", "height", BOX_FRAC_TOL} if k in cols}
                rej = np.asarray(flt.reject(sub, self.config), dtype=bool)
                self.rejected[flt.name] += int(rej.sum())
                rows = rows[~rej]
            if final:
                self.finished.add(flt.name)
        return rows

    def finish(self, available: set[str]) -> None:
        """Mark the batch-wise filters finished; raise if an active filter could never run."""
        for flt in self.active():
            needs = _needs(flt, self.config)
            if not needs <= available:
                raise ConfigError(f"filter {flt.name!r} needs {sorted(needs - available)}, which this source lacks")
            self.finished.add(flt.name)
            self.rejected.setdefault(flt.name, 0)

    def _missing_flags(self, provides: set[str]) -> list[str]:
        return [f for f in self.config.flags_needed() if f not in provides]

    def check_source(self, provides: set[str], flag_hint: Callable[[list[str]], str] | None = None) -> None:
        """Fail before any work when an active filter needs columns the source never provides
        (``flag_hint(missing flags)``: what the source would need for them)."""
        for flt in self.active():
            missing = _needs(flt, self.config) - provides
            if missing:
                hint = flag_hint(self._missing_flags(provides)) if flag_hint and set(FLAG_NAMES) & missing else None
                if "predicted_iou" in missing:
                    hint = ("PredictedIoU is a column of OpenImages segmentation CSVs (V5 and later); "
                            "drop --min-predicted-iou for this input")
                raise ConfigError(f"{_option(flt.name)} (filter {flt.name!r}) needs {', '.join(sorted(missing))}, "
                                  "which this source does not provide", hint=hint)


def _option(filter_name: str) -> str:
    """The command-line option that turns a filter on, for messages."""
    if filter_name in FLAG_NAMES:
        return f"--drop-{filter_name}"
    if filter_name in {f.name for f in dataclasses.fields(FilterConfig)}:
        return "--" + filter_name.replace("_", "-")
    ranges = {"area_fraction": "--min-area-fraction/--max-area-fraction", "pixels": "--min-pixels/--max-pixels"}
    return ranges.get(filter_name, filter_name)
