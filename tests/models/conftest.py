"""Fixtures of the adapter tests: requests built from synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

from soebench.models import InpaintRequest
from tests.factories import COLOURS, background, draw_object


def make_request(sample_id: str = "s0", size=(48, 40), seed: int = 0, colour: str = "red") -> InpaintRequest:
    rng = np.random.default_rng(seed)
    w, h = size
    img = background(w, h, rng)
    img, mask = draw_object(img, (w // 3, h // 3, w // 4, h // 4), COLOURS[colour])
    return InpaintRequest(sample_id, img, mask, f"a {colour} cup", seed)


@pytest.fixture
def requests3():
    return [make_request(f"s{i}", seed=i, colour=c) for i, c in enumerate(("red", "blue", "yellow"))]
