"""Importable adapters for the python-adapter tests (``tests.models._adapters:NAME``)."""

from __future__ import annotations

import numpy as np


def invert_batch(requests):
    """Batched: inverts the masked pixels."""
    out = []
    for r in requests:
        img = r.image.copy()
        img[r.mask] = 255 - img[r.mask]
        out.append(img)
    return out


def grey_one(request):
    """Per sample: a uniform grey image of the input size."""
    return np.full_like(request.image, 128)


class Painter:
    """An object with inpaint(); fills the mask with a fixed colour."""

    def __init__(self, colour=(0, 255, 0)):
        self.colour = colour

    def inpaint(self, requests):
        out = []
        for r in requests:
            img = r.image.copy()
            img[r.mask] = self.colour
            out.append(img)
        return out


NOT_CALLABLE = 42
