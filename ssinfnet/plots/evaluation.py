"""Evaluation figures: ROC curves, per-image metric distributions, visual comparison grid.

Every function returns a matplotlib ``Figure`` without a title; the notebook adds the caption.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..data.classes import CLASS_COLOURS
from ..evaluation.comparison import with_optional_columns
from ..evaluation.paper_metrics import roc_auc, roc_curve
from .colours import overlay as _overlay

# Overlay colours (RGB in [0, 1]): the palette of the COVID-SemiSeg multi-class GT.


def plot_roc(models: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
             mode: str = "pooled", grid_points: int = 201) -> Figure:
    """ROC curve per model.

    Parameters
    ----------
    models : name -> (probability maps (H, W) in [0, 1], binary GT masks (H, W)), one pair per image
    mode : {"pooled", "mean"}
        ``pooled``: one curve over all pixels of all images; ``mean``: per-image curves interpolated
        on a common false-positive-rate grid and averaged (images with empty/full GT left out).
    grid_points : int, default=201, grid size for ``mode="mean"``

    Returns
    -------
    Figure with one axis; the legend gives each model's AUC (pooled AUC, or mean per-image AUC).
    """
    if mode not in ("pooled", "mean"):
        raise ValueError(f"mode must be 'pooled' or 'mean', got {mode!r}")
    if not models:
        raise ValueError("models is empty")
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    grid = np.linspace(0.0, 1.0, grid_points)
    for name, (probs, gts) in models.items():
        if len(probs) != len(gts) or len(probs) == 0:
            raise ValueError(f"models[{name!r}]: need equally many (>0) maps and masks")
        if mode == "pooled":
            s = np.concatenate([np.ravel(p) for p in probs])
            y = np.concatenate([np.ravel(g).astype(bool) for g in gts])
            fpr, tpr = roc_curve(s, y)
            auc = roc_auc(s, y)
        else:
            curves, aucs = [], []
            for p, g in zip(probs, gts):
                f, t = roc_curve(p, g)
                if np.isnan(f).any():
                    continue
                curves.append(np.interp(grid, f, t))
                aucs.append(roc_auc(p, g))
            if not curves:
                raise ValueError(f"models[{name!r}]: every image has an empty or full GT; no ROC defined")
            fpr, tpr, auc = grid, np.mean(curves, axis=0), float(np.mean(aucs))
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (fraction of background pixels)")
    ax.set_ylabel("true positive rate (fraction of lesion pixels)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def plot_metric_distributions(scores: pd.DataFrame, metric: str = "dice", model_col: str = "model",
                              seed: int = 0) -> Figure:
    """Per-image metric values per model: box plot with the individual images as jittered points.

    Parameters
    ----------
    scores : long DataFrame, one row per image (x class), columns ``model_col`` and ``metric``
        (e.g. :func:`ssinfnet.evaluation.paper_metrics.paper_scores` outputs concatenated with a model column);
        NaN values are left out and their count shown in the tick label.
    metric : column to plot (values in [0, 1])
    model_col : column naming the model
    seed : int, default=0, seed of the horizontal jitter

    Returns
    -------
    Figure with one axis.
    """
    for col in (model_col, metric):
        if col not in scores.columns:
            raise ValueError(f"scores lacks column {col!r}")
    models = list(dict.fromkeys(scores[model_col]))
    if not models:
        raise ValueError("scores is empty")
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(1.2 + 1.1 * len(models), 4))
    ax = fig.add_subplot()
    data, labels = [], []
    for i, m in enumerate(models):
        v = scores.loc[scores[model_col] == m, metric].to_numpy(dtype=float)
        ok = v[~np.isnan(v)]
        data.append(ok)
        n_nan = v.size - ok.size
        labels.append(f"{m}\n(n={ok.size}" + (f", {n_nan} NaN)" if n_nan else ")"))
        ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, ok.size), ok, s=10, alpha=0.6, color="C0", zorder=3)
    ax.boxplot(data, showfliers=False, widths=0.5)
    ax.set_xticks(range(1, len(models) + 1), labels)
    ax.set_ylabel(f"{metric} per image (fraction)")
    ax.set_xlabel("model")
    fig.tight_layout()
    return fig


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """:func:`ssinfnet.plots.colours.overlay` with this module's default opacity."""
    return _overlay(image, labels, alpha)


def plot_comparison_grid(images: Sequence[np.ndarray], gts: Sequence[np.ndarray],
                         predictions: Mapping[str, Sequence[np.ndarray]],
                         image_ids: Sequence[str] | None = None) -> Figure:
    """Grid of rows = images, columns = CT image, GT overlay, one overlay per model.

    Parameters
    ----------
    images : grey slices (H, W)
    gts : label maps (H, W) per image (bool, or 0 background / 1 GGO / 2 consolidation)
    predictions : model name -> label maps per image, same coding as ``gts``
    image_ids : row labels; default the index

    Returns
    -------
    Figure; GGO (or binary infection) red, consolidation green.
    """
    n = len(images)
    if n == 0 or len(gts) != n or any(len(p) != n for p in predictions.values()):
        raise ValueError("images, gts and every model's predictions need the same non-zero length")
    ids = [str(i) for i in range(n)] if image_ids is None else list(image_ids)
    cols = 2 + len(predictions)
    fig = Figure(figsize=(2.2 * cols, 2.2 * n))
    axes = fig.subplots(n, cols, squeeze=False)
    titles = ["image", "ground truth", *predictions.keys()]
    for r in range(n):
        panels = [np.asarray(images[r], dtype=float), overlay(images[r], gts[r]),
                  *(overlay(images[r], p[r]) for p in predictions.values())]
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_xlabel(titles[c])
                ax.xaxis.set_label_position("top")
            if c == 0:
                ax.set_ylabel(ids[r])
    fig.tight_layout()
    return fig


def plot_comparisons(table: pd.DataFrame) -> Figure:
    """Forest plot of paired comparisons: per row the pooled difference B - A with its interval (bar), the
    mean difference of each seed (dots) and a line at zero; a row without an estimate says why.

    Parameters
    ----------
    table : one row per comparison with columns ``claim``, ``class``, ``estimate``, ``ci_low``, ``ci_high``,
        ``level``, ``seed_means`` (';'-joined floats, empty when not estimated) and ``verdict``
        (:data:`ssinfnet.evaluation.comparison.TABLE_COLUMNS`)

    Returns
    -------
    Figure with one axis: x the Dice difference (fraction; AUC for rows whose optional ``metric`` is "auc"),
    one y row per comparison (first at the top).
    """
    need = ["claim", "class", "estimate", "ci_low", "ci_high", "level", "seed_means", "verdict"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise ValueError(f"comparison table lacks columns {missing}")
    if table.empty:
        raise ValueError("comparison table is empty")
    n = len(table)
    dots = [[float(v) for v in str(s).split(";") if v.strip()] if pd.notna(s) else [] for s in table.seed_means]
    fig = Figure(figsize=(7.5, 0.9 + 0.45 * n))
    ax = fig.add_subplot()
    ax.axvline(0.0, color="0.4", lw=1, zorder=1)
    for i, row in enumerate(table.itertuples(index=False)):
        y = n - 1 - i
        if pd.isna(row.estimate):
            ax.text(0.0, y, "  " + str(row.verdict).split(":")[0] + " (see the table)", va="center", ha="left",
                    fontsize=8, color="0.35")
            continue
        ax.plot([row.ci_low, row.ci_high], [y, y], color="C0", lw=2.5, zorder=2)
        ax.plot(row.estimate, y, "D", color="C0", ms=6, zorder=3)
        ax.plot(dots[i], [y] * len(dots[i]), "o", mfc="none", mec="C1", ms=6, zorder=4)
    labels = [f"{claim} [{cls}]" for claim, cls in zip(table.claim, table["class"])]
    ax.set_yticks(range(n - 1, -1, -1), labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    level = table.level.dropna()
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="D", color="C0", ls="none", label="pooled estimate"),
                       Line2D([], [], color="C0", lw=2.5, label=f"{level.iloc[0]:.0%} CI" if len(level) else "CI"),
                       Line2D([], [], marker="o", mfc="none", mec="C1", ls="none", label="mean of one seed")],
              loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.3 / n), ncol=3, fontsize=8, frameon=False)
    metrics = set(with_optional_columns(table)["metric"])
    ax.set_xlabel("Dice difference B - A (per test image, pooled over seeds)" if metrics <= {"dice"} else
                  "difference B - A in Dice, or in AUC where the claim says so (per test image, pooled over seeds)")
    ax.set_ylabel("claim [class]")
    spread = np.abs(np.concatenate([table[["ci_low", "ci_high"]].to_numpy(dtype=float).ravel(), *map(np.array, dots)]))
    lim = max(0.05, float(np.nanmax(spread, initial=0.0)))
    ax.set_xlim(-1.15 * lim, 1.15 * lim)
    fig.tight_layout()
    return fig
