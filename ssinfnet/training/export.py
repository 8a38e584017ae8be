"""Exported model files: one checkpoint format for every trained network (save, check and load)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..data.classes import CLASS_LABELS
from ..data.io import DataError
from ..models.registry import build_model
from .checkpoint import safe_load


EXPORT_FORMAT = "ssinfnet-model-v2"


LEGACY_FORMATS = ("ssinfnet-model-v1",)  # no top-level task; read when extra["task"] says it


# task -> what the model is (for messages), its classes, its output head, and its outputs in words
TASKS = {"single": "single (infection) segmentation", "multi": "multi (GGO/consolidation) segmentation",
         "inpainting": "inpainting (pretraining)", "coach": "coach (pretraining)"}


TASK_CLASSES = {"single": ("infection",), "multi": CLASS_LABELS,
                "inpainting": (), "coach": ()}


TASK_HEADS = {"single": "seg", "multi": "seg", "inpainting": "inpaint", "coach": "mask"}


TASK_OUTPUTS = {"single": "1 logit channel; sigmoid = infection probability",
                "multi": "3 logit channels; softmax = background, GGO, consolidation probabilities",
                "inpainting": "reconstruction of the input channels (normalised intensities)",
                "coach": "keep-mask (B, 1, H, W) in [0, 1]; 1 keeps a pixel, 0 erases it"}


TASK_IN_CHANS = {"single": 1, "multi": 2}  # segmentation: image, or image + stage-1 prior


# ----------------------------------------------------------------------------- exported models

def export_model(path: str | Path, model: torch.nn.Module, name: str, kwargs: dict, image_size: int,
                 extra: dict | None = None, *, task: str, classes: Sequence[str] | None = None) -> Path:
    """Save ``model`` with what is needed to rebuild it and to know what it is for.

    Parameters
    ----------
    path : str or Path
        Destination (``.pt``); written atomically, mode ``0o666 & ~umask``.
    model : nn.Module
    name : str
        Registry name (:func:`ssinfnet.models.registry.build_model`), stored as ``network``.
    kwargs : dict
        Constructor arguments (plain Python values).
    image_size : int
        Training input side (pixels).
    extra : dict, optional
        Free-form information (variant, validation score, configuration).
    task : {"single", "multi", "inpainting", "coach"}
        What the model does (:data:`TASKS`); ``load_exported(..., expect_task=...)`` checks it.
    classes : sequence of str, optional
        Class names of the outputs; default :data:`TASK_CLASSES` of ``task``
        (``("infection",)``, ``("background", "GGO", "consolidation")``, ``()``).

    Raises
    ------
    ValueError
        Unknown ``task``, or a segmentation model whose input channels do not fit its task
        (single: 1, multi: 2).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    in_chans = int(getattr(model, "in_chans", kwargs.get("in_chans", 1)))
    if task in TASK_IN_CHANS and in_chans != TASK_IN_CHANS[task]:
        raise ValueError(f"a {task} segmentation model takes {TASK_IN_CHANS[task]} input channel(s); "
                         f"{name!r} takes {in_chans}")
    classes = TASK_CLASSES[task] if classes is None else tuple(str(c) for c in classes)
    path = Path(path)
    state = {"format": EXPORT_FORMAT, "task": task, "network": name, "head": TASK_HEADS[task],
             "outputs": TASK_OUTPUTS[task], "classes": tuple(classes), "in_chans": in_chans,
             "name": name, "kwargs": dict(kwargs), "image_size": int(image_size),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "extra": dict(extra or {})}
    from .checkpoint import save_checkpoint

    return save_checkpoint(path, state)  # atomic: a crash mid-write keeps the previous file


@dataclass
class LoadedModel:
    """An exported model rebuilt by :func:`load_exported` (``model`` in eval mode)."""

    model: torch.nn.Module
    name: str
    image_size: int
    kwargs: dict
    extra: dict
    task: str = ""
    classes: tuple[str, ...] = ()
    in_chans: int = 1
    path: Path | None = None


def describe_task(task: str) -> str:
    """``"a coach (pretraining) model"``: the kind of model a task names, with its article."""
    kind = TASKS.get(task, f"{task!r}")
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} model"


def check_task(path, task: str, expect_task: str | Sequence[str] | None, role: str | None = None) -> None:
    """DataError unless ``task`` is (one of) ``expect_task``; ``role`` names the user of the model,
    e.g. ``"--checkpoint"``. ``expect_task=None`` accepts any task."""
    if expect_task is None:
        return
    expected = (expect_task,) if isinstance(expect_task, str) else tuple(expect_task)
    unknown = [t for t in expected if t not in TASKS]
    if unknown:
        raise ValueError(f"expect_task must name tasks of {sorted(TASKS)}, got {unknown}")
    if task not in expected:
        want = " or ".join(describe_task(t) for t in expected)
        raise DataError(f"{path} is {describe_task(task)} (task {task!r}); "
                        f"{role + ' expects' if role else 'expected'} {want}")


def load_exported(path: str | Path, device: str | torch.device = "cpu",
                  expect_task: str | Sequence[str] | None = None, role: str | None = None) -> LoadedModel:
    """Rebuild an exported model (eval mode, on ``device``).

    Parameters
    ----------
    path : str or Path
        A file written by :func:`export_model`.
    device : str or torch.device, default="cpu"
    expect_task : str or sequence of str, optional
        The task(s) the caller can use (``"single"``, ``"multi"``, ...); another task is refused.
    role : str, optional
        Who uses the model, for the message (e.g. ``"--checkpoint"``).

    Raises
    ------
    DataError
        Missing, corrupt or foreign file; a model of another task than ``expect_task``; an old
        (``ssinfnet-model-v1``) export that does not record its task; weights that do not fit the
        recorded network. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found")
    try:
        state = safe_load(path, "cpu", what="ssinfnet model file")
    except ValueError as exc:  # the message names the file and the exception class
        raise DataError(str(exc)) from None
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt != EXPORT_FORMAT and fmt not in LEGACY_FORMATS:
        hint = ("; it is a training checkpoint: use the model.pt the run exported next to checkpoints/"
                if isinstance(state, dict) and "models" in state else "")
        raise DataError(f"{path}: not an ssinfnet exported model (format {EXPORT_FORMAT!r} expected){hint}")
    extra = state.get("extra") or {}
    task = state.get("task") if fmt == EXPORT_FORMAT else extra.get("task")
    if task is None and fmt == EXPORT_FORMAT:
        raise DataError(f"{path}: exported model records no task (damaged or edited); re-export it")
    if task is None:
        raise DataError(f"{path}: exported in the old format {fmt!r}, which does not record what the model is "
                        f"(segmentation, inpainting or coach); re-export it with this version of ssinfnet "
                        f"(pretraining: pretrain.save_pretrained) or retrain it (python -m ssinfnet run)")
    if task not in TASKS:
        raise DataError(f"{path}: unknown task {task!r} (known: {', '.join(TASKS)})")
    check_task(path, task, expect_task, role)
    try:
        name = state["network"] if fmt == EXPORT_FORMAT else state["name"]
        model = build_model(name, **state["kwargs"])
        model.load_state_dict(state["state_dict"])
        image_size = int(state["image_size"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        # A damaged or hand-edited export: name the file rather than fail deep inside torch.
        raise DataError(f"{path}: exported model cannot be rebuilt ({exc.__class__.__name__}: {exc})") from exc
    in_chans = int(getattr(model, "in_chans", state["kwargs"].get("in_chans", 1)))
    if fmt == EXPORT_FORMAT and int(state.get("in_chans", in_chans)) != in_chans:
        raise DataError(f"{path}: records {state['in_chans']} input channels but its network takes {in_chans}")
    classes = tuple(state["classes"]) if fmt == EXPORT_FORMAT else TASK_CLASSES[task]
    model.to(device).eval()
    return LoadedModel(model, name, image_size, state["kwargs"], extra, task, classes, in_chans, path)
