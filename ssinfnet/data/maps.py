"""Per-slice maps on disk: one ``.npz`` per set of maps, one array per slice, keyed by slice id.

The one format and the one reader for every map a chapter hands to another: stage-1 probability
priors, test-set probabilities, predicted class maps. Probabilities are stored as float16 (small) and
read back as float32 in [0, 1]; label maps as uint8 codes of :mod:`ssinfnet.data.classes`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from .classes import CODES

__all__ = ["save_maps", "load_maps", "map_ids"]

Kind = Literal["probability", "labels", "any"]


def save_maps(path: str | Path, samples: Sequence, maps: Sequence[np.ndarray]) -> Path:
    """Write ``maps`` (one (H, W) array per sample, in order) to ``path`` keyed by ``sample.slice_id``.

    Integer maps are stored as uint8 labels, anything else as float16 probabilities. Returns the
    path; ValueError when the counts differ.
    """
    if len(samples) != len(maps):
        raise ValueError(f"{len(samples)} samples but {len(maps)} maps")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def pack(m):
        m = np.asarray(m)
        return m.astype(np.uint8) if m.dtype.kind in "biu" else m.astype(np.float16)

    np.savez_compressed(path, **{s.slice_id: pack(m) for s, m in zip(samples, maps)})
    return path


def map_ids(path: str | Path) -> set[str]:
    """The slice ids a map file holds; ValueError naming the file when it is missing or unreadable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(data.files)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read maps ({err})") from err


def load_maps(path: str | Path, samples: Sequence | None = None, *, kind: Kind = "any"):
    """Read the maps of :func:`save_maps`.

    Parameters
    ----------
    path : path of the ``.npz``.
    samples : the slices to read, in order; None reads every map in the file.
    kind : "probability" checks float maps with finite values in [0, 1]; "labels" checks 2-D maps
        with codes in {0, 1, 2}; "any" accepts either (labels come back uint8, the rest float32).

    Returns
    -------
    list of arrays aligned with ``samples`` (each checked against its slice's (H, W)), or, without
    ``samples``, a dict slice id -> array.

    Raises
    ------
    ValueError naming the file and the slice: missing or unreadable file, slice ids absent (listed),
    a shape that differs from its slice, values of the wrong kind.
    """
    path = Path(path)
    if kind not in ("probability", "labels", "any"):
        raise ValueError(f"kind must be 'probability', 'labels' or 'any', got {kind!r}")
    if not path.is_file():
        raise ValueError(f"{path}: map file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read maps ({err})") from err
    with data:
        if samples is None:
            return {k: _checked(path, k, data[k], None, kind) for k in data.files}
        missing = [s.slice_id for s in samples if s.slice_id not in data.files]
        if missing:
            raise ValueError(f"{path}: no map for {len(missing)} slice(s): {missing[:5]}")
        return [_checked(path, s.slice_id, data[s.slice_id], s.image.shape, kind) for s in samples]


def _checked(path: Path, key: str, arr: np.ndarray, shape, kind: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{path}: map of {key!r} must be 2-D, got shape {arr.shape}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{path}: map of {key!r} has shape {arr.shape}, slice {tuple(shape)}")
    labels = arr.dtype.kind in "biu"
    if kind == "labels" or (kind == "any" and labels):
        if not labels:
            raise ValueError(f"{path}: map of {key!r} holds {arr.dtype} values, not class labels")
        bad = np.setdiff1d(np.unique(arr), CODES)
        if bad.size:
            raise ValueError(f"{path}: class map {key!r} has labels {bad[:5].tolist()} outside {set(CODES)}")
        return arr.astype(np.uint8)
    p = arr.astype(np.float32)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{path}: map of {key!r} contains NaN or Inf")
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"{path}: map of {key!r} outside [0, 1] ([{p.min():.3g}, {p.max():.3g}])")
    return p
