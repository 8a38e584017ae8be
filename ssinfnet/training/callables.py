"""Calling a phase's ``loss_fn`` and ``val_fn``: checking what they return, and bringing their numbers to the host.

Host synchronisation
--------------------
A non-finite loss must stop training inside the step that produced it, before the optimiser
applies it, so :func:`ssinfnet.training.loop.train` reads the loss back to the host once per step
(:func:`sync_values`). That one transfer carries the loss and every tensor in ``logs`` together (a
single ``torch.stack(...).tolist()``), and the same numbers feed the history and the progress bar,
so no other per-step sync happens. With several processes (:mod:`ssinfnet.training.distributed`)
the transfer is one all-reduce that averages the loss and every log over processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .distributed import World
from .history import History
from .phases import Phase

if TYPE_CHECKING:
    from .loop import StepContext


def sync_values(loss: Any, logs: Mapping[str, Any], phase: str, world: World | None = None) -> dict[str, float]:
    """Bring the loss and tensor logs to the host in one transfer (the step's only sync); with several
    processes, their means over processes (one all-reduce, in float64, of the loss and every log)."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn of phase {phase!r} must return a 0-d tensor as loss, got {loss!r:.80}")
    if not isinstance(logs, Mapping):
        raise ValueError(f"loss_fn of phase {phase!r} must return (loss, dict of logs)")
    reserved = sorted(set(logs) & set(History._BASE))
    if reserved:
        raise ValueError(f"loss_fn of phase {phase!r} logs reserved names {reserved}")
    tensor_keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    stacked = torch.stack([loss.detach().float()] + [logs[k].detach().float().reshape(()) for k in tensor_keys])
    if world is not None:
        plain = [k for k in logs if k not in tensor_keys]
        floats = torch.tensor([float(logs[k]) for k in plain], dtype=torch.float64, device=stacked.device)
        host = dict(zip(["loss", *tensor_keys, *plain], world.mean(torch.cat([stacked.double(), floats])).tolist()))
        return {"loss": host["loss"], **{k: host[k] for k in logs}}
    host = stacked.tolist()
    values = {"loss": host[0]}
    for k, v in logs.items():
        values[k] = host[1 + tensor_keys.index(k)] if k in tensor_keys else float(v)
    return values


def validate_phase(phase: Phase, models: Mapping[str, nn.Module], loader: Any, ctx: StepContext, amp: bool) -> dict:
    """``phase.val_fn(models, loader, ctx)`` with every module in ``eval()`` mode (their modes restored
    after), without gradients, under bf16 autocast when ``amp``; returns ``{name: float}``.

    Raises ValueError when it does not return a dict or lacks ``phase.monitor``.
    """
    modes = {mod: mod.training for m in models.values() for mod in m.modules()}
    for m in models.values():
        m.eval()
    try:
        with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=amp):
            metrics = phase.val_fn(models, loader, ctx)
    finally:
        for mod, flag in modes.items():
            mod.training = flag
    if not isinstance(metrics, Mapping):
        raise ValueError(f"val_fn of phase {phase.name!r} must return a dict of metrics")
    metrics = {str(k): float(v) for k, v in metrics.items()}
    if phase.monitor is not None and phase.monitor not in metrics:
        raise ValueError(f"val_fn of phase {phase.name!r} returned {sorted(metrics)}, lacks monitor {phase.monitor!r}")
    return metrics
