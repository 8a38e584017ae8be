"""Agreement of predicted and reference severity: confusion, weighted kappa, Spearman, the Table VI layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .scores import CT_BINS, PAPER_BINS, aggregate_ratios, check_bins, classify


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
    k = len(check_bins(bins)) + 1
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
    out["n"] = out["n"].astype("Int64")  # the paper's rows have no n: <NA>, ours stay integers
    out.index.name = "method"
    return out


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


def table_vi_layout(results: Mapping[str, dict], reference: str,
                    published: Mapping[str, float] | None = None, published_reference: str = "",
                    published_source: str = "") -> pd.DataFrame:
    """Our severity agreement in the layout of the paper's Table VI (micro F1, precision, recall per method),
    with the paper's rows beside ours when given.

    Parameters
    ----------
    results : mapping of method name → dict from :func:`agreement` (paper bins)
    reference : str
        What our reference labels are (e.g. "image-derived: ground-truth infection / lung area"); the
        paper's were clinical severity labels, so the numbers are not comparable one to one.
    published : mapping of method name → micro F1, optional
        The paper's printed values (micro-averaged, so precision = recall = F1); their rows are named
        "<method> (paper)" and marked "not like-for-like".
    published_reference, published_source : str
        The paper's reference labels and where the values are printed (e.g. "draft Table VI").

    Returns
    -------
    DataFrame
        Index ``method``; columns ``micro F1``, ``precision``, ``recall``, ``n``, ``reference labels``,
        ``source`` ("ours" or the paper's source) and ``like-for-like`` ("" for ours, "not like-for-like" for the
        paper's: its reference labels, data and unit differ from ours).
    """
    if not results:
        raise ValueError("results is empty")
    rows = {name: {"micro F1": r["micro_f1"], "precision": r["micro_precision"], "recall": r["micro_recall"],
                   "n": r["n"], "reference labels": reference, "source": "ours", "like-for-like": ""}
            for name, r in results.items()}
    for name, f1 in (published or {}).items():
        if not 0 <= f1 <= 1:
            raise ValueError(f"published micro F1 of {name!r} must lie in [0, 1], got {f1}")
        rows[f"{name} (paper)"] = {"micro F1": f1, "precision": f1, "recall": f1, "n": np.nan,
                                   "reference labels": published_reference, "source": published_source,
                                   "like-for-like": "not like-for-like"}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["n"] = out["n"].astype("Int64")  # the paper's rows have no n: <NA>, ours stay integers
    out.index.name = "method"
    return out
