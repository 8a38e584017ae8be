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
The loss and logged tensors of a step stay on the device until they are read back, every
``sync_every`` steps: after every step on the CPU (a non-finite loss then stops training before the
optimiser applies it), once per epoch on CUDA. The history rows are the same either way
(:mod:`ssinfnet.training.steps`). Per-epoch means are computed on the host from those values.

Several processes
-----------------
Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop runs in every process with
DistributedDataParallel: sharded batches, averaged gradients and logged values, validation and
files on process 0 (:mod:`ssinfnet.training.distributed`). Without it nothing changes.

Reproducibility
---------------
A fresh run seeds ``torch``, ``numpy`` and ``random`` and the context generator with ``seed``;
shuffling comes from the loader's own generator (see :func:`make_loader`). Checkpoints store every
RNG state, so resuming from ``last.pt`` continues exactly as an uninterrupted run would (bitwise on
CPU with ``num_workers=0``, or with per-epoch seeding: a loader with per-item seeds or device-held
data, :mod:`ssinfnet.training.loader`); what they hold is in :mod:`ssinfnet.training.resume`.

Layout
------
:func:`train` checks its arguments, starts or resumes (:func:`_start`), then runs each phase
(:func:`_run_phase`): an epoch is :func:`~ssinfnet.training.steps.train_epoch` (one step per batch), the phase's
divergence guard (:mod:`ssinfnet.training.guard`), then :func:`_end_epoch` (validation, best
checkpoint, early stopping, history row, ``last.pt``).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from .checkpoint import capture_rng_state
from .callables import validate_phase
from .device import resolve_flag, tune_backend
from .distributed import join, shard_loader
from .guard import DivergenceError, NonFiniteLossError, check_epoch
from .history import History
from .phases import Phase, check_phases, enter_phase, make_scheduler
from .provenance import code_fingerprint, loader_fingerprint, note_run, stamp, write_record
from .resume import Resumed, load_last, restore_optimizer, save_last, update_best
from .steps import Run, StepContext, compile_models, epoch_length, train_epoch, uncompile


__all__ = ["Phase", "StepContext", "TrainResult", "DivergenceError", "NonFiniteLossError", "train"]


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
    sync_every: int | None | Literal["auto"] = "auto",
    compile: str | None = None,
) -> TrainResult:
    """Run ``phases`` in order; checkpoint, log and resume.

    Parameters
    ----------
    phases : Sequence[Phase]
        Non-empty, unique names; every ``trainable``/``frozen`` name must be a key of ``models``.
    models : Mapping[str, nn.Module]
        Named networks, moved to ``device`` in place and trained in place.
    train_loader : iterable
        A loader with ``place(device)`` (device-held data, :class:`~ssinfnet.data.held.DeviceLoader`)
        is told the device first. Yields batches (tensors or dicts/lists/tuples of tensors) handed to ``loss_fn`` after being
        moved to ``device``. Its ``generator`` attribute, if any (see :func:`make_loader`), is
        checkpointed; a sampler with ``set_epoch`` is told the run's epoch number before each
        epoch. Under torchrun, a DataLoader whose ``batch_size`` (the global batch) divides by the
        number of processes (:func:`~ssinfnet.training.distributed.shard_loader`).
    device : str or torch.device, default="cpu"
        Under torchrun, ``cuda`` is the process's own GPU (``LOCAL_RANK``).
    seed : int
        Seeds ``torch``, ``numpy``, ``random`` and the context generator on a fresh run (under
        torchrun, process r > 0 with a seed drawn from (seed, r)).
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
        bf16 autocast around ``loss_fn`` / ``val_fn``; "auto" = off (:func:`default_amp` gives the measurements).
    channels_last : bool or "auto", default="auto"
        Models and 4-D float batch tensors in channels-last memory format; "auto" = only on CUDA
        (:func:`default_channels_last` explains why not on CPU).
    history_name : str, default="history.csv"
        File name of the CSV history (columns ``phase, phase_index, kind, epoch, step, global_step,
        loss, lr, wall_s`` then the logged values and ``val_*`` metrics; ``wall_s`` in seconds since
        the run started, summed over resumed sessions; ``stop`` on the row where a phase with a
        ``patience`` ended: "patience" or "cap", see :class:`Phase`).
    provenance : Mapping[str, str or None], optional
        The key of this run: short hashes of what determines it, e.g. ``{"data", "config", "code"}``
        (:mod:`ssinfnet.training.provenance`). Default ``{"data": loader_fingerprint(train_loader), "code":
        code_fingerprint()}`` (``data`` is None, so not keyed, for a dataset of an unknown kind).
        Resuming a checkpoint whose key differs raises
        :class:`~ssinfnet.training.provenance.StaleRunError` (unless ``SSINFNET_ALLOW_STALE=1``).
    sync_every : int, None or "auto", default="auto"
        Steps between read-backs of the losses and logs to the host (None: once per epoch); "auto" =
        1 on the CPU, None on CUDA (:mod:`ssinfnet.training.steps`). The history is the same.
    compile : str, optional
        ``torch.compile`` mode for every network ("default", "reduce-overhead", "max-autotune",
        "max-autotune-no-cudagraphs"); None (default) runs eagerly. The CUDA-graph modes need a
        loader whose batches all have one shape (``static_shapes``), else the no-cudagraphs mode is
        used; a failure to compile falls back to eager mode with a warning.

    Returns
    -------
    TrainResult

    Raises
    ------
    DivergenceError
        A phase diverged: a NaN or infinite loss (:class:`NonFiniteLossError`, before its optimiser step)
        or its ``guard``'s rule at an epoch's end (:mod:`ssinfnet.training.guard`); the history gets a
        row of kind ``"diverged"`` saying so. On this or any other exception the history so far is
        written before re-raising.
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
    world = join(device)  # None: a single process, as without torchrun
    if world is not None:
        device = world.device(device)
    run_dir = Path(run_dir)
    if provenance is None:
        key = {"data": loader_fingerprint(train_loader), "code": code_fingerprint()}
    else:
        key = dict(provenance)
    loader = train_loader if world is None else shard_loader(train_loader, world, seed)
    if sync_every == "auto":
        sync_every = None if device.type == "cuda" else 1
    if sync_every is not None and (not isinstance(sync_every, int) or isinstance(sync_every, bool) or sync_every < 1):
        raise ValueError(f"sync_every must be an int >= 1, None or 'auto', got {sync_every!r}")
    if hasattr(loader, "place"):
        loader.place(device)
    run = Run(phases, models, loader, val_loader, device, seed, resolve_flag(amp, "amp", device),
              resolve_flag(channels_last, "channels_last", device), progress, run_dir / "checkpoints",
              History(run_dir / history_name), torch.Generator(device=device), world, sync_every)
    tune_backend(device)
    for module in models.values():
        module.to(device)
        if run.channels_last:
            module.to(memory_format=torch.channels_last)
    if compile is not None:
        compile_models(models, compile, bool(getattr(train_loader, "static_shapes", False)))
        run.compile_check = True
    original_flags = {name: [p.requires_grad for p in m.parameters()] for name, m in models.items()}

    start = _start(run, key, resume)
    if run.main:
        write_record(run_dir, run.record)
    if world is not None:
        world.sync_state(models)  # every process starts from process 0's weights
    steps_before = run.global_step
    run.t0 = time.perf_counter()
    try:
        for pi in range(0 if start is None else start.phase_index, len(phases)):
            resumed_here = start is not None and pi == start.phase_index
            _run_phase(run, pi, original_flags, start if resumed_here else None)
    except BaseException as error:
        # Keep the rows run so far for diagnosis; a resume truncates to the checkpoint's length.
        with contextlib.suppress(OSError):  # never mask the original error
            if run.main:
                if isinstance(error, DivergenceError):
                    run.history.add(**error.history_row(), wall_s=run.wall())
                run.history.write()
        raise
    finally:
        run.nets = models
        if compile is not None:
            uncompile(models)  # the caller gets its networks back in eager mode
        for name, module in models.items():
            for p, flag in zip(module.parameters(), original_flags[name]):
                p.requires_grad_(flag)
    if run.main:
        run.history.write()
    if world is not None:
        world.barrier()  # process 0's files are complete before any process goes on (or resumes from them)
    if start is None:
        action = "trained"
    else:
        action = "resumed" if run.global_step > steps_before else "reused"
    note_run(run_dir, action, run.record)
    return TrainResult(
        history=run.history.frame(),
        history_path=run.history.path,
        last_checkpoint=run.last_path if run.last_path.is_file() else None,
        best=run.best,
        global_step=run.global_step,
        resumed_from=None if start is None else start.path,
    )


def _start(run: Run, key: Mapping[str, str | None], resume: bool) -> Resumed | None:
    """Continue from ``last.pt`` (when ``resume`` and it exists) or seed a fresh run; set
    ``run.record`` (the provenance record) either way. Returns where a resumed run continues, None
    for a fresh one."""
    if resume and run.last_path.is_file():
        rank, size = (0, 1) if run.world is None else (run.world.rank, run.world.size)
        start = load_last(run.last_path, run.phases, run.seed, key, run.models, run.generators, run.history,
                          rank=rank, world_size=size)
        run.record, run.global_step, run.best = start.record, start.global_step, start.best
        run.wall_offset = start.wall_s
        return start
    run.record = stamp(key)
    if run.world is not None:
        run.record["processes"] = run.world.size  # trained by torchrun's processes together
    seed = run.seed if run.world is None else run.world.seed(run.seed)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    run.ctx_gen.manual_seed(seed)
    return None


def _run_phase(run: Run, pi: int, original_flags: Mapping[str, list[bool]], resumed: Resumed | None) -> None:
    """Run phase ``pi`` from its first epoch, or from where ``resumed`` stopped, with a fresh optimiser
    and scheduler (``resumed`` restores their state)."""
    phase = run.phases[pi]
    params = enter_phase(phase, run.models, original_flags)
    optimizer = phase.make_optimizer(params)
    scheduler = make_scheduler(phase, optimizer, epoch_length(run.loader, phase.max_steps_per_epoch))
    per_step = scheduler if phase.lr_fractions else None  # stepped after every optimiser step
    if resumed is not None and resumed.optimizer_state is not None:
        restore_optimizer(resumed.optimizer_state, optimizer, scheduler, phase, resumed.path)
    run.nets = run.models if run.world is None else run.world.wrap(run.models, phase.trainable, run.device)
    for epoch in range(0 if resumed is None else resumed.epoch, phase.epochs):
        if phase.patience_spent(run.best.get(phase.name, {}).get("epoch"), epoch):  # stopped early, or resumed after it
            break
        lr = optimizer.param_groups[0]["lr"]
        n_steps, loss_sum = train_epoch(run, pi, epoch, params, optimizer, per_step)
        check_epoch(phase.guard, run.history.rows, phase.name, pi, epoch, n_steps, run.global_step)
        if scheduler is not None and per_step is None:
            scheduler.step()
        _end_epoch(run, pi, epoch, n_steps, loss_sum / n_steps, lr, optimizer, scheduler)
    run.nets = run.models  # drops this phase's DDP wrappers


def _end_epoch(run: Run, pi: int, epoch: int, n_steps: int, mean_loss: float, lr: float,
               optimizer: torch.optim.Optimizer, scheduler) -> None:
    """After an epoch: validate when due (and keep the best), add the epoch's history row, write the
    history, then ``last.pt`` when due."""
    phase = run.phases[pi]
    metrics = {}
    last_epoch = epoch + 1 == phase.epochs
    if run.world is not None:
        run.world.sync_buffers(run.models)
    if phase.val_fn is not None and ((epoch + 1) % phase.val_every == 0 or last_epoch):
        ctx = StepContext(phase, pi, epoch, n_steps, run.global_step, -1, run.ctx_gen, run.device)
        validate = lambda: validate_phase(phase, run.models, run.val_loader, ctx, run.amp)  # noqa: E731
        metrics = validate() if run.world is None else run.world.from_main(validate)
        update_best(phase, pi, epoch, run.global_step, metrics, run.models, run.best, run.ckpt_dir, save=run.main)
    early = phase.patience_spent(run.best.get(phase.name, {}).get("epoch"), epoch + 1)
    stop = {} if phase.patience is None or not (early or last_epoch) else {"stop": "patience" if early else "cap"}
    last_epoch = last_epoch or early  # the phase ends here: write last.pt
    run.history.add(
        phase=phase.name, phase_index=pi, kind="epoch", epoch=epoch, step=n_steps,
        global_step=run.global_step, loss=mean_loss, lr=lr, wall_s=run.wall(),
        **{f"val_{k}": v for k, v in metrics.items()}, **stop,
    )
    due = (epoch + 1) % phase.checkpoint_every == 0 or last_epoch
    rng_by_rank = None if run.world is None or not due else run.world.gather(capture_rng_state(run.generators))
    if not run.main:
        return
    # History first: a checkpoint never refers to rows the CSV lacks.
    run.history.write()
    if due:
        save_last(run.last_path, seed=run.seed, phases=run.phases, phase_index=pi, epochs_done=epoch + 1,
                  global_step=run.global_step, models=run.models, optimizer=optimizer, scheduler=scheduler,
                  generators=run.generators, best=run.best, history_len=len(run.history), wall_s=run.wall(),
                  record=run.record, rng_by_rank=rng_by_rank)
