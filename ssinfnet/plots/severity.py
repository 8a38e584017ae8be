"""Figures for lung masks and severity agreement.  Every function returns a Figure; captions come from the notebook."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


__all__ = ["lung_mask_grid", "ratio_scatter", "bland_altman", "confusion_heatmap",
           "regional_score_panels", "regional_examples"]


def lung_mask_grid(images: Sequence[np.ndarray], lung_masks: Sequence, names: Sequence[str] | None = None,
                   ncols: int = 6, panel_size: float = 2.2, infections: Sequence | None = None,
                   truths: Sequence | None = None) -> Figure:
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
    infections : sequence of bool arrays (H, W), optional
        Ground-truth infection, drawn red (is it inside the lung contour?).
    truths : sequence of bool arrays (H, W) or None, optional
        True lungs (phantoms), drawn dotted yellow.
    """
    for name, extra in (("infections", infections), ("truths", truths)):
        if extra is not None and len(extra) != len(images):
            raise ValueError(f"{name} must have one entry per image")
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
        if truths is not None and truths[i] is not None and np.any(truths[i]):
            ax.contour(np.asarray(truths[i], bool), [0.5], colors="yellow", linewidths=0.8, linestyles="dotted")
        if infections is not None and np.any(infections[i]):
            ax.contour(np.asarray(infections[i], bool), [0.5], colors="red", linewidths=0.6)
        label = names[i] if names is not None else str(i)
        ax.text(0.02, 0.98, label, transform=ax.transAxes, va="top", fontsize=7, color="yellow")
        if lm.flags:
            # Wrapped by hand: matplotlib's wrap=True lets tight_layout shrink every panel to a dot.
            ax.text(0.02, 0.02, textwrap.fill("FLAGGED: " + "; ".join(lm.flags), 30), transform=ax.transAxes,
                    va="bottom", fontsize=6, color="red", clip_on=True,
                    bbox=dict(facecolor="white", alpha=0.7, edgecolor="red", pad=1))
            for side in ax.spines.values():
                side.set_visible(True)
                side.set_color("red")
                side.set_linewidth(2)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.04, hspace=0.04)
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
    ax.legend(loc="best", fontsize=8)
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


def _draw_scores(ax, score_map, per_region, image, label, axes_off=False):
    if image is not None:
        ax.imshow(image, cmap="gray")
    im = ax.imshow(np.ma.masked_invalid(score_map), cmap=plt.get_cmap("YlOrRd", 3), vmin=-0.5, vmax=2.5,
                   alpha=0.6)
    text = f"CT-SS total {int(per_region['score'].sum())}"
    ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", color="black", fontsize=8,
            bbox=dict(facecolor="white", alpha=0.7, pad=1))
    if axes_off:
        ax.set_xticks([])
        ax.set_yticks([])
        if label:
            ax.set_xlabel(label, fontsize=8)
    else:
        ax.set_xlabel("column (px)")
        ax.set_ylabel("row (px)")
    return im


def regional_score_panels(panels: Sequence[dict], ncols: int = 4, panel_size: float = 3.0) -> Figure:
    """Several regional CT-SS maps side by side (e.g. reference and predicted for a few slices).

    Parameters
    ----------
    panels : sequence of dict
        Each with ``labels`` (int (H, W) lung labels), ``per_region`` (DataFrame from
        :func:`ssinfnet.severity.scores.regional_score`), optional ``image`` (H, W), ``infection`` (bool (H, W),
        drawn as a blue contour) and ``label`` (str).
    ncols : int, default 4
    panel_size : float, default 3.0
        Inches per panel.
    """
    if len(panels) == 0:
        raise ValueError("panels is empty")
    n = len(panels)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 0.8, (panel_size + 0.3) * nrows),
                             squeeze=False, layout="constrained")
    im = None
    from ..severity.scores import zone_score_map

    for ax, panel in zip(axes.flat, panels):
        missing = {"labels", "per_region"} - set(panel)
        if missing:
            raise ValueError(f"a panel lacks {sorted(missing)}")
        score_map = zone_score_map(panel["labels"], panel["per_region"], panel.get("zone_axis"))
        im = _draw_scores(ax, score_map, panel["per_region"], panel.get("image"), panel.get("label", ""),
                          axes_off=True)
        if panel.get("infection") is not None and np.any(panel["infection"]):
            ax.contour(np.asarray(panel["infection"], bool), [0.5], colors="blue", linewidths=0.7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(im, ax=list(axes.flat), ticks=[0, 1, 2], fraction=0.04, shrink=0.8, label="zone score")
    return fig


def regional_examples(samples: Sequence, predictions: Sequence, masks: dict, slice_ids: Sequence[str],
                      zones: int = 3, prediction_label: str = "predicted") -> Figure:
    """Reference (ground truth, reference lung mask) and predicted (automatic lung mask) CT-SS maps of a
    few slices, two panels per slice in one row each.

    Parameters
    ----------
    samples, predictions : sequences aligned with each other
        Slices (with ``infection``) and their soft predictions (H, W) in [0, 1].
    masks : dict
        ``slice_id → (automatic LungMask, reference LungMask)`` from :func:`ssinfnet.severity.slices.severity_frame`.
    slice_ids : sequence of str
        Slices to show.
    zones : int, default 3
    prediction_label : str
        Label of the predicted panels.
    """
    from ..severity.scores import regional_score

    by_id = {s.slice_id: (s, p) for s, p in zip(samples, predictions)}
    unknown = [i for i in slice_ids if i not in by_id or i not in masks]
    if unknown or not slice_ids:
        raise ValueError(f"slice_ids must be non-empty and known; unknown {unknown[:5]}")
    panels = []
    for sid in slice_ids:
        s, p = by_id[sid]
        auto, ref = masks[sid]
        gt = np.asarray(s.infection, float)
        for name, prob, lm in (("reference (ground truth)", gt, ref), (prediction_label, p, auto)):
            _, table = regional_score(prob, lm.labels, zones=zones)
            panels.append({"labels": lm.labels, "per_region": table, "image": s.image,
                           "infection": s.infection, "label": f"{sid}\n{name}"})
    return regional_score_panels(panels, ncols=2)
