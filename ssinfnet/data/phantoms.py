"""The embedded default: deterministic synthetic CT-like phantoms with GGO / consolidation labels.

Every phantom is built in Hounsfield units (HU) and then windowed to 8 bits with the lung window
(level -600 HU, width 1500 HU), so it looks like the COVID-SemiSeg crops and can also feed the HU
code paths (:func:`make_phantom_hu`). Anatomy and lesions, with the values chosen:

============================  ===============  ======================================
structure                      HU (mean)        label
============================  ===============  ======================================
outside air                    -1000            -
body (soft tissue)             +40 ± 15         -
lung parenchyma                -860 ± 25        background (0)
vessels (branching lines)      +30              background (0)
ground-glass opacity (GGO)     -480 ± 40        1, faint and diffuse, smooth borders
consolidation                  +20 ± 15         2, dense, often touching the pleura
============================  ===============  ======================================

Phantoms are **synthetic**: every figure made from them says so. The same ``(seed, index)`` always
gives the same phantom, on every machine (numpy's PCG64 generator, float64 arithmetic).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .sample import Sample

LUNG_WINDOW = (-600.0, 1500.0)  # (level, width) in HU
SOURCE_NAME = "synthetic"


def window_hu(hu: np.ndarray, level: float = LUNG_WINDOW[0], width: float = LUNG_WINDOW[1]) -> np.ndarray:
    """Map HU values to uint8 grey 0..255 with a (level, width) window; values outside are clipped."""
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    lo = level - width / 2.0
    grey = (np.asarray(hu, dtype=np.float64) - lo) / width * 255.0
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def _ellipse(shape, cy, cx, ry, rx, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u = (dx * c + dy * s) / rx
    v = (-dx * s + dy * c) / ry
    return u * u + v * v <= 1.0


def _smooth_noise(rng, shape, sigma):
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma) * sigma  # ~unit-ish amplitude


def _vessels(rng, lungs, n_branches, size):
    """Thin bright branching lines inside the lungs (random walks from the hilum outwards)."""
    h, w = lungs.shape
    out = np.zeros(lungs.shape, dtype=bool)
    for _ in range(n_branches):
        y, x = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.35, 0.65)
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(int(size * 0.35)):
            angle += rng.normal(0, 0.25)
            y += np.sin(angle)
            x += np.cos(angle)
            iy, ix = int(round(y)), int(round(x))
            if not (0 <= iy < h and 0 <= ix < w):
                break
            out[iy, ix] = True
    out = ndimage.binary_dilation(out, iterations=max(1, size // 200))
    return out & lungs


def _blob(rng, shape, cy, cx, radius, irregularity=0.35):
    """A smooth irregular blob (thresholded blurred noise around an ellipse)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    r = np.hypot((yy - cy) / radius, (xx - cx) / (radius * rng.uniform(0.7, 1.3)))
    field = 1.0 - r + irregularity * _smooth_noise(rng, shape, max(2.0, radius / 3)) / max(2.0, radius / 3)
    return field > 0


def make_phantom_hu(index: int, size: int = 128, seed: int = 0, lesion_load: float | None = None):
    """Build one phantom slice in HU with its labels.

    Parameters
    ----------
    index : int
        Slice number; with ``seed`` it fixes everything.
    size : int
        Width and height in pixels (>= 32).
    seed : int
        Base seed of the phantom family.
    lesion_load : float in [0, 1] or None
        Scales how many and how large lesions are; None draws it from the slice's generator.

    Returns
    -------
    hu : float32 (size, size) array in HU
    classes : uint8 (size, size) array, 0 background, 1 GGO, 2 consolidation
    lungs : bool (size, size) array, the true lung parenchyma (lesions included)
    """
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    rng = np.random.default_rng([seed, index])
    shape = (size, size)
    s = size
    body = _ellipse(shape, s * 0.5, s * 0.5, s * rng.uniform(0.36, 0.42), s * rng.uniform(0.44, 0.48))
    ry, rx = s * rng.uniform(0.25, 0.29), s * rng.uniform(0.14, 0.17)
    left = _ellipse(shape, s * 0.5, s * 0.30, ry, rx, rng.normal(0, 0.08)) & body
    right = _ellipse(shape, s * 0.5, s * 0.70, ry * rng.uniform(0.92, 1.05), rx, rng.normal(0, 0.08)) & body
    lungs = left | right

    hu = np.full(shape, -1000.0)
    hu[body] = 40.0 + 15.0 * rng.standard_normal(body.sum())
    hu[lungs] = -860.0 + 25.0 * _smooth_noise(rng, shape, 1.5)[lungs] / 1.5
    vessels = _vessels(rng, lungs, n_branches=int(rng.integers(6, 12)), size=s)
    hu[vessels] = 30.0

    load = rng.uniform(0.0, 1.0) if lesion_load is None else float(lesion_load)
    classes = np.zeros(shape, dtype=np.uint8)
    if load > 0.05:
        for lung in (left, right):
            ys, xs = np.nonzero(lung)
            for _ in range(int(rng.integers(0, 3 + round(3 * load)))):  # GGO: faint, diffuse, larger
                k = rng.integers(len(ys))
                ggo = _blob(rng, shape, ys[k], xs[k], s * rng.uniform(0.04, 0.05 + 0.07 * load)) & lung
                classes[ggo & (classes == 0)] = 1
            if rng.uniform() < 0.3 + 0.6 * load:  # consolidation: dense, near the pleura (posterior)
                edge_pts = np.nonzero(lung & ~ndimage.binary_erosion(lung, iterations=2))
                lower = edge_pts[0] > np.median(edge_pts[0])
                k = rng.choice(np.nonzero(lower)[0])
                cons = _blob(rng, shape, edge_pts[0][k], edge_pts[1][k], s * rng.uniform(0.03, 0.03 + 0.05 * load)) & lung
                classes[cons] = 2
    ggo_hu = -480.0 + 40.0 * _smooth_noise(rng, shape, 2.0) / 2.0
    hu = np.where(classes == 1, np.maximum(hu, ggo_hu), hu)
    hu = np.where(classes == 2, 20.0 + 15.0 * rng.standard_normal(shape), hu)
    hu = ndimage.gaussian_filter(hu, 0.6)  # partial-volume blur of a real reconstruction kernel
    return hu.astype(np.float32), classes, lungs


def edge_of(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels of a bool mask (dilation xor erosion), ``width`` pixels each way."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    return ndimage.binary_dilation(mask, iterations=width) & ~ndimage.binary_erosion(mask, iterations=width)


def make_phantom(index: int, size: int = 128, seed: int = 0, subset: str = "train",
                 slices_per_volume: int = 8) -> Sample:
    """One synthetic slice as a :class:`Sample` (image windowed to uint8, all labels, a soft prior).

    The prior imitates a stage-1 prediction: the infection mask blurred and slightly dilated
    (values in [0, 1]). Unlabelled phantoms get a pseudo volume id as ``group_id``
    (``slices_per_volume`` consecutive indices per volume); labelled ones, like the real labelled
    slices, get none.
    """
    hu, classes, lungs = make_phantom_hu(index, size, seed + _SUBSET_OFFSET[subset])
    infection = classes > 0
    prior = ndimage.gaussian_filter(infection.astype(np.float64), 1.5)
    prior = np.clip(prior * 1.3, 0.0, 1.0).astype(np.float32)
    labelled = subset != "unlabelled"
    return Sample(
        image=window_hu(hu),
        slice_id=f"phantom-{subset}-{index:04d}",
        source=SOURCE_NAME,
        subset=subset,
        path=f"synthetic://{subset}/{index}",
        infection=infection if labelled else None,
        classes=classes if labelled else None,
        edge=edge_of(infection) if labelled else None,
        prior=prior if labelled else None,
        # Like the real data: labelled slices carry no patient/volume id, the unlabelled pool does.
        group_id=None if labelled else f"phantom-volume-{subset}-{index // slices_per_volume:03d}",
        meta={"lungs": lungs, "hu_window": LUNG_WINDOW, "synthetic": True},
    )


# Disjoint random streams per subset, so train and test phantoms never coincide.
_SUBSET_OFFSET = {"train": 0, "test": 10_000, "unlabelled": 20_000}

#: Default subset sizes of the embedded default (the real COVID-SemiSeg has 50 / 48 / 1,600).
DEFAULT_COUNTS = {"train": 24, "test": 12, "unlabelled": 48}


def synthetic_subset(subset: str, n: int | None = None, size: int = 128, seed: int = 0) -> list[Sample]:
    """``n`` phantoms of one subset (``"train"``, ``"test"`` or ``"unlabelled"``)."""
    if subset not in _SUBSET_OFFSET:
        raise ValueError(f"subset must be one of {sorted(_SUBSET_OFFSET)}, got {subset!r}")
    n = DEFAULT_COUNTS[subset] if n is None else n
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return [make_phantom(i, size, seed, subset) for i in range(n)]
