"""The per-image stage of ``build_dataset``: masks, pixels and colour of the objects that passed
every cheap filter, image by image -- in this process, or in forked worker processes.

Each image group is mined with counters of its own (:class:`GroupResult`); the caller adds them
up in group order, so the manifest, the counts and the examples are the same whatever the
number of workers. Workers are forked after the parse and read the parsed annotations from the
memory they share with the parent; only the results travel back.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soebench.errors import ConfigError
from soebench.mining.filters import FLAG_NAMES, FilterRun
from soebench.mining.prefetch import ImagePrefetch, decode_image
from soebench.mining.sources import ImageError

EXAMPLES_PER_REASON = 5
#: image groups per task sent to a worker: few enough messages, little work past a --limit
GROUPS_PER_TASK = 16


@dataclass
class Tally:
    """Objects dropped for bad input, by reason, with the first few annotation ids of each."""

    namer: Any = str  # annotation key -> annotation id text
    invalid: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, ann_keys, detail: str | None = None) -> None:
        """Count ``ann_keys`` under ``reason``; ``detail`` (what of these objects, e.g. the path
        looked for) follows each of their examples in brackets."""
        keys = list(ann_keys)
        self.invalid[reason] += len(keys)
        ex = self.examples.setdefault(reason, [])
        suffix = f" ({detail})" if detail else ""
        ex.extend(f"{self.namer(k)}{suffix}" for k in keys[: EXAMPLES_PER_REASON - len(ex)])

    def drop_error(self, exc: ImageError, ann_keys) -> None:
        self.drop(str(exc), ann_keys, getattr(exc, "detail", None))

    def full(self, reason: str) -> bool:
        """Whether ``reason`` has all its examples (later drops only count)."""
        return len(self.examples.get(reason, ())) >= EXAMPLES_PER_REASON


def _fraction(mask: np.ndarray) -> float:
    """Share of True pixels; equal to ``mask.mean()`` (an exact integer sum) at a tenth of the cost."""
    return np.count_nonzero(mask) / mask.size if mask.size else float("nan")


@dataclass
class GroupResult:
    """One image group's kept rows and the drops counted while mining it."""

    kept: list[dict[str, Any]]
    invalid: Counter
    examples: dict[str, list[str]]
    rejected: dict[str, int]

    def add_to(self, tally: Tally, frun: FilterRun) -> None:
        tally.invalid.update(self.invalid)
        for reason, found in self.examples.items():
            mine = tally.examples.setdefault(reason, [])
            mine.extend(found[: EXAMPLES_PER_REASON - len(mine)])
        for name, count in self.rejected.items():
            frun.rejected[name] = frun.rejected.get(name, 0) + count


@dataclass
class Stage:
    """What mining one image group reads: the source, the candidates, the groups and the filters
    that still run (with the columns known before the stage and those it fills in)."""

    src: Any
    cands: Any
    groups: list[np.ndarray]
    frun: FilterRun
    available: set[str]
    later: set[str]
    before_fork: Callable[[], Any] = lambda: None  # ends the caller's other threads (fork copies none)

    def mine(self, gi: int, pixels: Callable) -> GroupResult:
        """Group ``gi`` mined with counters of its own; ``pixels(path)`` -> (RGB image, exposure gain)."""
        tally = Tally(namer=self.src.annotation_name)
        frun = FilterRun(self.frun.config, finished=set(self.frun.finished))
        kept = self._kept(self.groups[gi], tally, frun, pixels)
        return GroupResult(kept, tally.invalid, tally.examples, frun.rejected)

    def _kept(self, rows: np.ndarray, tally: Tally, frun: FilterRun, pixels: Callable) -> list[dict[str, Any]]:
        """The manifest rows (without ids, split, captions) of one image's candidate ``rows``, in
        order: image file -> size -> size filters -> masks -> mask filters -> pixels -> colour."""
        from soebench.mining.colour import colour_of_mask

        src, cands, cols = self.src, self.cands, self.cands.cols
        key = cands.image_key[rows[0]]
        rel = src.image_file(key)
        if rel is None:
            lookup = getattr(src, "image_lookup", None)
            tally.drop("missing image file", cands.ann_key[rows], lookup(key) if lookup else None)
            return []
        try:
            width, height = src.image_size(key)
        except ImageError as exc:
            tally.drop_error(exc, cands.ann_key[rows])
            return []
        if "width" in self.later:
            cols["width"][rows] = width
            cols["height"][rows] = height
            rows = frun.apply(cols, rows, self.available | {"width", "height"}, final=False)
            if not len(rows):
                return []
        masks = self._masks(rows, width, height, tally)
        rows = np.array(list(masks), dtype=np.int64)
        if "mask_frac" in self.later and len(rows):
            rows = frun.apply(cols, rows, self.available | self.later, final=False)
        if not len(rows):
            return []
        try:
            image, gain = pixels(src.images_root / rel)
        except ImageError as exc:
            tally.drop_error(exc, cands.ann_key[rows])
            return []
        if image.shape[:2] != (height, width):
            tally.drop("image size differs from the annotation", cands.ann_key[rows])
            return []
        # per image, not per object: the columns every row of this image shares
        shared = {"source": src.name, "image_id": src.image_name(key), "image_path": rel, "width": width,
                  "height": height, "license": src.license(key)}
        kept = []
        for r in rows.tolist():
            mask, kind, frac = masks[r]
            try:
                colour = colour_of_mask(image, mask, gain=gain)
            except ValueError as exc:
                tally.drop(f"colour: {exc}", [cands.ann_key[r]])
                continue
            kept.append(self._row(r, shared, mask, kind, frac, colour))
        return kept

    def _masks(self, rows: np.ndarray, width: int, height: int, tally: Tally) -> dict[int, tuple[np.ndarray, str, float]]:
        """row -> (mask at image size, its source, its area fraction) for the rows whose mask is
        usable; PNG masks get their area on the mask itself, before the resize to the image."""
        from soebench.mining.openimages import resize_nearest

        cols, good = self.cands.cols, {}
        found = self.src.masks(rows, width, height)
        for r in rows.tolist():
            mask, kind = found[r]
            if isinstance(mask, ImageError):  # with what was looked for, or the sizes that do not fit
                tally.drop_error(mask, [self.cands.ann_key[r]])
                continue
            if isinstance(mask, str):
                tally.drop(mask, [self.cands.ann_key[r]])
                continue
            frac = _fraction(mask)
            cols["mask_frac"][r] = frac
            if kind == "png":
                mask = resize_nearest(mask, width, height)
                empty = not mask.any()
            else:
                empty = not frac > 0.0
            if empty:
                tally.drop("empty mask", [self.cands.ann_key[r]])
                continue
            good[r] = (mask, kind, frac)
        return good

    def _row(self, r: int, shared: dict[str, Any], mask: np.ndarray, kind: str, frac: float, colour) -> dict[str, Any]:
        from soebench.manifest.masks import encode_mask
        from soebench.mining.crops import eval_crop, teacher_crop
        from soebench.mining.prompts import make_prompts

        src, cands, cols = self.src, self.cands, self.cands.cols
        width, height = shared["width"], shared["height"]
        bbox = src.bbox_pixels(r, width, height)
        # set is 1 exactly, as the drop filters read it (the readers refuse any other value than -1, 0, 1)
        flags = {f: (None if f not in cols or cols[f][r] < 0 else bool(cols[f][r] == 1)) for f in FLAG_NAMES}
        iou = float(cols["predicted_iou"][r])
        category = str(cands.category[r])
        return {
            **shared,
            "annotation_id": src.annotation_name(cands.ann_key[r]),
            "category": category,
            "category_id": str(cands.category_id[r]),
            "bbox": bbox,
            "bbox_area_fraction": float(cols["box_frac"][r]),
            "mask_rle": encode_mask(mask),
            "mask_source": kind,
            "mask_area_fraction": frac,
            "color": colour.name,
            "color_confidence": float(colour.confidence),
            "prompts": make_prompts(category, colour.name),
            "teacher_crop": list(teacher_crop(bbox, width, height)),
            "eval_crop": list(eval_crop(bbox, width, height)),
            **flags,
            "predicted_iou": None if np.isnan(iou) else iou,
        }


@contextmanager
def group_results(stage: Stage, start: int, workers: int, image_threads: int = 1) -> Iterator[Iterator[GroupResult]]:
    """The results of groups ``start, start + 1, ...`` in order. With ``workers > 1`` they are
    mined in forked processes (entered before any other thread that the caller starts)."""
    if workers <= 1:
        keys = [stage.cands.image_key[g[0]] for g in stage.groups]
        with ImagePrefetch(stage.src, keys, image_threads) as pixels:
            def sequential() -> Iterator[GroupResult]:
                for gi in range(start, len(stage.groups)):
                    pixels.ahead(gi)
                    yield stage.mine(gi, pixels.get(gi))

            yield sequential()
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise ConfigError("workers > 1 needs processes started by fork (Linux)", hint="use --workers 1 here")
    stage.before_fork()
    global _STAGE
    _STAGE = stage
    try:
        with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_started) as pool:
            tasks = [range(i, min(i + GROUPS_PER_TASK, len(stage.groups)))
                     for i in range(start, len(stage.groups), GROUPS_PER_TASK)]
            yield (result for batch in pool.imap(_mine_task, tasks) for result in batch)
    finally:  # leaving the with-block terminates the workers (also after a limit or Ctrl-C)
        _STAGE = None


#: the stage a forked worker reads (inherited from the parent at fork, never pickled)
_STAGE: Stage | None = None


def _worker_started() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    after_fork = getattr(_STAGE.src, "after_fork", None)
    if after_fork is not None:
        after_fork()


def _mine_task(indices: range) -> list[GroupResult]:
    return [_STAGE.mine(gi, decode_image) for gi in indices]
