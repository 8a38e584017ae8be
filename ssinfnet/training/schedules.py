"""Learning-rate ladders over the fraction of a phase's optimiser steps.

A ladder given in epochs (:class:`~ssinfnet.training.optimisers.MilestoneFactor`) only fires in
phases long enough to reach its milestones: a one-epoch phase never steps down. The paper's
pretraining ladder is written in fractions of the phase instead (x0.1 at 40 %, x0.01 at 80 %, x0.001
at 90 %, its epochs 40, 80 and 90 of 100), so :class:`FractionLadder` places the milestones on the
phase's optimiser steps and is stepped after every step: a phase of any length ends at the low rate.

Rule: step ``s`` (0-based) of a phase of ``T`` steps runs at the factor of the largest fraction
``f <= s / T``; the phase's last step always runs at the last factor (for ``T < 10`` the fractions
alone would not reach it). A phase of a single step runs at the base rate. With ``T = E * n``
(``E`` epochs of ``n`` steps) a fraction ``f`` with ``f * E`` a whole number falls exactly on the
first step of epoch ``f * E``, so a 100-epoch phase changes rate at the paper's epochs 40, 80, 90.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["FractionLadder", "check_fractions", "fraction_milestones"]


def check_fractions(fractions: Mapping[float, float]) -> list[tuple[float, float]]:
    """Validate a ladder ``{fraction of the phase's steps: multiplier of the initial lr}``; return it
    sorted by fraction. Fractions must lie in (0, 1), multipliers be finite and > 0."""
    if not isinstance(fractions, Mapping):
        raise ValueError(f"lr_fractions must be a dict of fraction -> factor, got {type(fractions).__name__}")
    items = sorted((float(f), float(v)) for f, v in fractions.items())
    for frac, factor in items:
        if not 0.0 < frac < 1.0:
            raise ValueError(f"lr_fractions keys must be fractions of the phase in (0, 1), got {frac}")
        if not (factor > 0 and math.isfinite(factor)):
            raise ValueError(f"lr_fractions values must be finite and > 0, got {factor} at fraction {frac}")
    return items


def fraction_milestones(fractions: Mapping[float, float], total_steps: int) -> list[list]:
    """``[[step, factor], ...]``: the 0-based step of a phase of ``total_steps`` steps from which each
    factor applies (see the module's rule), in order. Fractions are read as written in decimal
    (0.9 is 9/10 exactly), so ``0.9 * 300`` is step 270, not 271."""
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    out = []
    for frac, factor in check_fractions(fractions):
        step = math.ceil(Fraction(repr(frac)) * total_steps)
        out.append([max(1, min(step, total_steps - 1)), factor])
    return out


class FractionLadder(LRScheduler):
    """lr = initial lr x the ladder's factor at the current step; call :meth:`step` after every
    optimiser step.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    fractions : Mapping[float, float]
        Fraction of the phase's steps -> multiplier, e.g. ``{0.4: 0.1, 0.8: 0.01, 0.9: 0.001}``.
    total_steps : int
        Optimiser steps the phase will take (epochs x steps per epoch).

    Its ``state_dict`` holds plain numbers (loadable with ``weights_only=True``); loading the state of
    a ladder over another number of steps raises ValueError (the phase's length changed).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, fractions: Mapping[float, float], total_steps: int):
        self.total_steps = total_steps
        self.milestones = fraction_milestones(fractions, total_steps)
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """The multiplier at 0-based step ``step`` of the phase."""
        value = 1.0
        for milestone, factor in self.milestones:
            if step >= milestone:
                value = factor
        return value

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict) -> None:
        saved = (state_dict.get("total_steps"), state_dict.get("milestones"))
        if saved != (self.total_steps, self.milestones):
            raise ValueError(f"the saved lr ladder spans {saved[0]} steps with milestones {saved[1]}, this phase "
                             f"{self.total_steps} steps with {self.milestones} (its epochs or steps per epoch "
                             f"changed): train it in a new run folder")
        super().load_state_dict(state_dict)
