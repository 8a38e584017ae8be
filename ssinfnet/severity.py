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

from ssinfnet.lungs import LungMask, LungParams, segment_lungs

__all__ = [
    "PAPER_BINS", "PAPER_LABELS", "CT_BINS", "CT_LABELS", "REGION_BINS",
    "severity_ratio", "slice_record", "aggregate_ratios", "classify", "regional_score",
    "agreement", "agreement_table", "patient_severity",
    "simulated_prediction", "load_predictions", "find_predictions", "severity_frame", "agreement_suite", "table_vi_layout",
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


# ----------------------------------------------------------------------------- test-slice severity


def simulated_prediction(mask, sigma: float = 2.0, seed: int = 0, noise: float = 0.2) -> np.ndarray:
    """A stand-in for a model's soft prediction: the ground-truth mask blurred, with seeded noise.

    Used only when no model prediction is available; every figure built on it must say so.

    Parameters
    ----------
    mask : array of bool, shape (H, W)
        Ground-truth infection.
    sigma : float, default 2.0
        Gaussian blur, pixels (soft, slightly spread edges like a network's output).
    seed : int, default 0
        Seed of the noise.
    noise : float, default 0.2
        Relative amplitude of smooth multiplicative noise (``blur * (1 + noise * n)``, n smooth with unit
        SD); 0 gives the plain blur.  Multiplicative, so an empty mask stays exactly 0.

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1]
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    p = m.astype(np.float64)
    p = ndi.gaussian_filter(p, sigma) if sigma > 0 else p
    if noise > 0:
        n = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(m.shape), max(sigma, 1.0))
        sd = n.std()
        p = p * (1 + noise * (n / sd if sd > 0 else n))
    return np.clip(p, 0.0, 1.0).astype(np.float32)


def load_predictions(npz_path, samples) -> list[np.ndarray]:
    """Infection probability maps from an ``.npz`` (one array per slice id), aligned with ``samples``.

    Parameters
    ----------
    npz_path : path
        ``.npz`` with key = ``slice_id``, value = float (H, W) probability at the slice's own size (as
        written by the evaluation chapter).  Keys of other slices are ignored.
    samples : sequence of Sample
        The slices to score, in order.

    Returns
    -------
    list of ndarray of float32, shape (H, W) each, values in [0, 1]

    Raises
    ------
    ValueError
        Missing file, slice ids absent from the file (listed), a map whose shape differs from its
        image, NaN/Inf or values outside [0, 1] (naming the slice).
    """
    from pathlib import Path

    path = Path(npz_path)
    if not path.is_file():
        raise ValueError(f"{path}: prediction file not found")
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        missing = [s.slice_id for s in samples if s.slice_id not in keys]
        if missing:
            raise ValueError(f"{path}: no prediction for {len(missing)} slice(s): {missing[:5]}")
        out = []
        for s in samples:
            p = np.asarray(data[s.slice_id], dtype=np.float32)
            if p.shape != s.image.shape:
                raise ValueError(f"{path}: prediction of {s.slice_id} has shape {p.shape}, image {s.image.shape}")
            if not np.all(np.isfinite(p)):
                raise ValueError(f"{path}: prediction of {s.slice_id} contains NaN or Inf")
            if p.size and (p.min() < 0 or p.max() > 1):
                raise ValueError(f"{path}: prediction of {s.slice_id} outside [0, 1] "
                                 f"([{p.min():.3g}, {p.max():.3g}])")
            out.append(p)
    return out


def find_predictions(npz_path, samples) -> tuple[list[np.ndarray] | None, str]:
    """Predictions of an earlier stage for ``samples`` if they exist and belong to these slices.

    Parameters
    ----------
    npz_path : path or None
        The artifact (e.g. ``ctx.artifact("05_evaluation", "test_predictions")``); None when absent.
    samples : sequence of Sample

    Returns
    -------
    predictions : list of float32 arrays, or None
        As :func:`load_predictions`; None when there is no file or it holds *none* of these slice ids
        (written for another data root, e.g. the synthetic phantoms, in the same run folder).
    note : str
        Why the predictions are absent ("" when found), for the page to print.

    Raises
    ------
    ValueError
        The file holds some but not all of the slice ids, or a map is malformed (see
        :func:`load_predictions`): a partial or broken artifact is an error, not a reason to fall back.
    """
    from pathlib import Path

    if npz_path is None or not Path(npz_path).is_file():
        return None, "no predictions recorded by the evaluation stage in this run folder"
    with np.load(npz_path, allow_pickle=False) as data:
        keys = set(data.files)
    if not any(s.slice_id in keys for s in samples):
        return None, (f"{Path(npz_path).name} holds none of these {len(samples)} slice ids "
                      "(written for another data root in this run folder)")
    return load_predictions(npz_path, samples), ""


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    den = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / den) if den else float("nan")


def severity_frame(samples, predictions, *, params: LungParams | None = None, zones: int = 3):
    """Reference and predicted severity of labelled slices, with lung-mask quality, one row per slice.

    Two lung masks per slice: the *automatic* one (image only: what a deployed pipeline has) and the
    *reference* one (automatic ∪ ground-truth infection, so no labelled lesion falls outside the
    denominator).  Reference severity = ground truth over the reference mask; predicted severity =
    prediction over the automatic mask.  Slices whose automatic mask is flagged stay in the table with
    ``included`` False and a ``reason``.

    Parameters
    ----------
    samples : sequence of Sample
        Slices with ``infection`` (bool (H, W)); ``meta["lungs"]`` (true lungs, phantoms) is used when
        present.
    predictions : sequence of arrays (H, W)
        Soft infection predictions in [0, 1], aligned with ``samples``.
    params : LungParams, optional
        Lung segmentation parameters.
    zones : int, default 3
        Zones per lung of the regional CT severity score.

    Returns
    -------
    frame : DataFrame
        Columns ``slice_id``, ``included``, ``reason``, ``lung_flags``, ``lung_fraction`` (automatic mask /
        image), ``gt_coverage`` (share of GT infection inside the automatic mask, NaN without infection),
        ``lung_dice`` (automatic vs true lungs, NaN when unknown), ``ratio_reference``,
        ``ratio_predicted``, ``ratio_gt_auto`` (GT over the automatic mask: the lung-mask effect alone),
        ``ctss_reference``, ``ctss_predicted`` (regional scores, 0..4*zones).
    masks : dict
        ``slice_id → (automatic LungMask, reference LungMask)``.
    """
    if len(samples) != len(predictions):
        raise ValueError(f"samples ({len(samples)}) and predictions ({len(predictions)}) differ in length")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    rows, masks = [], {}
    for s, pred in zip(samples, predictions):
        if s.infection is None:
            raise ValueError(f"{s.slice_id}: no ground-truth infection mask")
        gt = np.asarray(s.infection, bool)
        pred = _check_prob(pred, gt.shape, name=f"prediction of {s.slice_id}")
        auto = segment_lungs(s.image, params=params)
        ref = segment_lungs(s.image, params=params, include=gt)
        masks[s.slice_id] = (auto, ref)
        truth = s.meta.get("lungs") if isinstance(s.meta, dict) else None
        row = {"slice_id": s.slice_id, "included": auto.ok, "reason": "" if auto.ok else "lung mask flagged",
               "lung_flags": "; ".join(auto.flags), "lung_fraction": auto.area_fraction,
               "gt_coverage": float(auto.mask[gt].mean()) if gt.any() else float("nan"),
               "lung_dice": _dice(auto.mask, np.asarray(truth, bool)) if truth is not None else float("nan")}
        if auto.mask.any():
            row["ratio_reference"] = slice_record(gt.astype(float), ref.mask)["ratio"]
            row["ratio_predicted"] = slice_record(pred, auto.mask)["ratio"]
            row["ratio_gt_auto"] = slice_record(gt.astype(float), auto.mask)["ratio"]
            row["ctss_reference"] = regional_score(gt.astype(float), ref.labels, zones=zones)[0]
            row["ctss_predicted"] = regional_score(pred, auto.labels, zones=zones)[0]
        else:
            row.update(ratio_reference=np.nan, ratio_predicted=np.nan, ratio_gt_auto=np.nan,
                       ctss_reference=np.nan, ctss_predicted=np.nan)
        rows.append(row)
    return pd.DataFrame(rows), masks


def agreement_suite(frame: pd.DataFrame, zones: int = 3) -> dict:
    """Agreement of predicted with reference severity on the included slices of :func:`severity_frame`.

    Returns
    -------
    dict of name → dict from :func:`agreement`
        ``"ratio, paper bins"`` and ``"ratio, CT bins"`` (prediction over the automatic lung mask against
        ground truth over the reference mask); ``"lung mask only, paper bins"`` (ground truth over the
        automatic mask: the error the lung mask alone causes); ``"CT-SS total"`` (regional scores as
        classes 0..4*zones, differences in score points).  Each carries ``n_excluded``.
    """
    need = {"included", "ratio_reference", "ratio_predicted", "ratio_gt_auto", "ctss_reference", "ctss_predicted"}
    if not need <= set(frame.columns):
        raise ValueError(f"frame lacks column(s) {sorted(need - set(frame.columns))}")
    f = frame[frame["included"].astype(bool)]
    if f.empty:
        raise ValueError("frame has no included slice")
    n_ex = int(len(frame) - len(f))
    score_edges = tuple(np.arange(4 * zones) + 0.5)
    out = {
        "ratio, paper bins": agreement(f.ratio_reference, f.ratio_predicted, PAPER_BINS),
        "ratio, CT bins": agreement(f.ratio_reference, f.ratio_predicted, CT_BINS),
        "lung mask only, paper bins": agreement(f.ratio_reference, f.ratio_gt_auto, PAPER_BINS),
        "CT-SS total": agreement(f.ctss_reference.astype(float), f.ctss_predicted.astype(float), score_edges),
    }
    for r in out.values():
        r["n_excluded"] = n_ex
    return out


def table_vi_layout(results: Mapping[str, dict], reference: str) -> pd.DataFrame:
    """Our severity agreement in the layout of the paper's Table VI (micro F1, precision, recall per method).

    Parameters
    ----------
    results : mapping of method name → dict from :func:`agreement` (paper bins)
    reference : str
        What the reference labels are (e.g. "image-derived: ground-truth infection / lung area"); the
        paper's were clinical severity labels, so the numbers are not comparable one to one.

    Returns
    -------
    DataFrame
        Index ``method``; columns ``micro F1``, ``precision``, ``recall``, ``n``, ``reference labels``.
    """
    if not results:
        raise ValueError("results is empty")
    rows = {name: {"micro F1": r["micro_f1"], "precision": r["micro_precision"], "recall": r["micro_recall"],
                   "n": r["n"], "reference labels": reference} for name, r in results.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "method"
    return out
