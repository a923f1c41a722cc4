"""The embedded demo sample: small objects annotated by hand, in the official COCO format, on the
real photographs that scikit-image ships.

The annotations (``instances_sample.json``, ``captions_sample.json``) are package data; the images
are not copied into soebench: they are read from the installed scikit-image's ``data`` folder,
found at run time. See README.md beside this file for what is annotated, how, and the licences.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from soebench.errors import MissingDependencyError

SAMPLE_DIR = Path(__file__).resolve().parent
ANNOTATIONS = SAMPLE_DIR / "instances_sample.json"
CAPTIONS = SAMPLE_DIR / "captions_sample.json"


@dataclass(frozen=True)
class SamplePaths:
    """Where the demo sample lives: COCO instances and captions files, and the images folder."""

    annotations: Path
    captions: Path
    images: Path


def skimage_data_dir() -> Path:
    """The ``data`` folder of the installed scikit-image (without importing all of skimage)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the demo sample needs scikit-image, which ships its photographs, but it is not installed",
            hint="pip install 'scikit-image>=0.22'",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sample_paths(*, check_images: bool = True) -> SamplePaths:
    """Paths of the embedded sample; with ``check_images`` every image the annotations name must
    exist in scikit-image's data folder (a clear MissingDependencyError otherwise)."""
    for path in (ANNOTATIONS, CAPTIONS):
        if not path.is_file():
            raise MissingDependencyError(
                f"the demo sample's annotation file {path} is missing from the soebench installation",
                hint="reinstall soebench (package data sample/*.json)",
            )
    images = skimage_data_dir()
    if check_images:
        names = [img["file_name"] for img in json.loads(ANNOTATIONS.read_text())["images"]]
        missing = [name for name in names if not (images / name).is_file()]
        if missing:
            raise MissingDependencyError(
                f"scikit-image at {images} lacks the demo photographs {', '.join(missing)}",
                hint="install a scikit-image wheel that bundles its sample images (>=0.22)",
            )
    return SamplePaths(annotations=ANNOTATIONS, captions=CAPTIONS, images=images)


__all__ = ["SamplePaths", "sample_paths", "skimage_data_dir", "ANNOTATIONS", "CAPTIONS"]
