"""Figures of the pretraining chapter: coach masks over training, inpainting examples, erased fraction."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from ..data.transforms import denormalize


def _grey(t: torch.Tensor) -> np.ndarray:
    return denormalize(t[0]).clamp(0, 1).cpu().numpy()


def mask_evolution(x: torch.Tensor, masks: dict[str, torch.Tensor], n: int = 4) -> Figure:
    """Rows: training points (phase names); columns: ``n`` slices with the erased region tinted.

    ``x`` is the normalised batch (B, C, H, W), ``masks`` maps a phase name to keep-masks (B, 1, H, W).
    """
    n = min(n, x.shape[0])
    names = list(masks)
    fig, axes = plt.subplots(len(names), n, figsize=(2.0 * n, 2.0 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j in range(n):
            img = _grey(x[j])
            erased = 1.0 - masks[name][j, 0].numpy()
            rgb = np.stack([img, img, img], -1)
            rgb = (1 - 0.55 * erased[..., None]) * rgb + 0.55 * erased[..., None] * np.array([1.0, 0.6, 0.0])
            axes[i, j].imshow(np.clip(rgb, 0, 1))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def inpainting_examples(ex: dict[str, torch.Tensor], n: int = 4) -> Figure:
    """Columns: input, mask, masked input, reconstruction, target; one row per slice (first channel)."""
    cols = ["input", "mask", "masked", "reconstruction", "target"]
    n = min(n, ex["input"].shape[0])
    fig, axes = plt.subplots(n, len(cols), figsize=(2.0 * len(cols), 2.0 * n), squeeze=False)
    for i in range(n):
        for j, key in enumerate(cols):
            t = ex[key][i]
            img = t[0].cpu().numpy() if key == "mask" else _grey(t)
            axes[i, j].imshow(img, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_xlabel(key, fontsize=9)
                axes[i, j].xaxis.set_label_position("top")
    fig.tight_layout()
    return fig


def erased_fraction_plot(df: pd.DataFrame) -> Figure:
    """Erased fraction of the coach's masks against the target 1 - k, with the identity line."""
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="identity")
    ax.errorbar(df.target, df.erased_mean, yerr=df.erased_sd, fmt="o", color="tab:blue", label="coach masks")
    lim = max(df.target.max(), df.erased_mean.max()) * 1.15
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("target erased fraction 1 - k")
    ax.set_ylabel("erased fraction of the slice")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
