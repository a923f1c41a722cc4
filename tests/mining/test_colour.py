"""Colour namer: CIELAB conversion against scikit-image, synthetic patches, real COCO objects."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from soebench.mining.colour import (
    COLOUR_NAMER_VERSION,
    COLOUR_TERMS,
    DEFAULT_RULES,
    ColourName,
    colour_of_mask,
    exposure_gain,
    lab_to_rgb,
    name_colour,
    recolour,
    rgb_to_lab,
    voting_mask,
)

# --- CIELAB conversion against the independent reference --------------------------------------


def test_rgb_to_lab_matches_skimage_on_random_and_corner_colours():
    skcolor = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(20000, 3), dtype=np.uint8)
    corners = np.array(np.meshgrid([0, 255], [0, 255], [0, 255])).reshape(3, -1).T.astype(np.uint8)
    rgb = np.concatenate([rgb, corners, np.arange(256, dtype=np.uint8)[:, None].repeat(3, 1)])
    ours = rgb_to_lab(rgb)
    ref = skcolor.rgb2lab(rgb[None])[0]
    # Both use the sRGB/D65 formulas; skimage rounds the matrix to 6 digits, hence the tolerance.
    np.testing.assert_allclose(ours, ref, atol=0.02)


def test_rgb_to_lab_accepts_float_images_like_skimage():
    skcolor = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(1)
    img = rng.random((7, 5, 3))
    np.testing.assert_allclose(rgb_to_lab(img), skcolor.rgb2lab(img), atol=0.02)


def test_lab_to_rgb_inverts_rgb_to_lab_exactly_on_uint8():
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, size=(50000, 3), dtype=np.uint8)
    np.testing.assert_array_equal(lab_to_rgb(rgb_to_lab(rgb)), rgb)


def test_lab_to_rgb_matches_skimage_inverse_in_gamut():
    skcolor = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(3)
    lab = skcolor.rgb2lab(rng.random((1, 3000, 3)))[0]  # in-gamut colours given by the reference
    ref = np.round(skcolor.lab2rgb(lab[None])[0] * 255)
    assert np.abs(lab_to_rgb(lab).astype(int) - ref).max() <= 1


def test_rgb_to_lab_rejects_wrong_shape():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(np.zeros((4, 4), dtype=np.uint8))


# --- synthetic patches -----------------------------------------------------------------------

# CSS colours whose basic term is not in doubt.
CSS = {
    "red": [(255, 0, 0), (139, 0, 0), (178, 34, 34), (220, 20, 60), (128, 0, 0)],
    "orange": [(255, 165, 0), (255, 140, 0)],
    "yellow": [(255, 255, 0), (255, 215, 0)],
    "green": [(0, 255, 0), (0, 128, 0), (34, 139, 34), (0, 100, 0), (46, 139, 87)],
    "blue": [(0, 0, 255), (0, 0, 128), (65, 105, 225), (30, 144, 255), (0, 0, 205), (70, 130, 180)],
    "purple": [(128, 0, 128), (75, 0, 130), (148, 0, 211), (102, 51, 153)],
    "pink": [(255, 192, 203), (255, 105, 180), (255, 182, 193)],
    "brown": [(139, 69, 19), (160, 82, 45)],
    "black": [(0, 0, 0), (15, 15, 15)],
    "white": [(255, 255, 255), (245, 245, 245), (255, 250, 250)],
    "gray": [(128, 128, 128), (105, 105, 105)],
}


@pytest.mark.parametrize("term", sorted(CSS))
def test_flat_css_colours_get_their_basic_term(term):
    for rgb in CSS[term]:
        result = name_colour(np.array([rgb], dtype=np.uint8))
        assert result.name == term, f"{rgb} named {result.name}, expected {term}"
        assert result.confidence == 1.0


def _shaded_patch(rgb, shades, rng, noise=0.0):
    """Pixels of one surface colour under different amounts of light (scaled in linear light)."""
    linear = (np.asarray(rgb) / 255.0) ** 2.2
    px = linear[None, :] * np.asarray(shades)[:, None]
    srgb = px ** (1 / 2.2) * 255 + rng.normal(0, noise, size=px.shape)
    return np.clip(np.round(srgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "term,rgb",
    [("red", (200, 30, 30)), ("green", (40, 150, 50)), ("blue", (30, 60, 200)),
     ("purple", (120, 30, 140)), ("orange", (240, 120, 20)), ("white", (235, 235, 230))],
)
def test_shading_and_noise_keep_the_name(term, rgb):
    rng = np.random.default_rng(4)
    shades = np.linspace(0.35, 1.0, 2000)  # from deep shadow to full light
    result = name_colour(_shaded_patch(rgb, shades, rng, noise=6.0))
    assert result.name == term
    assert result.confidence > 0.6


def test_mixed_object_is_named_by_its_majority():
    rng = np.random.default_rng(5)
    red = _shaded_patch((200, 30, 30), np.linspace(0.5, 1, 700), rng, noise=4)
    black = _shaded_patch((20, 20, 20), np.ones(300), rng, noise=3)
    result = name_colour(np.concatenate([red, black]))
    assert result.name == "red"
    assert result.scores["black"] > 0.1
    white = _shaded_patch((240, 240, 240), np.linspace(0.6, 1, 850), rng, noise=3)
    blue = _shaded_patch((30, 60, 200), np.ones(150), rng, noise=3)
    assert name_colour(np.concatenate([white, blue])).name == "white"


def test_result_is_a_frozen_well_formed_colour_name():
    result = name_colour(np.array([[200, 30, 30], [30, 60, 200], [200, 30, 30]], dtype=np.uint8))
    assert isinstance(result, ColourName)
    assert tuple(result.scores) == COLOUR_TERMS
    assert sum(result.scores.values()) == pytest.approx(1.0)
    assert result.confidence == max(result.scores.values())
    assert 0.0 <= result.confidence <= 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.name = "blue"  # type: ignore[misc]
    assert COLOUR_NAMER_VERSION and len(set(COLOUR_TERMS)) == 11


def test_large_inputs_are_subsampled_deterministically():
    rng = np.random.default_rng(6)
    px = rng.integers(0, 256, size=(100_000, 3), dtype=np.uint8)
    first, second = name_colour(px), name_colour(px.copy())
    assert first == second


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((0, 3), dtype=np.uint8), "no pixels"),
        (np.zeros((5, 4), dtype=np.uint8), r"\(N, 3\)"),
        (np.zeros((5, 3), dtype=np.float32), "uint8"),
    ],
)
def test_name_colour_rejects_bad_pixels(bad, match):
    with pytest.raises(ValueError, match=match):
        name_colour(bad)


def _disc_scene(rgb=(200, 30, 30), size=64, radius=14, background=(90, 140, 90)):
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = background
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
    image[mask] = rgb
    return image, mask


def test_colour_of_mask_ignores_boundary_pixels():
    image, mask = _disc_scene()
    ring = mask & ~voting_mask(mask)
    assert ring.any()
    image[ring] = (30, 60, 200)  # a blue fringe where the object blends into its background
    result = colour_of_mask(image, mask)
    assert result.name == "red"
    assert result.confidence == 1.0


def test_colour_of_mask_handles_tiny_masks():
    image, _ = _disc_scene()
    for n in (1, 2, 5):
        mask = np.zeros(image.shape[:2], dtype=bool)
        mask[32, 32 : 32 + n] = True
        assert colour_of_mask(image, mask).name == "red"


def test_colour_of_mask_rejects_empty_and_mismatched_masks():
    image, mask = _disc_scene()
    with pytest.raises(ValueError, match="empty"):
        colour_of_mask(image, np.zeros_like(mask))
    with pytest.raises(ValueError, match="does not match"):
        colour_of_mask(image, mask[:10])
    with pytest.raises(ValueError, match="uint8"):
        colour_of_mask(image.astype(np.float32), mask)


def test_exposure_correction_names_a_white_object_in_a_dim_photo_white():
    rng = np.random.default_rng(7)
    dim = 0.3  # everything lit at 30 %: the photo's whitest things are a dim gray in pixel values
    image, mask = _disc_scene(rgb=(240, 240, 240), background=(180, 170, 160))
    linear = (image / 255.0) ** 2.2 * dim
    image = np.clip((linear ** (1 / 2.2)) * 255 + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    assert name_colour(image[mask]).name == "gray"  # the pixels alone look gray
    assert exposure_gain(image) > 2.5
    assert colour_of_mask(image, mask).name == "white"


def test_night_scene_gain_is_bounded_so_black_stays_black():
    image, mask = _disc_scene(rgb=(12, 12, 12), background=(30, 30, 30))
    assert exposure_gain(image) == DEFAULT_RULES.max_exposure_gain
    assert colour_of_mask(image, mask).name == "black"


# --- recolour ----------------------------------------------------------------------------------


def _textured_scene(seed=8):
    rng = np.random.default_rng(seed)
    image, mask = _disc_scene(rgb=(150, 110, 60), size=80, radius=20, background=(200, 200, 205))
    yy = np.mgrid[:80, :80][0]
    texture = (rng.normal(0, 12, (80, 80)) + 30 * np.sin(yy / 4.0))[..., None]
    image = np.where(mask[..., None], np.clip(image + texture, 0, 255), image).astype(np.uint8)
    return image, mask


@pytest.mark.parametrize("target", COLOUR_TERMS)
def test_recolour_is_named_as_its_target_and_leaves_the_background(target):
    image, mask = _textured_scene()
    out = recolour(image, mask, target)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert colour_of_mask(out, mask).name == target
    np.testing.assert_array_equal(out, recolour(image, mask, target))  # deterministic


def test_recolour_keeps_the_shading_pattern():
    image, mask = _textured_scene()
    before = rgb_to_lab(image[mask])[:, 0]
    for target in ("red", "blue", "green", "gray"):
        after = rgb_to_lab(recolour(image, mask, target)[mask])[:, 0]
        assert np.corrcoef(before, after)[0, 1] > 0.9, target


def test_recolour_rejects_unknown_terms_with_the_list():
    image, mask = _textured_scene()
    with pytest.raises(ValueError, match="unknown colour term 'teal'.*purple"):
        recolour(image, mask, "teal")


# --- real COCO objects -------------------------------------------------------------------------

# Hand-checked: every crop was looked at (object and mask) and kept only when its dominant
# colour is clear to a person; ambiguous objects (two-tone, glass, wood/beige) were left out.
# The namer's thresholds were chosen while looking at this list, so it measures agreement on a
# development set (53/66 = 80 % when written).
HAND_CHECKED = [
    ("val2017", 1096069, "white"), ("val2017", 174719, "blue"), ("val2017", 159265, "gray"),
    ("val2017", 270208, "red"), ("val2017", 416650, "yellow"), ("val2017", 171481, "white"),
    ("val2017", 101073, "white"), ("val2017", 1101465, "red"), ("val2017", 586905, "black"),
    ("val2017", 271021, "red"), ("val2017", 50694, "black"), ("val2017", 270041, "red"),
    ("val2017", 397553, "blue"), ("val2017", 345637, "red"), ("val2017", 621781, "yellow"),
    ("val2017", 50869, "black"), ("val2017", 332341, "white"), ("val2017", 1123710, "white"),
    ("val2017", 49797, "orange"), ("val2017", 1133938, "white"), ("val2017", 36307, "white"),
    ("train2017", 64883, "white"), ("train2017", 1094979, "white"), ("train2017", 1094614, "white"),
    ("train2017", 394442, "red"), ("train2017", 1121554, "black"), ("train2017", 270608, "red"),
    ("train2017", 1131418, "white"), ("train2017", 671209, "white"),
    ("train2017", 1161687, "brown"), ("train2017", 401572, "white"), ("train2017", 8013, "white"),
    ("train2017", 416194, "yellow"), ("train2017", 1623593, "white"), ("train2017", 47068, "white"),
    ("train2017", 139627, "blue"), ("train2017", 173331, "white"), ("train2017", 1567242, "orange"),
    ("train2017", 1504817, "orange"), ("val2017", 1810226, "black"),
    ("train2017", 1824489, "black"), ("train2017", 380265, "black"), ("val2017", 339739, "white"),
    ("train2017", 1567369, "orange"), ("train2017", 1141021, "white"),
    ("train2017", 1785951, "black"), ("val2017", 1995194, "gray"), ("val2017", 1538882, "white"),
    ("val2017", 1482406, "black"), ("train2017", 1674083, "white"), ("val2017", 1435140, "black"),
    ("train2017", 2174957, "brown"), ("train2017", 1899594, "black"),
    ("val2017", 1559287, "orange"), ("train2017", 1526907, "blue"),
    ("train2017", 1543949, "yellow"), ("val2017", 33612, "black"), ("train2017", 1134584, "white"),
    ("val2017", 141859, "gray"), ("train2017", 1085670, "white"), ("train2017", 1565069, "orange"),
    ("train2017", 717944, "black"), ("train2017", 1567214, "orange"),
    ("train2017", 1558155, "orange"), ("train2017", 137368, "white"), ("val2017", 1475393, "black"),
]


# Labelled the same way from a fresh random draw of objects in the SOEBench size band AFTER the
# rules were frozen, and never used to change them: the honest estimate (24/33 = 73 % when
# written; the misses are silver named white, dark brown named black, a pink deck named red).
HELD_OUT = [
    ("train2017", 2068202, "brown"), ("val2017", 1437313, "black"), ("train2017", 1369753, "black"),
    ("val2017", 300053, "black"), ("val2017", 1424143, "yellow"), ("val2017", 1551345, "red"),
    ("val2017", 410901, "black"), ("val2017", 710628, "white"), ("val2017", 181324, "white"),
    ("train2017", 1418035, "black"), ("train2017", 1095481, "white"), ("train2017", 333117, "gray"),
    ("train2017", 2059735, "red"), ("train2017", 1488040, "white"), ("train2017", 278809, "brown"),
    ("train2017", 1593878, "brown"), ("val2017", 1046463, "yellow"),
    ("train2017", 1566289, "orange"), ("val2017", 8032, "white"), ("train2017", 1193563, "gray"),
    ("val2017", 408541, "black"), ("train2017", 1536185, "red"), ("train2017", 1369658, "white"),
    ("train2017", 1859922, "pink"), ("train2017", 355986, "black"), ("val2017", 1409124, "gray"),
    ("train2017", 1344409, "black"), ("train2017", 2175567, "black"), ("train2017", 80042, "green"),
    ("train2017", 359169, "black"), ("val2017", 347385, "blue"), ("train2017", 1374463, "white"),
    ("train2017", 2110817, "yellow"),
]


def _load_objects(coco_sample, items):
    from PIL import Image
    from pycocotools import mask as mask_utils

    objects = []
    by_split: dict[str, dict] = {}
    for split, ann_id, colour in items:
        if split not in by_split:
            data = json.loads((coco_sample / "annotations" / f"instances_{split}.json").read_text())
            by_split[split] = {
                "anns": {a["id"]: a for a in data["annotations"]},
                "imgs": {i["id"]: i for i in data["images"]},
            }
        ann = by_split[split]["anns"][ann_id]
        info = by_split[split]["imgs"][ann["image_id"]]
        image = np.asarray(Image.open(coco_sample / split / info["file_name"]).convert("RGB"))
        rles = mask_utils.frPyObjects(ann["segmentation"], info["height"], info["width"])
        mask = mask_utils.decode(mask_utils.merge(rles) if isinstance(rles, list) else rles).astype(bool)
        objects.append((ann_id, colour, image, mask))
    return objects


def test_agrees_with_hand_checked_colours_of_real_coco_objects(coco_sample):
    objects = _load_objects(coco_sample, HAND_CHECKED)
    named = {ann_id: colour_of_mask(image, mask).name for ann_id, _, image, mask in objects}
    wrong = [(ann_id, colour, named[ann_id]) for ann_id, colour, _, _ in objects if named[ann_id] != colour]
    agreement = 1 - len(wrong) / len(objects)
    assert agreement >= 0.75, f"agreement {agreement:.0%}; disagreements (id, hand, namer): {wrong}"
    assert {colour for _, colour, _, _ in objects} >= {"red", "blue", "yellow", "orange", "white", "black"}


def test_agrees_with_held_out_hand_checked_colours(coco_sample):
    objects = _load_objects(coco_sample, HELD_OUT)
    wrong = [(i, c, colour_of_mask(im, m).name) for i, c, im, m in objects]
    wrong = [w for w in wrong if w[1] != w[2]]
    agreement = 1 - len(wrong) / len(objects)
    assert agreement >= 0.65, f"agreement {agreement:.0%}; disagreements (id, hand, namer): {wrong}"


def test_recoloured_real_objects_are_named_as_the_target(coco_sample):
    objects = _load_objects(coco_sample, HAND_CHECKED[::6])
    hits = total = 0
    for _, _, image, mask in objects:
        for target in COLOUR_TERMS:
            hits += colour_of_mask(recolour(image, mask, target), mask).name == target
            total += 1
    assert hits / total >= 0.9, f"{hits}/{total}"
