"""The OpenImages class hierarchy (``bbox_labels_600_hierarchy.json``), for class filters that
mean a class *and its subclasses*.

Why: OpenImages annotates the most specific class that applies, so a parent class of the
SOEBench exclusions ("Mammal", "Fashion accessory", "Sports equipment", "Plant", "Auto part")
has few or no boxes of its own: matched by name alone it excludes almost nothing, while its
subclasses (Cat, Earrings, Baseball glove, Houseplant, ...) pass. With the hierarchy a class
list is widened to every ``Subcategory`` below each named class. ``Part`` edges (a Wheel is a
part of a Car) are not subclasses and are not followed.

File format (as released): a tree of ``{"LabelName": MID, "Subcategory": [...], "Part": [...]}``
whose root is the pseudo-class ``/m/0bl9f`` ("Entity"); a class may sit under several parents.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from soebench.errors import InputError


def read_hierarchy(path: str | Path) -> dict[str, tuple[str, ...]]:
    """MID -> its direct subclasses' MIDs (every parent a class has, merged)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"class hierarchy {path} " + ("is a folder" if path.is_dir() else "does not exist"),
                         hint="the official file is bbox_labels_600_hierarchy.json")
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a JSON class hierarchy ({exc})") from None
    children: dict[str, list[str]] = {}
    _check_node(path, tree, "the top level")
    stack = [tree]
    while stack:
        node = stack.pop()
        mid = node["LabelName"]
        mine = children.setdefault(mid, [])
        for edge in ("Subcategory", "Part"):
            kids = node.get(edge, [])
            if not isinstance(kids, list):
                raise InputError(f"{path}: {edge} of {mid} is not a list")
            for kid in kids:
                _check_node(path, kid, f"a {edge} entry of {mid}")
                stack.append(kid)
                if edge == "Subcategory" and kid["LabelName"] not in mine:
                    mine.append(kid["LabelName"])
    return {mid: tuple(kids) for mid, kids in children.items()}


def _check_node(path: Path, node, where: str) -> None:
    if not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
        raise InputError(f'{path}: {where} is not a {{"LabelName": MID, "Subcategory": [...]}} node')


def descendants(mids: Iterable[str], children: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Every subclass below ``mids`` (not ``mids`` themselves), in a stable order."""
    seen: dict[str, None] = {}
    stack = list(mids)[::-1]
    start = set(stack)
    while stack:
        for kid in reversed(children.get(stack.pop(), ())):
            if kid not in seen and kid not in start:
                seen[kid] = None
                stack.append(kid)
    return sorted(seen)


def mids_of(name: str, classes: Mapping[str, str]) -> list[str]:
    """The MIDs a class filter entry (a display name or a MID, any case) names."""
    key = name.strip().lower()
    return [mid for mid, display in classes.items() if key in (mid.lower(), display.lower())]


def widen(names: tuple[str, ...], classes: Mapping[str, str], children: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """``names`` (display names or MIDs, any case) followed by the MIDs of all their subclasses."""
    mids = [mid for n in names for mid in mids_of(n, classes)]
    extra = [m for m in descendants(mids, children) if m not in mids]
    return tuple(names) + tuple(extra)
