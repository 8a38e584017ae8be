"""Segmentation metrics under the Inf-Net protocol (the MATLAB ``EvaluationTool`` of Fan et al., IEEE TMI 2020).

Min-max normalised maps are compared with the binary GT at the 256 thresholds of MATLAB's ``1:-1/255:0``;
Dice, sensitivity, specificity and E-measure curves, S-measure (Fan et al., ICCV 2017), E-measure
(Fan et al., IJCAI 2018), MAE and an adaptive-threshold Dice. The rules are ported from the tool's
behaviour, including its quirks (specificity is 0 when TP = 0; E-measure divides by N - 1 + eps so it
can exceed 1). The paper's per-image protocol is :mod:`ssinfnet.evaluation.paper_metrics`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .paper_metrics import EPS


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
