"""The one training loop. Every stage of SSInfNet is a list of phases passed to :func:`train`.

Phases (which networks learn, on which loss, with which optimiser) and an example schedule are in
:mod:`ssinfnet.training.phases`.

Provenance
----------
A run folder is keyed on the data it trains on, its settings and the training code
(:mod:`ssinfnet.training.provenance`): by default the content of the training loader's dataset
(:func:`~ssinfnet.training.provenance.loader_fingerprint`) and :func:`~ssinfnet.training.provenance.code_fingerprint`;
callers add their configuration through ``provenance=``. Resuming a folder trained with another key
raises :class:`~ssinfnet.training.provenance.StaleRunError` instead of reusing it. Every checkpoint holds the
record of who trained it (key, commit, dirty flag, time), also written to ``run_dir/provenance.json``.

Host synchronisation
--------------------
A non-finite loss must stop training inside the step that produced it, before the optimiser
applies it, so the loop reads the loss back to the host once per step. That one transfer carries
the loss and every tensor in ``logs`` together (a single ``torch.stack(...).tolist()``), and the
same numbers feed the history and the progress bar, so no other per-step sync happens. Per-epoch
means are computed on the host from those values.

Reproducibility
---------------
A fresh run seeds ``torch``, ``numpy`` and ``random`` and the context generator with ``seed``;
shuffling comes from the loader's own generator (see :func:`make_loader`). Checkpoints store every
RNG state, so resuming from ``last.pt`` continues exactly as an uninterrupted run would (bitwise on
CPU with ``num_workers=0``).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .device import resolve_flag, to_device
from .history import History
from .phases import Phase, check_phases, enter_phase, make_scheduler
from .provenance import check_key, code_fingerprint, loader_fingerprint, note_run, note_stale, stamp, write_record


__all__ = ["Phase", "StepContext", "TrainResult", "NonFiniteLossError", "train"]


_CHECKPOINT_FORMAT = 1


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; raised before the optimiser step that would apply it.

    Attributes ``phase``, ``epoch`` (0-based within the phase), ``step`` (0-based within the epoch),
    ``global_step``, ``batch_index`` (0-based position in the loader's epoch) and ``value``.
    """

    def __init__(self, phase: str, epoch: int, step: int, global_step: int, batch_index: int, value: float):
        self.phase, self.epoch, self.step = phase, epoch, step
        self.global_step, self.batch_index, self.value = global_step, batch_index, value
        super().__init__(
            f"non-finite loss ({value}) in phase {phase!r}, epoch {epoch}, step {step} "
            f"(global step {global_step}), batch index {batch_index}"
        )


@dataclass
class StepContext:
    """What a loss or validation callable may know about where training stands.

    ``epoch`` is 0-based within the phase, ``step`` and ``batch_index`` 0-based within the epoch
    (for validation, ``step`` is the number of steps the epoch ran), ``global_step`` counts optimiser
    steps over all phases. ``generator`` is a seeded ``torch.Generator`` on ``device`` whose state is
    checkpointed: draw masks and other randomness from it.
    """

    phase: Phase
    phase_index: int
    epoch: int
    step: int
    global_step: int
    batch_index: int
    generator: torch.Generator
    device: torch.device


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    ``history`` has one row per step (``kind == "step"``) and one per epoch (``kind == "epoch"``,
    mean training loss and ``val_*`` metrics); ``best`` maps phase name -> ``{"value", "epoch",
    "path"}`` for phases with a monitor and at least one finite value.
    """

    history: pd.DataFrame
    history_path: Path
    last_checkpoint: Path | None
    best: dict[str, dict[str, Any]]
    global_step: int
    resumed_from: Path | None


def train(
    phases: Sequence[Phase],
    models: Mapping[str, nn.Module],
    train_loader: Iterable,
    *,
    device: str | torch.device = "cpu",
    seed: int,
    run_dir: str | os.PathLike,
    val_loader: Iterable | None = None,
    resume: bool = True,
    progress: bool = True,
    amp: bool | Literal["auto"] = "auto",
    channels_last: bool | Literal["auto"] = "auto",
    history_name: str = "history.csv",
    provenance: Mapping[str, str | None] | None = None,
) -> TrainResult:
    """Run ``phases`` in order; checkpoint, log and resume.

    Parameters
    ----------
    phases : Sequence[Phase]
        Non-empty, unique names; every ``trainable``/``frozen`` name must be a key of ``models``.
    models : Mapping[str, nn.Module]
        Named networks, moved to ``device`` in place and trained in place.
    train_loader : iterable
        Yields batches (tensors or dicts/lists/tuples of tensors) handed to ``loss_fn`` after being
        moved to ``device``. Its ``generator`` attribute, if any (see :func:`make_loader`), is
        checkpointed.
    device : str or torch.device, default="cpu"
    seed : int
        Seeds ``torch``, ``numpy``, ``random`` and the context generator on a fresh run.
    run_dir : str or PathLike
        Gets ``history_name`` and ``checkpoints/{last.pt, best_<phase>.pt}``.
    val_loader : iterable, optional
        Passed to each phase's ``val_fn``.
    resume : bool, default=True
        Continue from ``run_dir/checkpoints/last.pt`` if it exists; otherwise (or when False)
        start fresh, overwriting the history.
    progress : bool, default=True
        Show a tqdm bar per epoch.
    amp : bool or "auto", default="auto"
        bf16 autocast around ``loss_fn`` / ``val_fn``; "auto" = only on CUDA.
    channels_last : bool or "auto", default="auto"
        Models and 4-D float batch tensors in channels-last memory format; "auto" = only on CUDA
        (:func:`default_channels_last` explains why not on CPU).
    history_name : str, default="history.csv"
        File name of the CSV history (columns ``phase, phase_index, kind, epoch, step, global_step,
        loss, lr, wall_s`` then the logged values and ``val_*`` metrics; ``wall_s`` in seconds since
        the run started, summed over resumed sessions).
    provenance : Mapping[str, str or None], optional
        The key of this run: short hashes of what determines it, e.g. ``{"data", "config", "code"}``
        (:mod:`ssinfnet.training.provenance`). Default ``{"data": loader_fingerprint(train_loader), "code":
        code_fingerprint()}`` (``data`` is None, so not keyed, for a dataset of an unknown kind).
        Resuming a checkpoint whose key differs raises
        :class:`~ssinfnet.training.provenance.StaleRunError` (unless ``SSINFNET_ALLOW_STALE=1``).

    Returns
    -------
    TrainResult

    Raises
    ------
    NonFiniteLossError
        When a loss is NaN or infinite (before its optimiser step). On this or any other exception
        the history so far is written before re-raising.
    ValueError
        For bad arguments, or a checkpoint that does not match ``phases`` or ``seed``.
    StaleRunError
        A ``ValueError``: the checkpoint was trained on other data, settings or code.
    """
    phases = check_phases(phases, models)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if not history_name or Path(history_name).name != history_name:
        raise ValueError(f"history_name must be a plain file name, got {history_name!r}")
    device = torch.device(device)
    use_amp = resolve_flag(amp, "amp", device)
    use_cl = resolve_flag(channels_last, "channels_last", device)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    history = History(run_dir / history_name)
    if provenance is None:
        key = {"data": loader_fingerprint(train_loader), "code": code_fingerprint()}
    else:
        key = dict(provenance)

    for module in models.values():
        module.to(device)
        if use_cl:
            module.to(memory_format=torch.channels_last)
    original_flags = {name: [p.requires_grad for p in m.parameters()] for name, m in models.items()}
    ctx_gen = torch.Generator(device=device)
    generators = {"context": ctx_gen, "loader": getattr(train_loader, "generator", None)}

    start_phase, start_epoch, global_step, wall_offset = 0, 0, 0, 0.0
    best: dict[str, dict[str, Any]] = {}
    saved_opt: dict | None = None
    resumed_from = None
    if resume and last_path.is_file():
        state = load_checkpoint(last_path, map_location="cpu")
        record, stale = _check_resume(state, phases, seed, last_path, key)
        if stale is not None:
            note_stale(run_dir, stale)
        for name, module in models.items():
            module.load_state_dict(state["models"][name])
        restore_rng_state(state["rng"], generators)
        history.load(state["history_len"])
        start_phase, start_epoch = state["phase_index"], state["epochs_done"]
        global_step, wall_offset = state["global_step"], state["wall_s"]
        best = {k: dict(v) for k, v in state["best"].items()}
        saved_opt = {"optimizer": state["optimizer"], "scheduler": state["scheduler"]}
        resumed_from = last_path
        if start_epoch >= phases[start_phase].epochs:  # that phase had finished
            start_phase, start_epoch, saved_opt = start_phase + 1, 0, None
    else:
        record = stamp(key)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        ctx_gen.manual_seed(seed)
    write_record(run_dir, record)
    steps_before = global_step

    t0 = time.perf_counter()
    wall = lambda: wall_offset + time.perf_counter() - t0  # noqa: E731
    try:
        for pi in range(start_phase, len(phases)):
            phase = phases[pi]
            params = enter_phase(phase, models, original_flags)
            optimizer = phase.make_optimizer(params)
            scheduler = make_scheduler(phase, optimizer)
            if pi == start_phase and saved_opt is not None:
                optimizer.load_state_dict(saved_opt["optimizer"])
                if scheduler is not None:
                    if saved_opt["scheduler"] is None:
                        raise ValueError(f"checkpoint {last_path} has no scheduler state for phase {phase.name!r}")
                    scheduler.load_state_dict(saved_opt["scheduler"])
            for epoch in range(start_epoch if pi == start_phase else 0, phase.epochs):
                lr = optimizer.param_groups[0]["lr"]
                n_steps, loss_sum = 0, 0.0
                batches = train_loader if phase.max_steps_per_epoch is None else islice(
                    train_loader, phase.max_steps_per_epoch
                )
                bar = tqdm(
                    batches,
                    total=_epoch_length(train_loader, phase.max_steps_per_epoch),
                    desc=f"{phase.name} {epoch + 1}/{phase.epochs}",
                    disable=not progress,
                    leave=False,
                    dynamic_ncols=True,
                )
                for step, batch in enumerate(bar):
                    ctx = StepContext(phase, pi, epoch, step, global_step, step, ctx_gen, device)
                    batch = to_device(batch, device, use_cl)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                        loss, logs = phase.loss_fn(models, batch, ctx)
                    values = _sync_values(loss, logs, phase.name)
                    if not math.isfinite(values["loss"]):
                        raise NonFiniteLossError(phase.name, epoch, step, global_step, step, values["loss"])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if phase.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(params, phase.grad_clip)
                    optimizer.step()
                    history.add(
                        phase=phase.name, phase_index=pi, kind="step", epoch=epoch, step=step,
                        global_step=global_step, lr=lr, wall_s=wall(), **values,
                    )
                    global_step += 1
                    n_steps += 1
                    loss_sum += values["loss"]
                    bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
                bar.close()
                if n_steps == 0:
                    raise ValueError(f"train_loader yielded no batches (phase {phase.name!r}, epoch {epoch})")
                if scheduler is not None:
                    scheduler.step()
                metrics = {}
                last_epoch = epoch + 1 == phase.epochs
                if phase.val_fn is not None and ((epoch + 1) % phase.val_every == 0 or last_epoch):
                    ctx = StepContext(phase, pi, epoch, n_steps, global_step, -1, ctx_gen, device)
                    metrics = _validate(phase, models, val_loader, ctx, use_amp)
                    _update_best(phase, pi, epoch, global_step, metrics, models, best, ckpt_dir)
                history.add(
                    phase=phase.name, phase_index=pi, kind="epoch", epoch=epoch, step=n_steps,
                    global_step=global_step, loss=loss_sum / n_steps, lr=lr, wall_s=wall(),
                    **{f"val_{k}": v for k, v in metrics.items()},
                )
                # History first: a checkpoint never refers to rows the CSV lacks.
                history.write()
                if (epoch + 1) % phase.checkpoint_every == 0 or last_epoch:
                    save_checkpoint(
                        last_path,
                        {
                            "format": _CHECKPOINT_FORMAT,
                            "seed": seed,
                            "phase_index": pi,
                            "phase_names": [p.name for p in phases[: pi + 1]],
                            "epochs_done": epoch + 1,
                            "global_step": global_step,
                            "models": {n: m.state_dict() for n, m in models.items()},
                            "optimizer": optimizer.state_dict(),
                            "scheduler": None if scheduler is None else scheduler.state_dict(),
                            "rng": capture_rng_state(generators),
                            "best": best,
                            "history_len": len(history),
                            "wall_s": wall(),
                            "provenance": record,
                        },
                    )
    except BaseException:
        # Keep the rows run so far for diagnosis; a resume truncates to the checkpoint's length.
        with contextlib.suppress(OSError):  # never mask the original error
            history.write()
        raise
    finally:
        for name, module in models.items():
            for p, flag in zip(module.parameters(), original_flags[name]):
                p.requires_grad_(flag)
    history.write()
    if resumed_from is None:
        action = "trained"
    else:
        action = "resumed" if global_step > steps_before else "reused"
    note_run(run_dir, action, record)
    return TrainResult(
        history=history.frame(),
        history_path=history.path,
        last_checkpoint=last_path if last_path.is_file() else None,
        best=best,
        global_step=global_step,
        resumed_from=resumed_from,
    )


def _check_resume(state: Mapping[str, Any], phases: list[Phase], seed: int, path: Path,
                  key: Mapping[str, str | None]) -> tuple[dict[str, Any], dict | None]:
    """Refuse a checkpoint of another format, seed, phase list or key; return the provenance record
    the resumed run carries on (the checkpoint's own, plus a note when a stale one is allowed) and
    that note (None when the keys match).

    A checkpoint written before keys were recorded has an empty key: any key with a part differs from it.
    """
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} has format {state.get('format')!r}, expected {_CHECKPOINT_FORMAT}")
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


def _epoch_length(loader: Iterable, max_steps: int | None) -> int | None:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_steps
    return n if max_steps is None else min(n, max_steps)


def _sync_values(loss: Any, logs: Mapping[str, Any], phase: str) -> dict[str, float]:
    """Bring the loss and tensor logs to the host in one transfer (the step's only sync)."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError(f"loss_fn of phase {phase!r} must return a 0-d tensor as loss, got {loss!r:.80}")
    if not isinstance(logs, Mapping):
        raise ValueError(f"loss_fn of phase {phase!r} must return (loss, dict of logs)")
    reserved = sorted(set(logs) & set(History._BASE))
    if reserved:
        raise ValueError(f"loss_fn of phase {phase!r} logs reserved names {reserved}")
    tensor_keys = [k for k, v in logs.items() if isinstance(v, torch.Tensor)]
    stacked = torch.stack([loss.detach().float()] + [logs[k].detach().float().reshape(()) for k in tensor_keys])
    host = stacked.tolist()
    values = {"loss": host[0]}
    for k, v in logs.items():
        values[k] = host[1 + tensor_keys.index(k)] if k in tensor_keys else float(v)
    return values


def _validate(phase: Phase, models: Mapping[str, nn.Module], loader: Any, ctx: StepContext, amp: bool) -> dict:
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


def _update_best(phase, pi, epoch, global_step, metrics, models, best, ckpt_dir) -> None:
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
    save_checkpoint(
        path,
        {
            "format": _CHECKPOINT_FORMAT,
            "phase": phase.name,
            "phase_index": pi,
            "epochs_done": epoch + 1,
            "global_step": global_step,
            "monitor": phase.monitor,
            "value": value,
            "models": {n: m.state_dict() for n, m in models.items()},
        },
    )
    best[phase.name] = {"value": value, "epoch": epoch, "path": str(path)}
