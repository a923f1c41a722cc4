"""Stable ids, source split names, deterministic re-splits and shards -- all by image.

Everything here hashes text with SHA-1, so results do not depend on the order of the input,
on Python's hash seed or on the machine.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from soebench.errors import ConfigError

SAMPLE_ID_CHARS = 16


def sample_id(source: str, split: str, annotation_id: str) -> str:
    """Stable id of one object: SHA-1 hex prefix of ``"<source>:<split>:<annotation id>"``."""
    return hashlib.sha1(f"{source}:{split}:{annotation_id}".encode()).hexdigest()[:SAMPLE_ID_CHARS]


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text``."""
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


def source_split(path: str | Path, source: str) -> str:
    """The split named by an annotation file: instances_val2017.json -> "val2017",
    validation-annotations-object-segmentation.csv -> "validation"."""
    name = Path(path).name
    if source == "coco":
        m = re.match(r"(?:instances|person_keypoints|captions)_([A-Za-z0-9]+)\.json$", name)
        return m.group(1) if m else Path(name).stem
    # official names: validation-annotations-bbox.csv, oidv6-train-annotations-bbox.csv,
    # train-annotations-object-segmentation.csv, test-annotations-human-imagelabels-boxable.csv
    m = re.search(r"(?<![a-z])(train|validation|test)(?![a-z])", name.lower())
    if m:
        return m.group(1)
    m = re.match(r"([a-z]+)-annotations", name)
    return m.group(1) if m else Path(name).stem


def parse_split_ratios(text: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """"train=0.9,val=0.1" (or a mapping, as YAML gives it) -> {"train": 0.9, "val": 0.1}: finite,
    positive and summing to 1. The names come back sorted, the order :func:`assign_splits` uses,
    so how the names were written changes neither the splits nor what the manifest records."""
    if text is None or text == "":
        return None
    if isinstance(text, Mapping):
        ratios = {str(k).strip(): _ratio(f"{k}={v}", v) for k, v in text.items()}
        if len(ratios) != len(text):
            raise ConfigError(f"split ratios {dict(text)!r} name a split twice")
    else:
        ratios = {}
        for part in str(text).split(","):
            if "=" not in part:
                raise ConfigError(f"split ratio {part!r} is not NAME=FRACTION (e.g. train=0.9,val=0.1)")
            name, value = part.split("=", 1)
            if name.strip() in ratios:
                raise ConfigError(f"split ratios {text!r} name split {name.strip()!r} twice")
            ratios[name.strip()] = _ratio(part, value)
    if not ratios or any(not k for k in ratios):
        raise ConfigError(f"split ratios {ratios} need names and positive fractions")
    total = sum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"split ratios {ratios} sum to {total}, not 1")
    return {name: ratios[name] for name in sorted(ratios)}


def _ratio(part: str, value: object) -> float:
    """One split's fraction: a finite number > 0 (NaN compares false with everything, so a
    plain ``<= 0`` test would let it through and send every image to one split)."""
    if isinstance(value, bool):
        raise ConfigError(f"split ratio {part!r}: {value!r} is not a number")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"split ratio {part!r}: {value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"split ratio {part!r}: {value!r} is not a positive fraction")
    return number


def assign_splits(image_keys: Iterable[str], ratios: Mapping[str, float], seed: int, source: str) -> dict[str, str]:
    """image key -> split name, by a seeded hash of the image (an image never spans splits). The
    hash's [0, 1) is cut in the splits' name order (sorted), so ``val=0.2,train=0.8`` and
    ``train=0.8,val=0.2`` assign every image alike."""
    names = sorted(ratios)
    edges = np.cumsum([ratios[n] for n in names])
    edges[-1] = 1.0
    out = {}
    for key in image_keys:
        u = unit_hash(f"split:{seed}:{source}:{key}")
        out[key] = names[int(np.searchsorted(edges, u, side="right"))]
    return out


def shard_of(image_key: str, source: str, num_shards: int) -> int:
    """The shard that holds every object of one image."""
    return int(unit_hash(f"shard:{source}:{image_key}") * num_shards)


def part_name(index: int, count: int) -> str:
    return f"part-{index:05d}-of-{count:05d}.parquet"
