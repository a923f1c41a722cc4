"""Shared fixtures. Factories that build test data live in tests/factories.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SOEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))
COCO_SAMPLE = SHARED_DATA / "coco2017-sample"


@pytest.fixture(scope="session")
def coco_sample() -> Path:
    """The real COCO 2017 sample in ../shared/data (skips when absent)."""
    if not (COCO_SAMPLE / "annotations" / "instances_val2017.json").exists():
        pytest.skip(f"real COCO sample not found at {COCO_SAMPLE} (set SOEBENCH_SHARED_DATA)")
    return COCO_SAMPLE
