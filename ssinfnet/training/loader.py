"""Seeded, reproducible data loaders for the training loop.

Two ways of seeding a DataLoader's augmentation (:func:`make_loader`):

* **running state** (the default without workers): the order comes from the loader's own generator
  and each item's draws from the process's global generator as it runs. The loop checkpoints the
  loader's generator, so resuming is exact; the draws depend on how many workers share the items.
* **per-item seeds** (the default with workers, ``seeded=True``): epoch ``e``'s order comes from
  ``(seed, e)`` (:class:`~ssinfnet.data.epochs.EpochSampler`) and item ``i``'s augmentation from a
  generator seeded with ``(seed, e, i)`` (:class:`SeededItems`). The batches are then the same for any
  number of workers, including none, and the workers can live for the whole run
  (``persistent_workers``) instead of being started again every epoch.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.epochs import EpochSampler, epoch_seed


class SeededItems(Dataset):
    """A map-style dataset whose item ``(epoch, i)`` is ``dataset[i]`` drawn with its own seed.

    The item's random draws (torch's global generator, as torchvision transforms use it) come from
    ``epoch_seed(seed, epoch, i)`` inside :func:`torch.random.fork_rng`, so the caller's generator is
    left as it was. ``dataset`` stays available as ``.dataset``; plain integer keys are epoch 0.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed(self.seed, epoch, i))
            return self.dataset[i]


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader workers: seed numpy and ``random`` from torch's worker seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    seeded: bool | None = None,
) -> DataLoader:
    """Build a deterministic DataLoader: shuffling and worker seeds come from a generator seeded with ``seed``.

    Parameters
    ----------
    dataset : Dataset
        Map-style dataset.
    batch_size : int
        Samples per batch, >= 1.
    shuffle : bool
        Reshuffle each epoch (order drawn from the loader's own generator).
    seed : int
        Seed of ``loader.generator``; :func:`train` checkpoints its state for resuming.
    num_workers : int, default=0
        Worker processes, >= 0; each seeds numpy and ``random`` with :func:`seed_worker`.
    pin_memory : bool, default=False
        Page-locked host memory (useful with CUDA).
    drop_last : bool, default=False
        Drop the last incomplete batch.
    seeded : bool, optional
        Per-item seeds (module docstring): the loader's dataset is a :class:`SeededItems` over
        ``dataset`` and its sampler an :class:`~ssinfnet.data.epochs.EpochSampler`; workers persist
        over epochs. Default: on with workers, off without (the running-state path of earlier runs).

    Returns
    -------
    DataLoader
        Two loaders built with the same arguments yield the same batches in the same order; with
        ``seeded``, whatever ``num_workers`` is.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    if seeded if seeded is not None else num_workers > 0:
        return DataLoader(SeededItems(dataset, seed), batch_size=batch_size,
                          sampler=EpochSampler(len(dataset), shuffle, seed), num_workers=num_workers,
                          pin_memory=pin_memory, drop_last=drop_last, generator=generator,
                          worker_init_fn=seed_worker, persistent_workers=num_workers > 0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        worker_init_fn=seed_worker,
        # New workers each epoch, seeded from the (checkpointed) generator, keep resume exact.
        persistent_workers=False,
    )
