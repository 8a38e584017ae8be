"""The inside of an epoch of :func:`ssinfnet.training.loop.train`: its state, its steps, when numbers reach the host.

Host synchronisation
--------------------
Each step's loss and tensor logs stay on the device (:func:`~ssinfnet.training.callables.stack_values`)
until ``sync_every`` steps have run or the epoch ends; then they are read back together, in one
transfer (:func:`~ssinfnet.training.callables.read_values`), and become the steps' history rows. The
rows, the epoch means and the progress bar are those an every-step read-back gives; only ``wall_s``
of a step is then the time the host queued it. With ``sync_every=1`` (the CPU default) a NaN or
infinite loss stops training inside its own step, before the optimiser applies it; with a longer
interval (the CUDA default: once per epoch) it stops at the next read-back, naming the first
non-finite step, after the steps queued since were applied to the weights in memory (no checkpoint
is written from them: ``last.pt`` is written only after an epoch without one).

torch.compile
-------------
With ``compile`` set (:func:`compile_models`) the networks are compiled in place (their state dicts
keep their names). The first step runs under a guard: if compiling fails there, a warning says why,
the networks go back to eager mode, the random state is restored and the step is run again.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from .callables import Pending, read_values, stack_values
from .device import to_device
from .distributed import World, set_epoch
from .guard import NonFiniteLossError
from .history import History
from .phases import Phase

#: torch.compile modes that capture CUDA graphs: used only with loaders whose batches all have one shape.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


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
class Run:
    """The state of one :func:`~ssinfnet.training.loop.train` call, carried from step to step (what
    ``last.pt`` holds), and its settings. ``sync_every``: steps between read-backs (None: once per
    epoch); ``compile_check``: the next step is the first under torch.compile (guarded)."""

    phases: list[Phase]
    models: Mapping[str, nn.Module]
    loader: Iterable
    val_loader: Iterable | None
    device: torch.device
    seed: int
    amp: bool
    channels_last: bool
    progress: bool
    ckpt_dir: Path
    history: History
    ctx_gen: torch.Generator  # StepContext.generator
    world: World | None = None  # the processes training together (torchrun); None for one process
    sync_every: int | None = 1
    compile_check: bool = False
    nets: Mapping[str, nn.Module] = field(default_factory=dict)  # what loss_fn gets: models, DDP-wrapped
    record: dict[str, Any] = field(default_factory=dict)  # provenance, stored in every checkpoint
    global_step: int = 0
    best: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_offset: float = 0.0  # seconds run by earlier sessions
    t0: float = 0.0  # time.perf_counter() when this session started training

    @property
    def last_path(self) -> Path:
        return self.ckpt_dir / "last.pt"

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (the only one, or process 0)."""
        return self.world is None or self.world.main

    @property
    def generators(self) -> dict[str, torch.Generator | None]:
        """The explicit generators checkpointed besides the global ones."""
        return {"context": self.ctx_gen, "loader": getattr(self.loader, "generator", None)}

    def wall(self) -> float:
        """Seconds of training so far, summed over resumed sessions."""
        return self.wall_offset + time.perf_counter() - self.t0


def epoch_length(loader: Iterable, max_steps: int | None) -> int | None:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return max_steps
    return n if max_steps is None else min(n, max_steps)


@dataclass
class _Queued:
    """A step whose numbers are still on the device: its history row without them."""

    values: Pending
    names: list
    row: dict
    step: int
    global_step: int
    host: dict | None = None  # the values, when already read back


def train_epoch(run: Run, pi: int, epoch: int, params: list, optimizer: torch.optim.Optimizer,
                per_step) -> tuple[int, float]:
    """One pass over the training loader (at most ``max_steps_per_epoch`` batches), a history row
    per step (with the lr the step ran at), ``per_step.step()`` after each step unless None; returns
    (steps run, sum of their losses)."""
    phase = run.phases[pi]
    set_epoch(run.loader, sum(p.epochs for p in run.phases[:pi]) + epoch)  # the epoch's order
    batches = run.loader if phase.max_steps_per_epoch is None else islice(run.loader, phase.max_steps_per_epoch)
    bar = tqdm(batches, total=epoch_length(run.loader, phase.max_steps_per_epoch),
               desc=f"{phase.name} {epoch + 1}/{phase.epochs}", disable=not (run.progress and run.main),
               leave=False, dynamic_ncols=True)
    queue: list[_Queued] = []
    totals = [0, 0.0]  # steps, sum of losses

    def flush() -> None:
        unread = [q for q in queue if q.host is None]
        for q, values in zip(unread, read_values([q.values for q in unread], [q.names for q in unread], run.world)):
            q.host = values
        for q in queue:
            values = q.host
            if not math.isfinite(values["loss"]):
                raise NonFiniteLossError(phase.name, epoch, q.step, q.global_step, q.step, values["loss"], pi)
            run.history.add(**q.row, **values)
            totals[0] += 1
            totals[1] += values["loss"]
        if queue:
            bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
        queue.clear()

    for step, batch in enumerate(bar):
        lr = optimizer.param_groups[0]["lr"]
        queued = _step(run, pi, epoch, step, batch, params, optimizer)
        if per_step is not None:
            per_step.step()
        queued.row = dict(phase=phase.name, phase_index=pi, kind="step", epoch=epoch, step=step,
                          global_step=run.global_step, lr=lr, wall_s=run.wall())
        queue.append(queued)
        run.global_step += 1
        if run.sync_every is not None and len(queue) >= run.sync_every:
            flush()
    flush()
    bar.close()
    if totals[0] == 0:
        raise ValueError(f"train_loader yielded no batches (phase {phase.name!r}, epoch {epoch})")
    return totals[0], totals[1]


def _step(run: Run, pi: int, epoch: int, step: int, batch: Any, params: list,
          optimizer: torch.optim.Optimizer) -> _Queued:
    """One optimiser step on ``batch``; returns its numbers, still on the device unless read back here.

    With ``sync_every == 1`` the loss is read back before the optimiser step, and a NaN or infinite
    one raises :class:`NonFiniteLossError` without applying it.
    """
    if run.compile_check:  # the first step under torch.compile: fall back to eager if compiling fails
        run.compile_check = False
        saved = _rng_states(run)
        try:
            return _step(run, pi, epoch, step, batch, params, optimizer)
        except (NonFiniteLossError, ValueError):
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the compiler; eager mode is retried
            warnings.warn(f"torch.compile failed at the first step ({type(err).__name__}: {str(err)[:300]}); "
                          "training continues in eager mode", RuntimeWarning, stacklevel=2)
            uncompile(run.models)
            _restore_rng(run, saved)
            return _step(run, pi, epoch, step, batch, params, optimizer)
    phase = run.phases[pi]
    ctx = StepContext(phase, pi, epoch, step, run.global_step, step, run.ctx_gen, run.device)
    batch = to_device(batch, run.device, run.channels_last)
    with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.amp):
        loss, logs = phase.loss_fn(run.nets, batch, ctx)
    queued = _Queued(stack_values(loss, logs, phase.name, run.world), list(logs), {}, step, run.global_step)
    if run.sync_every == 1:  # read back now: a non-finite loss is never applied
        queued.host = read_values([queued.values], [queued.names], run.world)[0]
        value = queued.host["loss"]
        if not math.isfinite(value):
            raise NonFiniteLossError(phase.name, epoch, step, run.global_step, step, value, pi)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if phase.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, phase.grad_clip)
    optimizer.step()
    return queued


# ------------------------------------------------------------------------------------ torch.compile

def compile_models(models: Mapping[str, nn.Module], mode: str, static_shapes: bool) -> str:
    """Compile every network in place (``nn.Module.compile``) with ``mode``; a CUDA-graph mode
    (:data:`CUDA_GRAPH_MODES`) becomes ``max-autotune-no-cudagraphs`` unless ``static_shapes`` (every
    batch the same shape). Returns the mode used."""
    if mode in CUDA_GRAPH_MODES and not static_shapes:
        warnings.warn(f"compile mode {mode!r} captures CUDA graphs, which need batches of one shape; "
                      "using 'max-autotune-no-cudagraphs' (device-held data with static_shapes=True keeps "
                      "shapes static)", RuntimeWarning, stacklevel=3)
        mode = "max-autotune-no-cudagraphs"
    for module in models.values():
        module.compile(mode=None if mode == "default" else mode, dynamic=False)
    return mode


def uncompile(models: Mapping[str, nn.Module]) -> None:
    """Back to eager mode after :func:`compile_models` (``nn.Module.compile`` keeps the compiled call here)."""
    for module in models.values():
        module._compiled_call_impl = None


def _rng_states(run: Run) -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return run.ctx_gen.get_state(), torch.get_rng_state(), cuda


def _restore_rng(run: Run, saved: tuple) -> None:
    ctx, cpu, cuda = saved
    run.ctx_gen.set_state(ctx)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)
