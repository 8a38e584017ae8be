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


# ------------------------------------------------------------------ evidence that the pretraining learnt

METHOD_COLOURS = {"inpainter": "tab:blue", "mean-fill": "0.55", "blur": "tab:orange"}


def reconstruction_panel(ax, summary: pd.DataFrame) -> None:
    """Mean erased-region error (grey levels) with its bootstrap interval, per held-out set and mask kind
    (rows of :func:`ssinfnet.pretraining.evidence.summarise_errors`), one marker per method."""
    groups = [f"{r['set']}\n{r['masks']}" for _, r in summary.iterrows()]
    pos = np.arange(len(groups))
    for k, (method, colour) in enumerate(METHOD_COLOURS.items()):
        y = summary[method].to_numpy()
        err = np.vstack([y - summary[f"{method}_lo"].to_numpy(), summary[f"{method}_hi"].to_numpy() - y])
        ax.errorbar(pos + (k - 1) * 0.22, y, yerr=err, fmt="o", color=colour, capsize=3, label=method)
    ax.set_xticks(pos)
    ax.set_xticklabels(groups, fontsize=7)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("mean absolute error in erased region\n(grey levels, 0-255)")
    ax.set_title("(a) reconstruction of held-out slices", fontsize=9)
    ax.legend(frameon=False, fontsize=7)


def probe_panel(ax, scores: pd.DataFrame) -> None:
    """Per-image validation Dice of the frozen-encoder probe, one column per encoder, the same image
    joined by a line; the mean as a black bar."""
    wide = scores.pivot(index="image", columns="encoder", values="dice")[list(dict.fromkeys(scores.encoder))]
    pos = np.arange(wide.shape[1])
    for _, row in wide.iterrows():
        ax.plot(pos, row.to_numpy(), color="0.7", lw=0.8, marker="o", ms=3)
    ax.hlines(wide.mean().to_numpy(), pos - 0.2, pos + 0.2, color="k", lw=2, label="mean")
    ax.set_xticks(pos)
    ax.set_xticklabels([f"{c} encoder" for c in wide.columns], fontsize=8)
    ax.set_xlim(-0.5, len(pos) - 0.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("validation Dice (per image)")
    ax.set_title("(b) linear probe on frozen features", fontsize=9)
    ax.legend(frameon=False, fontsize=7)


def coach_panel(ax, coach: pd.DataFrame) -> None:
    """Share of the erased area in the most-erased tenth of the regions after each training point, with
    the random-block and evenly-spread references (rows of the stage's coach table)."""
    refs = coach[coach.masks.isin(["random blocks", "evenly spread"])].set_index("masks")
    points = coach[~coach.masks.isin(refs.index)]
    ax.plot(np.arange(len(points)), points.top_share, marker="o", color="tab:purple", label="coach masks")
    for name, style in (("random blocks", "--"), ("evenly spread", ":")):
        if name in refs.index:
            ax.axhline(refs.loc[name, "top_share"], color="0.5", ls=style, lw=1, label=name)
    ax.set_xticks(np.arange(len(points)))
    ax.set_xticklabels(points.masks, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, min(1.0, 1.4 * float(coach.top_share.max())))
    ax.set_xlabel("after phase")
    ax.set_ylabel("share of erased area in the\nmost-erased 10 % of regions")
    ax.set_title("(c) concentration of the coach's masks", fontsize=9)
    ax.legend(frameon=False, fontsize=7)


def evidence_figure(summary: pd.DataFrame, probe_scores: pd.DataFrame, coach: pd.DataFrame) -> Figure:
    """Three panels: (a) :func:`reconstruction_panel`, (b) :func:`probe_panel`, (c) :func:`coach_panel`."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9), gridspec_kw={"width_ratios": [1.6, 0.9, 1.1]})
    reconstruction_panel(axes[0], summary)
    probe_panel(axes[1], probe_scores)
    coach_panel(axes[2], coach)
    fig.tight_layout()
    return fig
