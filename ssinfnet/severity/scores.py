"""CT severity from an infection prediction and a lung mask.

The SSInfNet paper scores severity as the ratio of the soft infection prediction summed inside the lungs
to the lung-parenchyma area, binned into three classes (< 0.01 → 0, < 0.5 → 1, else 2) and compared
with a reference by micro F1 / precision / recall.  This module adds the standard CT involvement bins,
a regional CT severity score (CT-SS) and agreement statistics (quadratic-weighted kappa, Spearman,
Bland–Altman) that a single micro F1 hides.

Conventions
-----------
* A ratio is a fraction in [0, 1] (not a percentage).
* Bin edges are increasing thresholds; a value exactly on an edge goes to the *upper* class
  (``edges[i-1] <= ratio < edges[i]`` is class ``i``), as the paper's "< 0.01 → 0" implies.
* Lung masks that :func:`ssinfnet.severity.lungs.segment_lungs` flagged are refused unless the caller passes
  ``allow_flagged=True``: a flagged mask is never scored silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .lungs import LungMask


def zone_score_map(labels: np.ndarray, per_region: pd.DataFrame, zone_axis: int | None) -> np.ndarray:
    """Image of zone scores: each lung zone of ``labels`` filled with its ``per_region`` score, NaN elsewhere.

    ``per_region`` is :func:`regional_score`'s table (columns lung, zone, score); ``zone_axis`` as given to it
    (default: perpendicular to the line joining the lungs).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"lung_labels must be 2-D, got shape {labels.shape}")
    need = {"lung", "zone", "score"}
    if not need <= set(per_region.columns):
        raise ValueError(f"per_region lacks column(s) {sorted(need - set(per_region.columns))}")
    zones = int(per_region["zone"].max()) + 1
    axis = (1 - _separation_axis(labels)) if zone_axis is None else zone_axis
    score_map = np.full(labels.shape, np.nan)
    for row in per_region.itertuples():
        lung = labels == row.lung
        if lung.any():
            score_map[lung & (_zone_bands(lung, axis, zones) == row.zone)] = row.score
    return score_map


__all__ = ["PAPER_BINS", "PAPER_LABELS", "CT_BINS", "CT_LABELS", "REGION_BINS", "severity_ratio", "slice_record",
           "aggregate_ratios", "classify", "regional_score"]


#: Paper bins: ratio < 0.01 → 0, 0.01 <= ratio < 0.5 → 1, ratio >= 0.5 → 2.
PAPER_BINS: tuple[float, ...] = (0.01, 0.5)


PAPER_LABELS: tuple[str, ...] = ("0 (<1%)", "1 (1-50%)", "2 (>=50%)")


#: Standard CT involvement bins: none, < 25 %, 25–50 %, 50–75 %, >= 75 %.  "None" cannot mean an exact
#: zero for a soft prediction, so it is "below 0.1 % of the lung" (the first edge).
CT_BINS: tuple[float, ...] = (0.001, 0.25, 0.5, 0.75)


CT_LABELS: tuple[str, ...] = ("none", "<25%", "25-50%", "50-75%", ">=75%")


#: Per-region CT-SS bins: 0 = no involvement (< 0.1 %), 1 = < 50 %, 2 = >= 50 %.
REGION_BINS: tuple[float, ...] = (0.001, 0.5)


def _lung_arrays(lung_mask, allow_flagged: bool, name: str = "lung_mask"):
    """Return (bool mask, int labels or None, lung_axis or None) from a LungMask or an array."""
    if isinstance(lung_mask, LungMask):
        flags = lung_mask.flags
        if flags and not allow_flagged:
            raise ValueError(f"{name} is flagged ({'; '.join(flags)}); pass allow_flagged=True to score it")
        if flags:
            warnings.warn(f"scoring a flagged lung mask: {'; '.join(flags)}", stacklevel=3)
        return np.asarray(lung_mask.mask, bool), np.asarray(lung_mask.labels), lung_mask.lung_axis
    arr = np.asarray(lung_mask)
    if arr.dtype == bool:
        return arr, None, None
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a LungMask, a bool mask or an integer label array, got {arr.dtype}")
    return arr > 0, arr, None


def check_prob(infection_prob, shape, name="infection_prob") -> np.ndarray:
    p = np.asarray(infection_prob, dtype=np.float64)
    if p.shape != tuple(shape):
        raise ValueError(f"{name} has shape {p.shape}, lung mask has shape {tuple(shape)}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or Inf")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1], got [{p.min():.3g}, {p.max():.3g}]")
    return p


def slice_record(infection_prob, lung_mask, *, allow_flagged: bool = False) -> dict:
    """Numerator and denominator of the severity ratio for one slice or volume.

    Parameters
    ----------
    infection_prob : array of float, shape (H, W) or (D, H, W)
        Soft infection prediction in [0, 1] (a binary mask also works).
    lung_mask : LungMask or bool / integer label array of the same shape
        Lung parenchyma; integer labels > 0 count as lung.
    allow_flagged : bool, default False
        Score a :class:`~ssinfnet.severity.lungs.LungMask` that carries flags (with a warning) instead of refusing.

    Returns
    -------
    dict
        ``infection_sum`` (Σ prediction inside the lungs, pixels), ``lung_area`` (pixels) and ``ratio``
        (their quotient, NaN when the lung area is 0).
    """
    mask, _, _ = _lung_arrays(lung_mask, allow_flagged)
    p = check_prob(infection_prob, mask.shape)
    area = int(mask.sum())
    s = float(p[mask].sum())
    return {"infection_sum": s, "lung_area": area, "ratio": s / area if area else float("nan")}


def severity_ratio(infection_prob, lung_mask, *, allow_flagged: bool = False) -> float:
    """Severity ratio = Σ soft infection prediction inside the lungs / lung area (the paper's formula).

    Parameters
    ----------
    infection_prob : array of float, shape (H, W) or (D, H, W)
        Soft infection prediction in [0, 1].
    lung_mask : LungMask or bool / integer label array of the same shape
        Lung parenchyma.
    allow_flagged : bool, default False
        Accept a flagged LungMask (warns) instead of raising.

    Returns
    -------
    float
        Fraction of lung involved, in [0, 1].

    Raises
    ------
    ValueError
        Shape mismatch, values outside [0, 1] or non-finite, an empty lung mask, or a flagged LungMask.
    """
    rec = slice_record(infection_prob, lung_mask, allow_flagged=allow_flagged)
    if rec["lung_area"] == 0:
        raise ValueError("lung_mask is empty: the severity ratio is undefined")
    return rec["ratio"]


def aggregate_ratios(df: pd.DataFrame, by, *, allow_flagged: bool = False) -> pd.DataFrame:
    """Per-volume or per-patient severity: Σ infection over slices / Σ lung area over slices.

    This weights every slice by its lung area (the ratio of the whole lung), unlike a mean of slice ratios.

    Parameters
    ----------
    df : DataFrame
        One row per slice with columns ``infection_sum`` and ``lung_area`` (pixels, see
        :func:`slice_record`), the grouping column(s) ``by`` and optionally a bool ``flagged`` column.
    by : str or list of str
        Grouping column(s), e.g. ``"volume"`` or ``"patient_id"``.
    allow_flagged : bool, default False
        Include flagged slices instead of raising.

    Returns
    -------
    DataFrame
        Indexed by ``by``, columns ``infection_sum``, ``lung_area``, ``ratio``, ``n_slices``, ``n_flagged``.
    """
    cols = [by] if isinstance(by, str) else list(by)
    need = cols + ["infection_sum", "lung_area"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing}")
    if not np.all(np.isfinite(df[["infection_sum", "lung_area"]].to_numpy(float))):
        raise ValueError("df has NaN/Inf in infection_sum or lung_area")
    if (df["lung_area"] < 0).any() or (df["infection_sum"] < 0).any():
        raise ValueError("df has negative infection_sum or lung_area")
    flagged = df["flagged"].astype(bool) if "flagged" in df.columns else pd.Series(False, index=df.index)
    if flagged.any() and not allow_flagged:
        raise ValueError(f"df has {int(flagged.sum())} flagged slice(s); drop them with a reason or pass "
                         "allow_flagged=True")
    work = df.assign(_flag=flagged.astype(int))
    g = work.groupby(cols, sort=True)
    out = pd.DataFrame({
        "infection_sum": g["infection_sum"].sum(),
        "lung_area": g["lung_area"].sum(),
        "n_slices": g.size(),
        "n_flagged": g["_flag"].sum(),
    })
    with np.errstate(invalid="ignore", divide="ignore"):
        out.insert(2, "ratio", np.where(out["lung_area"] > 0, out["infection_sum"] / out["lung_area"], np.nan))
    return out


def check_bins(bins) -> np.ndarray:
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size == 0 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"bins must be a non-empty, finite, strictly increasing sequence, got {bins!r}")
    return edges


def classify(ratio, bins: Sequence[float] = PAPER_BINS):
    """Severity class of a ratio (or array of ratios).

    Parameters
    ----------
    ratio : float or array of float
        Involvement fractions in [0, 1]; NaN is refused.
    bins : sequence of float, default :data:`PAPER_BINS`
        Increasing edges; ``len(bins) + 1`` classes.  A ratio exactly on an edge goes to the upper
        class (``bins[i-1] <= ratio < bins[i]`` → ``i``).  Use :data:`CT_BINS` for the 5 standard classes.

    Returns
    -------
    int or ndarray of int
        Class index in ``0 .. len(bins)``; an int for scalar input.
    """
    edges = check_bins(bins)
    r = np.asarray(ratio, dtype=float)
    if np.any(np.isnan(r)):
        raise ValueError("ratio contains NaN (e.g. an empty or flagged lung mask); classify defined ratios only")
    cls = np.searchsorted(edges, r, side="right")
    return int(cls) if cls.ndim == 0 else cls.astype(int)


def _zone_bands(lung: np.ndarray, axis: int, zones: int) -> np.ndarray:
    """Zone index 0..zones-1 per pixel of `lung`, equal bands along `axis` over the lung's own extent."""
    idx = np.nonzero(np.any(lung, axis=tuple(a for a in range(lung.ndim) if a != axis)))[0]
    lo, hi = idx.min(), idx.max() + 1
    coord = np.arange(lung.shape[axis])
    band = np.clip(((coord - lo) * zones) // (hi - lo), 0, zones - 1)
    shape = [1] * lung.ndim
    shape[axis] = -1
    return np.broadcast_to(band.reshape(shape), lung.shape)


def regional_score(infection_prob, lung_mask, *, zones: int = 3, zone_axis: int | None = None,
                   bins: Sequence[float] = REGION_BINS, allow_flagged: bool = False):
    """Regional CT severity score (CT-SS): each lung split into zones, each zone scored 0/1/2, summed.

    Parameters
    ----------
    infection_prob : array of float, shape (H, W) or (D, H, W)
        Soft infection prediction in [0, 1].
    lung_mask : LungMask or integer label array
        Lung labels (1 and 2 for the two lungs, 0 background).  A plain bool mask is refused: the score
        needs the two lungs apart.
    zones : int, default 3
        Equal bands per lung along ``zone_axis``, spanning that lung's own extent (so upper / middle /
        lower thirds of each lung).
    zone_axis : int, optional
        Axis cut into zones.  Default: axis 0 for volumes (axial levels); for 2-D slices the in-plane axis
        *perpendicular* to the line joining the two lungs (LungMask.lung_axis), so zones are
        anterior→posterior bands in a standard slice and still sensible in rotated crops.
    bins : sequence of float, default :data:`REGION_BINS`
        Involvement edges of the zone scores: < 0.1 % → 0, < 50 % → 1, >= 50 % → 2 (edge → upper).
    allow_flagged : bool, default False
        Accept a flagged LungMask.

    Returns
    -------
    total : int
        Sum of the zone scores, in ``0 .. 2 * zones * n_lungs`` for the default bins.
    per_region : DataFrame
        One row per (lung, zone): ``lung`` label, ``zone`` index (0 = lowest coordinate), ``area``
        (pixels), ``involvement`` (fraction), ``score``.  Zones without lung pixels get area 0,
        involvement NaN and score 0.
    """
    if not isinstance(zones, (int, np.integer)) or zones < 1:
        raise ValueError(f"zones must be a positive integer, got {zones!r}")
    mask, labels, lung_axis = _lung_arrays(lung_mask, allow_flagged)
    if labels is None:
        raise ValueError("lung_mask must carry lung labels (LungMask or integer label array), not a bool mask")
    p = check_prob(infection_prob, mask.shape)
    if mask.ndim not in (2, 3):
        raise ValueError(f"lung_mask must be 2-D or 3-D, got shape {mask.shape}")
    if zone_axis is None:
        if mask.ndim == 3:
            zone_axis = 0
        else:
            if lung_axis is None:
                lung_axis = _separation_axis(labels)
            zone_axis = 1 - lung_axis
    if not 0 <= zone_axis < mask.ndim:
        raise ValueError(f"zone_axis must be in [0, {mask.ndim}), got {zone_axis}")
    rows = []
    for lab in sorted(int(v) for v in np.unique(labels) if v > 0):
        lung = labels == lab
        band = _zone_bands(lung, zone_axis, zones)
        for z in range(zones):
            region = lung & (band == z)
            area = int(region.sum())
            inv = float(p[region].sum() / area) if area else float("nan")
            score = classify(inv, bins) if area else 0
            rows.append({"lung": lab, "zone": z, "area": area, "involvement": inv, "score": int(score)})
    table = pd.DataFrame(rows, columns=["lung", "zone", "area", "involvement", "score"])
    return int(table["score"].sum()), table


def _separation_axis(labels: np.ndarray) -> int:
    """In-plane axis (0 rows, 1 columns) along which the centroids of lungs 1 and 2 differ most."""
    cents = [np.argwhere(labels == v).mean(axis=0) for v in (1, 2) if np.any(labels == v)]
    if len(cents) < 2:
        return 1
    d = np.abs(cents[0] - cents[1])
    return int(np.argmax(d[-2:]))
