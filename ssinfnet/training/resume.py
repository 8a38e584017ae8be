"""What a training run writes to pick up where it stopped: ``last.pt``, ``best_<phase>.pt``, and resuming.

:func:`ssinfnet.training.loop.train` writes ``run_dir/checkpoints/last.pt`` after an epoch
(:func:`save_last`) and ``best_<phase>.pt`` whenever a phase's monitored metric improves
(:func:`update_best`). A later call with the same phases, seed and key continues from ``last.pt``
(:func:`load_last`): weights, optimiser and scheduler state, every random-number generator, the
history rows written so far and the best values, so the resumed run continues exactly as an
uninterrupted one would. Files are plain dicts of tensors, numbers and strings, written atomically
and loaded with ``weights_only=True`` (:mod:`ssinfnet.training.checkpoint`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .history import History
from .phases import Phase
from .provenance import check_key, note_stale

#: Version of the dict in ``last.pt`` / ``best_<phase>.pt``; a checkpoint of another format is refused.
CHECKPOINT_FORMAT = 1


@dataclass
class Resumed:
    """Where a resumed run starts: ``phase_index`` and ``epoch`` (0-based within that phase) of the
    next epoch to run, the counters and best values so far, the optimiser and scheduler state of that
    phase (None when the checkpointed phase had finished, so the next one starts fresh), the run's
    provenance ``record`` and the checkpoint's ``path``."""

    phase_index: int
    epoch: int
    global_step: int
    wall_s: float
    best: dict[str, dict[str, Any]]
    optimizer_state: dict | None
    record: dict[str, Any]
    path: Path


def load_last(path: Path, phases: list[Phase], seed: int, key: Mapping[str, str | None],
              models: Mapping[str, nn.Module], generators: Mapping[str, torch.Generator | None],
              history: History, rank: int = 0, world_size: int = 1) -> Resumed:
    """Restore a run from its ``last.pt`` at ``path``: load the weights into ``models`` and the RNG
    states into the global generators and ``generators`` (process ``rank``'s, for a checkpoint of
    ``world_size`` processes), truncate ``history`` to the checkpoint's rows; return where to continue.

    Raises ValueError when the checkpoint's format, seed or phase names differ (see
    :func:`check_resume`), or when training is left to do and the checkpoint was written by another
    number of processes; :class:`~ssinfnet.training.provenance.StaleRunError` when its key differs.
    """
    state = load_checkpoint(path, map_location="cpu")
    record, stale = check_resume(state, phases, seed, path, key)
    saved_size = int(state.get("world_size", 1))
    phase_index, epoch = state["phase_index"], state["epochs_done"]
    saved_opt = {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}
    if epoch >= phases[phase_index].epochs:  # that phase had finished
        phase_index, epoch, saved_opt = phase_index + 1, 0, None
    if saved_size != world_size and phase_index < len(phases):
        raise ValueError(f"checkpoint {path} was written by a run of {saved_size} process(es), this one has "
                         f"{world_size}: continue it with as many (torchrun --nproc-per-node {saved_size}), "
                         f"or train in a new run folder")
    if stale is not None:
        note_stale(path.parent.parent, stale)
    for name, module in models.items():
        module.load_state_dict(state["models"][name])
    by_rank = state.get("rng_by_rank")
    restore_rng_state(by_rank[rank] if by_rank and saved_size == world_size else state["rng"], generators)
    history.load(state["history_len"])
    return Resumed(phase_index, epoch, state["global_step"], state["wall_s"],
                   {k: dict(v) for k, v in state["best"].items()}, saved_opt, record, path)


def check_resume(state: Mapping[str, Any], phases: list[Phase], seed: int, path: Path,
                 key: Mapping[str, str | None]) -> tuple[dict[str, Any], dict | None]:
    """Refuse a checkpoint of another format, seed, phase list or key; return the provenance record
    the resumed run carries on (the checkpoint's own, plus a note when a stale one is allowed) and
    that note (None when the keys match).

    A checkpoint written before keys were recorded has an empty key: any key with a part differs from it.
    """
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    if state["seed"] != seed:
        raise ValueError(f"seed={seed} differs from the checkpoint's seed {state['seed']} ({path})")
    saved = list(state["phase_names"])
    current = [p.name for p in phases[: len(saved)]]
    if saved != current:
        raise ValueError(f"phases changed since checkpoint {path}: it ran {saved}, now {current}")
    old = dict(state.get("provenance") or {"key": {}, "trained_at": None})
    note = check_key(path.parent.parent, old.get("key") or {}, key)
    if note is not None:
        old["stale_reuse"] = [*old.get("stale_reuse", []), note]
    return old, note


def restore_optimizer(saved: Mapping[str, Any], optimizer: torch.optim.Optimizer, scheduler, phase: Phase,
                      path: Path) -> None:
    """Load the optimiser and scheduler state of an interrupted phase (``Resumed.optimizer_state``)."""
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        if saved["scheduler"] is None:
            raise ValueError(f"checkpoint {path} has no scheduler state for phase {phase.name!r}")
        try:
            scheduler.load_state_dict(saved["scheduler"])
        except ValueError as err:  # e.g. a per-step ladder over another number of steps
            raise ValueError(f"checkpoint {path}, phase {phase.name!r}: {err}") from None


def save_last(path: Path, *, seed: int, phases: list[Phase], phase_index: int, epochs_done: int,
              global_step: int, models: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer, scheduler,
              generators: Mapping[str, torch.Generator | None], best: Mapping[str, Any], history_len: int,
              wall_s: float, record: Mapping[str, Any], rng_by_rank: list[dict] | None = None) -> None:
    """Write ``last.pt``: everything :func:`load_last` needs to continue after ``epochs_done`` epochs
    of phase ``phase_index`` (the history must already hold its ``history_len`` rows on disk).

    ``rng_by_rank``: with several processes, each one's :func:`capture_rng_state` in rank order
    (stored with the number of processes; ``rng`` is then process 0's); else the states are captured here.
    """
    extra = {} if rng_by_rank is None else {"rng_by_rank": rng_by_rank, "world_size": len(rng_by_rank)}
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "seed": seed,
            "phase_index": phase_index,
            "phase_names": [p.name for p in phases[: phase_index + 1]],
            "epochs_done": epochs_done,
            "global_step": global_step,
            "models": {n: m.state_dict() for n, m in models.items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": capture_rng_state(generators) if rng_by_rank is None else rng_by_rank[0],
            "best": best,
            "history_len": history_len,
            "wall_s": wall_s,
            "provenance": record,
            **extra,
        },
    )


def update_best(phase: Phase, pi: int, epoch: int, global_step: int, metrics: Mapping[str, float],
                models: Mapping[str, nn.Module], best: dict[str, dict[str, Any]], ckpt_dir: Path,
                save: bool = True) -> None:
    """Write ``ckpt_dir/best_<phase>.pt`` and update ``best[phase.name]`` (``{"value", "epoch", "path"}``)
    when ``metrics[phase.monitor]`` is finite and better than the phase's best so far; a phase without
    a monitor is left alone. ``save=False`` only updates ``best`` (processes other than 0)."""
    if phase.monitor is None:
        return
    value = metrics[phase.monitor]
    if not math.isfinite(value):  # a NaN (or infinite) metric is never "best"
        return
    old = best.get(phase.name)
    if old is not None:
        better = value < old["value"] if phase.mode == "min" else value > old["value"]
        if not better:
            return
    path = ckpt_dir / f"best_{phase.name}.pt"
    if save:
        _save_best(path, phase, pi, epoch, global_step, value, models)
    best[phase.name] = {"value": value, "epoch": epoch, "path": str(path)}


def _save_best(path: Path, phase: Phase, pi: int, epoch: int, global_step: int, value: float,
               models: Mapping[str, nn.Module]) -> None:
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "phase": phase.name,
            "phase_index": pi,
            "epochs_done": epoch + 1,
            "global_step": global_step,
            "monitor": phase.monitor,
            "value": value,
            "models": {n: m.state_dict() for n, m in models.items()},
        },
    )
