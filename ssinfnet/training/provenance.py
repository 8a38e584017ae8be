"""Provenance of trained artifacts: which data, configuration and code trained them, at which commit.

Keys
----
A training run folder (``train``'s ``run_dir``: a pretraining, a fine-tuned variant, a CV fold) is
keyed on short hashes of everything that determines its weights:

* ``data``: what the training read, by content. :func:`samples_fingerprint` hashes, in order, each
  sample's ``slice_id`` and the arrays the training reads (``image``, ``infection``, ``classes``
  and the prior as float32, as :class:`~ssinfnet.data.dataset.SliceDataset` feeds it);
  not ``path``, ``meta`` or ``group_id``, so a data root moved elsewhere still resumes, and not
  ``edge`` or ``pseudo_label``, which the training does not read. Synthetic phantoms are keyed by
  their pixels, so another generator setting (size, seed, count, generator code) is another key.
  :func:`dataset_fingerprint` adds a dataset's output size and transform, :func:`loader_fingerprint`
  the batch size, ``drop_last`` and sampler.
* ``config``: the run's settings (:func:`config_fingerprint`; fine-tuning compares its
  ``SegConfig`` field by field in ``config.json`` instead). A setting added to a config class after
  a folder was written matches when it holds its default.
* ``code``: :func:`code_fingerprint`, a hash of the package source files listed in
  :data:`CODE_FILES`: the networks, the data readers and transforms, the losses and optimisers,
  the training loop, pretraining and fine-tuning.

Resuming or reusing a folder whose key differs raises :class:`StaleRunError` naming the folder, what
differs (old -> new hashes) and what to do. ``SSINFNET_ALLOW_STALE=1`` reuses it anyway, with a
:class:`StaleRunWarning`; that use is written into the folder's record and the run manifest.

Records
-------
:func:`stamp` makes the record of a run: its key, and the commit, dirty flag and time of the session
that trained it (``trained_at``). ``train`` stores it in every checkpoint and in
``run_dir/provenance.json`` (:func:`write_record`), a small file that stays readable without the
weights; fine-tuning also keeps it in ``config.json``. Every ``train`` call also notes in this process what it did with its folder
(:func:`note_run`: ``"trained"``, ``"resumed"`` or ``"reused"``, the last when the checkpoint was
already complete), and :meth:`ssinfnet.book.context.RunContext.record` moves those notes into the stage
entry of the manifest (:func:`take_runs`), so a chapter that reloaded a cached model says so, and
which commit trained it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CODE_FILES", "ENV_ALLOW_STALE", "RECORD_NAME", "StaleRunError", "StaleRunWarning",
           "code_files", "code_fingerprint", "samples_fingerprint", "dataset_fingerprint", "loader_fingerprint",
           "config_fingerprint", "git_state", "stamp", "differences", "check_key", "allow_stale",
           "write_record", "read_record", "note_run", "note_stale", "take_runs", "short", "stale_message"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # ssinfnet/ (this file is ssinfnet/training/provenance.py)
REPO_ROOT = PACKAGE_DIR.parent
ENV_ALLOW_STALE = "SSINFNET_ALLOW_STALE"
RECORD_NAME = "provenance.json"
NOT_RECORDED = "not recorded"

#: Package source files (glob patterns relative to ``ssinfnet/``) whose content determines trained
#: weights: the networks, the readers that decode slices, the dataset and its transforms, losses,
#: optimisers, the training loop, pretraining and fine-tuning, and ``segmentation/predict.py``
#: (validation runs through it and picks the exported epoch). Left out on purpose: evaluation and
#: metrics (they score weights; the data key already holds the priors they made), the book, plots
#: and statistics. Every pattern must match a file (a test checks it).
CODE_FILES: tuple[str, ...] = (
    "models/*.py",
    "data/dataset.py", "data/inputs.py", "data/transforms.py", "data/sample.py", "data/classes.py",
    "data/io.py", "data/semiseg.py", "data/medseg.py", "data/phantoms.py",
    "training/losses.py", "training/optimisers.py", "training/loop.py", "training/resume.py",
    "training/callables.py", "training/distributed.py", "training/phases.py", "training/device.py",
    "training/loader.py", "training/history.py",
    "pretraining/inpainting.py", "segmentation/variants.py", "segmentation/fit.py", "segmentation/predict.py",
)

_HEX = 16  # hex characters kept of each sha256 (64 bits)


class StaleRunError(ValueError):
    """A run folder holds checkpoints made from other data, settings or code than the current call."""


class StaleRunWarning(UserWarning):
    """A stale run folder is reused because ``SSINFNET_ALLOW_STALE=1`` is set."""


def short(value: Any) -> str:
    """A hash for messages and tables: the value, or "not recorded" for None."""
    return NOT_RECORDED if value is None else str(value)


# ----------------------------------------------------------------------------------------- fingerprints

def code_files(package: Path = PACKAGE_DIR) -> list[Path]:
    """The files of :data:`CODE_FILES` below ``package``, sorted by relative path.

    Raises FileNotFoundError naming a pattern that matches no file (a module was renamed or moved:
    update :data:`CODE_FILES`).
    """
    package = Path(package)
    found: set[Path] = set()
    for pattern in CODE_FILES:
        matches = [p for p in package.glob(pattern) if p.is_file()]
        if not matches:
            raise FileNotFoundError(f"{package}: no file matches {pattern!r} of provenance.CODE_FILES "
                                    f"(a training module was renamed or moved; update the list)")
        found.update(matches)
    return sorted(found, key=lambda p: p.relative_to(package).as_posix())


def code_fingerprint(package: Path = PACKAGE_DIR) -> str:
    """Hash of the training code: sha256 over ``<relative path>\\n<size>\\n<bytes>`` of each file of
    :func:`code_files` in order; the first 16 hex characters."""
    package = Path(package)
    h = hashlib.sha256()
    for path in code_files(package):
        data = path.read_bytes()
        h.update(f"{path.relative_to(package).as_posix()}\n{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()[:_HEX]


def _update_array(h, name: str, arr) -> None:
    """Feed one array (or None) to ``h``: name, dtype, shape, then its bytes in C order."""
    if arr is None:
        h.update(f"{name}:none\n".encode())
        return
    a = np.ascontiguousarray(arr)
    h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
    h.update(a.tobytes())


def samples_fingerprint(samples: Sequence, priors: Sequence | None = None) -> str:
    """Hash of what training reads from ``samples``, in order (16 hex characters).

    Per sample: ``slice_id``, ``image``, ``infection``, ``classes`` and the prior (``priors[i]``
    when given, else ``sample.prior``) as float32, the values training reads
    (:func:`ssinfnet.data.inputs.slice_input` keeps the prior in float). Paths, metadata, group
    ids, edges and pseudo labels are not part of it.
    """
    if priors is not None and len(priors) != len(samples):
        raise ValueError(f"priors has {len(priors)} maps for {len(samples)} samples")
    h = hashlib.sha256(f"samples:{len(samples)}\n".encode())
    for i, s in enumerate(samples):
        h.update(f"slice:{s.slice_id}\n".encode())
        for name in ("image", "infection", "classes"):
            _update_array(h, name, getattr(s, name))
        prior = priors[i] if priors is not None else s.prior
        _update_array(h, "prior", None if prior is None else np.asarray(prior, dtype=np.float32))
    return h.hexdigest()[:_HEX]


def _describe_transform(transform) -> str:
    """``repr`` of a transform without memory addresses (they differ between processes)."""
    return re.sub(r"\s+", " ", re.sub(r" at 0x[0-9a-fA-F]+", "", repr(transform))).strip()


def dataset_fingerprint(dataset) -> str | None:
    """Hash of a dataset's content, or None when its kind is not known.

    Known kinds: :class:`~ssinfnet.data.dataset.SliceDataset` (its samples and priors, output size
    and transform), ``TensorDataset`` (its tensors) and ``Subset`` (the dataset and the indices).
    """
    from torch.utils.data import Subset, TensorDataset

    h = hashlib.sha256()
    if all(hasattr(dataset, a) for a in ("samples", "size", "transform", "priors")):
        h.update(f"slices:{samples_fingerprint(dataset.samples, dataset.priors)}:{dataset.size}\n".encode())
        h.update(_describe_transform(dataset.transform).encode())
    elif isinstance(dataset, TensorDataset):
        for i, t in enumerate(dataset.tensors):
            _update_array(h, f"tensor{i}", t.detach().cpu().numpy())
    elif hasattr(dataset, "dataset") and hasattr(dataset, "seed"):  # SeededItems: per-item seeds
        inner = dataset_fingerprint(dataset.dataset)
        if inner is None:
            return None
        h.update(f"seeded:{inner}".encode())
    elif isinstance(dataset, Subset):
        inner = dataset_fingerprint(dataset.dataset)
        if inner is None:
            return None
        h.update(f"subset:{inner}:{list(map(int, dataset.indices))}".encode())
    else:
        return None
    return h.hexdigest()[:_HEX]


def loader_fingerprint(loader) -> str | None:
    """Hash of what a DataLoader yields: its dataset (:func:`dataset_fingerprint`), batch size,
    ``drop_last`` and sampler kind (and the loader's kind when it is not a DataLoader, e.g. a
    :class:`~ssinfnet.data.held.DeviceLoader`); None when the dataset's kind is not known."""
    inner = dataset_fingerprint(getattr(loader, "dataset", None))
    if inner is None:
        return None
    sampler = type(getattr(loader, "sampler", None)).__name__
    text = f"{inner}:batch={getattr(loader, 'batch_size', None)}:drop_last={getattr(loader, 'drop_last', None)}" \
           f":sampler={sampler}"
    kind = type(loader).__name__
    if kind != "DataLoader":  # e.g. a DeviceLoader: other batches from the same slices
        text += f":loader={kind}:static={getattr(loader, 'static_shapes', None)}"
    return hashlib.sha256(text.encode()).hexdigest()[:_HEX]


def config_fingerprint(settings: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> str:
    """Hash of settings as canonical JSON, leaving out the entries equal to ``defaults``: a field
    added to a config class later, at its default, keeps the hash (changing a default changes the
    code fingerprint instead)."""
    defaults = defaults or {}
    kept = {k: v for k, v in settings.items() if not (k in defaults and _same(v, defaults[k]))}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:_HEX]


def _same(a, b) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


# ----------------------------------------------------------------------------------------- records

def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"git_commit": sha, "dirty": bool}`` of the checkout; ``dirty`` when tracked files outside
    ``runs/`` have changes (a run rewrites its own outputs there). ``("unknown", None)`` outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)runs"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return {"git_commit": sha, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "dirty": None}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def stamp(key: Mapping[str, str | None]) -> dict[str, Any]:
    """The record of a run trained now: ``{"key": key, "trained_at": {git_commit, dirty, time}}``."""
    return {"key": dict(key), "trained_at": {**git_state(), "time": _now()}}


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"<part> <old> -> <new>"`` for each key part (data, config, code, ...) that differs."""
    order = ["data", "config", "code"]
    parts = order + sorted((set(old) | set(new)) - set(order))
    return [f"{k} {short(old.get(k))} -> {short(new.get(k))}" for k in parts
            if (k in old or k in new) and old.get(k) != new.get(k)]


def allow_stale() -> bool:
    """Whether ``SSINFNET_ALLOW_STALE`` is set to 1 / true / yes."""
    return os.environ.get(ENV_ALLOW_STALE, "").strip().lower() in ("1", "true", "yes")


_KINDS = {"data": "data", "config": "settings", "code": "code"}


def stale_message(run_dir: Path | str, diffs: Sequence[str], hint: bool = True) -> str:
    """One line: the folder, what differs (``diffs``, each ``"<part> <old> -> <new>"``) and, with
    ``hint``, what to do."""
    firsts = [d.split(" ", 1)[0] for d in diffs]
    kinds = [_KINDS.get(k, k) for k in dict.fromkeys(firsts)]
    text = f"run folder {run_dir} holds a run trained with other {'/'.join(kinds)} ({'; '.join(diffs)})"
    if not hint:
        return text
    return (f"{text}; delete the folder or use a new run_dir to retrain (or set {ENV_ALLOW_STALE}=1 to reuse "
            f"it knowingly; the manifest records that)")


def check_key(run_dir: Path | str, old: Mapping[str, Any], new: Mapping[str, Any],
              extra: Sequence[str] = ()) -> dict | None:
    """Compare the key a folder was trained with (``old``) with the current one (``new``).

    ``extra`` are differences the caller found itself (e.g. ``"config epochs 1 -> 2"``), listed
    first. Returns None when nothing differs. Otherwise raises :class:`StaleRunError` (one line: the folder,
    what differs, what to do), or, when :func:`allow_stale`, warns (:class:`StaleRunWarning`) and
    returns a note ``{"time", "differs", "git_commit", "dirty"}`` to keep in the folder's record.
    """
    diffs = [*extra, *differences(old, new)]
    if not diffs:
        return None
    if not allow_stale():
        raise StaleRunError(stale_message(run_dir, diffs))
    warnings.warn(f"{stale_message(run_dir, diffs, hint=False)}; reused anyway because {ENV_ALLOW_STALE} is set "
                  f"(recorded in the run folder and the manifest)", StaleRunWarning, stacklevel=3)
    return {"time": _now(), "differs": list(diffs), **git_state()}


def write_record(run_dir: Path | str, record: Mapping[str, Any]) -> Path:
    """Write ``run_dir/provenance.json`` atomically (temp file + rename)."""
    path = Path(run_dir) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def read_record(run_dir: Path | str) -> dict | None:
    """``run_dir/provenance.json``, or None when absent."""
    path = Path(run_dir) / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------------------- events

_RUNS: list[dict[str, Any]] = []


def note_run(run_dir: Path | str, action: str, record: Mapping[str, Any]) -> None:
    """Note that this process ``action``-ed the run in ``run_dir`` ("trained", "resumed" or "reused")."""
    if action not in ("trained", "resumed", "reused"):
        raise ValueError(f"action must be 'trained', 'resumed' or 'reused', got {action!r}")
    _RUNS.append({"run_dir": str(Path(run_dir).resolve()), "action": action, "record": dict(record)})


def note_stale(run_dir: Path | str, note: Mapping[str, Any]) -> None:
    """Note that this process reused the stale run in ``run_dir`` knowingly (a :func:`check_key` note)."""
    _RUNS.append({"run_dir": str(Path(run_dir).resolve()), "action": "stale", "note": dict(note)})


def take_runs(under: Path | str) -> dict[str, dict[str, Any]]:
    """Remove and return the runs noted below ``under``: relative folder -> ``{"action", "record"}``
    plus ``"stale"`` (the notes of :func:`note_stale`) when a stale folder was reused knowingly.

    A folder noted several times (pretraining runs its schedule as growing prefixes) counts as
    trained when any call trained or resumed it, else as reused.
    """
    base = Path(under).resolve()
    out: dict[str, dict[str, Any]] = {}
    keep = []
    for event in _RUNS:
        path = Path(event["run_dir"])
        if path != base and base not in path.parents:
            keep.append(event)
            continue
        rel = path.relative_to(base).as_posix() or "."
        entry = out.setdefault(rel, {"action": None, "record": {}})
        if event["action"] == "stale":
            entry.setdefault("stale", []).append(event["note"])
            continue
        trained = event["action"] != "reused" or entry["action"] == "trained"
        entry.update(action="trained" if trained else "reused", record=event["record"])
    _RUNS[:] = keep
    return out
