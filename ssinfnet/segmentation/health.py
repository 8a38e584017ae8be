"""Did a fine-tuning run learn? The floors a segmentation model must beat on its validation split.

A model can reach a validation Dice without learning anything: one that marks every pixel of every
slice as lesion scores the lesions' share of each slice (on the cpu profile's 10 real validation
slices the infection Dice of that constant map is 0.25, since lesions cover up to a third of some
slices), and one that marks nothing scores 0. A network whose output is nearly constant lands within
a few thousandths of the constant map: in the published cpu run the inpainting-initialised variants
scored 0.250-0.251 after their first epoch, against 0.2496 for the constant map, before they learnt
anything. So a fine-tuned model has **failed** when its best validation score is not above the larger of

* :data:`MIN_FLOOR` (0.05 Dice), and
* the score of the best *constant map* on the same validation slices (every pixel one lesion class)
  plus :data:`MARGIN` (0.01 Dice: on 10 validation slices, one slice's Dice moving by 0.1),

or when its training loss was not finite or did not fall (:func:`ssinfnet.training.health.check_training`,
whose flat-loss rule needs three epochs or more).

Single-class models are judged on the infection Dice;
multi-class models on the mean of GGO and consolidation **and** on each of the two (a model that never
predicts consolidation has not learnt stage 2, whatever its GGO). Failed models are shown as failed and
never passed on to later chapters (:mod:`ssinfnet.book.stages.evaluation`).

A run that passed may still have been stopped too early: one that ran to its epoch cap while its
validation Dice was rising would have gained from more epochs. :func:`plateau_record` says whether a run
reached a **plateau**: it stopped on its patience (that many epochs without a better score), or it ran to
the cap and its best score rose by less than :data:`PLATEAU_GAIN` in the last :data:`PLATEAU_WINDOW`
validated epochs (the infection Dice for single-class models, the mean of GGO and consolidation for
multi-class ones).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.classes import CONSOLIDATION, GGO
from ..data.sample import Sample
from ..training.health import TrainingHealth, check_training

__all__ = ["MARGIN", "MIN_FLOOR", "PLATEAU_GAIN", "PLATEAU_WINDOW", "TrainingHealth", "score_floors", "fit_health",
           "judge_fit", "health_record", "late_gain", "plateau_record", "stop_record"]

#: The least validation Dice a model must beat whatever the constant maps reach.
MIN_FLOOR = 0.05

#: How much a model must beat the best constant map's score by (Dice).
MARGIN = 0.01

#: The last validated epochs of a run that :func:`late_gain` looks at (the ``cpu`` profile drops its
#: fine-tuning rate 10x at epoch 45 of 60, so these all run at the low rate).
PLATEAU_WINDOW = 5

#: A run that reached its cap has plateaued when its best validation Dice rose by less than this in its last
#: :data:`PLATEAU_WINDOW` validated epochs: as :data:`MARGIN` (on the cpu profile's 10 validation slices, one
#: slice's Dice moving by 0.1).
PLATEAU_GAIN = MARGIN

#: The per-class score columns of a multi-class validation (``validation_scores`` keys).
MULTI_CLASS_SCORES = {"dice_ggo": GGO, "dice_consolidation": CONSOLIDATION}


def score_floors(task: str, val_samples: Sequence[Sample], minimum: float = MIN_FLOOR,
                 margin: float = MARGIN) -> dict[str, float]:
    """The floor of each validation score of ``task`` on ``val_samples``: max(``minimum``, constant map's
    score + ``margin``).

    Single: ``{"dice": ...}``, the constant map being infection everywhere. Multi: ``{"dice", "dice_ggo",
    "dice_consolidation"}``; the constant maps are GGO everywhere and consolidation everywhere, ``dice``
    takes the better of the two and each class score its own class's map. A class absent from every
    validation slice has no score to judge (its key is left out).
    """
    from .fit import validation_scores  # fit imports this module

    shapes = [s.image.shape for s in val_samples]
    if task == "single":
        every = validation_scores(task, [np.ones(sh, np.float32) for sh in shapes], val_samples)
        return {"dice": max(minimum, every["dice"] + margin) if math.isfinite(every["dice"]) else minimum}
    const = {}
    for cls in (GGO, CONSOLIDATION):
        maps = [np.zeros((3, *sh), np.float32) for sh in shapes]
        for m in maps:
            m[cls] = 1.0
        const[cls] = validation_scores(task, maps, val_samples)
    floors = {"dice": max([minimum, *(c["dice"] + margin for c in const.values() if math.isfinite(c["dice"]))])}
    for key, cls in MULTI_CLASS_SCORES.items():
        if math.isfinite(const[cls][key]):
            floors[key] = max(minimum, const[cls][key] + margin)
    return floors


def fit_health(history: pd.DataFrame, floors: Mapping[str, float], phase: str | None = None) -> TrainingHealth:
    """Judge a fine-tuning run from its history (epoch rows: ``loss`` and ``val_<score>`` columns).

    The loss must be finite and fall (:func:`~ssinfnet.training.health.check_training`); each score of
    ``floors`` must be above its floor at its best validated epoch (equal fails). ``best_score`` is that of ``"dice"``.
    Raises ValueError when the history has no epoch rows or lacks a ``val_<score>`` column of ``floors``.
    """
    loss = check_training(history, None, phase=phase)
    h = history[history["kind"] == "epoch"]
    h = h if phase is None else h[h["phase"] == phase]
    reasons, best = list(loss.reasons), float("nan")
    for key, floor in floors.items():
        if f"val_{key}" not in h.columns:
            raise ValueError(f"history has no column 'val_{key}'; columns: {list(h.columns)}")
        scores = h[f"val_{key}"].to_numpy(dtype=float)
        top = float(np.nanmax(scores)) if np.isfinite(scores).any() else float("nan")
        if not math.isfinite(top):
            reasons.append(f"no finite val_{key}")
        elif top <= floor:
            reasons.append(f"best val_{key} {top:.3f} not above the floor {floor:.3f}")
        best = top if key == "dice" else best
    return TrainingHealth(failed=bool(reasons), reasons=tuple(reasons), best_score=best, loss_ratio=loss.loss_ratio)


def health_record(health: TrainingHealth, floors: Mapping[str, float]) -> dict:
    """A JSON-able record of a run's health for its exported model: status, failed, reasons, floors."""
    return {"status": health.status, "failed": health.failed, "reasons": list(health.reasons),
            "floors": {k: round(float(v), 4) for k, v in floors.items()}}


def stop_record(history: pd.DataFrame, phase: str | None = None) -> dict:
    """Where a run's (phase's) training ended: ``{"epochs_run", "stop"}`` from its epoch rows; ``stop`` is
    "patience" (early stopping), "cap" (all epochs, with a patience) or None (no patience set)."""
    h = history[history["kind"] == "epoch"]
    if phase is not None:
        h = h[h["phase"] == phase]
    stop = h["stop"].iloc[-1] if "stop" in h.columns and len(h) else None
    return {"epochs_run": int(len(h)), "stop": stop if isinstance(stop, str) else None}


def _validated(history: pd.DataFrame, phase: str | None, score: str) -> np.ndarray:
    """The ``val_<score>`` of each validated epoch row of ``history`` (of ``phase`` when given), in order."""
    column = f"val_{score}"
    if column not in history.columns:
        raise ValueError(f"history has no column {column!r}; columns: {list(history.columns)}")
    h = history[history["kind"] == "epoch"]
    h = h if phase is None else h[h["phase"] == phase]
    scores = h[column].to_numpy(dtype=float)
    return scores[np.isfinite(scores)]


def late_gain(history: pd.DataFrame, window: int = PLATEAU_WINDOW, phase: str | None = None,
              score: str = "dice") -> float:
    """How much a run's best validation score rose in its last ``window`` validated epochs: the best of the
    whole run minus the best before those epochs (>= 0, in the score's units, Dice 0-1).

    ``history``: the training history (epoch rows with ``val_<score>``). NaN when the run validated
    ``window`` epochs or fewer (nothing before the window to compare with). ValueError when ``window`` is
    not a positive integer or the column is missing.
    """
    if not (isinstance(window, numbers.Integral) and not isinstance(window, bool) and window >= 1):
        raise ValueError(f"window must be a positive integer, got {window!r}")
    scores = _validated(history, phase, score)
    if len(scores) <= window:
        return float("nan")
    return float(scores.max() - scores[:-int(window)].max())


def plateau_record(history: pd.DataFrame, window: int = PLATEAU_WINDOW, gain: float = PLATEAU_GAIN,
                   phase: str | None = None, score: str = "dice") -> dict:
    """Whether a run reached a plateau: ``{"late_gain", "plateau"}``.

    ``late_gain``: :func:`late_gain` over ``window`` validated epochs, rounded to 4 places (None when it is
    NaN: too few validated epochs, or none with a finite score). ``plateau``: True when the run stopped on
    its patience, or when that rounded gain is below ``gain``; False when it ran to its cap (or had no
    patience) and the rounded gain is ``gain`` or more; None when it cannot be told.
    """
    lg = late_gain(history, window, phase, score)
    # The record keeps the gain to 4 places; the verdict is taken on the same number a reader sees.
    lg = round(lg, 4) if math.isfinite(lg) else None
    stop = stop_record(history, phase)["stop"]
    if stop == "patience":
        plateau = True
    elif lg is not None:
        plateau = lg < gain
    else:
        plateau = None
    return {"late_gain": lg, "plateau": plateau}


def judge_fit(task: str, history: pd.DataFrame, val_samples: Sequence[Sample], phase: str | None = None
              ) -> tuple[TrainingHealth, dict]:
    """:func:`fit_health` against :func:`score_floors` of ``val_samples``, and the record the exported
    model keeps: :func:`health_record` with :func:`stop_record` and :func:`plateau_record` (``status``,
    ``failed``, ``reasons``, ``floors``, ``epochs_run``, ``stop``, ``late_gain``, ``plateau``)."""
    floors = score_floors(task, val_samples)
    health = fit_health(history, floors, phase)
    return health, {**health_record(health, floors), **stop_record(history, phase),
                    **plateau_record(history, phase=phase)}
