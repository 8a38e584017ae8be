"""Training phases: which models train, on which loss, with which optimiser and schedule.

Phases
------
A *phase* says which networks learn, which are frozen, what the loss is and how the optimiser and
learning rate behave, for a number of epochs. :func:`~ssinfnet.training.loop.train` runs phases in order over the same
training loader. Nothing else changes between the paper's stages: self-supervised pretraining,
single-class and multi-class segmentation are all ``train(phases, models, loader, ...)`` calls
(the nnU-Net habit of "one loop, variants change one thing").

``models`` is a ``dict`` of named ``nn.Module`` objects. In a phase,

* ``trainable`` modules are put in ``train()`` mode and their parameters are optimised by a fresh
  optimiser built by ``make_optimizer`` (the paper restarts the learning-rate ladder in each phase);
* ``frozen`` modules are put in ``eval()`` mode with ``requires_grad=False`` (used, not learnt);
* other modules are left as they are and are not optimised.

The loss is a callable ``loss_fn(models, batch, ctx) -> (loss, logs)``: ``loss`` a 0-d tensor to
minimise, ``logs`` a ``dict`` of extra scalars (floats or 0-d tensors) written to the history;
``ctx`` is a :class:`~ssinfnet.training.loop.StepContext` (phase, epoch, step, a seeded ``torch.Generator`` for masks and
other randomness, the device).

Example: coach-adversarial pretraining
--------------------------------------
The paper trains the inpainter alone (random masks), then the coach alone against the frozen
inpainter, then alternates. With ``inpaint_random``, ``inpaint_coached`` and ``coach_loss`` loss
callables (from :mod:`ssinfnet.training.losses`), the schedule is only configuration::

    from ssinfnet.training.guard import DivergenceGuard
    from ssinfnet.training.loader import make_loader
    from ssinfnet.training.loop import train
    from ssinfnet.training.optimisers import adam, sgd
    from ssinfnet.training.phases import Phase, alternate

    ladder = {0.4: 0.1, 0.8: 0.01, 0.9: 0.001}  # lr 0.1 -> 0.01 -> 0.001 -> 0.0001 at 40/80/90 % of the steps
    inpaint = Phase("inpainter", epochs=40, trainable=["inpainter"], frozen=["coach"],
                    loss_fn=inpaint_random, make_optimizer=sgd(0.1, momentum=0.9, weight_decay=5e-4),
                    lr_fractions=ladder, guard=DivergenceGuard(loss_ratio=3.0))
    coach = Phase("coach", epochs=10, trainable=["coach"], frozen=["inpainter"],
                  loss_fn=coach_loss, make_optimizer=adam(1e-5))
    inpaint_adv = Phase("inpainter_adv", epochs=10, trainable=["inpainter"], frozen=["coach"],
                        loss_fn=inpaint_coached, make_optimizer=sgd(0.1), lr_fractions=ladder)
    phases = [inpaint, coach, *alternate(inpaint_adv, coach, rounds=3)]
    loader = make_loader(unlabelled, batch_size=16, shuffle=True, seed=0)
    result = train(phases, {"inpainter": net, "coach": coach_net}, loader,
                   device="cuda", seed=0, run_dir="runs/paper/pretrain")

Run it again and it resumes from ``run_dir/checkpoints/last.pt``; a finished run returns at once
with the trained weights loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

from .guard import DivergenceGuard
from .optimisers import MilestoneFactor, OptimizerFactory, SchedulerFactory, adam
from .schedules import FractionLadder, check_fractions


LossFn = Callable[[Mapping[str, nn.Module], Any, "StepContext"], "tuple[torch.Tensor, Mapping[str, Any]]"]


ValFn = Callable[[Mapping[str, nn.Module], Any, "StepContext"], Mapping[str, float]]


_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Phase:
    """One phase of training: who learns, with which loss and optimiser, for how long.

    Parameters
    ----------
    name : str
        Unique within a run; letters, digits, ``_ . -`` (it names ``best_<name>.pt``).
    epochs : int
        Number of passes over the training loader, >= 1.
    trainable : Sequence[str]
        Keys of ``models`` optimised in this phase (``train()`` mode).
    loss_fn : callable
        ``loss_fn(models, batch, ctx) -> (loss, logs)``; ``loss`` a 0-d tensor, ``logs`` a dict of
        floats or 0-d tensors (logged per step).
    frozen : Sequence[str], default=()
        Keys of ``models`` used but not learnt (``eval()`` mode, ``requires_grad=False``).
    make_optimizer : callable, default=adam(1e-4)
        ``make_optimizer(params) -> Optimizer``; ``params`` is the list of trainable parameters.
    lr_factors : Mapping[int, float], default={}
        Epoch milestone -> multiplier of the initial lr (see :class:`MilestoneFactor`). Ignored when
        ``make_scheduler`` is given.
    lr_fractions : Mapping[float, float], default={}
        Fraction of the phase's optimiser steps -> multiplier of the initial lr, stepped after every
        optimiser step (:class:`~ssinfnet.training.schedules.FractionLadder`): the phase ends at the last
        multiplier whatever its length. Needs a loader with a length or ``max_steps_per_epoch``; not
        with ``lr_factors`` or ``make_scheduler``.
    make_scheduler : callable, optional
        ``make_scheduler(optimizer) -> LRScheduler``; stepped once per epoch.
    val_fn : callable, optional
        ``val_fn(models, val_loader, ctx) -> dict[str, float]``, run under ``torch.no_grad()`` with
        every model in ``eval()`` mode after each ``val_every`` epochs.
    monitor : str, optional
        Key of the ``val_fn`` result that selects ``best_<name>.pt``; NaN or infinite values are
        never chosen.
    mode : {"min", "max"}, default="min"
        Whether a smaller or a larger ``monitor`` value is better.
    val_every : int, default=1
        Validate every this many epochs (and always after the last epoch).
    checkpoint_every : int, default=1
        Write ``last.pt`` every this many epochs (and always after the last epoch of the phase).
    max_steps_per_epoch : int, optional
        Stop each epoch after this many batches (smoke profiles).
    grad_clip : float, optional
        Clip the global L2 norm of the gradients to this value.
    guard : DivergenceGuard, optional
        When to stop the phase as diverged at an epoch's end (:mod:`ssinfnet.training.guard`); a
        non-finite loss stops every phase.
    patience : int, optional
        Early stopping: end the phase once ``patience`` validations in a row have not improved on the
        best ``monitor`` value (a NaN or infinite value never improves); ``epochs`` is then the cap.
        The epoch row where the phase ends gets ``stop`` = ``"patience"`` (stopped early) or ``"cap"``
        (ran all ``epochs``) in the history. None (default): always run ``epochs``. Needs a ``monitor``.
    """

    name: str
    epochs: int
    trainable: Sequence[str]
    loss_fn: LossFn
    frozen: Sequence[str] = ()
    make_optimizer: OptimizerFactory = field(default_factory=adam)
    lr_factors: Mapping[int, float] = field(default_factory=dict)
    make_scheduler: SchedulerFactory | None = None
    val_fn: ValFn | None = None
    monitor: str | None = None
    mode: Literal["min", "max"] = "min"
    val_every: int = 1
    checkpoint_every: int = 1
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    lr_fractions: Mapping[float, float] = field(default_factory=dict)
    guard: DivergenceGuard | None = None
    patience: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"name must be letters, digits, '_', '.', '-'; got {self.name!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an int >= 1, got {self.epochs!r} (phase {self.name!r})")
        if isinstance(self.trainable, str) or isinstance(self.frozen, str):
            raise ValueError(f"trainable and frozen must be lists of model names, not strings (phase {self.name!r})")
        self.trainable, self.frozen = list(self.trainable), list(self.frozen)
        if not self.trainable:
            raise ValueError(f"trainable must name at least one model (phase {self.name!r})")
        both = sorted(set(self.trainable) & set(self.frozen))
        if both:
            raise ValueError(f"trainable and frozen overlap in phase {self.name!r}: {both}")
        if not callable(self.loss_fn):
            raise ValueError(f"loss_fn must be callable (phase {self.name!r})")
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
        if self.monitor is not None and self.val_fn is None:
            raise ValueError(f"monitor={self.monitor!r} needs a val_fn (phase {self.name!r})")
        for arg in ("val_every", "checkpoint_every"):
            value = getattr(self, arg)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{arg} must be an int >= 1, got {value!r}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1 or None, got {self.max_steps_per_epoch}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.patience is not None:
            if not isinstance(self.patience, int) or isinstance(self.patience, bool) or self.patience < 1:
                raise ValueError(f"patience must be an int >= 1 or None, got {self.patience!r} (phase {self.name!r})")
            if self.monitor is None:
                raise ValueError(f"patience={self.patience} needs a monitor to watch (phase {self.name!r})")
        MilestoneFactor(self.lr_factors)  # validates
        check_fractions(self.lr_fractions)
        if self.lr_fractions and (self.lr_factors or self.make_scheduler is not None):
            raise ValueError(f"phase {self.name!r}: lr_fractions replaces lr_factors and make_scheduler; give one")
        if self.guard is not None and not isinstance(self.guard, DivergenceGuard):
            raise ValueError(f"guard must be a DivergenceGuard or None, got {type(self.guard).__name__}")

    def validations_since_best(self, best_epoch: int | None, epochs_done: int) -> int:
        """How many validations ran after the best one, once ``epochs_done`` epochs of this phase are done.

        ``best_epoch``: 0-based epoch of the best monitored value so far (None: no finite value yet, so
        every validation counts). Validations run after epochs ``e`` with ``(e + 1) % val_every == 0``
        and after the last epoch. A function of the best epoch alone, which checkpoints keep, so a
        resumed run counts exactly as an uninterrupted one.
        """
        first = 0 if best_epoch is None else best_epoch + 1
        return sum(1 for e in range(first, epochs_done) if (e + 1) % self.val_every == 0 or e + 1 == self.epochs)

    def patience_spent(self, best_epoch: int | None, epochs_done: int) -> bool:
        """Whether early stopping ends the phase after ``epochs_done`` epochs (always False without ``patience``)."""
        return self.patience is not None and self.validations_since_best(best_epoch, epochs_done) >= self.patience


def alternate(first: Phase, second: Phase, rounds: int) -> list[Phase]:
    """Repeat two phases ``rounds`` times: ``[first_r1, second_r1, first_r2, ...]``.

    Each copy is renamed ``<name>_r<k>`` (k from 1) so checkpoints and history rows stay distinct,
    and builds a fresh optimiser when it starts.
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    out = []
    for k in range(1, rounds + 1):
        out += [replace(first, name=f"{first.name}_r{k}"), replace(second, name=f"{second.name}_r{k}")]
    return out


def check_phases(phases: Sequence[Phase], models: Mapping[str, nn.Module]) -> list[Phase]:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict of name -> nn.Module")
    for name, module in models.items():
        if not isinstance(module, nn.Module):
            raise ValueError(f"models[{name!r}] is a {type(module).__name__}, not an nn.Module")
    phases = list(phases)
    if not phases:
        raise ValueError("phases must not be empty")
    names = [p.name for p in phases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"phase names must be unique; repeated: {dupes}")
    for p in phases:
        if not isinstance(p, Phase):
            raise ValueError(f"phases must be Phase objects, got {type(p).__name__}")
        unknown = sorted((set(p.trainable) | set(p.frozen)) - set(models))
        if unknown:
            raise ValueError(f"phase {p.name!r} names unknown models {unknown}; models are {sorted(models)}")
    return phases


def enter_phase(phase: Phase, models: Mapping[str, nn.Module], original: Mapping[str, list[bool]]) -> list:
    """Set modes and ``requires_grad`` for a phase; return the parameters to optimise."""
    params = []
    for name in phase.frozen:
        models[name].eval()
        models[name].requires_grad_(False)
    for name in phase.trainable:
        module = models[name]
        module.train()
        # Restore the caller's flags (a phase before may have frozen it; a sub-part may be fixed on purpose).
        for p, flag in zip(module.parameters(), original[name]):
            p.requires_grad_(flag)
            if flag:
                params.append(p)
    if not params:
        raise ValueError(f"phase {phase.name!r}: trainable models {phase.trainable} have no parameters to train")
    return params


def make_scheduler(phase: Phase, optimizer: torch.optim.Optimizer, steps_per_epoch: int | None = None):
    """The phase's lr scheduler (None for a constant rate). ``steps_per_epoch`` (batches per epoch after
    ``max_steps_per_epoch``; None when unknown) sizes an ``lr_fractions`` ladder, which is stepped after
    every optimiser step; the others once per epoch."""
    if phase.lr_fractions:
        if not steps_per_epoch:
            raise ValueError(f"phase {phase.name!r}: lr_fractions needs the number of steps per epoch (got "
                             f"{steps_per_epoch}): a non-empty loader with a length, or max_steps_per_epoch")
        return FractionLadder(optimizer, phase.lr_fractions, phase.epochs * steps_per_epoch)
    if phase.make_scheduler is not None:
        return phase.make_scheduler(optimizer)
    if phase.lr_factors:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, MilestoneFactor(phase.lr_factors))
    return None
