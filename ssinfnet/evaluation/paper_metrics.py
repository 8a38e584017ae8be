"""Segmentation metrics under the paper's protocol (Fung et al. 2021).

Per image and class at one threshold (0.5): Dice (F1), IoU, recall, precision and pixel ROC AUC;
mean +/- 1.96 SE over images. Functions return one row per image x class and aggregate only in
:func:`summarise`. The Inf-Net protocol (256 thresholds, S-measure, E-measure, MAE) is
:mod:`ssinfnet.evaluation.infnet_metrics`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..data.classes import CLASS_NAMES


EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps


PAPER_METRICS = ("dice", "iou", "recall", "precision", "auc")


MULTICLASS_NAMES = CLASS_NAMES


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
