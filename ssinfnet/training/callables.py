"""Calling a phase's ``loss_fn`` and ``val_fn``: checking what they return, and bringing their numbers to the host.

Host synchronisation
--------------------
A step's loss and every tensor in ``logs`` are stacked on the device (:func:`stack_values`) and
read back to the host together, in one transfer (:func:`read_values`), for any number of steps at
once: :func:`ssinfnet.training.loop.train` reads them after every step by default on the CPU, so a
non-finite loss stops training inside the step that produced it, before the optimiser applies it,
and every ``sync_every`` steps (by default once per epoch) on CUDA, where a read-back stalls the
GPU's queue. The same numbers feed the history and the progress bar, so no other sync happens. With
several processes (:mod:`ssinfnet.training.distributed`) the transfer is one all-reduce that averages
the loss and every log over processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .distributed import World
from .history import History
from .phases import Phase

if TYPE_CHECKING:
    from .loop import StepContext


@dataclass
class Pending:
    """A step's values still on the device: ``tensor`` (1-D: the loss, then the tensor logs; float64
    with several processes, with the plain logs appended), ``names`` in that order, and the plain
    (non-tensor) logs as host floats."""

    tensor: torch.Tensor
    names: list
    plain: dict


def stack_values(loss: Any, logs: Mapping[str, Any], phase: str, world: World | None = None) -> Pending:
    """Check what a ``loss_fn`` returned and stack its numbers on the device (no sync)."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn of phase {phase!r} must return a 0-d tensor as loss, got {loss!r:.80}")
    if not isinstance(logs, Mapping):
        raise ValueError(f"loss_fn of phase {phase!r} must return (loss, dict of logs)")
    reserved = sorted(set(logs) & set(History._BASE))
    if reserved:
        raise ValueError(f"loss_fn of phase {phase!r} logs reserved names {reserved}")
    tensor_keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    stacked = torch.stack([loss.detach().float()] + [logs[k].detach().float().reshape(()) for k in tensor_keys])
    plain = {k: float(v) for k, v in logs.items() if k not in tensor_keys}
    if world is not None:  # the plain logs are averaged over processes too
        floats = torch.tensor(list(plain.values()), dtype=torch.float64, device=stacked.device)
        return Pending(torch.cat([stacked.double(), floats]), ["loss", *tensor_keys, *plain], {})
    return Pending(stacked, ["loss", *tensor_keys], plain)


def read_values(pending: Sequence[Pending], order: Sequence[Sequence[str]],
                world: World | None = None) -> list[dict[str, float]]:
    """The host values of several steps in one transfer (with several processes, their means over
    processes in one all-reduce); ``order[j]`` is step j's log names in the order its ``logs`` had."""
    if not pending:
        return []
    flat = torch.cat([p.tensor for p in pending])
    host = (flat.tolist() if world is None else world.mean(flat).tolist())
    out, at = [], 0
    for p, keys in zip(pending, order):
        got = dict(zip(p.names, host[at:at + len(p.names)]))
        at += len(p.names)
        got.update(p.plain)
        out.append({"loss": got["loss"], **{k: got[k] for k in keys}})
    return out


def sync_values(loss: Any, logs: Mapping[str, Any], phase: str, world: World | None = None) -> dict[str, float]:
    """One step's loss and logs on the host (:func:`stack_values` then :func:`read_values`)."""
    return read_values([stack_values(loss, logs, phase, world)], [list(logs)], world)[0]


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
