"""Decoded images of any bit depth as 8-bit RGB (scaled, never clipped)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from soebench.image_io import gray_array, rgb_array


def _roundtrip_png(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    return Image.open(buf)


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped():
    levels = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ..., 65535
    img = _roundtrip_png(Image.fromarray(levels))
    assert img.mode.startswith("I")
    rgb = rgb_array(img)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], (levels >> 8).astype(np.uint8))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    assert np.asarray(img.convert("RGB")).mean() > rgb.mean() + 60  # what plain convert() would give


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_images_hold_unit_or_byte_levels(scale):
    values = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    rgb = rgb_array(Image.fromarray(values * np.float32(scale)))
    np.testing.assert_array_equal(rgb[..., 1], np.round(values * 255).astype(np.uint8))


def test_thirty_two_bit_integer_levels():
    small = np.arange(64, dtype=np.int32).reshape(8, 8)
    np.testing.assert_array_equal(rgb_array(Image.fromarray(small))[..., 0], small.astype(np.uint8))
    wide = small * 1000
    np.testing.assert_array_equal(gray_array(Image.fromarray(wide)), (wide >> 8).astype(np.uint8))


def test_ordinary_modes_go_through_pillow():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_array(Image.fromarray(rgb)), rgb)
    rgba = Image.fromarray(rgb).convert("RGBA")
    np.testing.assert_array_equal(rgb_array(rgba), rgb)
    gray = Image.fromarray(rgb).convert("L")
    np.testing.assert_array_equal(gray_array(gray), np.asarray(gray))
    assert gray_array(Image.new("1", (4, 3), 1)).tolist() == [[1] * 4] * 3
