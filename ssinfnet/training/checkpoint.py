"""Checkpoints: atomic writes, safe loads, and random-number-generator state.

A checkpoint is a plain ``dict`` saved with :func:`torch.save`. It must load with
``torch.load(..., weights_only=True)`` (no arbitrary unpickling), so everything in it is a tensor,
a number, a string, ``None``, or a list/tuple/dict of those. RNG states are therefore stored as
tensors and plain lists (see :func:`capture_rng_state`).

Writes are atomic: the state goes to a temporary file in the destination folder, is flushed to
disk, and then :func:`os.replace` swaps it in. A crash mid-write leaves the previous checkpoint
untouched and loadable; the temporary file is removed. The file gets the mode of any new file
(``0o666 & ~umask``), not the private ``0o600`` of :func:`tempfile.mkstemp`.

A file that does not load is reported by :func:`safe_load` as not an ssinfnet file (corrupt,
truncated, or written by another program) with the exception class; PyTorch's own advice to retry
with ``weights_only=False`` is never passed on (that would unpickle arbitrary code).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "safe_load",
    "capture_rng_state",
    "restore_rng_state",
]


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    Parameters
    ----------
    path : str or PathLike
        Destination file (``.pt``). Missing parent folders are created.
    state : Mapping[str, Any]
        Tensors, numbers, strings, ``None`` and containers of those (whatever
        ``torch.load(weights_only=True)`` accepts).

    Returns
    -------
    Path
        The destination path.

    Notes
    -----
    If writing fails (disk full, interrupted process, an exception in ``torch.save``) the previous
    file at ``path`` is kept as it was and the partial temporary file is deleted.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a mapping, got {type(state).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp makes it 0o600; the result is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # The half-written temp file is useless; the old checkpoint was never touched.
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return path


def new_file_mode() -> int:
    """The mode :func:`open` gives a new file: ``0o666`` less the process umask (e.g. ``0o644``)."""
    try:  # Linux reports the umask without changing it (os.umask would, briefly, for every thread)
        with open("/proc/self/status") as fh:
            mask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _load_error_detail(exc: BaseException) -> str:
    """``"ExceptionClass: first sentence"`` of a :func:`torch.load` failure, without PyTorch's advice.

    PyTorch's ``weights_only`` messages suggest re-running with ``weights_only=False``, which would
    execute whatever the file holds; only the class name and a neutral detail are kept.
    """
    msg = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", msg)
    if found:
        detail = f"holds a Python object ({found.group(1)}) that plain tensors and numbers never need"
    elif "WeightsUnpickler error:" in msg:
        rest = msg.split("WeightsUnpickler error:", 1)[1].strip()
        detail = rest.splitlines()[0].strip() if rest else ""
    else:
        detail = msg.strip().splitlines()[0].split(". ")[0].strip() if msg.strip() else ""
    if "weights_only" in detail or "trust" in detail:
        detail = ""
    detail = detail[:200]
    return f"{exc.__class__.__name__}: {detail}" if detail else exc.__class__.__name__


def safe_load(path: str | os.PathLike, map_location: str | torch.device | None = "cpu",
              what: str = "ssinfnet checkpoint") -> Any:
    """``torch.load(path, weights_only=True)``; ValueError naming the file when it does not load.

    Parameters
    ----------
    path : str or PathLike
        An existing file.
    map_location : str, torch.device or None, default="cpu"
        Passed to :func:`torch.load`.
    what : str, default="ssinfnet checkpoint"
        What the file should be, for the message (e.g. ``"ssinfnet model file"``).

    Raises
    ------
    ValueError
        ``"<path>: not a loadable <what> (corrupt, truncated, or written by another program;
        <ExceptionClass>: <detail>)"``, never with the advice to load with ``weights_only=False``.
    """
    try:
        with warnings.catch_warnings():
            # e.g. "Detected pickle protocol 4": noise on stderr for a file we refuse anyway
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types (RuntimeError, UnpicklingError, EOFError, KeyError...)
        raise ValueError(f"{path}: not a loadable {what} (corrupt, truncated, or written by another program; "
                         f"{_load_error_detail(err)})") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Parameters
    ----------
    path : str or PathLike
        Checkpoint file.
    map_location : str, torch.device or None, default="cpu"
        Passed to :func:`torch.load`.

    Returns
    -------
    dict
        The saved state.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupt or holds objects that ``weights_only`` refuses; the
        message names the file and the exception class (see :func:`safe_load`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = safe_load(path, map_location)
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def capture_rng_state(generators: Mapping[str, torch.Generator | None] | None = None) -> dict:
    """Snapshot every random-number generator a training run draws from.

    Parameters
    ----------
    generators : Mapping[str, torch.Generator or None], optional
        Extra explicit generators (e.g. the data loader's and the loss context's); ``None``
        entries are skipped.

    Returns
    -------
    dict
        ``{"torch": uint8 tensor, "cuda": list of uint8 tensors, "numpy": {...}, "python": {...},
        "generators": {name: uint8 tensor}}`` — only tensors, ints, floats, strings and lists, so it
        loads with ``weights_only=True``.
    """
    np_state = np.random.get_state()
    version, py_keys, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(version), "keys": list(py_keys), "gauss": gauss},
        "generators": {},
    }
    for name, gen in (generators or {}).items():
        if gen is not None:
            state["generators"][name] = gen.get_state()
    return state


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator | None] | None = None
) -> None:
    """Restore generators from a :func:`capture_rng_state` snapshot.

    Parameters
    ----------
    state : Mapping
        The snapshot.
    generators : Mapping[str, torch.Generator or None], optional
        Explicit generators to restore in place, by the names used when capturing. A name missing
        from the snapshot raises ``ValueError``.
    """
    torch.set_rng_state(state["torch"].cpu())
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"checkpoint holds RNG states for {len(cuda_states)} CUDA devices, "
                f"this machine has {torch.cuda.device_count()}"
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["keys"]), py["gauss"]))
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if gen is None:
            continue
        if name not in saved:
            raise ValueError(f"RNG snapshot has no generator named {name!r}; it has {sorted(saved)}")
        gen.set_state(saved[name].cpu())
