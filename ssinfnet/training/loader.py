"""Seeded, reproducible data loaders for the training loop."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


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

    Returns
    -------
    DataLoader
        Two loaders built with the same arguments yield the same batches in the same order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator()
    generator.manual_seed(seed)
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
