"""Inference: trained models on images of any size and format, and the ``predict`` command.

A trained model travels as an *exported model file* (:func:`export_model`) that says what it is:
its ``task`` (``"single"`` infection segmentation, ``"multi"`` GGO/consolidation segmentation,
``"inpainting"`` or ``"coach"`` from pretraining), ``head`` and ``outputs``, the registry name
(``network``), the ``classes`` it predicts, its input channels, constructor arguments, input size
and weights. :func:`load_exported` loads it back with ``torch.load(..., weights_only=True)`` and,
given ``expect_task``, refuses a model made for something else (a pretraining coach is no
segmentation model).

``python -m ssinfnet predict --checkpoint SINGLE.pt [--multi-checkpoint MULTI.pt] --input FILE_OR_DIR
--output DIR`` reads PNG/JPEG (L, RGB, RGBA, 16-bit), DICOM and NIfTI, and writes for each slice
an 8-bit infection probability PNG at the input size (scorable by ``python -m ssinfnet evaluate``),
with a multi model a colour class map (GGO red, consolidation green) and an index PNG (0/1/2),
plus ``lesions.csv`` with lesion fractions; unreadable files are reported in the CSV, not fatal.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from .checkpoint import safe_load
from .data.io import DataError, IMAGE_SUFFIXES, read_image
from .data.phantoms import LUNG_WINDOW, window_hu
from .data.transforms import normalize
from .models.registry import build_model
from .train import default_amp, default_channels_last

EXPORT_FORMAT = "ssinfnet-model-v2"
LEGACY_FORMATS = ("ssinfnet-model-v1",)  # no top-level task; read when extra["task"] says it
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")

# task -> what the model is (for messages), its classes, its output head, and its outputs in words
TASKS = {"single": "single (infection) segmentation", "multi": "multi (GGO/consolidation) segmentation",
         "inpainting": "inpainting (pretraining)", "coach": "coach (pretraining)"}
TASK_CLASSES = {"single": ("infection",), "multi": ("background", "GGO", "consolidation"),
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


# ----------------------------------------------------------------------------- inference

def _output_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if isinstance(out, dict):
        out = out[getattr(model, "prediction_key", "out")]
    return out


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: Sequence[np.ndarray], size: int,
                          device: str | torch.device = "cpu", batch_size: int = 8,
                          priors: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Probability maps for uint8 (H, W) images of any size.

    Each image is resized to ``size`` x ``size`` (bilinear, antialiased), normalised like training,
    passed through ``model`` (with its prior as a second channel when ``priors`` is given), and the
    output is resized back to the image's own size. Returns float32 arrays: (H, W) lesion
    probability for one output channel (sigmoid), (C, H, W) class probabilities otherwise (softmax).
    Inputs are channels_last on CUDA only (the training loop's default) and run under bf16
    autocast on CUDA.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if priors is not None and len(priors) != len(images):
        raise ValueError(f"priors has {len(priors)} maps for {len(images)} images")
    device = torch.device(device)
    amp, channels_last = default_amp(device), default_channels_last(device)
    results: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        xs = []
        for j, img in enumerate(chunk):
            t = torch.from_numpy(np.ascontiguousarray(img)).float()[None, None] / 255.0
            chans = [t]
            if priors is not None:
                chans.append(torch.from_numpy(np.asarray(priors[start + j], dtype=np.float32))[None, None])
            t = torch.cat(chans, 1)
            xs.append(F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
        x = normalize(torch.cat(xs)).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = _output_logits(model, x).float()
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, 1)
        for j, img in enumerate(chunk):
            p = F.interpolate(probs[j:j + 1], size=img.shape, mode="bilinear", align_corners=False)[0]
            results.append((p[0] if p.shape[0] == 1 else p).cpu().numpy().astype(np.float32))
    return results


# ----------------------------------------------------------------------------- reading any input

def read_slices(path: Path, window: tuple[float, float] = LUNG_WINDOW) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs of one input file: one for 2-D images and DICOM, one per axial slice
    for NIfTI volumes. DICOM/NIfTI values are taken as HU and windowed with ``window`` (level, width)."""
    name = path.name
    low = name.lower()
    if low.endswith(NIFTI_SUFFIXES):
        from .data.medseg import load_nifti

        vol = load_nifti(path)
        stem = name[: -len(".nii.gz")] if low.endswith(".nii.gz") else name[:-4]
        return [(f"{stem}_{k:03d}", window_hu(vol[:, :, k].T, *window)) for k in range(vol.shape[2])]
    if low.endswith(DICOM_SUFFIXES):
        import pydicom

        try:
            ds = pydicom.dcmread(str(path))
            px = ds.pixel_array.astype(np.float64)
        except Exception as exc:
            raise DataError(f"{path}: unreadable DICOM ({exc})") from exc
        if int(getattr(ds, "SamplesPerPixel", 1)) != 1:
            raise DataError(f"{path}: colour DICOM (SamplesPerPixel {ds.SamplesPerPixel}); CT must be grey")
        if px.ndim not in (2, 3) or px.size == 0:
            raise DataError(f"{path}: DICOM pixel data of shape {px.shape}; expected (rows, columns) or frames")
        hu = px * float(getattr(ds, "RescaleSlope", 1)) + float(getattr(ds, "RescaleIntercept", 0))
        if hu.ndim == 3:  # multi-frame: one slice per frame, named like NIfTI slices
            return [(f"{path.stem}_{k:03d}", window_hu(hu[k], *window)) for k in range(hu.shape[0])]
        return [(path.stem, window_hu(hu, *window))]
    return [(path.stem, read_image(path))]


def list_inputs(path: Path) -> list[Path]:
    """The input file, or the supported files of a folder (sorted); DataError when there are none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: input not found")
    ok = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(ok))
    if not files:
        raise DataError(f"{path}: no supported images (png, jpg, tif, dcm, nii) found")
    return files


def class_colour_map(index: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): GGO (1) red, consolidation (2) green, background black (the book's colours)."""
    from .plots.colours import class_rgb

    return class_rgb(index)


def _check_channels(loaded: LoadedModel, want: int, role: str) -> None:
    got = getattr(loaded.model, "in_chans", want)
    if got != want:
        raise DataError(f"{role} model {loaded.name!r} takes {got} input channels; expected {want} "
                        f"({'image' if want == 1 else 'image + prior'})")


def predict_folder(single: LoadedModel, inputs: Path, output: Path, multi: LoadedModel | None = None,
                   device: str = "cpu", batch_size: int = 8, progress: bool = True) -> Path:
    """Run the models on every input slice and write maps and ``lesions.csv`` into ``output``.

    Returns the CSV path. ``output`` must not be the input folder (inputs are never overwritten).
    """
    from tqdm import tqdm  # text bars: they render in the stored notebook outputs of the book

    inputs, output = Path(inputs), Path(output)
    files = list_inputs(inputs)
    in_dir = inputs if inputs.is_dir() else inputs.parent
    if output.resolve() == in_dir.resolve():
        raise DataError(f"{output}: output folder must differ from the input folder")
    _check_channels(single, 1, "single")
    if multi is not None:
        _check_channels(multi, 2, "multi")
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    written: dict[str, str] = {}  # slice name -> input file: two inputs must not write one output
    for f in tqdm(files, desc="predict", unit="file", disable=not progress):
        try:
            slices = read_slices(f)
        except DataError as exc:
            rows.append({"file": f.name, "slice": "", "status": f"error: {exc}"})
            continue
        tails = ("",) if multi is None else ("", "_classes", "_classes_rgb")
        outputs = [n + tail for n, _ in slices for tail in tails]
        clash = [(n, written[n]) for n in outputs if n in written]
        if clash:
            rows.append({"file": f.name, "slice": clash[0][0],
                         "status": f"error: output name {clash[0][0]!r} already used by {clash[0][1]}; "
                                   f"rename one of the inputs"})
            continue
        written.update({n: f.name for n in outputs})
        images = [img for _, img in slices]
        probs = predict_probabilities(single.model, images, single.image_size, device, batch_size)
        if probs[0].ndim != 2:
            raise DataError(f"single model {single.name!r} gives {probs[0].shape[0]} output channels; "
                            f"expected 1 (infection)")
        classes = None
        if multi is not None:
            classes = predict_probabilities(multi.model, images, multi.image_size, device, batch_size, priors=probs)
            if classes[0].ndim != 3 or classes[0].shape[0] != 3:
                raise DataError(f"multi model {multi.name!r} gives output of shape {classes[0].shape}; "
                                f"expected 3 classes (background, GGO, consolidation)")
        for k, ((name, img), p) in enumerate(zip(slices, probs)):
            Image.fromarray(np.round(p * 255).astype(np.uint8)).save(output / f"{name}.png")
            row = {"file": f.name, "slice": name, "status": "ok", "height": img.shape[0], "width": img.shape[1],
                   "infection_fraction": float((p >= 0.5).mean()), "infection_soft_sum": float(p.sum())}
            if classes is not None:
                idx = classes[k].argmax(0).astype(np.uint8)
                Image.fromarray(idx).save(output / f"{name}_classes.png")
                Image.fromarray(class_colour_map(idx)).save(output / f"{name}_classes_rgb.png")
                row["ggo_fraction"] = float((idx == 1).mean())
                row["consolidation_fraction"] = float((idx == 2).mean())
            rows.append(row)
    csv_path = output / "lesions.csv"
    fields = ["file", "slice", "status", "height", "width", "infection_fraction", "infection_soft_sum",
              "ggo_fraction", "consolidation_fraction"]
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(args: argparse.Namespace) -> int:
    from .pipeline import device_name

    device = device_name(args.device)
    try:
        single = load_exported(args.checkpoint, device, expect_task="single", role="--checkpoint")
        multi = (load_exported(args.multi_checkpoint, device, expect_task="multi", role="--multi-checkpoint")
                 if args.multi_checkpoint else None)
        csv_path = predict_folder(single, Path(args.input), Path(args.output), multi, device, args.batch_size,
                                  progress=not args.no_progress)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    bad = sum(r["status"] != "ok" for r in rows)
    print(f"[ssinfnet] {len(rows) - bad} slices predicted, {bad} unreadable; table: {csv_path}")
    return 0
