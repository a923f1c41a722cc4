"""Manifest rows -> training examples: the student's whole image and the teacher's upscaled crop.

Images are decoded with PIL and resized to the square training resolution (the SOEBench protocol's
resize, so the manifest's normalised-square crops are squares here). Masks are resized with "any
coverage" (box filter, then > 0) so that objects a few pixels wide survive. The teacher crop is
snapped to the student's latent grid (:func:`soediff.geometry.snap_crop`) and cut from the
*original* image at exactly the snapped box, then upscaled -- no detail lost to a first downscale.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from soebench.errors import InputError, SoebenchError
from soebench.image_io import rgb_array
from soebench.manifest.io import Manifest, read_manifest
from soebench.manifest.schema import check_rows, decode_row_mask, mask_problem
from soediff.geometry import LatentCrop, snap_crop

ROW_COLUMNS = ("sample_id", "image_path", "width", "height", "mask_rle", "category", "color", "prompts", "captions",
               "teacher_crop")
#: the columns whose values training uses, checked before it starts (each mask is checked too)
CHECKED_COLUMNS = ("image_path", "width", "height", "teacher_crop", "mask_rle")


def load_training_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest for training; a manifest without ``teacher_crop`` gets a rebuild hint."""
    raw = read_manifest(path, validate=False)
    if "teacher_crop" not in raw.table.column_names:
        raise InputError(
            f"manifest {path} has no 'teacher_crop' column, which cross-scale training needs",
            hint="rebuild it with the current `soebench build-dataset` (it writes teacher_crop and eval_crop)",
        )
    manifest = read_manifest(path)
    if len(manifest) == 0:
        raise InputError(f"manifest {path} has no rows")
    check_rows(manifest.table, CHECKED_COLUMNS, where=str(path))
    _check_masks(manifest, path)
    return manifest


def _check_masks(manifest: Manifest, path: str | os.PathLike) -> None:
    """Every row's mask_rle is a mask of its image (its run lengths, no pixels decoded: a few
    seconds for 100k rows), else an InputError naming the row -- before training, not when a
    DataLoader worker first decodes it."""
    rows = manifest.table.select(["sample_id", "mask_rle", "width", "height"]).to_pylist()
    for row in rows:
        problem = mask_problem(row["mask_rle"], row["height"], row["width"])
        if problem is not None:
            raise InputError(f"manifest {path} row {row['sample_id']}: {problem}",
                             hint=f"`soebench manifest validate {path}` lists every problem; rebuild the manifest "
                                  "with soebench build-dataset")


def split_rows(sample_ids: list[str], n_validation: int) -> tuple[list[int], list[int]]:
    """Deterministic held-out split: the ``n_validation`` rows with the smallest sha1(sample_id)."""
    if n_validation >= len(sample_ids):
        raise InputError(f"validation_rows={n_validation} leaves no training rows out of {len(sample_ids)}")
    order = sorted(range(len(sample_ids)), key=lambda i: hashlib.sha1(sample_ids[i].encode()).hexdigest())
    val = sorted(order[:n_validation])
    held = set(val)
    return [i for i in range(len(sample_ids)) if i not in held], val


def render_prompt(template: str, rec: dict) -> str:
    """``template`` (see ``TrainConfig.prompt_template``) filled from one manifest record; a missing
    colour or caption becomes empty and the whitespace it leaves collapses."""
    from soebench.mining.prompts import normalise_label

    fields = {"category": normalise_label(rec["category"] or ""), "color": rec["color"] or "",
              "caption": (rec["captions"] or [""])[0].strip(), **(rec["prompts"] or {})}
    return " ".join(template.format(**{k: v or "" for k, v in fields.items()}).split())


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def _resize_mask(mask: np.ndarray, size: int, box: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    img = Image.fromarray(mask.astype(np.float32))
    out = np.asarray(img.resize((size, size), resample=Image.Resampling.BOX, box=box)) > 1e-6
    return torch.from_numpy(out.astype(np.float32))[None]


@dataclass
class Row:
    sample_id: str
    image_path: Path
    width: int
    height: int
    mask_rle: dict
    prompt: str
    teacher_crop: tuple[float, float, float, float]


class ManifestDataset(torch.utils.data.Dataset):
    """One example per manifest row (optionally a subset ``indices``).

    Each item: ``image``, ``mask``, ``masked_image`` (student view, ``(3|1, R, R)``, images in
    [-1, 1], masked pixels zeroed as SD inpainting does), ``teacher_image``, ``teacher_mask``,
    ``teacher_masked_image`` (the snapped teacher crop upscaled to ``R``), ``crop`` (row0, col0,
    size of the snapped crop on the latent grid), ``prompt``, ``index``.
    """

    def __init__(self, manifest: Manifest, *, resolution: int, vae_scale_factor: int, prompt_key: str,
                 indices: list[int] | None = None, prompt_template: str | None = None):
        self.manifest = manifest
        self.resolution = resolution
        self.latent_size = resolution // vae_scale_factor
        self.prompt_key = prompt_key
        self.prompt_template = prompt_template
        self.indices = list(range(len(manifest))) if indices is None else list(indices)
        self._table = manifest.table.select(list(ROW_COLUMNS))

    def __len__(self) -> int:
        return len(self.indices)

    def check_prompts(self) -> None:
        """Every row of the dataset has a non-empty prompt (else InputError naming the first row that lacks one),
        checked before training rather than when the row first comes up."""
        columns = self._table.select(["sample_id", "category", "color", "prompts", "captions"])
        for rec in columns.take(self.indices).to_pylist():
            self._prompt(rec)

    def check_images(self, shown: int = 3) -> None:
        """Every row's image file exists (one stat each, no decode), else one InputError naming the
        first ``shown`` missing files and how many there are -- before training, not when a worker
        first opens the row hours in."""
        root = self.manifest.images_root
        # an image holds several objects: each file is looked at, and counted, once
        names = list(dict.fromkeys(self._table.column("image_path").take(self.indices).to_pylist()))
        paths = [self.manifest.image_path(n) for n in names]  # refuses a path that leaves the root
        missing = [p for p in paths if not p.is_file()]
        if missing:
            more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
            raise InputError(f"manifest {self.manifest.path}: {len(missing)} of {len(names)} image files are missing: "
                             f"{', '.join(str(m) for m in missing[:shown])}{more}",
                             hint=f"image paths are relative to {root} (the manifest's images_root); restore the "
                                  "files or rebuild the manifest with soebench build-dataset")

    def _prompt(self, rec: dict) -> str:
        if self.prompt_template is not None:
            prompt = render_prompt(self.prompt_template, rec)
            what = f"prompt_template {self.prompt_template!r} gives an empty prompt"
        elif self.prompt_key == "caption":
            prompt, what = (rec["captions"] or [""])[0], "no caption (prompt_key 'caption')"
        else:
            prompt, what = (rec["prompts"] or {}).get(self.prompt_key), f"no prompt {self.prompt_key!r}"
        if not prompt:
            raise InputError(f"manifest {self.manifest.path} row {rec['sample_id']}: {what}")
        return prompt

    def row(self, i: int) -> Row:
        rec = self._table.slice(self.indices[i], 1).to_pylist()[0]
        prompt = self._prompt(rec)
        return Row(sample_id=rec["sample_id"], image_path=self.manifest.image_path(rec["image_path"]),
                   width=int(rec["width"]), height=int(rec["height"]), mask_rle=rec["mask_rle"], prompt=prompt,
                   teacher_crop=tuple(rec["teacher_crop"]))

    def crop_of(self, row: Row) -> LatentCrop:
        try:
            return snap_crop(row.teacher_crop, row.width, row.height, self.latent_size)
        except ValueError as exc:
            raise InputError(f"manifest {self.manifest.path} row {row.sample_id}: bad teacher_crop ({exc})") from exc

    def __getitem__(self, i: int) -> dict:
        row = self.row(i)
        try:
            with Image.open(row.image_path) as im:
                image = Image.fromarray(rgb_array(im))
        except (OSError, ValueError) as exc:
            raise InputError(f"manifest row {row.sample_id}: cannot read image {row.image_path} ({exc})") from exc
        try:  # against the image file as read: it may have been replaced since the check of the rows
            mask = decode_row_mask(row.mask_rle, image.height, image.width)
        except ValueError as exc:
            raise InputError(f"manifest row {row.sample_id}: {exc} ({row.image_path})") from None
        R = self.resolution
        crop = self.crop_of(row)
        box = crop.image_box(image.width, image.height)
        student = _to_tensor(image.resize((R, R), resample=Image.Resampling.BICUBIC))
        teacher = _to_tensor(image.resize((R, R), resample=Image.Resampling.BICUBIC, box=box))
        m_student = _resize_mask(mask, R)
        m_teacher = _resize_mask(mask, R, box=box)
        return {
            "image": student,
            "mask": m_student,
            "masked_image": student * (1.0 - m_student),
            "teacher_image": teacher,
            "teacher_mask": m_teacher,
            "teacher_masked_image": teacher * (1.0 - m_teacher),
            "crop": torch.tensor([crop.row0, crop.col0, crop.size], dtype=torch.long),
            "prompt": row.prompt,
            "index": self.indices[i],
        }


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of the dataset per epoch, seeded by (seed, epoch): the data order is a pure
    function of the step, which is what makes ``--resume`` exact."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


def unwrap_worker_error(exc: BaseException) -> SoebenchError | None:
    """The user-facing error a DataLoader worker raised, as it was raised there; None when ``exc``
    did not come from a worker.

    torch sends a worker's exception back as its type and traceback text only and re-raises
    ``type(text)``: an InputError whose message is "Caught InputError in DataLoader worker process
    0. Original Traceback ..." and whose hint is lost. The traceback ends with the original
    ``module.Type: message`` line(s), ``str()`` of the error: its message and, after ``Hint:``,
    its hint."""
    if not isinstance(exc, SoebenchError) or not _WORKER_ERROR.match(exc.message):
        return None
    kind = type(exc)
    tail = f"{kind.__module__}.{kind.__qualname__}: "
    at = exc.message.rfind(tail)
    if at < 0:
        return None
    text = exc.message[at + len(tail):].rstrip("\n")
    message, _, hint = text.partition("\nHint: ")
    return kind(message, hint=hint or None)
