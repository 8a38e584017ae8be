"""Figures of the statistics chapter: forest plot, clustered correlations, SEM paths, power, coverage, rho curves.

Every function returns a matplotlib ``Figure`` without a title (the notebook adds the caption, which
says whether the data are real or synthetic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

_POS, _NEG = "#b2182b", "#2166ac"


def _check(df: pd.DataFrame, cols: Sequence[str], arg: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{arg}: missing column(s) {missing}")


def forest_plot(
    results: pd.DataFrame,
    label: str = "mediator",
    effect: str = "indirect",
    low: str = "ci_low",
    high: str = "ci_high",
    group: str | None = "x",
    significant: str | None = "significant",
    xlabel: str = "indirect effect (beta21 x beta32)",
    truth: str | None = None,
) -> Figure:
    """Forest plot: one row per result, point estimate with its interval, a line at zero.

    Parameters
    ----------
    results : DataFrame, e.g. from :func:`ssinfnet.stats.mediation.univariate_mediation` (several x stacked)
    label, effect, low, high : column names
    group : column name or None
        Rows are grouped (and coloured) by it, e.g. the exposure ``x``.
    significant : column name or None
        Significant rows get filled markers, the others open ones.
    truth : column name or None
        Known (planted) values, drawn as black crosses (simulations).
    """
    _check(results, [label, effect, low, high] + [c for c in (group, significant, truth) if c], "results")
    if results.empty:
        raise ValueError("results: no rows to plot")
    df = results.reset_index(drop=True)
    groups = list(dict.fromkeys(df[group])) if group else [None]
    colours = dict(zip(groups, ["C0", "C1", "C2", "C3", "C4", "C5", "C6"] * 8))
    fig = Figure(figsize=(6.5, 0.32 * len(df) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    ypos, labels, y = [], [], 0
    for g in groups:
        part = df if g is None else df[df[group] == g]
        for r in part.itertuples(index=False):
            rd = r._asdict()
            sig = bool(rd[significant]) if significant else True
            c = colours[g]
            ax.plot([rd[low], rd[high]], [y, y], color=c, lw=1.5)
            ax.plot(rd[effect], y, "o", color=c, mfc=c if sig else "white", ms=6)
            if truth:
                ax.plot(rd[truth], y, "x", color="k", ms=6, label="planted" if not ypos else None)
            ypos.append(y)
            labels.append(str(rd[label]) if g is None else f"{rd[label]} ({g})")
            y -= 1
        y -= 0.5
    ax.axvline(0.0, color="0.4", lw=0.8, ls="--")
    if truth:
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_yticks(ypos, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    return fig


def correlation_heatmap(
    df: pd.DataFrame, columns: Sequence[str] | None = None, method: str = "pearson", linkage: str = "average",
) -> Figure:
    """Clustered correlation heat map (hierarchical clustering on ``1 - |r|``, dendrogram on top).

    Parameters
    ----------
    df : DataFrame of numeric columns (pairwise-complete correlations)
    columns : columns to use (default: all numeric)
    method : {"pearson", "spearman"}
    linkage : scipy linkage method, default="average"
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    columns = list(columns) if columns is not None else list(df.select_dtypes("number").columns)
    _check(df, columns, "columns")
    if len(columns) < 2:
        raise ValueError("columns: need at least two variables")
    corr = df[columns].corr(method=method).fillna(0.0)
    dist = np.clip(1.0 - corr.abs().to_numpy(), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    Z = hierarchy.linkage(squareform(dist, checks=False), method=linkage)
    order = hierarchy.leaves_list(Z)
    size = min(14.0, 3.0 + 0.25 * len(columns))
    fig = Figure(figsize=(size + 1.2, size + 1.0), layout="constrained")
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 5], width_ratios=[20, 1])
    ax_d = fig.add_subplot(gs[0, 0])
    hierarchy.dendrogram(Z, ax=ax_d, no_labels=True, color_threshold=0, above_threshold_color="0.3")
    ax_d.set_axis_off()
    ax = fig.add_subplot(gs[1, 0])
    mat = corr.to_numpy()[np.ix_(order, order)]
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    names = [columns[i] for i in order]
    fs = 8 if len(names) <= 40 else 5
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=fs)
    ax.set_yticks(range(len(names)), names, fontsize=fs)
    cax = fig.add_subplot(gs[1, 1])
    fig.colorbar(im, cax=cax, label=f"{method} correlation r")
    return fig


def _node_layout(groups: dict) -> dict[str, tuple[float, float]]:
    exo = list(groups["exogenous"])
    columns = []
    for i, x in enumerate(exo):
        spec = list(groups["specific"].get(x, ()))
        if i == 0:
            columns += spec + list(groups["common"])
        else:
            columns += spec
    pos = {}
    k = max(len(columns), 1)
    for j, m in enumerate(columns):
        pos[m] = (1.0, 1.0 - j / max(k - 1, 1) if k > 1 else 0.5)
    for i, x in enumerate(exo):
        pos[x] = (0.0, 0.85 - 0.7 * i / max(len(exo) - 1, 1) if len(exo) > 1 else 0.5)
    pos[groups["outcome"]] = (2.0, 0.5)
    return pos


def sem_path_diagram(result, standardized: bool = True, alpha: float = 0.05) -> Figure:
    """Path diagram of a :class:`ssinfnet.stats.sem.SEMResult`: exogenous left, mediators middle, outcome right.

    Arrows are labelled with the (standardised) estimate; width grows with |estimate|, red positive,
    blue negative, dashed when ``p >= alpha``. Drawn with matplotlib only (no graphviz).
    """
    est = result.estimates
    col = "std_estimate" if standardized else "estimate"
    _check(est, ["lval", "rval", col, "p"], "result.estimates")
    pos = _node_layout(result.groups)
    n_med = sum(1 for v in pos.values() if v[0] == 1.0)
    fig = Figure(figsize=(8.0, max(4.0, 0.55 * n_med + 2.0)), layout="constrained")
    ax = fig.add_subplot()
    top = max(float(np.nanmax(np.abs(est[col]))), 1e-9)
    for r in est.itertuples(index=False):
        if r.lval not in pos or r.rval not in pos:
            continue
        (x0, y0), (x1, y1) = pos[r.rval], pos[r.lval]
        x0, x1 = x0 + 0.12, x1 - 0.12
        value = getattr(r, col)
        # direct paths skip the mediator column: bend them outwards (up from the upper exogenous, down
        # from the lower) so they do not cross the mediators; quadratic Bezier in data coordinates
        rad = 0.0 if pos[r.lval][0] - pos[r.rval][0] < 1.5 else (0.45 if y0 >= 0.5 else -0.45)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + rad * (x1 - x0)
        t = np.linspace(0.0, 1.0, 50)[:, None]
        curve = (1 - t) ** 2 * np.array([x0, y0]) + 2 * t * (1 - t) * np.array([cx, cy]) + t**2 * np.array([x1, y1])
        colour, lw = (_POS if value >= 0 else _NEG), 0.6 + 3.0 * abs(value) / top
        style = "-" if r.p < alpha else "--"
        ax.plot(curve[:-1, 0], curve[:-1, 1], color=colour, lw=lw, ls=style)
        ax.annotate("", xy=tuple(curve[-1]), xytext=tuple(curve[-4]), arrowprops=dict(
            arrowstyle="-|>", color=colour, lw=lw, shrinkA=0, shrinkB=0))
        lx, ly = curve[25] if rad else curve[17]
        ax.text(lx, ly, f"{value:.2f}", fontsize=7, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
    for name, (x, y) in pos.items():
        ax.text(x, y, name, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.3", fc="0.93", ec="0.3"))
    ax.set_xlim(-0.4, 2.4)
    ax.set_ylim(-0.45, 1.45)
    ax.set_axis_off()
    return fig


def power_curve_plot(df: pd.DataFrame, label: str | None = "rule") -> Figure:
    """Power (± 1.96 SE) against sample size, one line per value of ``label`` (e.g. the decision rule)."""
    _check(df, ["n", "power", "se"], "df")
    fig = Figure(figsize=(5.0, 3.5), layout="constrained")
    ax = fig.add_subplot()
    parts = df.groupby(label, sort=False) if label and label in df else [(None, df)]
    for name, part in parts:
        part = part.sort_values("n")
        ax.errorbar(part["n"], part["power"], yerr=1.96 * part["se"], marker="o", capsize=3,
                    label=None if name is None else str(name))
    ax.axhline(0.8, color="0.5", lw=0.8, ls=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("sample size (patients)")
    ax.set_ylabel("power (fraction of replicates)")
    if label and label in df:
        ax.legend(frameon=False)
    return fig


def coverage_plot(df: pd.DataFrame, alpha: float = 0.05) -> Figure:
    """Intervals of every replicate of :func:`ssinfnet.stats.simulation.coverage_study`, sorted by estimate.

    Intervals missing the truth (horizontal line) are red; the legend gives the observed coverage
    against the nominal ``1 - alpha``.
    """
    _check(df, ["indirect", "ci_low", "ci_high", "truth", "covered"], "df")
    d = df.sort_values("indirect").reset_index(drop=True)
    fig = Figure(figsize=(6.0, 3.5), layout="constrained")
    ax = fig.add_subplot()
    colours = np.where(d["covered"], "0.55", _POS)
    ax.vlines(np.arange(len(d)), d["ci_low"], d["ci_high"], colors=colours, lw=1.0)
    ax.plot(np.arange(len(d)), d["indirect"], ".", color="k", ms=3)
    ax.axhline(float(d["truth"].iloc[0]), color=_NEG, lw=1.2,
               label=f"truth; coverage {d['covered'].mean():.2f} (nominal {1 - alpha:.2f})")
    ax.set_xlabel("replicate (sorted by estimate)")
    ax.set_ylabel("indirect effect")
    ax.legend(frameon=False, loc="upper left")
    return fig


def rho_curve_plot(curves: dict, ncols: int = 3) -> Figure:
    """The natural indirect effect against the error correlation rho, one panel per (exposure, mediator).

    Parameters
    ----------
    curves : dict title -> DataFrame from :func:`ssinfnet.stats.sensitivity.rho_curve` (columns ``rho``,
        ``nie``, ``nie_low``, ``nie_high``; ``attrs["rho_zero"]`` where the NIE crosses zero)
    ncols : panels per row

    The interval is shaded, zero is a dashed line and the zero crossing ``rho_zero`` a dotted vertical
    line with its value. Axes: rho (x), NIE as a risk difference (y).
    """
    if not curves:
        raise ValueError("curves: nothing to plot")
    if int(ncols) < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    for title, df in curves.items():
        _check(df, ["rho", "nie", "nie_low", "nie_high"], f"curves[{title!r}]")
        if "rho_zero" not in df.attrs:
            raise ValueError(f"curves[{title!r}]: attrs lack 'rho_zero' (use stats.sensitivity.rho_curve)")
    ncols = min(int(ncols), len(curves))
    nrows = -(-len(curves) // ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.6 * nrows + 0.3), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (title, df) in zip(axes.flat, curves.items()):
        d = df.sort_values("rho")
        ax.fill_between(d["rho"], d["nie_low"], d["nie_high"], color="0.85", lw=0)
        ax.plot(d["rho"], d["nie"], color=_POS, lw=1.5)
        ax.axhline(0.0, color="0.4", lw=0.8, ls="--")
        r0 = float(d.attrs["rho_zero"])
        ax.axvline(r0, color=_NEG, lw=1.0, ls=":")
        ax.annotate(f"NIE = 0 at rho = {r0:.2f}", (r0, 0.0), xytext=(4, 6), textcoords="offset points",
                    fontsize=7, color=_NEG)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("rho (mediator-outcome error correlation)", fontsize=8)
        ax.set_ylabel("natural indirect effect (risk difference)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves):]:
        ax.set_visible(False)
    return fig


def feature_distributions(
    table: pd.DataFrame,
    features: dict | Sequence[str],
    region: str = "region",
    hue: str | None = "subset",
    ncols: int = 3,
) -> Figure:
    """Violin plots (with the individual values) of radiomic features by region, one panel per feature.

    Parameters
    ----------
    table : DataFrame, one row per slice and region (e.g. :func:`ssinfnet.stats.phenotypes.slice_radiomics`)
    features : mapping display name -> column, or sequence of columns
    region : column on the x axis, default="region"
    hue : column splitting each region (e.g. ``"subset"`` or ``"mask_source"``), or None
    ncols : panels per row

    Rows with NaN (masks too small to describe) are left out of the panels; count them with
    :func:`ssinfnet.stats.phenotypes.region_summary`.
    """
    features = dict(features) if isinstance(features, dict) else {c: c for c in features}
    if not features:
        raise ValueError("features: name at least one column")
    _check(table, [region, *([hue] if hue else []), *features.values()], "table")
    if int(ncols) < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    regions = list(dict.fromkeys(table[region]))
    hues = list(dict.fromkeys(table[hue])) if hue else [None]
    nrows = -(-len(features) // ncols)
    fig = Figure(figsize=(3.4 * min(ncols, len(features)), 2.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, min(ncols, len(features)), squeeze=False).ravel()
    width = 0.8 / len(hues)
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for ax, (name, col) in zip(axes, features.items()):
        for j, h in enumerate(hues):
            for i, r in enumerate(regions):
                sel = table[region] == r
                if h is not None:
                    sel &= table[hue] == h
                vals = table.loc[sel, col].astype(float).dropna().to_numpy()
                if vals.size == 0:
                    continue
                x = i + (j - (len(hues) - 1) / 2) * width
                if vals.size > 1 and np.ptp(vals) > 0:
                    parts = ax.violinplot(vals, [x], widths=width * 0.9, showextrema=False)
                    for body in parts["bodies"]:
                        body.set_facecolor(f"C{j}")
                        body.set_alpha(0.35)
                ax.plot(x + rng.uniform(-width / 6, width / 6, vals.size), vals, ".", color=f"C{j}", ms=3,
                        label=str(h) if (h is not None and i == 0) else None)
                ax.plot([x - width / 3, x + width / 3], [np.median(vals)] * 2, color="k", lw=1.2)
        ax.set_xticks(range(len(regions)), [str(r) for r in regions])
        ax.set_ylabel(name)
    for ax in axes[len(features):]:
        ax.set_axis_off()
    if hue and len(hues) > 1:
        axes[0].legend(frameon=False, fontsize=7)
    return fig
