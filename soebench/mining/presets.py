"""Named filter presets, as data. ``resolve_filters`` turns a preset + overrides into a FilterConfig.

- ``soebench``: the released SOEBench COCO val2017 list -- non-crowd instances whose *bounding
  box* covers between (1/16)^2 and (1/6)^2 of the image (inclusive), labelled with the category.
- ``soe-eval``: box side band [1/8, 1/6] (area fraction [(1/8)^2, (1/6)^2]), the SOEBench class
  exclusions, and OpenImages objects flagged occluded / truncated / group-of / inside dropped.
- ``soe-train``: as ``soe-eval`` with the band [1/16, 1/6].
- ``coco-small``: COCO's own "small" definition, mask area < 32^2 pixels.

The OpenImages exclusions are explicit display-name lists of the boxable vocabulary
(``class-descriptions-boxable.csv``): the SOEBench paper names groups ("human body parts",
"clothing items"); here each group is spelled out so that the rule is exact and reviewable.
Names match exactly; parent classes ("Mammal", "Fashion accessory", ...) reach their subclasses
only with a class hierarchy (:mod:`soebench.mining.class_hierarchy`, ``--class-hierarchy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soebench.errors import ConfigError
from soebench.mining.filters import FilterConfig

#: Every "Human ..." class of the boxable vocabulary.
OPENIMAGES_HUMAN_BODY_PARTS: tuple[str, ...] = (
    "Human arm", "Human beard", "Human body", "Human ear", "Human eye", "Human face", "Human foot",
    "Human hair", "Human hand", "Human head", "Human leg", "Human mouth", "Human nose",
)
OPENIMAGES_PEOPLE: tuple[str, ...] = ("Person", "Man", "Woman", "Boy", "Girl")
#: Garments, footwear, headwear, gloves, belts, ties and scarves of the boxable vocabulary.
OPENIMAGES_CLOTHING: tuple[str, ...] = (
    "Clothing", "Footwear", "Boot", "Sandal", "High heels", "Roller skates",
    "Shirt", "Coat", "Jacket", "Suit", "Dress", "Skirt", "Miniskirt", "Shorts", "Trousers", "Jeans",
    "Swimwear", "Brassiere", "Sock", "Sports uniform", "Lifejacket",
    "Hat", "Cowboy hat", "Fedora", "Sombrero", "Sun hat", "Swim cap", "Helmet", "Bicycle helmet",
    "Football helmet", "Scarf", "Glove", "Belt", "Tie",
)
#: The other classes SOEBench leaves out (parts of larger objects, vague or too generic classes).
OPENIMAGES_OTHER_EXCLUSIONS: tuple[str, ...] = (
    "Wheel", "Tire", "Flower", "Window", "Plant", "Glasses", "Fashion accessory", "Sports equipment",
    "Auto part", "Invertebrate", "Marine invertebrates", "Mammal", "Stool",
)
OPENIMAGES_EXCLUDED: tuple[str, ...] = (
    OPENIMAGES_HUMAN_BODY_PARTS + OPENIMAGES_PEOPLE + OPENIMAGES_CLOTHING + OPENIMAGES_OTHER_EXCLUSIONS
)
COCO_EXCLUDED: tuple[str, ...] = ("person",)

_OI_FLAGS = {"drop_occluded": True, "drop_truncated": True, "drop_group": True, "drop_inside": True}

#: name -> {"description", "filters" (common), "per_source" {source: filters}}
PRESETS: dict[str, dict[str, Any]] = {
    "soebench": {
        "description": "released SOEBench COCO list: non-crowd, box area fraction in [(1/16)^2, (1/6)^2]",
        "filters": {
            "min_area_fraction": (1 / 16) ** 2,
            "max_area_fraction": (1 / 6) ** 2,
            "area_by": "box",
        },
        "per_source": {"coco": {"drop_crowd": True}},
    },
    "soe-eval": {
        "description": "SOEBench evaluation band: box side in [1/8, 1/6] of the image, class exclusions, "
        "OpenImages occluded/truncated/group/inside dropped",
        "filters": {
            "min_area_fraction": (1 / 8) ** 2,
            "max_area_fraction": (1 / 6) ** 2,
            "area_by": "box",
        },
        "per_source": {
            "coco": {"exclude_classes": COCO_EXCLUDED, "drop_crowd": True},
            "openimages": {"exclude_classes": OPENIMAGES_EXCLUDED, **_OI_FLAGS},
        },
    },
    "soe-train": {
        "description": "SOEDiff training band: box side in [1/16, 1/6] of the image, same exclusions as soe-eval",
        "filters": {
            "min_area_fraction": (1 / 16) ** 2,
            "max_area_fraction": (1 / 6) ** 2,
            "area_by": "box",
        },
        "per_source": {
            "coco": {"exclude_classes": COCO_EXCLUDED, "drop_crowd": True},
            "openimages": {"exclude_classes": OPENIMAGES_EXCLUDED, **_OI_FLAGS},
        },
    },
    "coco-small": {
        "description": "COCO's 'small' objects: mask area < 32^2 pixels (non-crowd)",
        "filters": {"max_pixels": 32.0**2, "area_by": "mask"},
        "per_source": {"coco": {"drop_crowd": True}},
    },
    "none": {"description": "no filter: every valid object", "filters": {}, "per_source": {}},
}

SOURCES = ("coco", "openimages")


def _did_you_mean(name: str, options: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def resolve_filters(
    preset: str | None, source: str, overrides: Mapping[str, Any] | None = None
) -> FilterConfig:
    """Preset values for ``source`` with ``overrides`` (None values ignored) on top."""
    if source not in SOURCES:
        raise ConfigError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(
                f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}",
                hint=_did_you_mean(preset, list(PRESETS)),
            )
        spec = PRESETS[preset]
        values.update(spec["filters"])
        values.update(spec["per_source"].get(source, {}))
    cfg = FilterConfig()
    try:
        cfg = cfg.replace(**values)
        return cfg.replace(**{k: v for k, v in (overrides or {}).items() if v is not None})
    except TypeError as exc:  # pragma: no cover - replace() names unknown keys first
        raise ConfigError(str(exc)) from exc
