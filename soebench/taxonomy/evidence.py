"""Weight-free measurements of a generated region: is something there, which colour, is it damaged?

What the measurements may look at (the honesty rule of this module):

- the **generated** image, inside the mask and in a background ring around it;
- the **original** image *outside* the mask only -- the context the inpainter itself was given.
  It tells whether the generated ring still is the photo's own background (``ring_change``),
  and, since evidence wf-5, gives the ring's statistics as photographed (the ``*_orig`` keys of
  :data:`ORIGINAL_RING_KEYS`, equal to the generated ones when the ring is unchanged). The rules
  compare the region with the generated ring or the photographed one, whichever makes the weaker
  case (:func:`soebench.taxonomy.rules.derived_features`): a generated image whose fill or halo
  spills past the mask has a smoothed ring, against which a removal's leftovers look like an
  object and an intact object looks noisy.
- never the original object's pixels. The benchmark's ground-truth object is one possible
  answer among many (any red cup is a good answer to "a red cup"), so comparing against it would
  reward copying and would make the validation's ``ok`` cases trivially right.

The background prediction is a *harmonic fill*: the solution of Laplace's equation inside a
slightly dilated mask (``hole``) with the generated image's pixels just outside it as boundary
values, in CIELAB. It is the smoothest surface the surroundings predict, so "an object is
present" reads as "the region departs from what its surroundings predict by more than the
surroundings' own texture". The ``gap`` between mask and ring keeps the annotated outline's
halo (COCO polygons are a pixel or two loose) out of the background statistics.

Every measurement is a plain float; :func:`measure` returns them in one dict, which is the
evidence the rules (:mod:`soebench.taxonomy.rules`) read and which evaluation stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Bump when a measurement changes: results record the version whose numbers they hold.
EVIDENCE_VERSION = "wf-5"

#: At most this many pixels take part in the colour-novelty nearest-neighbour search (each side).
MAX_NOVELTY_PIXELS = 1024


@dataclass(frozen=True)
class Regions:
    """Boolean masks of one window around the object (all the window's shape)."""

    mask: np.ndarray  # the object mask
    hole: np.ndarray  # mask dilated by ``gap``: the harmonic fill's unknowns
    ring: np.ndarray  # background ring: ``width`` pixels outside the hole
    interior: np.ndarray  # mask eroded by ~1/20 of the object's size (boundary blends stay out)
    gap: int
    width: int


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ((xx * xx + yy * yy) <= radius * radius + 0.5).astype(np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    if radius <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), _disk(radius)).astype(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    if radius <= 0:
        return mask.copy()
    return cv2.erode(mask.astype(np.uint8), _disk(radius), borderValue=0).astype(bool)


def ring_geometry(mask_area: int) -> tuple[int, int]:
    """(gap, ring width) in pixels for an object of ``mask_area`` pixels."""
    side = float(np.sqrt(max(mask_area, 1)))
    gap = int(np.clip(round(0.06 * side), 2, 6))
    width = int(np.clip(round(0.4 * side), 6, 40))
    return gap, width


def window_of(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The mask's bounding box grown by ``margin`` and clipped to the image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


def regions_of(mask: np.ndarray) -> Regions:
    """Hole, ring and interior for ``mask`` (already cropped to its window)."""
    area = int(mask.sum())
    gap, width = ring_geometry(area)
    hole = dilate(mask, gap)
    ring = dilate(mask, gap + width) & ~hole
    radius = int(np.clip(round(np.sqrt(area) / 20.0), 1, 3))
    interior = erode(mask, radius)
    if interior.sum() < max(16, 0.25 * area):
        interior = mask
    return Regions(mask=mask, hole=hole, ring=ring, interior=interior, gap=gap, width=width)


def harmonic_fill(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``values`` (HxWxC float) with the ``hole`` pixels replaced by the harmonic interpolation of
    the pixels around it (Laplace's equation, 4-neighbour stencil, Dirichlet boundary; the
    window's edge is a zero-flux boundary). Exact sparse solve, one factorisation for all channels."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    h, w = hole.shape
    index = -np.ones((h, w), dtype=np.int64)
    ys, xs = np.nonzero(hole)
    n = len(ys)
    out = values.astype(np.float64, copy=True)
    if n == 0:
        return out
    index[ys, xs] = np.arange(n)
    rows, cols, data = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    rhs = np.zeros((n, values.shape[2]))
    diag = np.zeros(n)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        diag += inside
        ny_c, nx_c = np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)
        neighbour = index[ny_c, nx_c]
        unknown = inside & (neighbour >= 0)
        known = inside & (neighbour < 0)
        rows.append(np.flatnonzero(unknown))
        cols.append(neighbour[unknown])
        data.append(-np.ones(int(unknown.sum())))
        rhs[known] += values[ny_c[known], nx_c[known]]
    data[0] = diag
    matrix = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
    solution = splu(matrix).solve(rhs)
    out[ys, xs] = solution
    return out


def _masked_blur(values: np.ndarray, where: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``values`` using only the pixels of ``where`` (normalised convolution)."""
    import cv2

    weight = where.astype(np.float32)
    num = cv2.GaussianBlur((values * weight[..., None]).astype(np.float32), (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return num / np.maximum(den, 1e-6)[..., None]


def _gradient_magnitude(gray: np.ndarray) -> np.ndarray:
    import cv2

    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def _robust_mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else 0.0


def colour_novelty(region_lab: np.ndarray, ring_lab: np.ndarray, *, threshold: float = 12.0) -> tuple[float, float]:
    """(share of region pixels farther than ``threshold`` ΔE from every ring pixel, median of those
    nearest distances). Evenly spaced subsamples keep it deterministic and cheap."""
    from scipy.spatial import cKDTree

    def sub(x: np.ndarray) -> np.ndarray:
        step = max(1, len(x) // MAX_NOVELTY_PIXELS)
        return x[::step]

    if len(region_lab) == 0 or len(ring_lab) == 0:
        return 0.0, 0.0
    dist, _ = cKDTree(sub(ring_lab)).query(sub(region_lab), k=1)
    return float(np.mean(dist > threshold)), float(np.median(dist))


def immerkaer_map(gray: np.ndarray) -> np.ndarray:
    """|noise operator| of Immerkær (1996): the difference of two Laplacians, blind to planes and
    mostly to edges; its scaled mean estimates the Gaussian noise sigma."""
    import cv2

    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    return np.abs(cv2.filter2D(gray, cv2.CV_32F, kernel)) * (np.sqrt(np.pi / 2.0) / 6.0)


def neighbour_correlation(gray: np.ndarray, where: np.ndarray) -> float:
    """Pearson correlation of horizontally and vertically adjacent pixels that both lie in ``where``.
    Natural images sit near 1; noise and shuffled pixels pull it towards 0."""
    pairs = []
    h_pair = where[:, 1:] & where[:, :-1]
    v_pair = where[1:, :] & where[:-1, :]
    pairs.append((gray[:, 1:][h_pair], gray[:, :-1][h_pair]))
    pairs.append((gray[1:, :][v_pair], gray[:-1, :][v_pair]))
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    if a.size < 8:
        return 1.0
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 1.0


def fine_to_coarse(gray: np.ndarray, where: np.ndarray) -> float:
    """Mean |Laplacian| at full resolution over that at half resolution, inside ``where``.

    Photographs have falling spectra (and camera/decoder blur), so the finest scale holds less
    detail than the next; white noise and shuffled pixels hold more. Returned as a ratio so the
    rules can compare it with the same ratio of the photo's own background."""
    import cv2

    fine = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))
    h, w = gray.shape
    small = cv2.resize(gray, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    coarse_small = np.abs(cv2.Laplacian(small, cv2.CV_32F, ksize=1))
    coarse = cv2.resize(coarse_small, (w, h), interpolation=cv2.INTER_NEAREST)
    inner = erode(where, 1)
    if inner.sum() < 8:
        inner = where
    return float(fine[inner].mean() + 1e-3) / float(coarse[inner].mean() + 1e-3)


def blockiness(gray: np.ndarray, where: np.ndarray, periods: range = range(4, 17)) -> float:
    """Strength of a block grid inside ``where``: for each period p and phase, the mean absolute
    step across grid lines over the mean step elsewhere, maximised over (p, phase) and averaged
    over the two axes' best phase of one common p. Natural images stay near 1; blocks shuffled on
    a grid (or decoders tiling badly) step sharply on the grid lines.

    A grid is a *repeated* step: when a phase has at least three grid lines, the strongest one is
    left out of its mean, so one straight horizontal or vertical outline (a box's edge, a rocket's
    side) does not pass for a grid, while a real grid still steps on the lines that remain."""
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    mx = where[:, 1:] & where[:, :-1]
    my = where[1:, :] & where[:-1, :]
    # column profile of horizontal steps, row profile of vertical steps (masked means)
    col_sum, col_n = (dx * mx).sum(axis=0), mx.sum(axis=0)
    row_sum, row_n = (dy * my).sum(axis=1), my.sum(axis=1)
    best = 1.0
    for p in periods:
        scores = []
        for total, count in ((col_sum, col_n), (row_sum, row_n)):
            positions = np.arange(len(total))
            axis_best = 0.0
            for phase in range(p):
                on = (positions % p) == phase
                n_on, n_off = count[on].sum(), count[~on].sum()
                if n_on < 4 * p or n_off < 4 * p or on.sum() < 2:
                    continue
                lines = np.flatnonzero(on & (count > 0))
                if len(lines) >= 3:
                    on = on.copy()
                    on[lines[np.argmax(total[lines] / count[lines])]] = False
                on_mean = total[on].sum() / count[on].sum()
                off = (positions % p) != phase
                ratio = (on_mean + 1e-3) / (total[off].sum() / n_off + 1e-3)
                axis_best = max(axis_best, ratio)
            scores.append(axis_best)
        if min(scores) > 0:
            best = max(best, float(np.sqrt(scores[0] * scores[1])))
    return best


def structure_coherence(gray: np.ndarray, where: np.ndarray, sigma: float = 1.5) -> float:
    """Mean structure-tensor coherence ((l1-l2)/(l1+l2)) weighted by gradient energy inside
    ``where``: edges of real objects run in one direction locally (near 1); noise, shuffled
    pixels and tangled warps do not."""
    import cv2

    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    jxx = cv2.GaussianBlur(gx * gx, (0, 0), sigma)
    jyy = cv2.GaussianBlur(gy * gy, (0, 0), sigma)
    jxy = cv2.GaussianBlur(gx * gy, (0, 0), sigma)
    trace = jxx + jyy
    diff = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy)
    coh = diff / np.maximum(trace, 1e-6)
    weight = trace[where]
    if weight.sum() <= 1e-6:
        return 1.0
    return float((coh[where] * weight).sum() / weight.sum())


def energy_distance(a: np.ndarray, b: np.ndarray, limit: int = 400) -> float:
    """Energy distance between two point sets (Székely): 2E|a-b| - E|a-a'| - E|b-b'|, in the
    points' units; 0 when both come from one distribution. Even subsamples keep it cheap."""
    from scipy.spatial.distance import cdist

    a = a[:: max(1, len(a) // limit)]
    b = b[:: max(1, len(b) // limit)]
    if len(a) < 2 or len(b) < 2:
        return 0.0
    return float(2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean())


def value_gradients(values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(d/dx, d/dy) of each channel of ``values`` (HxW or HxWxC) after a Gaussian of sigma 1: what
    :func:`contour_step` projects on an outline's normal. Computed once per image and passed to
    every contour of it (they differ only by the mask)."""
    import cv2

    channels = values[..., None] if values.ndim == 2 else values
    out = []
    for c in range(channels.shape[2]):
        smooth = cv2.GaussianBlur(np.ascontiguousarray(channels[..., c], dtype=np.float32), (0, 0), 1.0)
        out.append((cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)))
    return out


def contour_step(values: np.ndarray, mask: np.ndarray, *, gradients: list | None = None) -> float:
    """Mean colour step across the mask's outline: the derivative along the outline's normal n
    (from a smoothed mask) of each channel of ``values`` (HxW or HxWxC, e.g. CIELAB), combined as
    a Euclidean norm (ΔE per pixel). An object drawn into the mask steps at its outline -- in
    lightness or in colour -- a background fill runs across it. ``gradients``: the image's
    :func:`value_gradients`, when already computed."""
    import cv2

    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.5)
    nx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3)
    ny = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    norm = np.hypot(nx, ny)
    outline = dilate(mask, 1) & ~erode(mask, 1)
    sel = outline & (norm > 1e-3)
    if sel.sum() < 4:
        return 0.0
    total = np.zeros(int(sel.sum()), dtype=np.float64)
    for gx, gy in gradients if gradients is not None else value_gradients(values):
        total += ((gx * nx + gy * ny)[sel] / norm[sel]) ** 2
    return float(np.sqrt(total).mean())


#: Outlines inside the mask where an object smaller than its mask may have its edge: the mask
#: eroded by these shares of the object's side.
INNER_OUTLINES = (0.05, 0.10, 0.15)


def inner_contour_step(values: np.ndarray, mask: np.ndarray, at_outline: float, *, gradients: list | None = None) -> float:
    """The largest :func:`contour_step` over the mask's own outline (``at_outline``, already
    measured) and the outlines of the mask eroded by :data:`INNER_OUTLINES` of the object's side
    (while at least 30 % of the mask is left): where an object drawn smaller than its mask, but
    roughly in its shape, has its edge."""
    area = int(mask.sum())
    side = float(np.sqrt(max(area, 1)))
    best = at_outline
    gradients = gradients if gradients is not None else value_gradients(values)
    for share in INNER_OUTLINES:
        inner = erode(mask, max(1, int(round(share * side))))
        if inner.sum() < 0.3 * area:
            break
        best = max(best, contour_step(values, inner, gradients=gradients))
    return best


def sharpness(gray: np.ndarray, where: np.ndarray, coarse_sigma: float) -> float:
    """log of the mean gradient magnitude after a Gaussian of sigma 1 over that after one of
    ``coarse_sigma`` (about 1/12 of the object's side), inside ``where``.

    A photographed object keeps structure between the two scales (edges, parts, texture), so
    its fine gradients are clearly stronger than its coarse ones (log ratio ~0.7 on COCO
    objects, ~0.55 after a sigma-1 re-draw); an object smoothed away -- melted to a blob, blurred
    at a fraction of its size -- has nothing at the fine scale that the coarse one does not
    already hold (log ratio ~0). Self-referenced (no background needed), contrast-free."""
    import cv2

    values = []
    for sigma in (1.0, coarse_sigma):
        smooth = cv2.GaussianBlur(gray, (0, 0), sigma)
        values.append(_robust_mean(_gradient_magnitude(smooth)[where]))
    return float(np.log((values[0] + 0.5) / (values[1] + 0.5)))


#: Measurements of the background ring that are also taken on the *original* image's ring (keys
#: with ``_orig``): when the generated image changed the ring (a fill that spills past the mask,
#: a halo, a re-exposed photo), the rules compare the region with whichever background -- as
#: generated or as photographed -- makes the weaker case (:func:`soebench.taxonomy.rules.derived_features`).
ORIGINAL_RING_KEYS = (
    "ring_texture", "ring_spread", "edge_ring", "noise_ring", "fine_coarse_ring", "corr_ring",
    "coherence_ring", "contour_step_ring", "sharpness_ring",
)


def _ring_stats(lab: np.ndarray, reg: Regions, coarse_sigma: float) -> dict[str, float]:
    """The ring-only measurements of one image's window (see :data:`ORIGINAL_RING_KEYS`)."""
    gray = lab[..., 0]
    ring_smooth = _masked_blur(lab, reg.ring, 2.0)
    gradients = value_gradients(lab)
    return {
        "ring_texture": float(np.linalg.norm((lab - ring_smooth)[reg.ring], axis=1).mean()),
        "ring_spread": float(np.linalg.norm(lab[reg.ring] - lab[reg.ring].mean(axis=0), axis=1).mean()),
        "edge_ring": _robust_mean(_gradient_magnitude(gray)[reg.ring]),
        "noise_ring": float(np.median(immerkaer_map(gray)[reg.ring])),
        "fine_coarse_ring": fine_to_coarse(gray, reg.ring),
        "corr_ring": neighbour_correlation(gray, reg.ring),
        "coherence_ring": structure_coherence(gray, reg.ring),
        "contour_step_ring": contour_step(lab, dilate(reg.hole, max(1, reg.width // 2)), gradients=gradients),
        "sharpness_ring": sharpness(gray, reg.ring, coarse_sigma),
    }


def measure(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """All weight-free measurements of ``generated`` under ``mask`` (see the module docstring for
    what may be looked at). Values are plain floats; ratios compare region with background ring.

    Also returns the *foreground* (full-image HxW bool): the mask pixels that depart from the
    background prediction by clearly more than the ring's texture -- where the generated object
    is, when it does not fill the whole mask. Colour naming reads these pixels."""
    from soebench.mining.colour import rgb_to_lab

    area = int(mask.sum())
    gap, width = ring_geometry(area)
    window = window_of(mask, gap + width + 2)
    m = mask[window]
    reg = regions_of(m)
    if reg.ring.sum() < 16:  # the object fills (nearly) the whole image: use what background there is
        reg = Regions(reg.mask, reg.hole, ~reg.hole if (~reg.hole).sum() >= 16 else ~m, reg.interior, reg.gap, reg.width)
        if reg.ring.sum() < 16:
            raise ValueError("classify: the mask leaves fewer than 16 background pixels; nothing to compare with")
    gen = generated[window]
    orig = original[window]
    lab = rgb_to_lab(gen).astype(np.float32)
    gray = lab[..., 0]

    # background prediction and the region's departure from it
    predicted = harmonic_fill(lab, reg.hole).astype(np.float32)
    residual = lab - predicted
    side = float(np.sqrt(area))
    smooth_residual = _masked_blur(residual, reg.mask, max(1.0, side / 16.0))
    departure = float(np.linalg.norm(smooth_residual[reg.interior], axis=1).mean())
    ring_smooth = _masked_blur(lab, reg.ring, 2.0)
    ring_texture = float(np.linalg.norm((lab - ring_smooth)[reg.ring], axis=1).mean())
    ring_spread = float(np.linalg.norm(lab[reg.ring] - lab[reg.ring].mean(axis=0), axis=1).mean())

    # colours the background does not have
    novel_share, novel_median = colour_novelty(lab[reg.interior], lab[reg.ring])

    # edges and fine structure, region against ring
    grad = _gradient_magnitude(gray)
    edge_region = _robust_mean(grad[reg.interior])
    edge_ring = _robust_mean(grad[reg.ring])
    noise = immerkaer_map(gray)
    noise_region = float(np.median(noise[reg.interior]))
    noise_ring = float(np.median(noise[reg.ring]))

    distance = np.linalg.norm(residual, axis=2)
    foreground = np.zeros(mask.shape, dtype=bool)
    foreground[window] = reg.mask & (distance > max(10.0, 2.0 * ring_texture))

    # distribution distances: region vs inner ring, against inner vs outer ring (the background's
    # own variation at that distance)
    inner = reg.ring & ~dilate(reg.hole, max(1, reg.width // 2))
    inner = reg.ring & ~inner
    outer = reg.ring & ~inner
    ed_region = energy_distance(lab[reg.interior], lab[inner])
    ed_background = energy_distance(lab[outer], lab[inner])
    gradients = value_gradients(lab)
    step = contour_step(lab, reg.mask, gradients=gradients)
    step_ring = contour_step(lab, dilate(reg.hole, max(1, reg.width // 2)), gradients=gradients)
    step_inner = inner_contour_step(lab, reg.mask, step, gradients=gradients)

    ring_change = float(np.abs(gen[reg.ring].astype(np.float32) - orig[reg.ring].astype(np.float32)).mean())
    coarse_sigma = max(1.5, side / 12.0)
    if ring_change > 0.0:
        ring_orig = _ring_stats(rgb_to_lab(orig).astype(np.float32), reg, coarse_sigma)
    else:  # the ring is the photo's own: the original's measurements are the generated ones
        ring_orig = None

    result = {
        "area_px": float(area),
        "departure": departure,
        "ring_texture": ring_texture,
        "ring_spread": ring_spread,
        "departure_ratio": departure / (ring_texture + 1.0),
        "novel_share": novel_share,
        "novel_median": novel_median,
        "edge_region": edge_region,
        "edge_ring": edge_ring,
        "edge_ratio": (edge_region + 0.5) / (edge_ring + 0.5),
        "noise_region": noise_region,
        "noise_ring": noise_ring,
        "noise_ratio": (noise_region + 0.25) / (noise_ring + 0.25),
        "fine_coarse_region": fine_to_coarse(gray, reg.interior),
        "fine_coarse_ring": fine_to_coarse(gray, reg.ring),
        "corr_region": neighbour_correlation(gray, reg.interior),
        "corr_ring": neighbour_correlation(gray, reg.ring),
        "blockiness": blockiness(gray, reg.interior),
        "coherence_region": structure_coherence(gray, reg.interior),
        "coherence_ring": structure_coherence(gray, reg.ring),
        "ring_change": ring_change,
        "energy_region": ed_region,
        "energy_background": ed_background,
        "energy_ratio": (ed_region + 0.5) / (ed_background + 0.5),
        "contour_step": step,
        "contour_step_ring": step_ring,
        "contour_ratio": (step + 0.5) / (step_ring + 0.5),
        "contour_step_inner": step_inner,
        "contour_ratio_inner": (step_inner + 0.5) / (step_ring + 0.5),
        "foreground_share": float(foreground.sum()) / max(area, 1),
        "sharpness_region": sharpness(gray, reg.interior, coarse_sigma),
        "sharpness_ring": sharpness(gray, reg.ring, coarse_sigma),
    }
    for key in ORIGINAL_RING_KEYS:
        result[f"{key}_orig"] = result[key] if ring_orig is None else ring_orig[key]
    return result, foreground


def colour_evidence(generated: np.ndarray, mask: np.ndarray, foreground: np.ndarray, expected: str | None) -> dict[str, float | str | None]:
    """The generated object's colour term (:func:`soebench.mining.colour.colour_of_mask`) read
    twice: from the whole mask (as the manifest's colour word was named) and from the foreground
    pixels (where a drawn object smaller than its mask actually is; when they are at least 16).
    ``colour_expected_share`` is the larger share of the votes the prompt's colour word got in
    the two readings, so a mismatch needs the expected colour to be absent from both."""
    from soebench.mining.colour import colour_of_mask, exposure_gain

    gain = exposure_gain(generated)
    whole = colour_of_mask(generated, mask, gain=gain)
    part = colour_of_mask(generated, foreground, gain=gain) if foreground.sum() >= 16 else None
    shares = [] if expected is None else [float(n.scores.get(expected, 0.0)) for n in (whole, part) if n is not None]
    return {
        "colour_named": whole.name,
        "colour_confidence": float(whole.confidence),
        "colour_named_foreground": None if part is None else part.name,
        "colour_expected": expected,
        "colour_expected_share": max(shares) if shares else None,
    }
