"""Did a training run learn? Failed runs are named here so no table shows them as results.

A run has failed when its loss is not finite, when its loss did not fall (the mean of the last third of
its epochs is at least ``flat_ratio`` x the mean of the first third), or when its best validation score
stays at the floor (below ``score_floor``, e.g. a Dice a constant map would reach). The checks read the
history table every training run writes (:mod:`ssinfnet.training.history`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["TrainingHealth", "check_training"]


@dataclass(frozen=True)
class TrainingHealth:
    """``failed`` with the reasons (empty when the run is usable), and the numbers they rest on."""

    failed: bool
    reasons: tuple[str, ...]
    best_score: float
    loss_ratio: float  # mean loss of the last third of epochs / of the first third

    @property
    def status(self) -> str:
        """"ok" or "failed: <reasons>" for a table cell."""
        return "ok" if not self.failed else "failed: " + "; ".join(self.reasons)


def check_training(history: pd.DataFrame, monitor: str | None = "val_dice", *, score_floor: float = 0.05,
                   flat_ratio: float = 0.98, phase: str | None = None) -> TrainingHealth:
    """Judge one run from its history (rows with ``kind == "epoch"``: ``loss`` and the ``monitor`` column).

    Parameters
    ----------
    history : the run's history table.
    monitor : validation column to judge (higher is better); None skips the score check.
    score_floor : best monitored score below this fails the run.
    flat_ratio : the loss must fall below this fraction of its starting level (needs >= 3 epochs;
        shorter runs are judged on finiteness and score only).
    phase : restrict to one phase's rows.

    Raises
    ------
    ValueError when the history has no epoch rows (or no ``monitor`` column when one is asked for).
    """
    h = history[history["kind"] == "epoch"]
    if phase is not None:
        h = h[h["phase"] == phase]
    if h.empty:
        raise ValueError("history has no epoch rows" + (f" for phase {phase!r}" if phase else ""))
    reasons = []
    loss = h["loss"].to_numpy(dtype=float)
    if not np.isfinite(loss).all():
        reasons.append(f"non-finite loss at epoch {int(np.argmin(np.isfinite(loss))) + 1}")
    ratio = float("nan")
    if len(loss) >= 3 and np.isfinite(loss).all():
        third = max(1, len(loss) // 3)
        first, last = loss[:third].mean(), loss[-third:].mean()
        ratio = float(last / first) if first > 0 else float("nan")
        if first > 0 and ratio >= flat_ratio:
            reasons.append(f"loss did not fall (last third {last:.3g} vs first third {first:.3g})")
    best = float("nan")
    if monitor is not None:
        if monitor not in h.columns:
            raise ValueError(f"history has no column {monitor!r}; columns: {list(h.columns)}")
        scores = h[monitor].to_numpy(dtype=float)
        best = float(np.nanmax(scores)) if np.isfinite(scores).any() else float("nan")
        if not np.isfinite(best):
            reasons.append(f"no finite {monitor}")
        elif best < score_floor:
            reasons.append(f"best {monitor} {best:.3f} below the floor {score_floor}")
    return TrainingHealth(failed=bool(reasons), reasons=tuple(reasons), best_score=best, loss_ratio=ratio)
