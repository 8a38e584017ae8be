"""Deterministic splits: a validation split carved from training and grouped k-fold.

Groups (volume or patient ids) never straddle a split. Slices without a group id (the labelled
COVID-SemiSeg slices have none) are their own group, and the duplicate check of
:mod:`ssinfnet.data.duplicates` is the guard against near-identical slices on both sides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .sample import Sample


def group_keys(samples: Sequence[Sample]) -> list[str]:
    """The group of each sample: its ``group_id``, or its own ``slice_id`` when the group is unknown."""
    return [s.group_id if s.group_id is not None else f"slice:{s.slice_id}" for s in samples]


def _shuffled_groups(keys: Sequence[str], seed: int) -> list[str]:
    uniq = sorted(set(keys))
    rng = np.random.default_rng(seed)
    return [uniq[i] for i in rng.permutation(len(uniq))]


def validation_split(samples: Sequence[Sample], fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split indices into (train, validation), grouped, with about ``fraction`` of the slices in validation.

    Deterministic for a given seed and sample order; raises ValueError for a fraction outside (0, 1)
    or when fewer than two groups exist.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    keys = group_keys(samples)
    groups = _shuffled_groups(keys, seed)
    if len(groups) < 2:
        raise ValueError(f"need at least 2 groups to split, got {len(groups)}")
    target = max(1, round(fraction * len(samples)))
    val_groups, n_val = set(), 0
    counts = pd.Series(keys).value_counts()
    for g in groups:
        if n_val >= target or len(val_groups) == len(groups) - 1:
            break
        val_groups.add(g)
        n_val += int(counts[g])
    val = [i for i, k in enumerate(keys) if k in val_groups]
    train = [i for i, k in enumerate(keys) if k not in val_groups]
    return train, val


def grouped_kfold(samples: Sequence[Sample], k: int = 3, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """``k`` folds of (train, held-out) indices; every sample is held out exactly once; groups stay whole.

    Groups are dealt to folds largest first, each to the currently smallest fold (balanced slice counts).
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    keys = group_keys(samples)
    counts = pd.Series(keys).value_counts()
    if len(counts) < k:
        raise ValueError(f"k={k} folds need at least {k} groups, got {len(counts)}")
    order = _shuffled_groups(keys, seed)
    order.sort(key=lambda g: -int(counts[g]))  # stable: ties keep the seeded order
    fold_of, sizes = {}, [0] * k
    for g in order:
        f = int(np.argmin(sizes))
        fold_of[g] = f
        sizes[f] += int(counts[g])
    folds = []
    for f in range(k):
        held = [i for i, key in enumerate(keys) if fold_of[key] == f]
        folds.append(([i for i, key in enumerate(keys) if fold_of[key] != f], held))
    return folds


def split_manifest(samples: Sequence[Sample], assignment: dict[int, str]) -> pd.DataFrame:
    """One row per sample: slice_id, group, source, subset, split (``assignment[i]``), path.

    Samples missing from ``assignment`` get split "excluded" so that counts always add up.
    """
    keys = group_keys(samples)
    return pd.DataFrame({
        "slice_id": [s.slice_id for s in samples], "group": keys, "source": [s.source for s in samples],
        "subset": [s.subset for s in samples], "split": [assignment.get(i, "excluded") for i in range(len(samples))],
        "path": [s.path for s in samples],
    })


def save_manifest(df: pd.DataFrame, path: Path | str) -> Path:
    """Write a split manifest as CSV (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def load_split(samples: Sequence[Sample], path: Path | str) -> tuple[list[int], list[int]]:
    """(train, validation) indices of ``samples`` from a manifest written by :func:`save_manifest`.

    Every sample must appear in the manifest with split "train" or "val"; otherwise ValueError names
    the first slice that does not.
    """
    table = pd.read_csv(path, dtype={"slice_id": str})
    split_of = dict(zip(table["slice_id"], table["split"]))
    train, val = [], []
    for i, s in enumerate(samples):
        where = split_of.get(s.slice_id)
        if where not in ("train", "val"):
            raise ValueError(f"{path}: slice {s.slice_id!r} has no train/val assignment ({where!r})")
        (train if where == "train" else val).append(i)
    return train, val
