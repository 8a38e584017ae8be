"""Several processes, one training: ``torchrun`` and PyTorch's DistributedDataParallel (DDP).

``torchrun --nproc-per-node N -m ssinfnet stage 03 ...`` starts N copies of the same command with
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in their environment. :func:`join` is the one place that
reads them: with ``WORLD_SIZE`` > 1 it starts the process group (NCCL on CUDA, gloo on the CPU) and
pins the process to GPU ``LOCAL_RANK``; without it, or with one process, it returns None and
:func:`ssinfnet.training.loop.train` runs as a single process, unchanged. A process group the caller
started itself (``torch.distributed.init_process_group``) is used as it is, one process included.

What :func:`~ssinfnet.training.loop.train` does with a :class:`World`:

* **data**: :func:`shard_loader` rebuilds the training loader with a
  :class:`~torch.utils.data.distributed.DistributedSampler` and ``batch_size / N`` per process, so
  one step of N processes sees the same *global* batch as one step of a single process (the batch
  size must divide by N). The sampler's permutation is drawn from the loader's seed and the run's
  epoch number (``set_epoch``), so a resumed run draws the same batches. When the dataset's length
  does not divide by N, the sampler repeats a few samples to give every process the same count.
* **model**: each trainable network is wrapped in DDP for its phase (:meth:`World.wrap`), which
  averages gradients over processes; frozen ones are used as they are. BatchNorm layers normalise
  with the statistics of their own process's ``batch_size / N`` samples, and their running
  statistics are taken from process 0 (DDP's buffer sync; :meth:`World.sync_buffers` after every epoch).
* **randomness**: process ``r`` seeds the global generators, the context generator and its loader's
  worker seeds with :meth:`World.seed` (process 0 with the run's seed), so augmentations and masks
  differ between processes; ``last.pt`` holds every process's generator states.
* **numbers**: the loss and logged values of a step are averaged over processes (one all-reduce,
  the step's only sync), so every process logs the same history (for a loss that is a mean over
  samples, the global batch's value) and a non-finite loss stops every process at the same step.
* **validation** runs on process 0 only (:meth:`World.from_main`) and its metrics are sent to the
  others: ``val_fn`` keeps its contract (the whole validation set in, final metrics out) and its
  numbers are those of a single process with the same weights; the other processes wait meanwhile.
* **files**: only process 0 writes the history, checkpoints and records; the others wait for it at
  the end of the call (:meth:`World.barrier`) and all of them read the same ``last.pt`` to resume.

Other code writes through :func:`on_main` (run on process 0, the others wait), and asks
:func:`is_main` whether it is process 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from ..data.epochs import EpochSampler

__all__ = ["World", "launched", "join", "leave", "is_main", "on_main", "shard_loader", "set_epoch"]


def launched() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` from the environment ``torchrun`` sets, or None when this
    process was not started by it or is its only process (``WORLD_SIZE`` absent or 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    if "RANK" not in os.environ:
        raise ValueError(f"WORLD_SIZE={size} but no RANK in the environment: start the processes with torchrun")
    rank = int(os.environ["RANK"])
    return rank, size, int(os.environ.get("LOCAL_RANK", rank))


def is_main() -> bool:
    """Whether this process is process 0 of its group, or the only one (before or without a group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    env = launched()
    return env is None or env[0] == 0


def on_main(write: Callable[..., Any], *args, **kwargs) -> Any:
    """Call ``write(*args, **kwargs)`` on process 0 only and return its result (None elsewhere); with
    several processes the others wait until it has returned, so a file it writes exists for all of
    them afterwards. Every process must reach the call (it is a barrier)."""
    result = write(*args, **kwargs) if is_main() else None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return result


@dataclass(frozen=True)
class World:
    """This process's place among the processes training together: ``rank`` (0 writes the files),
    ``size`` (number of processes) and ``local_rank`` (the GPU index on its machine)."""

    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """``cuda`` -> this process's GPU ``cuda:<local_rank>``; ValueError for another GPU index. CPU unchanged."""
        if device.type != "cuda":
            return device
        if device.index is not None and device.index != self.local_rank:
            raise ValueError(f"device {device} given to process {self.rank}, whose GPU is cuda:{self.local_rank}; "
                             f"under torchrun pass --device cuda (each process takes its LOCAL_RANK's GPU)")
        return torch.device("cuda", self.local_rank)

    def seed(self, seed: int) -> int:
        """The seed of this process's generators: ``seed`` itself on process 0, another one, drawn
        from (seed, rank), on the others."""
        if self.rank == 0:
            return seed
        return int(np.random.SeedSequence([seed % 2**63, self.rank]).generate_state(1, np.uint64)[0] % 2**63)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of ``values`` over processes (a new tensor, same on every process)."""
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values / self.size

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, compute: Callable[[], Any]) -> Any:
        """Run ``compute()`` on process 0 and hand its result to every process. When it raises, process 0
        raises that error and the others a RuntimeError that quotes it (none is left waiting)."""
        box: list[Any] = [None, None]
        error = None
        if self.main:
            try:
                box[0] = compute()
            except Exception as exc:  # sent to the others, then raised here
                error, box[1] = exc, f"{type(exc).__name__}: {exc}"
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        if box[1] is not None:
            raise RuntimeError(f"process 0 failed ({box[1]})")
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def sync_state(self, models: Mapping[str, nn.Module], buffers_only: bool = False) -> None:
        """Overwrite every process's parameters and buffers (or only buffers) with process 0's, in place."""
        for module in models.values():
            for t in (module.buffers() if buffers_only else module.state_dict().values()):
                dist.broadcast(t, src=0)  # state_dict tensors share storage with the module's

    def sync_buffers(self, models: Mapping[str, nn.Module]) -> None:
        """Process 0's buffers (BatchNorm running statistics) everywhere. Parameters need no sync:
        every process applies the same averaged gradients to the same weights."""
        self.sync_state(models, buffers_only=True)

    def wrap(self, models: Mapping[str, nn.Module], trainable: Sequence[str], device: torch.device) -> dict:
        """``models`` with each ``trainable`` network wrapped in DDP (gradients averaged over processes
        in ``backward``); what a phase's loss function is given. Other networks are passed through."""
        ids = [device.index] if device.type == "cuda" else None
        learns = {name for name in trainable if any(p.requires_grad for p in models[name].parameters())}
        return {name: _Replica(m, device_ids=ids) if name in learns else m for name, m in models.items()}


class _Replica(DistributedDataParallel):
    """DDP that passes attributes it lacks on to the network, so a loss function reads them as on a plain one."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not set yet (inside DDP's __init__)
                raise
            return getattr(self.module, name)


def join(device: torch.device) -> World | None:
    """The :class:`World` of this process: the process group already started, or the one ``torchrun``
    asks for (started now: NCCL when ``device`` is CUDA, else gloo; a CUDA process is pinned to GPU
    ``LOCAL_RANK`` first). None for a single process."""
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
    env = launched()
    if env is None:
        return None
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={env[1]} asks for {env[1]} processes, but this torch has no torch.distributed")
    rank, size, local_rank = env
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(rank, size, local_rank)


def leave() -> None:
    """End the process group started by :func:`join` (nothing without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_loader(loader: Iterable, world: World, seed: int) -> DataLoader:
    """This process's share of a training loader: the same dataset and settings, ``batch_size /
    world.size`` per batch, drawn by a :class:`DistributedSampler`.

    A loader with per-item seeds (an :class:`~ssinfnet.data.epochs.EpochSampler`) keeps them, each
    process taking every N-th sample of the epoch's order; a device-held loader
    (:class:`~ssinfnet.data.held.DeviceLoader`) shards itself the same way. Otherwise the sampler shuffles as the loader did (a :class:`RandomSampler`) or keeps the order (a
    :class:`SequentialSampler`), with the seed of the loader's generator (else ``seed``);
    :func:`~ssinfnet.training.loop.train` calls its ``set_epoch`` before every epoch. The new
    loader's generator (worker seeds) is seeded with :meth:`World.seed`. A loader whose sampler is
    already distributed is returned as it is.

    Raises
    ------
    ValueError
        Not a map-style :class:`DataLoader` with a batch size and a random or sequential sampler, or
        a batch size that does not divide by the number of processes.
    """
    if hasattr(loader, "shard") and not isinstance(loader, DataLoader):  # device-held data
        return loader.shard(world.rank, world.size)
    if isinstance(loader, DataLoader) and isinstance(loader.sampler, EpochSampler):  # per-item seeds
        if loader.batch_size % world.size:
            raise ValueError(f"batch size {loader.batch_size} does not divide by {world.size} processes; "
                             f"each process takes batch_size / {world.size} samples per step")
        return DataLoader(loader.dataset, batch_size=loader.batch_size // world.size,
                          sampler=loader.sampler.shard(world.rank, world.size), num_workers=loader.num_workers,
                          collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                          worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
    if not isinstance(loader, DataLoader):
        raise ValueError(f"under torchrun the training loader must be a torch DataLoader, got {type(loader).__name__}")
    if isinstance(loader.sampler, DistributedSampler):
        return loader
    if loader.batch_size is None or not isinstance(loader.sampler, (RandomSampler, SequentialSampler)):
        raise ValueError("under torchrun the training loader must have a batch_size and shuffle or keep its order "
                         f"(got sampler {type(loader.sampler).__name__}, batch_size {loader.batch_size})")
    if loader.batch_size % world.size:
        raise ValueError(f"batch size {loader.batch_size} does not divide by {world.size} processes; "
                         f"each process takes batch_size / {world.size} samples per step")
    sampler_seed = loader.generator.initial_seed() if loader.generator is not None else seed
    sampler = DistributedSampler(loader.dataset, num_replicas=world.size, rank=world.rank,
                                 shuffle=isinstance(loader.sampler, RandomSampler), seed=sampler_seed)
    generator = torch.Generator()
    generator.manual_seed(world.seed(sampler_seed))
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // world.size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=generator,
        prefetch_factor=loader.prefetch_factor if loader.num_workers else None,
        persistent_workers=loader.persistent_workers,
    )


def set_epoch(loader: Iterable, epoch: int) -> None:
    """Tell a loader's distributed sampler (anything with ``set_epoch``) which epoch of the run comes next."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
