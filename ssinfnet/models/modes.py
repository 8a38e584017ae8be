"""Temporarily switching a network's mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the ``with`` block, then restore its previous mode (even on error)."""
    was = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was)
