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
* Lung masks that :func:`ssinfnet.lungs.segment_lungs` flagged are refused unless the caller passes
  ``allow_flagged=True``: a flagged mask is never scored silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import warnings

import numpy as np
import pandas as pd

from ssinfnet.lungs import LungMask

__all__ = [
    "PAPER_BINS", "PAPER_LABELS", "CT_BINS", "CT_LABELS", "REGION_BINS",
    "severity_ratio", "slice_record", "aggregate_ratios", "classify", "regional_score",
    "agreement", "agreement_table", "patient_severity",
]

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


def _check_prob(infection_prob, shape, name="infection_prob") -> np.ndarray:
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
        Score a :class:`~ssinfnet.lungs.LungMask` that carries flags (with a warning) instead of refusing.

    Returns
    -------
    dict
        ``infection_sum`` (Σ prediction inside the lungs, pixels), ``lung_area`` (pixels) and ``ratio``
        (their quotient, NaN when the lung area is 0).
    """
    mask, _, _ = _lung_arrays(lung_mask, allow_flagged)
    p = _check_prob(infection_prob, mask.shape)
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


def _check_bins(bins) -> np.ndarray:
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
    edges = _check_bins(bins)
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
    p = _check_prob(infection_prob, mask.shape)
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


def _confusion(ref: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (ref, pred), 1)
    return cm


def _quadratic_kappa(cm: np.ndarray) -> float:
    k = cm.shape[0]
    n = cm.sum()
    i, j = np.indices((k, k))
    w = (i - j) ** 2 / (k - 1) ** 2
    expected = np.outer(cm.sum(1), cm.sum(0)) / n
    den = (w * expected).sum()
    return float(1 - (w * cm).sum() / den) if den > 0 else float("nan")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def agreement(reference_ratios, predicted_ratios, bins: Sequence[float] = PAPER_BINS) -> dict:
    """Agreement of predicted with reference severity (classes and ratios).

    Parameters
    ----------
    reference_ratios, predicted_ratios : array-like of float, shape (n,)
        Ratios in [0, 1] of the same n items (slices, volumes or patients); no NaN.
    bins : sequence of float, default :data:`PAPER_BINS`
        Class edges for :func:`classify`.

    Returns
    -------
    dict
        ``n``; class agreement: ``accuracy``, ``micro_precision``, ``micro_recall``, ``micro_f1`` (all
        equal to accuracy for single-label multi-class data; reported because the paper does),
        ``macro_f1``, ``kappa_quadratic`` (NaN when undefined, e.g. one class only), ``confusion``
        (ndarray (k, k), rows reference, columns predicted, k = len(bins) + 1); ratio agreement:
        ``spearman_rho`` (NaN for constant input), ``mean_diff`` (predicted − reference, bias),
        ``sd_diff`` (ddof=1), ``loa_low`` / ``loa_high`` (Bland–Altman limits, mean ± 1.96 SD).
    """
    ref = np.asarray(reference_ratios, dtype=float).ravel()
    pred = np.asarray(predicted_ratios, dtype=float).ravel()
    if ref.shape != pred.shape:
        raise ValueError(f"reference_ratios ({ref.size}) and predicted_ratios ({pred.size}) differ in length")
    if ref.size == 0:
        raise ValueError("reference_ratios is empty")
    k = len(_check_bins(bins)) + 1
    rc, pc = classify(ref, bins), classify(pred, bins)
    cm = _confusion(rc, pc, k)
    tp = np.diag(cm).astype(float)
    # Micro averaging pools TP/FP/FN over classes; with one label per item FP total = FN total = errors.
    micro_p = tp.sum() / cm.sum()
    micro_r = tp.sum() / cm.sum()
    micro_f1 = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r > 0 else 0.0
    present = (cm.sum(0) + cm.sum(1)) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_c = np.where(present, 2 * tp / (cm.sum(0) + cm.sum(1)), 0.0)
    diff = pred - ref
    sd = float(diff.std(ddof=1)) if diff.size > 1 else float("nan")
    md = float(diff.mean())
    return {
        "n": int(ref.size),
        "accuracy": float(tp.sum() / cm.sum()),
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "micro_f1": float(micro_f1),
        "macro_f1": float(f1_c[present].mean()),
        "kappa_quadratic": _quadratic_kappa(cm),
        "confusion": cm,
        "spearman_rho": _spearman(ref, pred) if ref.size > 1 else float("nan"),
        "mean_diff": md,
        "sd_diff": sd,
        "loa_low": md - 1.96 * sd,
        "loa_high": md + 1.96 * sd,
    }


def agreement_table(results: Mapping[str, dict]) -> pd.DataFrame:
    """Scalar agreement metrics of several methods as one table.

    Parameters
    ----------
    results : mapping of method name → dict from :func:`agreement`

    Returns
    -------
    DataFrame
        One row per method (index ``method``), one column per scalar metric (the confusion matrix is left out).
    """
    if not results:
        raise ValueError("results is empty")
    rows = {name: {k: v for k, v in r.items() if k != "confusion"} for name, r in results.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "method"
    return out


def patient_severity(table_of_slices: pd.DataFrame, clinical_df: pd.DataFrame, *,
                     patient_col: str = "patient_id", score_col: str = "severity_score",
                     bins: Sequence[float] = PAPER_BINS, allow_flagged: bool = False) -> pd.DataFrame:
    """Per-patient predicted severity next to the clinical 0/1/2 score (the iCTCF path).

    Parameters
    ----------
    table_of_slices : DataFrame
        One row per slice: ``patient_col``, ``infection_sum``, ``lung_area`` (see :func:`slice_record`),
        optional bool ``flagged``.
    clinical_df : DataFrame
        One row per patient with ``patient_col`` and ``score_col`` (0, 1, 2 or NaN).
    patient_col, score_col : str
        Column names.
    bins : sequence of float, default :data:`PAPER_BINS`
        Edges turning the patient ratio into ``predicted_class``.
    allow_flagged : bool, default False
        Passed to :func:`aggregate_ratios`.

    Returns
    -------
    DataFrame
        One row per patient with slices (index ``patient_col``): ``infection_sum``, ``lung_area``,
        ``ratio``, ``n_slices``, ``n_flagged``, ``predicted_class``, ``clinical_score`` (float, NaN when
        unknown) and ``reason`` (why the clinical score is missing, else ""); no patient is dropped.
    """
    for name, df, cols in (("table_of_slices", table_of_slices, [patient_col]),
                           ("clinical_df", clinical_df, [patient_col, score_col])):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {missing}")
    scores = pd.to_numeric(clinical_df[score_col], errors="coerce")
    bad = clinical_df[score_col].notna() & ~scores.isin([0, 1, 2])
    if bad.any():
        raise ValueError(f"clinical_df[{score_col!r}] must be 0, 1, 2 or NaN; bad values "
                         f"{sorted(map(str, clinical_df.loc[bad, score_col].unique()))[:5]}")
    dup = clinical_df[patient_col].duplicated()
    if dup.any():
        raise ValueError(f"clinical_df has duplicate {patient_col} {list(clinical_df.loc[dup, patient_col][:5])}")
    out = aggregate_ratios(table_of_slices, patient_col, allow_flagged=allow_flagged)
    defined = out["ratio"].notna()
    out["predicted_class"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out.loc[defined, "predicted_class"] = classify(out.loc[defined, "ratio"].to_numpy(), bins)
    lookup = pd.Series(scores.to_numpy(), index=clinical_df[patient_col].to_numpy())
    known = out.index.isin(lookup.index)
    out["clinical_score"] = [float(lookup[p]) if k else np.nan for p, k in zip(out.index, known)]
    reasons = []
    for k, score, ok in zip(known, out["clinical_score"], defined):
        why = [] if k else ["patient not in clinical table"]
        if k and np.isnan(score):
            why.append("clinical score missing")
        if not ok:
            why.append("no lung area")
        reasons.append("; ".join(why))
    out["reason"] = reasons
    return out
