"""Classical lung-parenchyma segmentation for severity scoring.

The severity ratio divides the infected area by the lung area, so the lung mask must contain every
infected pixel: ground-glass opacity (mid grey in a lung window) and consolidation (as bright as soft
tissue).  A plain "dark pixels" mask cuts exactly those out and inflates nothing but the error.  The
pipeline is therefore generous by design:

1. smooth (Gaussian, ``sigma`` pixels) and threshold: Otsu on 8-bit lung-window crops, a fixed HU
   threshold on Hounsfield slices → *dark* (air-like) pixels;
2. outside air: keep dark pixels inside the convex hull of the body (all non-dark pixels after an
   opening); for HU slices also drop dark components touching the image border.  The hull, not the
   border rule, is used for the 8-bit crops because COVID-SemiSeg crops often cut through the lungs;
3. opening; dark components are grouped by single linkage (pieces of a lung cut by a thick vessel or a
   lesion band join; the lungs, apart by the mediastinum, merge last), the two largest groups (a merged
   pair is split by erosion) = lung *seeds*;
4. growth: each seed grows geodesically for ``grow_frac`` of the image size through pixels darker than
   a second, higher threshold (upper multi-Otsu level / ``grow_hu``), which takes in ground glass and
   part-solid lesions at the lung border but stops in bright, homogeneous soft tissue;
5. hole filling and a closing with a large disk per lung (``close_frac``) so vessels, airways and dense
   consolidation enclosed by or lying in a concavity of the lung end up inside it.

Trade-off: steps 4–5 prefer including infection over a tight boundary, so the mask may take in some
chest wall, hilum or mediastinum (ratio slightly under-estimated) rather than cut consolidation out
(ratio biased, class wrong).  Consolidation filling a whole lung region against the chest wall, with no
dark lung around it, is still missed: for a reference severity from ground truth pass the infection mask
as ``include=`` so it is unioned into the lung mask.  Results that look implausible carry ``flags`` and
are refused by :mod:`ssinfnet.severity` unless explicitly allowed.

Measured on the 48 COVID-SemiSeg test slices (default parameters): see ``tests/test_lungs.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology

__all__ = ["LungParams", "LungMask", "segment_lungs"]


@dataclass(frozen=True)
class LungParams:
    """Parameters of :func:`segment_lungs`; sizes are fractions of ``sqrt(H * W)`` unless stated.

    Attributes
    ----------
    threshold : float or None
        Dark/bright threshold: grey level (0..255) for ``kind="uint8"`` (None → Otsu), HU for
        ``kind="hu"`` (None → -400 HU).
    grow_threshold : float or None
        Upper limit for the growth step: grey level (None → upper level of a 3-class multi-Otsu inside
        the body) or HU (None → -250 HU, above ground glass, below fat -100 HU and soft tissue).
    grow_cap : float
        Automatic 8-bit growth threshold is capped at ``t + grow_cap * (median body grey - t)`` (default
        0.6; on the COVID-SemiSeg test crops the multi-Otsu level lies at 0.2–0.85 of that span, median
        0.4), so lesion-free images with a three-level histogram do not grow into soft tissue.
    sigma : float
        Gaussian smoothing before thresholding, pixels (default 1.0).
    open_frac : float
        Opening radius removing noise and thin bridges (default 0.008, at least 1 pixel).
    grow_frac : float
        Geodesic growth distance into lesion-like grey (default 0.15).
    close_frac : float
        Closing radius per lung, the generous vessel/consolidation fill (default 0.12).
    hull_frac : float
        Bounded convex fill per lung: pixels of the lung's convex hull within this distance of the lung are
        added (default 0.05; 0 disables).  Recovers notches cut by wall-side consolidation at the cost of
        some hilum/mediastinum.
    min_component_frac : float
        Smallest seed component kept, fraction of the image area (default 0.005; drops trachea, bowel gas).
    second_lung_min : float
        The smaller lung must have at least this fraction of the larger lung's area, else the result is
        flagged "only one lung found" (default 0.1).
    group_gap_frac : float
        Largest gap between dark components that still groups them into one lung (single linkage, the
        lungs being the last two groups to merge; default 0.15; 0 takes the two largest single
        components).  Keeps pieces of a lung cut by a thick vessel or a dense lesion band together.
    area_range : tuple of float or None
        Plausible lung area, fraction of the image (slice) or volume; None → (0.08, 0.85) for uint8 crops,
        (0.02, 0.6) for HU images with the full field of view.
    drop_border : bool or None
        Also drop dark components touching the image border (outside air); None → True for HU only.
    """

    threshold: float | None = None
    grow_threshold: float | None = None
    grow_cap: float = 0.6
    sigma: float = 1.0
    open_frac: float = 0.008
    grow_frac: float = 0.15
    close_frac: float = 0.12
    hull_frac: float = 0.05
    min_component_frac: float = 0.005
    second_lung_min: float = 0.1
    group_gap_frac: float = 0.15
    area_range: tuple[float, float] | None = None
    drop_border: bool | None = None

    def __post_init__(self):
        for name in ("grow_cap", "group_gap_frac", "hull_frac", "sigma", "open_frac", "grow_frac", "close_frac", "min_component_frac", "second_lung_min"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.area_range is not None:
            lo, hi = self.area_range
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"area_range must satisfy 0 <= low < high <= 1, got {self.area_range!r}")


@dataclass
class LungMask:
    """Result of :func:`segment_lungs`.

    Attributes
    ----------
    mask : ndarray of bool, shape (H, W) or (D, H, W)
        Lung parenchyma (both lungs).
    labels : ndarray of int8, same shape
        0 background, 1 and 2 the two lungs; 1 is the lung with the smaller mean coordinate along
        ``lung_axis`` (image left in a standard radiological slice, i.e. the patient's right lung).
    lung_axis : int
        In-plane axis of a slice separating the lungs: 1 = columns (standard orientation, always used for
        volumes), 0 = rows (as in the many rotated COVID-SemiSeg crops).
    area_fraction : float
        Lung pixels / all pixels.
    flags : list of str
        Reasons the result is implausible; empty when it looks fine.  Never score a flagged mask silently.
    kind : str
        ``"uint8"`` or ``"hu"``.
    slice_flags : dict
        For volumes, per-slice notes ``{slice index: [reasons]}`` (apex and base slices legitimately show
        one lung; these do not flag the volume).
    """

    mask: np.ndarray
    labels: np.ndarray
    lung_axis: int
    area_fraction: float
    flags: list[str] = field(default_factory=list)
    kind: str = "uint8"
    slice_flags: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no flag was raised."""
        return not self.flags


def _closing(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary closing with a Euclidean disk of `radius` pixels (distance transforms: O(N) for big disks)."""
    if radius <= 0 or not mask.any():
        return mask
    pad = int(np.ceil(radius)) + 1
    m = np.pad(mask, pad)
    dilated = ndi.distance_transform_edt(~m) <= radius
    return (ndi.distance_transform_edt(dilated) > radius)[pad:-pad, pad:-pad]


def _opening(mask: np.ndarray, radius: float) -> np.ndarray:
    if radius <= 0 or not mask.any():
        return mask
    eroded = ndi.distance_transform_edt(np.pad(mask, 1)) > radius
    return (ndi.distance_transform_edt(~eroded) <= radius)[1:-1, 1:-1]


def _split_merged(comp: np.ndarray, min_frac: float, max_iter: int) -> np.ndarray | None:
    """Split one component holding both lungs (anterior junction) by erosion; labels 1/2 or None.

    Only a few erosions are tried, so thin junctions split but a single lung is not cut at its vessels.
    """
    for it in range(1, max_iter + 1):
        lab, n = ndi.label(ndi.binary_erosion(comp, iterations=it))
        if n < 2:
            if n == 0:
                return None
            continue
        sizes = np.bincount(lab.ravel())[1:]
        order = np.argsort(sizes)[::-1]
        if sizes[order[1]] >= min_frac * sizes[order[0]]:
            seeds = np.zeros_like(lab)
            seeds[lab == order[0] + 1] = 1
            seeds[lab == order[1] + 1] = 2
            _, idx = ndi.distance_transform_edt(seeds == 0, return_indices=True)
            out = seeds[idx[0], idx[1]]
            out[~comp] = 0
            return out
    return None


def _group_seeds(lab: np.ndarray, big: np.ndarray, max_gap: float, second_min: float) -> np.ndarray:
    """Lung seeds (int8, labels 1/2, 1 = larger) from the labelled dark components.

    A lung cut into pieces by a thick vessel or a dense lesion band gives several dark components, and
    the two largest may then be two pieces of one lung.  Components are grouped by single linkage:
    components closer than a gap join one group, for gaps growing up to ``max_gap`` pixels; the two
    lungs are the two largest groups at the largest gap that still leaves two groups of plausible
    relative size (the mediastinum is the widest gap, so the lungs merge last).  When no gap does, the
    two largest single components are used.
    """
    sizes = np.bincount(lab.ravel())[1:]
    ids = np.flatnonzero(big) + 1

    def _seeds(groups):
        out = np.zeros(lab.shape, np.int8)
        for i, members in enumerate(groups[:2]):
            out[np.isin(lab, members)] = i + 1
        return out

    single = [[k] for k in ids[np.argsort(sizes[ids - 1])[::-1]]]
    if ids.size <= 2 or max_gap <= 0:
        return _seeds(single)
    dist = ndi.distance_transform_edt(~np.isin(lab, ids))
    best = None
    for gap in np.linspace(min(2.0, max_gap), max_gap, 8):
        glab, _ = ndi.label(dist <= gap / 2)
        groups: dict[int, list[int]] = {}
        for k in ids:
            groups.setdefault(int(glab[lab == k][0]), []).append(int(k))
        ranked = sorted(groups.values(), key=lambda m: sizes[np.asarray(m) - 1].sum(), reverse=True)
        if len(ranked) < 2:
            break
        a, b = (sizes[np.asarray(m) - 1].sum() for m in ranked[:2])
        if b >= second_min * a:
            best = ranked
    return _seeds(best if best is not None else single)


def _segment_slice(img: np.ndarray, kind: str, p: LungParams):
    """2-D core: returns (labels int8 (H, W) with 0/1/2 in arbitrary lung order, notes list)."""
    h, w = img.shape
    scale = np.sqrt(h * w)
    notes: list[str] = []
    empty = np.zeros((h, w), np.int8)
    if float(img.max() - img.min()) < 1e-6:
        return empty, ["image is constant (blank)"]
    sm = ndi.gaussian_filter(img.astype(np.float64), p.sigma) if p.sigma > 0 else img.astype(np.float64)
    if kind == "uint8":
        t = filters.threshold_otsu(sm) if p.threshold is None else float(p.threshold)
    else:
        t = -400.0 if p.threshold is None else float(p.threshold)
    dark = sm < t
    r_open = max(1.0, p.open_frac * scale)
    body = _opening(~dark, min(2.0, r_open))
    if not body.any() or not dark.any():
        return empty, ["no dark (air-like) region found" if not dark.any() else "no body found"]
    hull = morphology.convex_hull_image(body)
    cand = _opening(dark & hull, r_open)
    lab, n = ndi.label(cand)
    drop_border = (kind == "hu") if p.drop_border is None else p.drop_border
    if drop_border and n:
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        cand[np.isin(lab, edge[edge > 0])] = False
        lab, n = ndi.label(cand)
    if n == 0:
        return empty, ["no lung found"]
    sizes = np.bincount(lab.ravel())[1:]
    big = sizes >= p.min_component_frac * h * w
    if not big.any():
        return empty, ["no lung found"]
    seeds = _group_seeds(lab, big, p.group_gap_frac * scale, p.second_lung_min)
    areas = [int((seeds == v).sum()) for v in (1, 2)]
    if areas[1] == 0 or areas[1] < p.second_lung_min * areas[0]:
        split = _split_merged(seeds == 1, p.second_lung_min, max_iter=int(0.02 * scale) + 1)
        if split is not None:
            seeds = split.astype(np.int8)
    if kind == "uint8":
        if p.grow_threshold is None:
            vals = sm[hull]
            tg = filters.threshold_multiotsu(vals, classes=3)[1] if np.unique(vals).size > 3 else t
            # Without lesions the three classes are lung / tissue / bone-vessel, and the upper level sits
            # above soft tissue: cap it part-way from the lung threshold to the typical body grey.
            tg = min(tg, t + p.grow_cap * (float(np.median(sm[body & hull])) - t))
        else:
            tg = float(p.grow_threshold)
    else:
        tg = -250.0 if p.grow_threshold is None else float(p.grow_threshold)
    region = (sm < max(tg, t)) & hull
    grow = int(round(p.grow_frac * scale))
    out = np.zeros((h, w), np.int8)
    for v in (1, 2):
        lung = seeds == v
        if not lung.any():
            continue
        if grow > 0:
            lung = ndi.binary_dilation(lung, iterations=grow, mask=region | lung)
        lung = ndi.binary_fill_holes(_closing(ndi.binary_fill_holes(lung), p.close_frac * scale))
        if p.hull_frac > 0:
            # Bounded convex fill: concavities of the lung (wall-side consolidation notches, but also the
            # hilum) are filled up to hull_frac deep.
            near = ndi.distance_transform_edt(~lung) <= p.hull_frac * scale
            lung |= morphology.convex_hull_image(lung) & near
        out[lung & (out == 0)] = v
    return out, notes


def _order_labels(labels: np.ndarray, axis: int | None):
    """Relabel so lung 1 has the smaller mean coordinate along the in-plane axis; returns (labels, axis)."""
    cents = {v: np.argwhere(labels == v).mean(axis=0)[-2:] for v in (1, 2) if np.any(labels == v)}
    if axis is None:
        axis = int(np.argmax(np.abs(cents[1] - cents[2]))) if len(cents) == 2 else 1
    if len(cents) == 2 and cents[1][axis] > cents[2][axis]:
        labels = np.where(labels == 1, 2, np.where(labels == 2, 1, 0)).astype(np.int8)
    return labels, axis


def _include(labels: np.ndarray, include: np.ndarray) -> np.ndarray:
    """Union `include` into the lungs; each added pixel joins the nearest lung (label 1 if none)."""
    if not (labels > 0).any():
        return np.where(include, 1, 0).astype(np.int8)
    _, idx = ndi.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[tuple(idx)]
    return np.where(labels > 0, labels, np.where(include, nearest, 0)).astype(np.int8)


def segment_lungs(image, kind: str = "uint8", params: LungParams | None = None, *,
                  include=None) -> LungMask:
    """Segment the lung parenchyma of a CT slice or volume.

    Parameters
    ----------
    image : array, shape (H, W) or (D, H, W)
        ``kind="uint8"``: lung-window grey levels 0..255 (any numeric dtype), e.g. COVID-SemiSeg crops.
        ``kind="hu"``: Hounsfield units (float), lungs about -1000..-400 HU, body about 0 HU.
        Volumes are segmented slice by slice along axis 0.
    kind : {"uint8", "hu"}
        Input kind; chooses the thresholds (see :class:`LungParams`).
    params : LungParams, optional
        Defaults to ``LungParams()``.
    include : array of bool, same shape, optional
        Extra pixels unioned into the lung mask (each joins the nearest lung), e.g. the ground-truth
        infection when a reference severity is computed from ground truth, so no labelled lesion lies
        outside the denominator.  Do not pass a *predicted* mask here: it would tie the denominator to the
        prediction being scored.

    Returns
    -------
    LungMask
        Mask, lung labels, area fraction and flags.  Flags: blank/constant image, no lung, only one lung,
        lung area outside ``area_range``.

    Raises
    ------
    ValueError
        Unknown ``kind``, wrong dimensionality, NaN/Inf values, 8-bit values outside 0..255, or an
        ``include`` mask of another shape.
    """
    if kind not in ("uint8", "hu"):
        raise ValueError(f"kind must be 'uint8' or 'hu', got {kind!r}")
    p = params if params is not None else LungParams()
    if not isinstance(p, LungParams):
        raise ValueError(f"params must be a LungParams, got {type(p).__name__}")
    img = np.asarray(image)
    if img.ndim not in (2, 3) or min(img.shape[-2:]) < 8:
        raise ValueError(f"image must be 2-D (H, W) or 3-D (D, H, W) with H, W >= 8, got shape {img.shape}")
    if not np.issubdtype(img.dtype, np.number) or np.issubdtype(img.dtype, np.complexfloating):
        raise ValueError(f"image must be real numeric, got dtype {img.dtype}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image contains NaN or Inf")
    if kind == "uint8" and (img.min() < 0 or img.max() > 255):
        raise ValueError(f"image values must lie in 0..255 for kind='uint8', got [{img.min()}, {img.max()}]; "
                         "use kind='hu' for Hounsfield units")
    if include is not None:
        include = np.asarray(include, dtype=bool)
        if include.shape != img.shape:
            raise ValueError(f"include has shape {include.shape}, image has shape {img.shape}")
    if p.area_range is None:
        p = replace(p, area_range=(0.08, 0.85) if kind == "uint8" else (0.02, 0.6))
    flags: list[str] = []
    slice_flags: dict = {}
    if img.ndim == 2:
        labels, notes = _segment_slice(img, kind, p)
        flags.extend(notes)
        labels, axis = _order_labels(labels, None)
    else:
        slices = []
        for z in range(img.shape[0]):
            lab_z, notes = _segment_slice(img[z], kind, p)
            slices.append(lab_z)
            if notes:
                slice_flags[z] = notes
        labels = np.stack(slices)
        # Volumes are taken in standard orientation: lungs side by side along columns.
        labels = np.stack([_order_labels(s, 1)[0] for s in labels])
        axis = 1
        if not (labels > 0).any():
            flags.append("no lung found in any slice")
    if include is not None:
        labels = _include(labels, include)
    mask = labels > 0
    areas = [int((labels == v).sum()) for v in (1, 2)]
    if mask.any() and min(areas) < p.second_lung_min * max(areas) and not any("no lung" in f for f in flags):
        flags.append(f"only one lung found (second lung {min(areas)} px vs {max(areas)} px)")
    frac = float(mask.mean())
    lo, hi = p.area_range
    if not lo <= frac <= hi:
        flags.append(f"lung area {100 * frac:.1f}% of image, outside plausible range "
                     f"[{100 * lo:.0f}%, {100 * hi:.0f}%]")
    return LungMask(mask=mask, labels=labels.astype(np.int8), lung_axis=axis, area_fraction=frac,
                    flags=flags, kind=kind, slice_flags=slice_flags)
