"""Training curves from the history written by :func:`ssinfnet.training.loop.train`."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["epoch_axis", "plot_training_history", "plot_variant_curves"]

_REQUIRED = ("phase", "phase_index", "kind", "epoch", "step")


def epoch_axis(history: pd.DataFrame) -> pd.Series:
    """Position of every history row on one epoch axis running through all phases.

    Parameters
    ----------
    history : pandas.DataFrame
        ``TrainResult.history`` or ``pd.read_csv(history.csv)``; needs columns ``phase``,
        ``phase_index``, ``kind`` ("step"/"epoch"), ``epoch`` (0-based within the phase) and
        ``step`` (0-based within the epoch; for epoch rows, the number of steps).

    Returns
    -------
    pandas.Series
        Float epochs, same index as ``history``: phase ``p`` starts where phase ``p - 1`` ended; a
        step row of epoch ``e`` with ``n`` steps sits at ``offset + e + (step + 1) / n``; an epoch
        row at ``offset + e + 1``.
    """
    return _axis(history)[0]


def _axis(history: pd.DataFrame) -> tuple[pd.Series, dict]:
    missing = [c for c in _REQUIRED if c not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing}")
    starts = {}
    x = pd.Series(np.nan, index=history.index, dtype=float)
    offset = 0.0
    for pi, rows in history.groupby("phase_index", sort=True):
        starts[pi] = offset
        steps = rows[rows["kind"] == "step"]
        # Steps per epoch: from the epoch row when present, else from the steps seen so far.
        n = steps.groupby("epoch")["step"].max() + 1
        ends = rows[rows["kind"] == "epoch"].set_index("epoch")["step"]
        n = n.combine(ends, max, fill_value=0) if len(ends) else n
        x[steps.index] = offset + steps["epoch"] + (steps["step"] + 1) / steps["epoch"].map(n)
        epochs = rows[rows["kind"] == "epoch"]
        x[epochs.index] = offset + epochs["epoch"] + 1
        offset += float(rows["epoch"].max() + 1)
    return x, starts


def plot_training_history(
    history: pd.DataFrame,
    *,
    values: Sequence[str] = ("loss",),
    log_scale: bool = False,
    show_steps: bool = True,
) -> Figure:
    """Loss (and other logged values) against epoch, one colour per phase, one panel per value.

    Parameters
    ----------
    history : pandas.DataFrame
        The training history (see :func:`epoch_axis` for the columns).
    values : Sequence[str], default=("loss",)
        Columns to draw, e.g. ``"loss"``, a logged term, or a validation metric ``"val_dice"``.
    log_scale : bool, default=False
        Logarithmic y axis (non-positive values are not drawn).
    show_steps : bool, default=True
        Draw per-step values as a thin line under the per-epoch means (epoch rows, markers).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(values)`` stacked panels sharing the epoch axis; dotted lines mark phase changes.
    """
    if isinstance(values, str) or not values:
        raise ValueError(f"values must be a non-empty sequence of column names, got {values!r}")
    missing = [v for v in values if v not in history.columns]
    if missing:
        raise ValueError(f"history lacks columns {missing}; it has {list(history.columns)}")
    if history.empty:
        raise ValueError("history is empty")
    x, starts = _axis(history)
    fig, axes = plt.subplots(len(values), 1, sharex=True, figsize=(7, 2.6 * len(values)), squeeze=False)
    order = history.drop_duplicates("phase_index").sort_values("phase_index")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, column in zip(axes[:, 0], values):
        for k, (pi, name) in enumerate(zip(order["phase_index"], order["phase"])):
            colour = colours[k % len(colours)]
            rows = history[history["phase_index"] == pi]
            steps = rows[(rows["kind"] == "step") & rows[column].notna()]
            epochs = rows[(rows["kind"] == "epoch") & rows[column].notna()]
            if show_steps and len(steps):
                ax.plot(x[steps.index], steps[column], color=colour, lw=0.6, alpha=0.4)
            if len(epochs):
                ax.plot(x[epochs.index], epochs[column], "o-", color=colour, ms=3, lw=1.2, label=str(name))
            elif len(steps):
                ax.plot([], [], "o-", color=colour, label=str(name))
            if k > 0:
                ax.axvline(starts[pi], color="0.6", ls=":", lw=0.8)
        if log_scale:
            ax.set_yscale("log")
        ax.set_ylabel(column.replace("_", " ").lower())
    axes[-1, 0].set_xlabel("epoch (cumulative over phases)")
    axes[0, 0].legend(title="phase", fontsize="small", frameon=False)
    fig.tight_layout()
    return fig


def plot_variant_curves(histories: dict[str, pd.DataFrame], values: Sequence[str] = ("loss", "val_dice")) -> Figure:
    """Per-epoch curves of several training runs side by side (one line per run, one panel per value).

    ``histories`` maps a run name to its ``TrainResult.history`` (one phase each, as fine-tuning
    runs are); epochs are 1-based on the x axis.
    """
    if not histories:
        raise ValueError("histories is empty")
    fig, axes = plt.subplots(1, len(values), figsize=(5.2 * len(values), 3.6), squeeze=False)
    for ax, column in zip(axes[0], values):
        for name, hist in histories.items():
            rows = hist[(hist["kind"] == "epoch")]
            if column not in rows or rows[column].notna().sum() == 0:
                continue
            rows = rows[rows[column].notna()]
            ax.plot(rows["epoch"] + 1, rows[column], marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(column.replace("_", " "))
    axes[0, -1].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
