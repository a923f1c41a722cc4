"""Manifest rows -> inputs -> adapter (through the cache) -> outputs, with per-sample errors.

A failing sample never stops the run: an input that cannot be read, an adapter exception, or an
output of the wrong size is recorded as that sample's error. When a whole batch raises, its
samples are retried one by one so only the guilty one is marked; an adapter calling
``sys.exit()`` is such an exception too (it must not end the run). What the adapter returns must
be a list (or other iterable) of outputs, one per request: ``None``, a dict or a single image is
an error for the whole batch. ``KeyboardInterrupt`` and :class:`~soebench.errors.SoebenchError`
(configuration problems such as missing weights) propagate: everything finished so far is
already in the cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import SoebenchError
from soebench.image_io import rgb_array
from soebench.models.base import InpaintRequest, InpaintResult, check_output
from soebench.run.cache import GenerationCache, generation_key

ROW_COLUMNS = (
    "sample_id", "image_id", "image_path", "width", "height", "category", "bbox", "eval_crop", "mask_rle",
    "mask_area_fraction", "color", "prompts",
)


def sample_seed(base_seed: int, sample_id: str) -> int:
    """A per-sample seed that depends only on the run seed and the sample id (not on order,
    batch or shard)."""
    digest = hashlib.sha256(f"{int(base_seed)}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class SampleInput:
    """A manifest row with its decoded image and mask (``error`` when they could not be read)."""

    row: dict[str, Any]
    prompt: str | None
    seed: int
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None

    @property
    def sample_id(self) -> str:
        return self.row["sample_id"]

    def input_id(self) -> str:
        rle = self.row["mask_rle"]
        mask_hash = hashlib.sha1(str(rle["counts"]).encode()).hexdigest()[:16]
        return f"{self.row['image_path']}|{mask_hash}"


def load_inputs(
    manifest, rows: Sequence[dict[str, Any]], prompt_key: str, base_seed: int, *, pause: Callable[[], None] | None = None
) -> list[SampleInput]:
    """Decode each distinct image of the batch once and each sample's mask. ``pause`` is called
    before each image (a worker waiting on :class:`soebench.run.gate.ComputeGate`)."""
    from PIL import Image, UnidentifiedImageError

    from soebench.manifest.schema import decode_row_mask

    decoded: dict[str, np.ndarray | str] = {}
    out = []
    for row in rows:
        prompt = (row.get("prompts") or {}).get(prompt_key)
        item = SampleInput(row, prompt, sample_seed(base_seed, row["sample_id"]))
        out.append(item)
        if not prompt:
            item.error = f"sample {item.sample_id} has no {prompt_key!r} prompt (no colour name?)"
            continue
        rel = row["image_path"]
        if rel not in decoded:
            if pause is not None:
                pause()
            path = manifest.image_path(rel)
            try:
                with Image.open(path) as img:
                    decoded[rel] = rgb_array(img)
            except (OSError, UnidentifiedImageError) as exc:
                decoded[rel] = f"cannot read image {path}: {exc}"
        image = decoded[rel]
        if isinstance(image, str):
            item.error = image
            continue
        try:  # checked against the image as read (not the row's width/height): the file is what is edited
            item.mask = decode_row_mask(row["mask_rle"], *image.shape[:2])
        except ValueError as exc:
            item.error = f"sample {item.sample_id}: {exc} ({rel})"
            continue
        # read-only: the adapter gets these arrays, and the scores are computed on them afterwards
        image.flags.writeable = False
        item.mask.flags.writeable = False
        item.image = image
    return out


#: the columns whose values :func:`load_inputs` and the scoring use, checked before a run
#: (``mask_rle`` is checked per sample, against the image file: a bad one is that sample's error)
CHECKED_COLUMNS = ("image_path", "width", "height", "bbox", "eval_crop", "mask_area_fraction")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"adapter called sys.exit({exc.code!r})" if exc.code is not None else "adapter called sys.exit()"
    return f"adapter raised {type(exc).__name__}: {exc}"


def _not_a_list(returned: Any) -> str | None:
    """Why ``returned`` is not a sequence of outputs, or None. Checked before ``list()``, whose
    TypeError would read as the adapter's own failure (and be retried sample by sample)."""
    expected = "expected a list of images, one per request, in order"
    if returned is None:
        return f"adapter returned None, {expected}"
    if isinstance(returned, (Mapping, str, bytes)) or not isinstance(returned, Iterable):
        kind = type(returned).__name__
        return f"adapter returned {'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}, {expected}"
    if isinstance(returned, np.ndarray) and returned.ndim < 4:  # one image, not a stack of them
        return f"adapter returned one array of shape {returned.shape}, {expected} (or an NxHxWx3 stack)"
    return None


def _call(adapter: Any, requests: list[InpaintRequest]) -> list[InpaintResult]:
    """Run the adapter on ``requests``; exceptions become per-sample errors (batch retried singly)."""
    try:
        returned = adapter.inpaint(requests)
        problem = _not_a_list(returned)
        outputs = [] if problem else list(returned)  # a generator's own errors surface here
    except SoebenchError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any adapter failure is recorded per sample
        if len(requests) == 1:
            return [InpaintResult(requests[0].sample_id, None, _describe(exc))]
        results: list[InpaintResult] = []
        for r in requests:
            results.extend(_call(adapter, [r]))
        return results
    if problem:
        return [InpaintResult(r.sample_id, None, problem) for r in requests]
    if len(outputs) != len(requests):
        msg = f"adapter returned {len(outputs)} outputs for {len(requests)} requests"
        return [InpaintResult(r.sample_id, None, msg) for r in requests]
    return [check_output(r, o) for r, o in zip(requests, outputs)]


@dataclass
class Generated:
    """One sample's output (``image``) or ``error``; ``from_cache`` when nothing was computed."""

    image: np.ndarray | None
    error: str | None
    from_cache: bool = False
    cache_path: Path | None = None
    key: str | None = None


def adapter_token(adapter: Any) -> dict[str, Any] | None:
    """The adapter's ``cache_token()``, checked: it keys the cache and is recorded in the run's
    JSON, so one that raises or holds values JSON cannot write (an array, an object) is a
    ConfigError before any sample -- not a crash after all of them, on every resume."""
    from soebench.errors import ConfigError

    if not callable(getattr(adapter, "cache_token", None)):
        return None
    name = getattr(adapter, "name", type(adapter).__name__)
    try:
        token = adapter.cache_token()
    except SoebenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - the adapter's own code
        raise ConfigError(f"adapter {name!r}: cache_token() raised {type(exc).__name__}: {exc}") from exc
    try:
        json.dumps(token, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"adapter {name!r}: cache_token() returned a value JSON cannot hold ({exc})",
                          hint="return a dict of str, numbers, bools, None, lists and dicts (e.g. str(path), "
                               "array.tolist()), or None for no caching") from None
    return token


class CachedAdapter:
    """The adapter behind the generation cache; ``token``: its :func:`adapter_token` (None: no caching)."""

    def __init__(self, adapter: Any, cache: GenerationCache | None, token: dict[str, Any] | None):
        self.adapter = adapter
        self.token = token
        self.cache = cache if self.token is not None else None
        self.calls = 0  # samples sent to the adapter (not served from the cache)

    def key(self, item: SampleInput) -> str | None:
        if self.cache is None:
            return None
        return generation_key(self.token, item.sample_id, item.seed, item.prompt or "", item.input_id())

    def run(self, items: Sequence[SampleInput]) -> list[Generated]:
        results: list[Generated | None] = [None] * len(items)
        todo: list[int] = []
        for i, item in enumerate(items):
            if item.error is not None:
                results[i] = Generated(None, item.error)
                continue
            key = self.key(item)
            cached = self.cache.get(key) if key else None
            if cached is not None and cached.shape == item.image.shape:
                results[i] = Generated(cached, None, True, self.cache.path(key), key)
            else:
                todo.append(i)
        if todo:
            requests = [
                InpaintRequest(items[i].sample_id, items[i].image, items[i].mask, items[i].prompt, items[i].seed) for i in todo
            ]
            self.calls += len(requests)
            for i, result in zip(todo, _call(self.adapter, requests)):
                if not result.ok:
                    results[i] = Generated(None, result.error)
                    continue
                # written (cache + images/) by the caller's background writer
                results[i] = Generated(result.image, None, False, None, self.key(items[i]))
        return [r for r in results if r is not None]
