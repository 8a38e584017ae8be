"""Per-epoch seeding: the order of an epoch and its random draws from (seed, epoch), not from a running state.

:class:`EpochSampler` draws epoch ``e``'s order from a generator seeded with ``epoch_seed(seed, e)``, so
the order of any epoch is known without replaying the ones before it: a resumed run (told the epoch by
the training loop's ``set_epoch``) draws the same batches, and nothing but the epoch number needs to be
checkpointed. It yields ``(epoch, index)`` keys, which :class:`~ssinfnet.training.loader.SeededItems` and
the device-held loader (:class:`~ssinfnet.data.held.DeviceLoader`) turn into items augmented with
their own seeds: what a sample gets depends on (seed, epoch, index), never on which worker made it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed drawn from ``(seed, *keys)`` (e.g. epoch, sample index, process); the same keys
    always give the same seed, different keys independent ones."""
    words = [int(seed) % 2**63, *(int(k) % 2**63 for k in keys)]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] % 2**63)


class EpochSampler(Sampler):
    """Indices of ``n`` samples, shuffled per epoch from ``(seed, epoch)`` (or in order), as
    ``(epoch, index)`` pairs.

    Parameters
    ----------
    n : int
        Dataset length, >= 1.
    shuffle : bool
        A new order each epoch; False keeps 0..n-1.
    seed : int
        Seed of every epoch's order (:func:`epoch_seed`).
    rank, size : int
        This process's share under torchrun: the epoch's order is padded (by repeating its start) to a
        multiple of ``size`` and process ``rank`` takes every ``size``-th index from ``rank`` (as
        PyTorch's ``DistributedSampler`` does). Default one process.

    The epoch is the one last given to :meth:`set_epoch` (the training loop calls it before every
    epoch); without it, each iteration advances to the next epoch by itself.
    """

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int = 0, size: int = 1):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        if not 0 <= rank < size:
            raise ValueError(f"rank must be in [0, {size}), got {rank}")
        self.n, self.shuffle, self.seed, self.rank, self.size = n, shuffle, int(seed), rank, size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self, epoch: int) -> torch.Tensor:
        """This process's indices of ``epoch`` (int64, CPU)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            idx = torch.randperm(self.n, generator=g)
        else:
            idx = torch.arange(self.n)
        if self.size > 1:
            total = -(-self.n // self.size) * self.size
            idx = torch.cat([idx, idx[: total - self.n]]) if total > self.n else idx
            idx = idx[self.rank::self.size]
        return idx

    def shard(self, rank: int, size: int) -> "EpochSampler":
        """The same sampler for process ``rank`` of ``size``."""
        return EpochSampler(self.n, self.shuffle, self.seed, rank, size)

    def __len__(self) -> int:
        return -(-self.n // self.size)

    def __iter__(self):
        epoch = self.epoch
        self.epoch = epoch + 1  # the next epoch, unless set_epoch says otherwise
        for i in self.order(epoch).tolist():
            yield epoch, i
