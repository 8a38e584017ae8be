"""Segmentation metrics under the two evaluation protocols of the book.

*Paper protocol* (Fung et al. 2021): per image and class at one threshold (0.5): Dice (F1), IoU,
recall, precision and pixel ROC AUC; mean +/- 1.96 SE over images. Functions return one row per
image x class and aggregate only in :func:`summarise`.

*Inf-Net protocol* (the MATLAB ``EvaluationTool`` of Fan et al., IEEE TMI 2020): min-max normalised
maps compared with the binary GT at the 256 thresholds of MATLAB's ``1:-1/255:0``; Dice, sensitivity,
specificity and E-measure curves, S-measure (Fan et al., ICCV 2017), E-measure (Fan et al., IJCAI 2018),
MAE and an adaptive-threshold Dice. The rules are ported from the tool's behaviour, including its
quirks (specificity is 0 when TP = 0; E-measure divides by N - 1 + eps so it can exceed 1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps
PAPER_METRICS = ("dice", "iou", "recall", "precision", "auc")
MULTICLASS_NAMES = ("background", "ggo", "consolidation")


# --------------------------------------------------------------------------------------------------
# Paper protocol
# --------------------------------------------------------------------------------------------------
def _as_class_first(prob: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return prob as float64 (C, H, W) and gt as bool (C, H, W)."""
    p = np.asarray(prob, dtype=np.float64)
    g = np.asarray(gt)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"prob must be (H, W) or (C, H, W), got shape {np.shape(prob)}")
    if not np.isfinite(p).all():
        raise ValueError("prob contains NaN or Inf")
    n_classes = p.shape[0]
    if g.ndim == 2 and g.dtype != bool and n_classes > 1:
        labels = g.astype(np.int64)
        bad = np.setdiff1d(np.unique(labels), np.arange(n_classes))
        if bad.size:
            raise ValueError(f"gt label values {bad.tolist()} outside 0..{n_classes - 1}")
        g = labels[None] == np.arange(n_classes)[:, None, None]
    else:
        if g.ndim == 2:
            g = g[None]
        if g.dtype != bool:
            vals = np.unique(g)
            if not np.isin(vals, (0, 1)).all():
                raise ValueError(f"gt must be boolean or 0/1, got values {vals[:10].tolist()}")
            g = g.astype(bool)
    if g.shape != p.shape:
        raise ValueError(f"gt shape {g.shape} differs from prob shape {p.shape}")
    return p, g


def confusion_counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pixel counts TP, FP, FN, TN per class.

    Parameters
    ----------
    pred, gt : bool arrays of shape (C, H, W) (or (H, W), treated as C = 1)

    Returns
    -------
    ndarray of shape (C, 4), int64, columns TP, FP, FN, TN.
    """
    p = np.asarray(pred, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} differs from gt shape {g.shape}")
    if p.ndim == 2:
        p, g = p[None], g[None]
    axes = (1, 2)
    tp = (p & g).sum(axes)
    fp = (p & ~g).sum(axes)
    fn = (~p & g).sum(axes)
    tn = (~p & ~g).sum(axes)
    return np.stack([tp, fp, fn, tn], axis=1).astype(np.int64)


def overlap_scores(pred: np.ndarray, gt: np.ndarray, ignore_empty: bool = True) -> dict[str, np.ndarray]:
    """Dice (F1), IoU, recall and precision per class of one image.

    Parameters
    ----------
    pred, gt : bool arrays of shape (C, H, W) or (H, W)
    ignore_empty : bool, default=True
        Rule for a class whose GT is empty in this image. True: all four scores are NaN (the image is
        left out of that class's mean and counted as excluded, MONAI's ``ignore_empty``). False: an
        empty prediction scores 1.0 on all four, any false positive scores 0.0 on all four.

    Returns
    -------
    dict name -> float64 array of shape (C,), values in [0, 1] or NaN.

    Notes
    -----
    With a non-empty GT and an empty prediction, precision (0/0) is 0, like Dice and recall.
    """
    counts = confusion_counts(pred, gt).astype(np.float64)
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    empty_gt = (tp + fn) == 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {
            "dice": 2 * tp / (2 * tp + fp + fn),
            "iou": tp / (tp + fp + fn),
            "recall": tp / (tp + fn),
            "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0),
        }
    fill = np.nan if ignore_empty else None
    for name, v in out.items():
        if fill is None:
            v[empty_gt] = np.where(fp[empty_gt] == 0, 1.0, 0.0)
        else:
            v[empty_gt] = np.nan
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the pixel ROC curve (ties count one half, as the Mann-Whitney U statistic).

    Parameters
    ----------
    scores : float array, any shape
    labels : bool array of the same shape

    Returns
    -------
    float in [0, 1]; NaN when ``labels`` holds a single class (empty or full GT), where AUC is undefined.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores size {s.size} differs from labels size {y.size}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks for ties
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ROC curve: false- and true-positive rates at every distinct score, from (0, 0) to (1, 1).

    Returns
    -------
    fpr, tpr : float64 arrays of equal length; NaN-filled (length 2) when ``labels`` is single-class.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.full(2, np.nan), np.full(2, np.nan)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


def paper_image_scores(prob: np.ndarray, gt: np.ndarray, threshold: float | None = 0.5,
                       ignore_empty: bool = True) -> dict[str, np.ndarray]:
    """Paper-protocol scores of one image, per class.

    Parameters
    ----------
    prob : float array (H, W) or (C, H, W), probabilities in [0, 1]
    gt : bool (H, W) / (C, H, W), or for C > 1 an integer label map (H, W) with values 0..C-1
    threshold : float or None, default=0.5
        ``prob >= threshold`` is foreground per class; None takes the argmax over classes (C > 1).
    ignore_empty : bool, default=True
        Empty-GT rule for Dice/IoU/recall/precision, see :func:`overlap_scores`. AUC of a class with
        empty or full GT is always NaN.

    Returns
    -------
    dict metric -> float64 array (C,) for ``dice, iou, recall, precision, auc``.
    """
    p, g = _as_class_first(prob, gt)
    if threshold is None:
        if p.shape[0] < 2:
            raise ValueError("threshold=None (argmax) needs C > 1 classes")
        pred = p.argmax(0)[None] == np.arange(p.shape[0])[:, None, None]
    else:
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        pred = p >= threshold
    out = overlap_scores(pred, g, ignore_empty=ignore_empty)
    out["auc"] = np.array([roc_auc(p[c], g[c]) for c in range(p.shape[0])])
    return out


def paper_scores(probs: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                 class_names: Sequence[str] | None = None, image_ids: Sequence[str] | None = None,
                 threshold: float | None = 0.5, ignore_empty: bool = True) -> pd.DataFrame:
    """Paper-protocol scores for a set of images, one row per image x class (no averaging).

    Parameters
    ----------
    probs, gts : sequences of per-image arrays, see :func:`paper_image_scores` (sizes may differ
        between images)
    class_names : names of the C classes; default ``("infection",)`` for C = 1 and
        ``("background", "ggo", "consolidation")`` for C = 3
    image_ids : names of the images; default ``"0", "1", ...``
    threshold, ignore_empty : see :func:`paper_image_scores`

    Returns
    -------
    DataFrame with columns ``image, class, dice, iou, recall, precision, auc``. For C > 1 two
    extra rows per image, ``overall_with_background`` and ``overall_without_background``, hold the
    per-image mean over classes (NaN classes skipped; the paper's "overall" includes background).
    """
    if len(probs) != len(gts):
        raise ValueError(f"probs has {len(probs)} images but gts has {len(gts)}")
    if len(probs) == 0:
        raise ValueError("probs is empty")
    ids = [str(i) for i in range(len(probs))] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != len(probs):
        raise ValueError(f"image_ids has {len(ids)} names for {len(probs)} images")
    rows = []
    for name, prob, gt in zip(ids, probs, gts):
        sc = paper_image_scores(prob, gt, threshold=threshold, ignore_empty=ignore_empty)
        n_classes = len(sc["dice"])
        names = _class_names(class_names, n_classes)
        for c in range(n_classes):
            rows.append({"image": name, "class": names[c], **{m: float(sc[m][c]) for m in PAPER_METRICS}})
        if n_classes > 1:
            for label, first in (("overall_with_background", 0), ("overall_without_background", 1)):
                rows.append({"image": name, "class": label,
                             **{m: _nanmean(sc[m][first:]) for m in PAPER_METRICS}})
    return pd.DataFrame(rows, columns=["image", "class", *PAPER_METRICS])


def _class_names(class_names, n_classes):
    if class_names is None:
        if n_classes == 1:
            return ("infection",)
        if n_classes == 3:
            return MULTICLASS_NAMES
        return tuple(f"class{c}" for c in range(n_classes))
    if len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {n_classes} classes")
    return tuple(class_names)


def _nanmean(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")


def summarise(scores: pd.DataFrame, metrics: Sequence[str] = PAPER_METRICS, z: float = 1.96) -> pd.DataFrame:
    """Mean +/- z * SE over images, per class and metric (NaN scores left out and counted).

    Parameters
    ----------
    scores : DataFrame from :func:`paper_scores`
    metrics : metric columns to summarise
    z : float, default=1.96 (95 % normal interval)

    Returns
    -------
    DataFrame, one row per class x metric: ``class, metric, mean, se, ci_low, ci_high, n, n_excluded``;
    SE = sample SD (ddof=1) / sqrt(n); NaN SE when n < 2.
    """
    missing = [m for m in ("class", *metrics) if m not in scores.columns]
    if missing:
        raise ValueError(f"scores lacks columns {missing}")
    rows = []
    for cls, group in scores.groupby("class", sort=False):
        for m in metrics:
            v = group[m].to_numpy(dtype=np.float64)
            ok = v[~np.isnan(v)]
            n = ok.size
            mean = float(ok.mean()) if n else float("nan")
            se = float(ok.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
            rows.append({"class": cls, "metric": m, "mean": mean, "se": se,
                         "ci_low": mean - z * se, "ci_high": mean + z * se,
                         "n": int(n), "n_excluded": int(v.size - n)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Inf-Net protocol
# --------------------------------------------------------------------------------------------------
def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for a non-zero step, built from both ends as MATLAB does.

    Element k (0-based) of the first half is ``a + k*d``; element n-k of the second half is
    ``c - k*d`` where c is the last point (b when ``a + n*d`` lies within 2*eps*max(|a|, |b|) of b);
    for even n the middle element is ``(a + c) / 2``. For ``1:-1/255:0`` this gives
    ``t_k = 1 + k*(-1/255)`` for k <= 127 and ``t_k = (255 - k) * (1/255)`` for k >= 128, which
    differ in the last bit from ``1 - k/255`` or ``v/255`` for some k (ties matter for 8-bit maps).
    """
    a, d, b = float(a), float(d), float(b)
    if d == 0 or (a < b and d < 0) or (a > b and d > 0):
        return np.zeros(0)
    tol = 2.0 * EPS * max(abs(a), abs(b))
    n = int(np.floor((b - a) / d + tol))
    c = a + n * d
    if abs(c - b) <= tol:
        c = b
    k = np.arange(n // 2 + 1, dtype=np.float64)
    v = np.empty(n + 1)
    v[k.astype(int)] = a + k * d
    v[(n - k).astype(int)] = c - k * d
    if n % 2 == 0:
        v[n // 2] = (a + c) / 2.0
    return v


def infnet_thresholds() -> np.ndarray:
    """The 256 thresholds of MATLAB's ``1:-1/255:0`` (descending, float64, first 1.0, last 0.0)."""
    return matlab_colon(1.0, -1.0 / 255.0, 0.0)


def minmax_normalise(pred: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation as MATLAB's ``mapminmax(x, 0, 1)``.

    Computes ``(x - min) * (1 / (max - min))`` (MATLAB multiplies by a gain rather than dividing);
    a constant map is returned unchanged. Input any real (H, W) array; output float64.
    """
    x = np.asarray(pred, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("pred contains NaN or Inf")
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return x.copy()
    gain = 1.0 / (hi - lo)
    return (x - lo) * gain


def _check_map_gt(smap: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(smap, dtype=np.float64)
    g = np.asarray(gt)
    if g.dtype != bool:
        raise ValueError(f"gt must be a bool array, got dtype {g.dtype}")
    if m.shape != g.shape or m.ndim != 2:
        raise ValueError(f"map shape {m.shape} and gt shape {g.shape} must be equal and 2-D")
    if not np.isfinite(m).all():
        raise ValueError("map contains NaN or Inf")
    return m, g


def threshold_counts(smap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray,
                     strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predicted-foreground and true-positive pixel counts at each threshold, without a loop.

    Parameters
    ----------
    smap : float (H, W); gt : bool (H, W)
    thresholds : float (T,)
    strict : bool, default=False
        False counts ``smap >= t`` (Dice/sensitivity/specificity rule), True counts ``smap > t``
        (E-measure rule). Comparisons are exact float64 comparisons via sorted search.

    Returns
    -------
    n_pred, tp : int64 arrays of shape (T,)
    """
    m, g = _check_map_gt(smap, gt)
    t = np.asarray(thresholds, dtype=np.float64)
    side = "right" if strict else "left"
    all_sorted = np.sort(m.ravel())
    pos_sorted = np.sort(m[g])
    n_pred = all_sorted.size - np.searchsorted(all_sorted, t, side=side)
    tp = pos_sorted.size - np.searchsorted(pos_sorted, t, side=side)
    return n_pred.astype(np.int64), tp.astype(np.int64)


def dice_sen_spe_curves(smap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray | None = None
                        ) -> dict[str, np.ndarray]:
    """Dice, sensitivity and specificity of ``smap >= t`` at each threshold (Inf-Net's ``Fmeasure_calu``).

    When TP = 0 at a threshold all three are 0 (specificity included, as the MATLAB tool does).

    Returns
    -------
    dict ``dice, sen, spe`` -> float64 (T,), default T = 256 thresholds of :func:`infnet_thresholds`.
    """
    t = infnet_thresholds() if thresholds is None else thresholds
    m, g = _check_map_gt(smap, gt)
    n_pred, tp = threshold_counts(m, g, t, strict=False)
    n, n_obj = g.size, int(g.sum())
    fn = n_obj - tp
    fp = n_pred - tp
    tn = (n - n_pred) - fn
    hit = tp > 0
    safe = np.where(hit, 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(hit, 2.0 * tp / np.maximum(n_obj + n_pred, safe), 0.0)
        sen = np.where(hit, tp / max(n_obj, 1), 0.0)
        spe = np.where(hit, tn / np.maximum(tn + fp, 1), 0.0)
    return {"dice": dice, "sen": sen, "spe": spe}


def _enhanced_sum(n_pred, tp, n_obj, n):
    """Sum of the enhanced alignment matrix of binary maps given counts (vectorised over thresholds)."""
    n_pred = np.asarray(n_pred, dtype=np.float64)
    tp = np.asarray(tp, dtype=np.float64)
    if n_obj == 0:
        return n - n_pred  # GT all black: enhanced = 1 - FM
    if n_obj == n:
        return n_pred  # GT all white: enhanced = FM
    mu_f = n_pred / n
    mu_g = n_obj / n
    total = np.zeros_like(n_pred)
    cells = ((1.0, 1.0, tp), (1.0, 0.0, n_pred - tp), (0.0, 1.0, n_obj - tp),
             (0.0, 0.0, n - n_pred - (n_obj - tp)))
    for f, gv, count in cells:
        af, ag = f - mu_f, gv - mu_g
        align = 2.0 * (ag * af) / (ag * ag + af * af + EPS)
        total = total + count * ((align + 1.0) ** 2) / 4.0
    return total


def e_measure(fm: np.ndarray, gt: np.ndarray) -> float:
    """Enhanced-alignment measure of a binary map (Fan et al., IJCAI 2018), as the MATLAB tool.

    Parameters
    ----------
    fm, gt : bool (H, W)

    Returns
    -------
    float; sum of the enhanced alignment matrix / (H*W - 1 + eps) (so it may slightly exceed 1).
    Empty GT: enhanced = 1 - fm; full GT: enhanced = fm.
    """
    f = np.asarray(fm, dtype=bool)
    g = np.asarray(gt, dtype=bool)
    if f.shape != g.shape:
        raise ValueError(f"fm shape {f.shape} differs from gt shape {g.shape}")
    n = g.size
    total = _enhanced_sum(np.array([f.sum()]), np.array([(f & g).sum()]), int(g.sum()), n)
    return float(total[0] / (n - 1 + EPS))


def e_measure_curve(smap: np.ndarray, gt: np.ndarray, thresholds: np.ndarray | None = None) -> np.ndarray:
    """E-measure of ``smap > t`` at each threshold (vectorised), float64 (T,)."""
    t = infnet_thresholds() if thresholds is None else thresholds
    m, g = _check_map_gt(smap, gt)
    n_pred, tp = threshold_counts(m, g, t, strict=True)
    return _enhanced_sum(n_pred, tp, int(g.sum()), g.size) / (g.size - 1 + EPS)


def _matlab_round(x: float) -> int:
    return int(np.floor(x + 0.5))  # half away from zero for x >= 0


def _object_score(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    x = float(values.mean())
    sigma = float(values.std(ddof=1)) if values.size > 1 else 0.0  # MATLAB std of a scalar is 0
    return 2.0 * x / (x * x + 1.0 + sigma + EPS)


def s_object(smap: np.ndarray, gt: np.ndarray) -> float:
    """Object-aware part of the S-measure: mu * O_FG + (1 - mu) * O_BG (Fan et al., ICCV 2017)."""
    m, g = _check_map_gt(smap, gt)
    u = float(g.mean())
    return u * _object_score(m[g]) + (1.0 - u) * _object_score(1.0 - m[~g])


def _ssim_region(p: np.ndarray, g: np.ndarray) -> float:
    n = p.size
    x, y = float(p.mean()), float(g.mean())
    dp, dg = p - x, g - y
    sx2 = float((dp * dp).sum()) / (n - 1 + EPS)
    sy2 = float((dg * dg).sum()) / (n - 1 + EPS)
    sxy = float((dp * dg).sum()) / (n - 1 + EPS)
    alpha = 4.0 * x * y * sxy
    beta = (x * x + y * y) * (sx2 + sy2)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def s_region(smap: np.ndarray, gt: np.ndarray) -> float:
    """Region-aware part of the S-measure: SSIM-like scores of the 4 quadrants around the GT centroid.

    Notes
    -----
    The centroid is rounded half away from zero on 1-based coordinates, as MATLAB. A quadrant with
    no pixels (centroid on the last row or column) has weight 0 and is skipped; MATLAB would
    return NaN there (mean of an empty matrix), which would poison the dataset mean.
    """
    m, g = _check_map_gt(smap, gt)
    rows, cols = g.shape
    area = float(g.sum())
    if area == 0:
        X, Y = _matlab_round(cols / 2), _matlab_round(rows / 2)
    else:
        X = _matlab_round(float((g.sum(0) * np.arange(1, cols + 1)).sum()) / area)
        Y = _matlab_round(float((g.sum(1) * np.arange(1, rows + 1)).sum()) / area)
    total = float(rows * cols)
    w1 = X * Y / total
    w2 = (cols - X) * Y / total
    w3 = X * (rows - Y) / total
    w4 = 1.0 - w1 - w2 - w3
    gd = g.astype(np.float64)
    parts = ((slice(0, Y), slice(0, X), w1), (slice(0, Y), slice(X, cols), w2),
             (slice(Y, rows), slice(0, X), w3), (slice(Y, rows), slice(X, cols), w4))
    q = 0.0
    for rs, cs, w in parts:
        p = m[rs, cs]
        if p.size:
            q += w * _ssim_region(p, gd[rs, cs])
    return q


def s_measure(smap: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure S_alpha = alpha * S_object + (1 - alpha) * S_region, clipped at 0.

    Parameters
    ----------
    smap : float (H, W) in [0, 1]; gt : bool (H, W)
    alpha : float, default=0.5

    Returns
    -------
    float; empty GT gives 1 - mean(smap), full GT gives mean(smap).
    """
    m, g = _check_map_gt(smap, gt)
    if m.min() < 0 or m.max() > 1:
        raise ValueError("map values must lie in [0, 1]")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    y = float(g.mean())
    if y == 0:
        return 1.0 - float(m.mean())
    if y == 1:
        return float(m.mean())
    q = alpha * s_object(m, g) + (1.0 - alpha) * s_region(m, g)
    return max(q, 0.0)


def mae(smap: np.ndarray, gt: np.ndarray) -> float:
    """Mean absolute error between a map in [0, 1] and the binary GT (float)."""
    m, g = _check_map_gt(smap, gt)
    return float(np.abs(g.astype(np.float64) - m).mean())


def adaptive_dice(smap: np.ndarray, gt: np.ndarray) -> float:
    """Dice at the adaptive threshold ``min(2 * mean(smap), 1)`` with ``smap >= t``; 0 when TP = 0."""
    m, g = _check_map_gt(smap, gt)
    t = min(2.0 * float(m.mean()), 1.0)
    return float(dice_sen_spe_curves(m, g, np.array([t]))["dice"][0])


def infnet_image_scores(smap: np.ndarray, gt: np.ndarray) -> dict:
    """All Inf-Net-protocol scores of one normalised map.

    Parameters
    ----------
    smap : float (H, W), already min-max normalised (see :func:`minmax_normalise`), values in [0, 1]
    gt : bool (H, W)

    Returns
    -------
    dict with curves ``dice, sen, spe, em`` (float64 (256,), thresholds descending from 1 to 0)
    and scalars ``sm, mae, adp_dice``.
    """
    m, g = _check_map_gt(smap, gt)
    out = dice_sen_spe_curves(m, g)
    out["em"] = e_measure_curve(m, g)
    out["sm"] = s_measure(m, g)
    out["mae"] = mae(m, g)
    out["adp_dice"] = adaptive_dice(m, g)
    return out


def infnet_summary(per_image: Sequence[dict]) -> dict:
    """Dataset-level Inf-Net scores from a list of :func:`infnet_image_scores` results.

    Curves are averaged over images at each threshold; ``meanX`` is the mean of that curve over all
    256 thresholds, ``maxX`` its maximum. Sm, MAE and adpDice are plain means over images.

    Returns
    -------
    dict of floats ``meanDic, meanSen, meanSpe, maxDic, maxSen, maxSpe, Sm, meanEm, maxEm, MAE,
    adpDice`` plus ``n_images`` and the averaged curves ``curves`` (lists of 256 floats) and
    ``thresholds``.
    """
    if len(per_image) == 0:
        raise ValueError("per_image is empty: no image was scored")
    res: dict = {}
    curves = {}
    for key, name in (("dice", "Dic"), ("sen", "Sen"), ("spe", "Spe"), ("em", "Em")):
        col = np.mean(np.stack([s[key] for s in per_image]), axis=0)
        curves[key] = col.tolist()
        res[f"mean{name}"] = float(col.mean())
        res[f"max{name}"] = float(col.max())
    res["Sm"] = float(np.mean([s["sm"] for s in per_image]))
    res["MAE"] = float(np.mean([s["mae"] for s in per_image]))
    res["adpDice"] = float(np.mean([s["adp_dice"] for s in per_image]))
    res["n_images"] = len(per_image)
    res["thresholds"] = infnet_thresholds().tolist()
    res["curves"] = curves
    return res
