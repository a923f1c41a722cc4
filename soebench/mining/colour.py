"""Name an object's colour from its own pixels, without any learned weights.

The released SOEBench list took its colour words from a VQA model. Offline we name colours the
way colour science does: the object's pixels (mask slightly eroded, so boundary pixels blended
with the background stay out) are exposure-corrected against the whole photo, converted to
CIELAB, each classified into one of the 11 basic colour terms of Berlin & Kay by lightness L*,
chroma C* and hue angle h, and the terms vote. The winner's share of the votes is the confidence.

Why rules on (L*, C*, h) rather than nearest prototype: shading moves a surface colour along
L* and C* but keeps its hue angle roughly constant, so a red car's shadowed side stays red
instead of drifting to the nearest "brown" prototype. The few rules that use L* are the ones
colour naming itself depends on: black/gray/white split neutral pixels by lightness, brown is
a dark or dull orange/yellow, pink is a light red/magenta. Three small pieces of colour
constancy make it work on photographs: the photo's exposure is normalised (a white fridge in a
dim kitchen), tints along the daylight blue-yellow axis count less (bluish shadows on white),
and an object's neutral pixels are named together from their lit part (a white van's shade).
Every threshold lives in :class:`NamingRules`.

``recolour`` does the inverse: it moves an object's pixels to a target term while keeping the
object's shading (its L* variation), so validations can change a real object's colour and check
that ``name_colour`` follows.

Everything here is deterministic numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Bump when a rule, threshold or prototype changes: manifests record the version that named them.
COLOUR_NAMER_VERSION = "lab-rules-1"

#: The basic colour terms of Berlin & Kay (1969). "silver", "gold", "beige" and friends are
#: deliberately left out: they are not basic terms and prompts read better with the basic word.
COLOUR_TERMS: tuple[str, ...] = (
    "black",
    "white",
    "gray",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
)

#: At most this many pixels vote (deterministic, evenly spaced subsample of larger objects).
MAX_VOTING_PIXELS = 4096

# --- CIELAB conversion (sRGB, D65, 2° observer) --------------------------------------------

# IEC 61966-2-1 sRGB primaries to CIE XYZ, D65 white.
_XYZ_FROM_LINEAR = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_LINEAR_FROM_XYZ = np.linalg.inv(_XYZ_FROM_LINEAR)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1.0 / 2.4) - 0.055)


# uint8 inputs only ever take 256 values: decode the transfer function once.
_LINEAR_LUT = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (``...x3``; uint8 0..255 or float 0..1) → CIELAB ``...x3`` float64 (D65, 2°).

    sRGB decoding → linear RGB → XYZ → L*a*b*, the CIE 1976 formulas.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_lab expects a last axis of 3 channels, got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        linear = _LINEAR_LUT[rgb]
    else:
        linear = _srgb_to_linear(np.clip(rgb.astype(np.float64), 0.0, 1.0))
    xyz = linear @ _XYZ_FROM_LINEAR.T / _WHITE_D65
    f = np.where(xyz > _DELTA**3, np.cbrt(xyz), xyz / (3 * _DELTA**2) + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4.0 / 29.0)) * _WHITE_D65
    return xyz @ _LINEAR_FROM_XYZ.T


def _linear_to_uint8(linear: np.ndarray) -> np.ndarray:
    return np.clip(np.round(_linear_to_srgb(linear) * 255.0), 0, 255).astype(np.uint8)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB ``...x3`` → sRGB uint8 ``...x3`` (out-of-gamut values are clipped)."""
    return _linear_to_uint8(_lab_to_linear(lab))


# --- the naming rules ------------------------------------------------------------------------


@dataclass(frozen=True)
class ColourName:
    """A basic colour term for a set of pixels.

    ``confidence`` is the winner's share of the pixel votes, in [0, 1] (chromatic pixels weigh
    :attr:`NamingRules.chromatic_weight` votes; an object's neutral pixels all vote for one of
    black/gray/white); ``scores`` holds every term of :data:`COLOUR_TERMS` with its share
    (shares sum to 1).
    """

    name: str
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NamingRules:
    """Every threshold the namer uses, in CIELAB units (L* 0..100, C* chroma, hue in degrees).

    Hue reference points (sRGB primaries and secondaries): red 40°, orange 60–73°, yellow 103°,
    green 136°, cyan 196°, blue 306°, magenta 328°. Photographed objects sit near these too
    (real carrots 46–50°, stop signs 30–42°, bananas 91–97°), which is where the sector edges
    come from.
    """

    hue_orange: float = 45.0  # red | orange
    hue_yellow: float = 80.0  # orange | yellow (between CSS orange 73° and goldenrod 83°)
    hue_green: float = 112.0  # yellow | green
    hue_blue: float = 183.0  # green | blue (turquoise, cyan and teal count as blue)
    hue_purple: float = 310.0  # blue | purple
    hue_magenta: float = 337.0  # purple | pink-magenta
    hue_red: float = 359.0  # pink-magenta | red
    #: A pixel has a usable hue when C* >= min(base + per_l * L*, dark_ratio * L*): in the dark,
    #: chroma is judged relative to lightness so navy and maroon stay chromatic.
    achromatic_base: float = 10.0
    achromatic_per_l: float = 0.06
    achromatic_dark_ratio: float = 1.0
    #: Illuminants vary along the daylight locus (warm yellow to sky blue), so a tint along b*
    #: is more often the light than the surface: b* counts this many times less in the test.
    daylight_stretch: float = 1.5
    #: Below this lightness hue is noise: always black.
    black_floor_l: float = 5.0
    black_max_l: float = 30.0  # achromatic: black below, gray between, white from white_min_l
    white_min_l: float = 60.0
    #: An object's neutral pixels share one lightness term, read at this percentile of their L*:
    #: a white van's shadowed side is still white, its lit side shows what the surface is.
    neutral_lightness_percentile: float = 75.0
    #: Orange and yellow hues with less chroma than this are brown (or, when light, white);
    #: dark ones (L* < dark_brown_max_l) up to dark_brown_max_c (saddle brown, sienna).
    brown_max_c: float = 40.0
    dark_brown_max_l: float = 45.0
    dark_brown_max_c: float = 52.0
    dark_yellow_max_l: float = 45.0  # yellow hue darker than this is brown (olive/ochre)
    #: Dull orange/yellow this light is an off-white (cream, ivory; light tan falls here too).
    dull_white_min_l: float = 70.0
    #: Light reds are pink: L* >= pink_min_l, or L* >= pink_dull_min_l with C* < pink_dull_max_c.
    pink_min_l: float = 72.0
    pink_dull_min_l: float = 55.0
    pink_dull_max_c: float = 55.0
    light_purple_min_l: float = 65.0  # purple hue this light is pink (violet, orchid)
    dark_magenta_max_l: float = 40.0  # magenta hue this dark is purple
    #: Lightness constancy in :func:`colour_of_mask`: the image is exposed so that this percentile
    #: of its luminance becomes white, with the gain bounded (a night scene stays dark).
    exposure_percentile: float = 98.0
    max_exposure_gain: float = 3.0
    #: Vote weight of a chromatic pixel relative to an achromatic one: an object is called by
    #: its hue when a good part of it has one (a red car's windows and tyres are not its colour).
    chromatic_weight: float = 1.5


DEFAULT_RULES = NamingRules()


def classify_lab(lab: np.ndarray, rules: NamingRules = DEFAULT_RULES) -> np.ndarray:
    """Index into :data:`COLOUR_TERMS` for every CIELAB pixel of an ``(N, 3)`` array."""
    r = rules
    L, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    C = np.hypot(a, b)
    h = np.degrees(np.arctan2(b, a)) % 360.0
    idx = {t: i for i, t in enumerate(COLOUR_TERMS)}
    out = np.empty(len(lab), dtype=np.int8)

    min_chroma = np.minimum(r.achromatic_base + r.achromatic_per_l * L, r.achromatic_dark_ratio * L)
    tint = np.hypot(a, b / r.daylight_stretch)
    achromatic = (tint < min_chroma) | (L < r.black_floor_l)
    out[:] = idx["gray"]
    out[achromatic & (L < r.black_max_l)] = idx["black"]
    out[achromatic & (L >= r.white_min_l)] = idx["white"]

    chroma = ~achromatic
    red = chroma & ((h >= r.hue_red) | (h < r.hue_orange))
    orange = chroma & (h >= r.hue_orange) & (h < r.hue_yellow)
    yellow = chroma & (h >= r.hue_yellow) & (h < r.hue_green)
    green = chroma & (h >= r.hue_green) & (h < r.hue_blue)
    blue = chroma & (h >= r.hue_blue) & (h < r.hue_purple)
    purple = chroma & (h >= r.hue_purple) & (h < r.hue_magenta)
    magenta = chroma & (h >= r.hue_magenta) & (h < r.hue_red)

    out[green] = idx["green"]
    out[blue] = idx["blue"]
    # Red family: light reds are pink.
    out[red] = idx["red"]
    out[red & ((L >= r.pink_min_l) | ((L >= r.pink_dull_min_l) & (C < r.pink_dull_max_c)))] = idx["pink"]
    # Purple and magenta: the light ones are pink (violet, hot pink), dark magenta is purple.
    out[purple] = idx["purple"]
    out[purple & (L >= r.light_purple_min_l)] = idx["pink"]
    out[magenta] = idx["pink"]
    out[magenta & (L < r.dark_magenta_max_l)] = idx["purple"]
    # Orange and yellow families: strongly coloured is orange/yellow whatever the shading
    # (a carrot in shadow is still orange); dull is brown (wood, fur, tan) or, when light, an
    # off-white (cream, beige); dark yellow is brown (ochre, olive).
    dull = (orange | yellow) & (
        (C < r.brown_max_c) | ((L < r.dark_brown_max_l) & (C < r.dark_brown_max_c))
    )
    out[orange] = idx["orange"]
    out[yellow] = idx["yellow"]
    out[yellow & (L < r.dark_yellow_max_l)] = idx["brown"]
    out[dull] = idx["brown"]
    out[dull & (L >= r.dull_white_min_l)] = idx["white"]
    return out


def _subsample(pixels: np.ndarray, limit: int = MAX_VOTING_PIXELS) -> np.ndarray:
    if len(pixels) <= limit:
        return pixels
    keep = np.linspace(0, len(pixels) - 1, limit).round().astype(np.int64)
    return pixels[keep]


_CHROMATIC = np.array([t not in ("black", "white", "gray") for t in COLOUR_TERMS])


def name_colour(pixels: np.ndarray, *, rules: NamingRules = DEFAULT_RULES) -> ColourName:
    """The basic colour term of ``(N, 3)`` uint8 RGB pixels, by per-pixel vote in CIELAB.

    The pixels are taken as they are (no exposure correction: :func:`colour_of_mask` does that
    with the whole image in view). Raises ValueError for an empty or malformed array.
    """
    pixels = _check_pixels(pixels)
    return _name_from_lab(rgb_to_lab(_subsample(pixels)), rules)


def _check_pixels(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 3:
        raise ValueError(f"expected (N, 3) RGB pixels, got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB pixels, got dtype {pixels.dtype}")
    if len(pixels) == 0:
        raise ValueError("no pixels to name (empty mask?)")
    return pixels


_NEUTRAL = {term: COLOUR_TERMS.index(term) for term in ("black", "gray", "white")}


def _name_from_lab(lab: np.ndarray, rules: NamingRules) -> ColourName:
    labels = classify_lab(lab, rules)
    neutral = np.isin(labels, list(_NEUTRAL.values()))
    if neutral.any():
        lightness = float(np.percentile(lab[neutral, 0], rules.neutral_lightness_percentile))
        if lightness < rules.black_max_l:
            labels[neutral] = _NEUTRAL["black"]
        elif lightness >= rules.white_min_l:
            labels[neutral] = _NEUTRAL["white"]
        else:
            labels[neutral] = _NEUTRAL["gray"]
    votes = np.bincount(labels, minlength=len(COLOUR_TERMS)).astype(np.float64)
    votes[_CHROMATIC] *= rules.chromatic_weight
    shares = votes / votes.sum()
    best = int(np.argmax(shares))  # ties go to the earlier term: deterministic
    scores = {t: float(s) for t, s in zip(COLOUR_TERMS, shares)}
    return ColourName(name=COLOUR_TERMS[best], confidence=float(shares[best]), scores=scores)


def exposure_gain(image: np.ndarray, rules: NamingRules = DEFAULT_RULES) -> float:
    """Linear-light gain that makes the image's bright reference (a high percentile of its
    luminance) white, bounded to ``[1, rules.max_exposure_gain]``: a crude lightness constancy so
    that a white fridge in a dim kitchen is not named gray."""
    flat = image.reshape(-1, 3)
    step = max(1, len(flat) // 65536)
    luminance = _LINEAR_LUT[flat[::step]] @ _XYZ_FROM_LINEAR[1]
    reference = float(np.percentile(luminance, rules.exposure_percentile))
    if reference <= 0.0:
        return rules.max_exposure_gain
    return float(np.clip(1.0 / reference, 1.0, rules.max_exposure_gain))


def _lab_with_gain(pixels: np.ndarray, gain: float) -> np.ndarray:
    linear = np.clip(_LINEAR_LUT[pixels] * gain, 0.0, 1.0)
    return rgb_to_lab(_linear_to_srgb(linear))


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion with a 3x3 cross, ``radius`` times (pixels outside the array count as off)."""
    m = mask
    for _ in range(radius):
        p = np.pad(m, 1, constant_values=False)
        m = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m


def _check_image_mask(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {image.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError("the mask is empty: there are no object pixels to name")
    return image, mask


def voting_mask(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that vote: eroded by ~5 % of the object's size (1–3 px) so that
    boundary pixels blended with the background stay out, unless that would leave too few."""
    area = int(mask.sum())
    radius = int(np.clip(round(np.sqrt(area) / 20.0), 1, 3))
    eroded = _erode(mask, radius)
    if eroded.sum() < max(16, 0.2 * area):
        eroded = _erode(mask, 1)
        if eroded.sum() < max(16, 0.2 * area):
            return mask
    return eroded


def colour_of_mask(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    rules: NamingRules = DEFAULT_RULES,
    gain: float | None = None,
) -> ColourName:
    """The basic colour term of the object under ``mask`` (HxW bool) in ``image`` (HxWx3 uint8).

    The object's pixels (mask eroded by :func:`voting_mask`) are exposure-corrected with
    :func:`exposure_gain` of the whole image (pass ``gain`` to reuse it for many objects of one
    image) and vote. Raises ValueError for an empty mask or mismatched shapes (the caller drops
    the object).
    """
    image, mask = _check_image_mask(image, mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pixels = _subsample(image[window][voting_mask(mask[window])])
    if gain is None:
        gain = exposure_gain(image, rules)
    return _name_from_lab(_lab_with_gain(pixels, gain), rules)


# --- recolouring -----------------------------------------------------------------------------

#: Target appearance per term for :func:`recolour`: (mean L*, a*, b*) at the mean lightness and the
#: largest L* standard deviation kept from the object's own shading.
_RECOLOUR_TARGETS: dict[str, tuple[float, float, float, float]] = {
    "black": (14.0, 0.0, 0.0, 4.0),
    "white": (90.0, 0.0, 0.0, 4.0),
    "gray": (52.0, 0.0, 0.0, 6.0),
    "red": (45.0, 66.0, 50.0, 7.0),
    "orange": (68.0, 38.0, 72.0, 5.0),
    "yellow": (86.0, -6.0, 82.0, 5.0),
    "green": (50.0, -50.0, 40.0, 8.0),
    "blue": (38.0, 30.0, -70.0, 8.0),
    "purple": (35.0, 50.0, -42.0, 6.0),
    "pink": (75.0, 45.0, 2.0, 4.0),
    "brown": (38.0, 18.0, 30.0, 5.0),
}
assert tuple(_RECOLOUR_TARGETS) == COLOUR_TERMS


def recolour(image: np.ndarray, mask: np.ndarray, target: str) -> np.ndarray:
    """A copy of ``image`` whose object under ``mask`` has the colour ``target`` (a term of
    :data:`COLOUR_TERMS`), keeping the object's shading and texture.

    In CIELAB the object's L* deviations from its mean are kept (scaled down when the target's
    lightness range is narrow, e.g. black or yellow), its mean L* is moved to the target's, and
    a*, b* are set to the target's chroma, scaled with lightness so shadows get less chroma the
    way they do under real light. The target is meant as seen after the image's exposure
    correction (:func:`exposure_gain`), so a white object in a dim photo is written as dim as
    the photo's other whites. Pixels outside the mask are untouched. Deterministic.
    """
    if target not in _RECOLOUR_TARGETS:
        raise ValueError(f"unknown colour term {target!r}; expected one of {', '.join(COLOUR_TERMS)}")
    image, mask = _check_image_mask(image, mask)
    mean_l, a, b, max_std = _RECOLOUR_TARGETS[target]
    lab = rgb_to_lab(image[mask])
    dev = lab[:, 0] - lab[:, 0].mean()
    std = float(dev.std())
    if std > max_std:
        dev = dev * (max_std / std)
    new_l = np.clip(mean_l + dev, 0.0, 100.0)
    shade = np.clip(new_l / mean_l, 0.0, 1.5)
    new_lab = np.stack([new_l, a * shade, b * shade], axis=1)
    out = image.copy()
    out[mask] = _linear_to_uint8(_lab_to_linear(new_lab) / exposure_gain(image))
    return out
