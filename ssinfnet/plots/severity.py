"""Figures for lung masks and severity agreement.  Every function returns a Figure; captions come from the notebook."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["lung_mask_grid", "ratio_scatter", "bland_altman", "confusion_heatmap", "regional_score_map"]


def lung_mask_grid(images: Sequence[np.ndarray], lung_masks: Sequence, names: Sequence[str] | None = None,
                   ncols: int = 6, panel_size: float = 2.2) -> Figure:
    """Images with the lung contours drawn over them; flagged masks show their reasons in red.

    Parameters
    ----------
    images : sequence of arrays (H, W)
        Grey images (any range; shown with min–max scaling).
    lung_masks : sequence of LungMask (2-D)
        One per image; lung 1 drawn cyan, lung 2 lime.
    names : sequence of str, optional
        Panel labels (e.g. file stems).
    ncols : int, default 6
    panel_size : float, default 2.2
        Inches per panel.
    """
    if len(images) != len(lung_masks) or len(images) == 0:
        raise ValueError(f"images ({len(images)}) and lung_masks ({len(lung_masks)}) must be non-empty and "
                         "of equal length")
    if names is not None and len(names) != len(images):
        raise ValueError("names must have one entry per image")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img, lm = np.asarray(images[i]), lung_masks[i]
        if img.shape != lm.mask.shape:
            raise ValueError(f"image {i} has shape {img.shape}, its lung mask {lm.mask.shape}")
        ax.imshow(img, cmap="gray")
        for v, colour in ((1, "cyan"), (2, "lime")):
            if (lm.labels == v).any():
                ax.contour(lm.labels == v, [0.5], colors=colour, linewidths=0.8)
        label = names[i] if names is not None else str(i)
        ax.text(0.02, 0.98, label, transform=ax.transAxes, va="top", fontsize=7, color="yellow")
        if lm.flags:
            ax.text(0.02, 0.02, "FLAGGED: " + "; ".join(lm.flags), transform=ax.transAxes, va="bottom",
                    fontsize=6, color="red", wrap=True,
                    bbox=dict(facecolor="white", alpha=0.7, edgecolor="red", pad=1))
            for side in ax.spines.values():
                side.set_visible(True)
                side.set_color("red")
                side.set_linewidth(2)
    fig.tight_layout()
    return fig


def _pair(reference, predicted):
    ref = np.asarray(reference, float).ravel()
    pred = np.asarray(predicted, float).ravel()
    if ref.shape != pred.shape or ref.size == 0:
        raise ValueError(f"reference ({ref.size}) and predicted ({pred.size}) must be non-empty, equal length")
    return ref, pred


def ratio_scatter(reference, predicted, bins: Sequence[float] | None = None) -> Figure:
    """Predicted against reference severity ratio with the identity line (and bin edges if given).

    Parameters
    ----------
    reference, predicted : array-like of float, shape (n,)
        Ratios in [0, 1].
    bins : sequence of float, optional
        Class edges drawn as dotted lines on both axes.
    """
    ref, pred = _pair(reference, predicted)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(ref, pred, s=14, alpha=0.7)
    hi = max(1e-3, float(max(ref.max(), pred.max()))) * 1.05
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="identity")
    for e in bins or ():
        ax.axvline(e, color="grey", ls=":", lw=0.8)
        ax.axhline(e, color="grey", ls=":", lw=0.8)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("reference ratio (fraction of lung)")
    ax.set_ylabel("predicted ratio (fraction of lung)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def bland_altman(reference, predicted) -> Figure:
    """Bland–Altman plot: difference (predicted − reference) against the mean, bias and 95 % limits."""
    ref, pred = _pair(reference, predicted)
    mean, diff = (ref + pred) / 2, pred - ref
    md = diff.mean()
    sd = diff.std(ddof=1) if diff.size > 1 else 0.0
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.scatter(mean, diff, s=14, alpha=0.7)
    ax.axhline(md, color="k", lw=1, label=f"bias {md:+.3f}")
    ax.axhline(md - 1.96 * sd, color="k", ls="--", lw=0.8)
    ax.axhline(md + 1.96 * sd, color="k", ls="--", lw=0.8, label=f"limits ±{1.96 * sd:.3f}")
    ax.set_xlabel("mean of reference and predicted ratio (fraction of lung)")
    ax.set_ylabel("predicted − reference ratio")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_heatmap(confusion, labels: Sequence[str] | None = None) -> Figure:
    """Confusion matrix (rows reference, columns predicted) as an annotated heat map of counts."""
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {cm.shape}")
    k = cm.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(k)]
    if len(labels) != k:
        raise ValueError(f"labels has {len(labels)} entries for a {k}x{k} matrix")
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.8 * k))
    im = ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), labels, rotation=30, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("reference class")
    fig.colorbar(im, ax=ax, fraction=0.046, label="count")
    fig.tight_layout()
    return fig


def regional_score_map(lung_labels: np.ndarray, per_region: pd.DataFrame, image: np.ndarray | None = None,
                       zone_axis: int | None = None) -> Figure:
    """Map of the regional CT-SS: each lung zone coloured by its score 0/1/2 (2-D slices).

    Parameters
    ----------
    lung_labels : int array (H, W)
        0 background, 1/2 lungs (LungMask.labels).
    per_region : DataFrame
        Output of :func:`ssinfnet.severity.regional_score` (columns lung, zone, score).
    image : array (H, W), optional
        Grey image under the map.
    zone_axis : int, optional
        Axis the zones were cut along (as given to regional_score); default: perpendicular to the line
        joining the lungs.
    """
    from ssinfnet.severity import _separation_axis, _zone_bands

    labels = np.asarray(lung_labels)
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
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if image is not None:
        ax.imshow(image, cmap="gray")
    cmap = plt.get_cmap("YlOrRd", 3)
    im = ax.imshow(np.ma.masked_invalid(score_map), cmap=cmap, vmin=-0.5, vmax=2.5, alpha=0.6)
    fig.colorbar(im, ax=ax, ticks=[0, 1, 2], fraction=0.046, label="zone score")
    ax.text(0.02, 0.98, f"CT-SS total {int(per_region['score'].sum())}", transform=ax.transAxes, va="top",
            color="black", fontsize=8, bbox=dict(facecolor="white", alpha=0.7, pad=1))
    ax.set_xlabel("column (px)")
    ax.set_ylabel("row (px)")
    fig.tight_layout()
    return fig
