"""Stopping a phase that diverges, and saying so.

Two kinds of divergence stop :func:`ssinfnet.training.loop.train` with a :class:`DivergenceError`
(a ``RuntimeError``):

* a NaN or infinite loss, inside the step that produced it, before the optimiser applies it
  (:class:`NonFiniteLossError`, every phase);
* at the end of an epoch, a phase's :class:`DivergenceGuard` rule: the epoch's mean loss far above
  the phase's best epoch so far, or the epoch mean of a logged value past its limit (the
  pretraining's inpainter phases log the share of output pixels past the loss's clipping ceiling:
  an inpainter thrown past it gets no gradient and never comes back).

Why an exception and not a flag in the result: a diverged network's weights must never be used, and
an exception cannot be overlooked by a caller that forgets to look at a flag; it names the phase, the
epoch and the rule that fired. Before it propagates, the loop appends a history row of kind
``"diverged"`` whose ``note`` column says the same in plain words, and writes the history. The
guard runs before the epoch's checkpoint: ``last.pt`` stays at the last healthy epoch, so re-running
the same folder re-runs the diverging epoch and stops again (the run is deterministic) instead of
carrying on from diverged weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DivergenceGuard", "DivergenceError", "NonFiniteLossError", "check_epoch"]


@dataclass(frozen=True)
class DivergenceGuard:
    """When a phase is judged diverged at the end of an epoch (a ``Phase(guard=...)`` value).

    Parameters
    ----------
    loss_ratio : float > 1, optional, default=3.0
        Stop when the epoch's mean training loss exceeds ``loss_ratio`` x the lowest epoch mean of
        the phase so far (needs a previous epoch with a positive mean; None turns the rule off).
    limits : Mapping[str, float], default={}
        Logged value (a key of the loss's ``logs``) -> the largest epoch mean allowed; e.g.
        ``{"past_ceiling": 0.5}`` stops when more than half of the outputs sit past the loss's clip.
    meanings : Mapping[str, str], default={}
        Logged value -> what it means, in words, for the message (e.g. ``"share of output pixels past
        the loss's clipping ceiling"``).
    """

    loss_ratio: float | None = 3.0
    limits: Mapping[str, float] = field(default_factory=dict)
    meanings: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loss_ratio is not None and not (self.loss_ratio > 1 and math.isfinite(self.loss_ratio)):
            raise ValueError(f"loss_ratio must be a finite number > 1 or None, got {self.loss_ratio}")
        for key, limit in dict(self.limits).items():
            if not isinstance(key, str) or not math.isfinite(float(limit)):
                raise ValueError(f"limits must map logged names to finite numbers, got {key!r}: {limit!r}")


class DivergenceError(RuntimeError):
    """Training stopped because phase ``phase`` (index ``phase_index``) diverged at ``epoch`` (0-based
    within the phase), ``global_step`` optimiser steps into the run; ``reason`` in plain words,
    ``value`` the number that broke the rule (the loss, or the logged value) and ``values`` the
    epoch's numbers for the history row (name -> value, e.g. ``{"loss": 4.0, "past_ceiling": 1.0}``)."""

    def __init__(self, phase: str, phase_index: int | None, epoch: int, global_step: int, reason: str,
                 value: float, values: Mapping[str, float] | None = None):
        self.phase, self.phase_index, self.epoch = phase, phase_index, epoch
        self.global_step, self.reason, self.value = global_step, reason, value
        self.values = dict(values) if values is not None else {"loss": value}
        super().__init__(self._message())

    def _message(self) -> str:
        return (f"phase {self.phase!r} diverged at epoch {self.epoch} (global step {self.global_step}): "
                f"{self.reason}; training stopped, its weights should not be used")

    def history_row(self) -> dict[str, Any]:
        """The ``kind="diverged"`` row the loop appends to the history (``note``: the message)."""
        return {"phase": self.phase, "phase_index": self.phase_index, "kind": "diverged", "epoch": self.epoch,
                "global_step": self.global_step, **self.values, "note": str(self)}


class NonFiniteLossError(DivergenceError):
    """The loss became NaN or infinite; raised before the optimiser step that would apply it.

    Attributes ``phase``, ``epoch`` (0-based within the phase), ``step`` (0-based within the epoch),
    ``global_step``, ``batch_index`` (0-based position in the loader's epoch), ``value`` and
    ``phase_index`` (None when not given).
    """

    def __init__(self, phase: str, epoch: int, step: int, global_step: int, batch_index: int, value: float,
                 phase_index: int | None = None):
        self.step, self.batch_index = step, batch_index
        super().__init__(phase, phase_index, epoch, global_step, f"non-finite loss ({value})", value)

    def _message(self) -> str:
        return (f"non-finite loss ({self.value}) in phase {self.phase!r}, epoch {self.epoch}, step {self.step} "
                f"(global step {self.global_step}), batch index {self.batch_index}")


def check_epoch(guard: DivergenceGuard | None, rows: Sequence[Mapping[str, Any]], phase: str, phase_index: int,
                epoch: int, n_steps: int, global_step: int) -> None:
    """Raise :class:`DivergenceError` when the epoch just run breaks ``guard``; None: no guard.

    ``rows`` is the run's history so far: its last ``n_steps`` rows are this epoch's step rows (``loss``
    and the logged values), earlier rows of kind ``"epoch"`` with this ``phase_index`` give the phase's
    best epoch mean (rows of a resumed run included, so a resumed run judges as an uninterrupted one).
    Raises ValueError when a limited name was never logged.
    """
    if guard is None:
        return
    steps = rows[len(rows) - n_steps:]
    mean = math.fsum(r["loss"] for r in steps) / n_steps
    for key, limit in dict(guard.limits).items():
        if any(key not in r for r in steps):
            raise ValueError(f"phase {phase!r}: the divergence guard limits {key!r}, which its loss does not log")
        value = math.fsum(r[key] for r in steps) / n_steps
        if value > limit:
            meaning = f" ({guard.meanings[key]})" if key in guard.meanings else ""
            reason = f"the epoch's mean {key!r}{meaning} is {value:.3g}, above the guard's limit {limit:g}"
            raise DivergenceError(phase, phase_index, epoch, global_step, reason, value, {"loss": mean, key: value})
    if guard.loss_ratio is not None:
        earlier = [r["loss"] for r in rows[: len(rows) - n_steps]
                   if r.get("kind") == "epoch" and r.get("phase_index") == phase_index]
        best = min(earlier, default=math.nan)
        if best > 0 and mean > guard.loss_ratio * best:
            reason = (f"the epoch's mean loss {mean:.4g} is {mean / best:.3g} x the phase's best epoch mean "
                      f"{best:.4g} (the guard stops above {guard.loss_ratio:g} x)")
            raise DivergenceError(phase, phase_index, epoch, global_step, reason, mean, {"loss": mean})
