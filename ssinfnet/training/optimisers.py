"""Optimisers of the paper: Lookahead (Zhang et al. 2019) around SGD for the multi-class stage.

Lookahead (Zhang et al., NeurIPS 2019): the wrapped ("fast") optimiser takes ``k`` steps, then
the slow weights move ``slow += alpha * (fast - slow)`` and the fast weights restart from them.
Slow weights are taken from the parameters at the first ``step`` (so weights loaded after the
optimiser was built are respected) and are saved in ``state_dict`` with the step counter, so a
resumed run continues exactly.
"""

from __future__ import annotations

import math
import math
import math
import math
import math
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.optim import SGD, Optimizer

__all__ = ["Lookahead", "make_lookahead_sgd", "adam", "sgd", "MilestoneFactor", "OptimizerFactory", "SchedulerFactory"]


class Lookahead(Optimizer):
    """Lookahead wrapper around any torch optimiser.

    Parameters
    ----------
    base_optimizer : torch.optim.Optimizer
        The fast optimiser; its ``param_groups`` are shared (learning-rate schedulers work on
        either object).
    k : int >= 1, default 5
        Fast steps per slow update.
    alpha : float in (0, 1], default 0.5
        Slow step size.
    """

    def __init__(self, base_optimizer: Optimizer, k: int = 5, alpha: float = 0.5):
        if not isinstance(base_optimizer, Optimizer):
            raise ValueError(f"base_optimizer must be a torch Optimizer, got {type(base_optimizer).__name__}")
        if isinstance(base_optimizer, Lookahead):
            raise ValueError("base_optimizer is already a Lookahead")
        if int(k) != k or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        # Optimizer.__init__ sets up the hook machinery; the groups are the base's own dicts.
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        self.base_optimizer = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.state = base_optimizer.state
        self.k, self.alpha = int(k), float(alpha)
        self.fast_steps = 0
        self.slow: dict[torch.Tensor, torch.Tensor] = {}

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict) -> None:
        """Add a group to the base optimiser (its slow copy starts at the next step)."""
        if not hasattr(self, "base_optimizer"):  # called by Optimizer.__init__
            return super().add_param_group(param_group)
        self.base_optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure=None):
        """One fast step; every ``k``-th also a slow update. Returns the closure's loss."""
        for p in self._params():
            if p not in self.slow:
                self.slow[p] = p.detach().clone()
        if closure is not None:
            with torch.enable_grad():
                loss = self.base_optimizer.step(closure)
        else:
            loss = self.base_optimizer.step()
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            for p, s in self.slow.items():
                s.add_(p.detach() - s, alpha=self.alpha)
                p.copy_(s)
        return loss

    def state_dict(self) -> dict:
        """Base optimiser state plus ``{"k", "alpha", "fast_steps", "slow"}`` (slow weights by
        parameter index in group order, as in torch's own state dicts)."""
        slow = {i: self.slow[p].clone() for i, p in enumerate(self._params()) if p in self.slow}
        return {"base": self.base_optimizer.state_dict(),
                "lookahead": {"k": self.k, "alpha": self.alpha, "fast_steps": self.fast_steps,
                              "slow": slow}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` saved (parameters must be in the same order)."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"base", "lookahead"}:
            raise ValueError("state_dict must come from Lookahead.state_dict()")
        self.base_optimizer.load_state_dict(state_dict["base"])
        # torch's load_state_dict gives the base optimiser new group dicts and a new state: share them again,
        # or a scheduler stepping this wrapper would change rates the base no longer reads
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        la = state_dict["lookahead"]
        params = self._params()
        if any(int(i) >= len(params) for i in la["slow"]):
            raise ValueError("state_dict has slow weights for more parameters than the optimiser")
        self.k, self.alpha, self.fast_steps = int(la["k"]), float(la["alpha"]), int(la["fast_steps"])
        self.slow = {}
        for i, s in la["slow"].items():
            p = params[int(i)]
            if s.shape != p.shape:
                raise ValueError(f"state_dict slow weight {i} has shape {tuple(s.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            self.slow[p] = s.detach().to(device=p.device, dtype=p.dtype).clone()

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, base={self.base_optimizer!r})"


def make_lookahead_sgd(params: Iterable, lr: float = 0.01, momentum: float = 0.7,
                       weight_decay: float = 0.0, k: int = 5, alpha: float = 0.5) -> Lookahead:
    """Lookahead(k=5, alpha=0.5) around SGD(lr 0.01, momentum 0.7): the multi-class optimiser."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return Lookahead(SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay), k=k, alpha=alpha)


OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def on_cuda(params) -> bool:
    """Whether the parameters live on a CUDA device (then the fused optimiser kernels apply)."""
    params = list(params)
    return bool(params) and params[0].is_cuda


def _fused_on_cuda(optimizer_class, **settings) -> OptimizerFactory:
    """A factory ``params -> optimizer_class(params, **settings)`` using the fused kernels for CUDA parameters."""
    def make(params):
        params = list(params)
        return optimizer_class(params, fused=on_cuda(params) or None, **settings)

    return make


def adam(lr: float = 1e-4, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)) -> OptimizerFactory:
    """Return a factory ``params -> torch.optim.Adam`` (the default optimiser: Adam, lr 1e-4); on CUDA the
    fused implementation (one kernel for all parameters instead of several per tensor)."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return _fused_on_cuda(torch.optim.Adam, lr=lr, betas=betas, weight_decay=weight_decay)


def sgd(lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> OptimizerFactory:
    """Return a factory ``params -> torch.optim.SGD`` (paper inpainter: lr 0.1, momentum 0.9, wd 5e-4)."""
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return _fused_on_cuda(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=weight_decay)


class MilestoneFactor:
    """Learning-rate multiplier for :class:`torch.optim.lr_scheduler.LambdaLR` from epoch milestones.

    ``MilestoneFactor({10: 0.1, 20: 0.01})(epoch)`` is 1 for epochs 0-9, 0.1 for 10-19 and 0.01
    from 20 on (0-based epochs within the phase; the factor multiplies the optimiser's initial lr).
    A class, not a lambda, so the scheduler's ``state_dict`` holds plain numbers.
    """

    def __init__(self, factors: Mapping[int, float]):
        items = sorted((int(e), float(f)) for e, f in factors.items())
        for epoch, factor in items:
            if epoch < 1:
                raise ValueError(f"lr_factors milestones must be epochs >= 1, got {epoch}")
            if not (factor > 0 and math.isfinite(factor)):
                raise ValueError(f"lr_factors values must be finite and > 0, got {factor} at epoch {epoch}")
        self.epochs = [e for e, _ in items]
        self.factors = [f for _, f in items]

    def __call__(self, epoch: int) -> float:
        factor = 1.0
        for milestone, value in zip(self.epochs, self.factors):
            if epoch >= milestone:
                factor = value
        return factor
