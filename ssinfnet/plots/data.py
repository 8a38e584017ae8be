"""Figures of the data chapter: overlays, class balance, sizes, duplicates, the clinical cohort."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..data.classes import CLASS_COLOURS, CLASS_LABELS, CLASS_NAMES, CONSOLIDATION, GGO
from ..data.sample import Sample
from .colours import overlay

GGO_RGB, CONSOLIDATION_RGB = CLASS_COLOURS[GGO], CLASS_COLOURS[CONSOLIDATION]
FRACTION_COLUMNS = [f"{CLASS_NAMES[c]}_fraction" for c in (GGO, CONSOLIDATION)]  # data.summary columns


def legend_handles() -> list[Patch]:
    return [Patch(color=GGO_RGB, label=CLASS_LABELS[GGO]),
            Patch(color=CONSOLIDATION_RGB, label=CLASS_LABELS[CONSOLIDATION])]


def example_grid(samples: Sequence[Sample], n: int = 6, with_raw: bool = True) -> Figure:
    """Slices (top row) and the same slices with their class overlay (bottom row)."""
    picks = list(samples)[:n]
    rows = 2 if with_raw else 1
    fig, axes = plt.subplots(rows, len(picks), figsize=(2.2 * len(picks), 2.3 * rows), squeeze=False)
    for j, s in enumerate(picks):
        if with_raw:
            axes[0, j].imshow(s.image, cmap="gray", vmin=0, vmax=255)
        axes[rows - 1, j].imshow(overlay(s.image, s.classes))
        axes[0, j].text(0.02, 0.98, s.slice_id, transform=axes[0, j].transAxes, va="top", ha="left",
                        fontsize=7, color="yellow")
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.legend(handles=legend_handles(), loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def class_balance_plot(balance: pd.DataFrame) -> Figure:
    """Per-slice GGO and consolidation fractions (left) and lesion size distribution (right)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    long = balance.melt(id_vars=["slice_id", "subset"], value_vars=FRACTION_COLUMNS,
                        var_name="class", value_name="fraction")
    long["class"] = long["class"].map({f"{CLASS_NAMES[c]}_fraction": CLASS_LABELS[c] for c in (GGO, CONSOLIDATION)})
    for i, (subset, g) in enumerate(long.groupby("subset", sort=False)):
        for k, (cls, gg) in enumerate(g.groupby("class")):
            x = i * 3 + k + np.random.default_rng(0).uniform(-0.2, 0.2, len(gg))
            a.scatter(x, 100 * gg.fraction, s=10, alpha=0.7,
                      color=GGO_RGB if cls == CLASS_LABELS[GGO] else CONSOLIDATION_RGB, label=cls if i == 0 else None)
    subsets = list(long.subset.unique())
    a.set_xticks([i * 3 + 0.5 for i in range(len(subsets))], subsets)
    a.set_ylabel("share of slice pixels (%)")
    a.set_xlabel("subset")
    a.legend(frameon=False)
    b.hist(balance.infection_pixels[balance.infection_pixels > 0], bins=25, color="0.4")
    b.set_xlabel("infected pixels per slice (pixels)")
    b.set_ylabel("slices")
    fig.tight_layout()
    return fig


def size_plot(sizes: pd.DataFrame) -> Figure:
    """Scatter of slice width against height (pixels), one colour per subset."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for subset, g in sizes.groupby("subset", sort=False):
        ax.scatter(g.width, g.height, s=8, alpha=0.6, label=f"{subset} (n={len(g)})")
    ax.set_xlabel("width (pixels)")
    ax.set_ylabel("height (pixels)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def duplicate_pairs_plot(a: Sequence[Sample], b: Sequence[Sample], pairs: pd.DataFrame, n: int = 4) -> Figure:
    """The ``n`` closest cross-split pairs side by side, labelled with their RMS distance (grey levels)."""
    ia = {s.slice_id: s for s in a}
    ib = {s.slice_id: s for s in b}
    top = pairs.head(n)
    fig, axes = plt.subplots(2, len(top), figsize=(2.3 * len(top), 4.6), squeeze=False)
    for j, row in enumerate(top.itertuples()):
        axes[0, j].imshow(ia[row.a_id].image, cmap="gray", vmin=0, vmax=255)
        axes[1, j].imshow(ib[row.b_id].image, cmap="gray", vmin=0, vmax=255)
        axes[0, j].text(0.02, 0.98, f"{row.a_id}\nRMS {row.rms:.1f}", transform=axes[0, j].transAxes,
                        va="top", fontsize=7, color="yellow")
        axes[1, j].text(0.02, 0.98, row.b_id, transform=axes[1, j].transAxes, va="top", fontsize=7, color="yellow")
        axes[0, j].set_axis_off()
        axes[1, j].set_axis_off()
    fig.tight_layout()
    return fig


def clinical_plot(df: pd.DataFrame) -> Figure:
    """Age by binary severity (left), number of underlying diseases (middle), morbidity levels (right)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    bins = np.arange(0, 101, 5)
    for sev, colour in ((0, "0.6"), (1, "tab:red")):
        axes[0].hist(df.age[df.severity_binary == sev], bins=bins, alpha=0.6, color=colour,
                     label=f"binary severity {sev}")
    axes[0].set_xlabel("age (years)")
    axes[0].set_ylabel("patients")
    axes[0].legend(frameon=False, fontsize=8)
    counts = df.n_diseases.clip(upper=4).value_counts().sort_index()
    axes[1].bar([str(int(k)) if k < 4 else "4+" for k in counts.index], counts.values, color="0.4")
    axes[1].set_xlabel("underlying diseases (count)")
    axes[1].set_ylabel("patients")
    levels = df.morbidity.value_counts()
    axes[2].barh(levels.index, levels.values, color="0.4")
    axes[2].set_xlabel("patients")
    axes[2].invert_yaxis()
    axes[2].tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig
