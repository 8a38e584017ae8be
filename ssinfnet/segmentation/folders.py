"""Inference: trained models on images of any size and format, and the ``predict`` command.

A trained model travels as an *exported model file* (:func:`export_model`) that says what it is:
its ``task`` (``"single"`` infection segmentation, ``"multi"`` GGO/consolidation segmentation,
``"inpainting"`` or ``"coach"`` from pretraining), ``head`` and ``outputs``, the registry name
(``network``), the ``classes`` it predicts, its input channels, constructor arguments, input size
and weights. :func:`load_exported` loads it back with ``torch.load(..., weights_only=True)`` and,
given ``expect_task``, refuses a model made for something else (a pretraining coach is no
segmentation model).

``python -m ssinfnet predict --checkpoint SINGLE.pt [--multi-checkpoint MULTI.pt] --input FILE_OR_DIR
--output DIR [--overwrite]`` reads PNG/JPEG/TIFF (L, RGB, RGBA, 16-bit), DICOM and NIfTI, descending
into subfolders, and writes for each slice, in the same subfolder of ``DIR``, an 8-bit infection
probability PNG at the input size (scorable by ``python -m ssinfnet evaluate``), with a multi model a
colour class map (GGO red, consolidation green) and an index PNG (0/1/2), plus ``lesions.csv``:
one row per slice (``ok``) or per file that gave none (``unreadable``, ``unsupported``, ``skipped``),
with the ``reason``. It writes only into a new or empty folder or one it wrote before (marked by
``.ssinfnet-predict``), unless ``--overwrite``; everything is checked before the folder is made.
Exit codes: 0 some slice predicted, 1 nothing predicted (or writing failed), 2 refused (arguments,
device, models, inputs or output folder), with one ``error:`` line.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..data.classes import CLASS_NAMES, CONSOLIDATION, GGO, class_rgb
from ..data.io import DataError, IMAGE_SUFFIXES, read_image
from ..data.phantoms import LUNG_WINDOW, window_hu
from ..training.device import resolve_device
from ..training.export import LoadedModel, TASK_CLASSES, TASK_IN_CHANS, check_task, load_exported
from .predict import predict_probabilities


DICOM_SUFFIXES = (".dcm", ".dicom")


NIFTI_SUFFIXES = (".nii", ".nii.gz")


SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


OUTPUT_MARKER = ".ssinfnet-predict"  # in every folder predict writes into; such a folder may be rewritten


# ----------------------------------------------------------------------------- reading any input

def read_slices(path: Path, window: tuple[float, float] = LUNG_WINDOW) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs of one input file: one for 2-D images and DICOM, one per axial slice
    for NIfTI volumes. DICOM/NIfTI values are taken as HU and windowed with ``window`` (level, width)."""
    name = path.name
    low = name.lower()
    if low.endswith(NIFTI_SUFFIXES):
        from ..data.medseg import load_nifti

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


@dataclass(frozen=True)
class InputFile:
    """One file found under the input: where it is, its path relative to the input root (POSIX,
    the file name for a single-file input) and, when it will not be read, why."""

    path: Path
    rel: PurePosixPath
    status: str = ""  # "" = to be read; "unsupported" or "unreadable" otherwise
    reason: str = ""


def _unsupported_reason(path: Path) -> str:
    if path.is_symlink() and path.is_dir():
        return "link to a folder (not followed)"
    if not path.is_file():
        return "not a regular file (broken link, pipe or device)"
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    kinds = ", ".join(s.lstrip(".") for s in SUPPORTED_SUFFIXES)
    return f"file type {suffix.lower() or '(no extension)'} is not read (supported: {kinds})"


def scan_inputs(path: Path) -> list[InputFile]:
    """Every file of the input: the file itself, or all files under the folder, subfolders included.

    Hidden files and folders (names starting with ``.``, e.g. predict's own marker) are left out;
    any other file is listed, supported or not, so the table can account for it. Sorted by
    relative path. DataError when the input is missing or holds no supported file.
    """
    path = Path(path)
    if path.is_file():
        entry = InputFile(path, PurePosixPath(path.name))
        if not path.name.lower().endswith(SUPPORTED_SUFFIXES):
            raise DataError(f"{path}: {_unsupported_reason(path)}")
        return [entry]
    if not path.is_dir():
        raise DataError(f"{path}: input not found")
    entries: list[InputFile] = []

    def unlistable(err: OSError) -> None:  # a subfolder that cannot be listed still gets a row
        where = Path(err.filename) if err.filename else path
        if where == path:
            raise DataError(f"{path}: input folder cannot be listed ({err.__class__.__name__}: {err.strerror})")
        rel = PurePosixPath(where.relative_to(path).as_posix())
        entries.append(InputFile(where, rel, "unreadable", f"folder cannot be listed ({err.__class__.__name__})"))

    for folder, dirs, files in os.walk(path, onerror=unlistable):
        folder = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = [f for f in files if not f.startswith(".")]
        for d in [d for d in dirs if (folder / d).is_symlink()]:  # os.walk does not descend into them
            dirs.remove(d)
            names.append(d)
        for name in names:
            f = folder / name
            rel = PurePosixPath(f.relative_to(path).as_posix())
            if f.is_file() and name.lower().endswith(SUPPORTED_SUFFIXES):
                entries.append(InputFile(f, rel))
            else:
                entries.append(InputFile(f, rel, "unsupported", _unsupported_reason(f)))
    entries.sort(key=lambda e: e.rel.parts)
    if not any(e.status == "" for e in entries):
        n = len(entries)
        others = f" ({n} other file{'s' if n > 1 else ''}, e.g. {entries[0].rel})" if n else " (empty folder)"
        raise DataError(f"{path}: no supported images (png, jpg, tif, dcm, nii) found{others}")
    return entries


def check_output_folder(output: Path, inputs: Path, overwrite: bool = False) -> None:
    """DataError unless predict may write into ``output``; nothing is created.

    Refused: the input folder itself (or, for a folder input, a folder inside it, which a later run
    would read back as input, or one that contains it); a path that is not a folder; a non-empty
    folder that predict did not write (no ``.ssinfnet-predict`` marker), unless ``overwrite``.
    """
    output, inputs = Path(output), Path(inputs)
    in_dir = inputs if inputs.is_dir() else inputs.parent
    out_abs, in_abs = output.resolve(), in_dir.resolve()
    if out_abs == in_abs:
        raise DataError(f"{output}: output folder must differ from the input folder (inputs are never overwritten)")
    if inputs.is_dir() and in_abs in out_abs.parents:
        raise DataError(f"{output}: output folder is inside the input folder {inputs} (a later run would read "
                        f"the maps as input); choose a folder outside it")
    if inputs.is_dir() and out_abs in in_abs.parents:
        raise DataError(f"{output}: output folder contains the input folder {inputs}; choose a folder outside it")
    if output.exists() and not output.is_dir():
        raise DataError(f"{output} exists and is not a folder")
    if (output.is_dir() and not overwrite and not (output / OUTPUT_MARKER).is_file()
            and any(output.iterdir())):
        raise DataError(f"{output} is not empty and was not written by predict; choose a new or empty folder, "
                        f"or use --overwrite to write into it anyway")


def class_colour_map(index: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): GGO (1) red, consolidation (2) green, background black (the book's colours)."""
    return class_rgb(index)


def _check_model(loaded: LoadedModel, task: str, role: str, device: str) -> None:
    """DataError unless ``loaded`` is a ``task`` model with the inputs and outputs predict needs.

    The outputs are checked with one forward pass of a blank image, so that a wrong model is
    refused before the output folder is made.
    """
    if loaded.task:  # a LoadedModel built by hand has no task; its channels are still checked
        check_task(loaded.path or loaded.name, loaded.task, task, role)
    want_in, want_out = TASK_IN_CHANS[task], len(TASK_CLASSES[task])
    got = getattr(loaded.model, "in_chans", want_in)
    if got != want_in:
        raise DataError(f"{task} model {loaded.name!r} takes {got} input channels; expected {want_in} "
                        f"({'image' if want_in == 1 else 'image + prior'})")
    side = loaded.image_size
    priors = [np.zeros((side, side), np.float32)] if want_in == 2 else None
    try:
        [p] = predict_probabilities(loaded.model, [np.zeros((side, side), np.uint8)], side, device, 1, priors)
    except (RuntimeError, ValueError) as exc:  # e.g. weights and recorded input size that do not fit
        raise DataError(f"{task} model {loaded.name!r} fails on a blank {side} x {side} image "
                        f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    out = 1 if p.ndim == 2 else p.shape[0]
    if out != want_out:
        raise DataError(f"{task} model {loaded.name!r} gives {out} output channels; expected {want_out} "
                        f"({', '.join(TASK_CLASSES[task])})")


CSV_FIELDS = ["path", "slice", "status", "reason", "height", "width", "infection_fraction", "infection_soft_sum",
              f"{CLASS_NAMES[GGO]}_fraction", f"{CLASS_NAMES[CONSOLIDATION]}_fraction"]


def predict_folder(single: LoadedModel, inputs: Path, output: Path, multi: LoadedModel | None = None,
                   device: str = "cpu", batch_size: int = 8, progress: bool = True,
                   overwrite: bool = False) -> Path:
    """Run the models on every input slice and write maps and ``lesions.csv`` into ``output``.

    Parameters
    ----------
    single : LoadedModel
        A ``single`` (infection) segmentation model.
    inputs : Path
        An image file, or a folder read with its subfolders (:func:`scan_inputs`).
    output : Path
        Folder for the maps, mirroring the input's subfolders; see :func:`check_output_folder`.
    multi : LoadedModel, optional
        A ``multi`` (GGO/consolidation) model, fed the single model's map as its prior.
    device : str
    batch_size : int >= 1
    progress : bool
    overwrite : bool, default=False
        Write into a non-empty folder that predict did not write.

    Returns
    -------
    Path
        ``output/lesions.csv``: columns :data:`CSV_FIELDS`, one row per slice (status ``ok``) and
        one per input file that gave no slice: ``unreadable`` (the reader's error), ``unsupported``
        (a file type predict does not read) or ``skipped`` (its map would replace another input's).

    Everything (arguments, models, inputs, output folder) is checked before ``output`` is made;
    a folder predict writes into gets the ``.ssinfnet-predict`` marker.
    """
    from tqdm import tqdm  # text bars: they render in the stored notebook outputs of the book

    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    inputs, output = Path(inputs), Path(output)
    entries = scan_inputs(inputs)
    check_output_folder(output, inputs, overwrite)
    _check_model(single, "single", "--checkpoint", device)
    if multi is not None:
        _check_model(multi, "multi", "--multi-checkpoint", device)
    output.mkdir(parents=True, exist_ok=True)
    (output / OUTPUT_MARKER).write_text("written by python -m ssinfnet predict; a later predict run may "
                                        "replace the files of this folder\n")
    rows = []
    written: dict[PurePosixPath, PurePosixPath] = {}  # output file -> input file: two inputs must not share one
    for entry in tqdm(entries, desc="predict", unit="file", disable=not progress):
        base = {"path": entry.rel.as_posix(), "slice": ""}
        if entry.status:
            rows.append({**base, "status": entry.status, "reason": entry.reason})
            continue
        try:
            slices = read_slices(entry.path)
        except DataError as exc:
            rows.append({**base, "status": "unreadable", "reason": str(exc)})
            continue
        tails = ("",) if multi is None else ("", "_classes", "_classes_rgb")
        targets = [entry.rel.parent / f"{n}{tail}.png" for n, _ in slices for tail in tails]
        clash = next((t for t in targets if t in written), None)
        if clash is not None:
            rows.append({**base, "status": "skipped",
                         "reason": f"its map {clash.as_posix()} is already written for {written[clash].as_posix()}; "
                                   f"rename one of the two"})
            continue
        written.update({t: entry.rel for t in targets})
        folder = output / entry.rel.parent
        folder.mkdir(parents=True, exist_ok=True)
        images = [img for _, img in slices]
        probs = predict_probabilities(single.model, images, single.image_size, device, batch_size)
        classes = None
        if multi is not None:
            classes = predict_probabilities(multi.model, images, multi.image_size, device, batch_size, priors=probs)
        for k, ((name, img), p) in enumerate(zip(slices, probs)):
            Image.fromarray(np.round(p * 255).astype(np.uint8)).save(folder / f"{name}.png")
            row = {**base, "slice": name, "status": "ok", "reason": "", "height": img.shape[0],
                   "width": img.shape[1], "infection_fraction": float((p >= 0.5).mean()),
                   "infection_soft_sum": float(p.sum())}
            if classes is not None:
                idx = classes[k].argmax(0).astype(np.uint8)
                Image.fromarray(idx).save(folder / f"{name}_classes.png")
                Image.fromarray(class_colour_map(idx)).save(folder / f"{name}_classes_rgb.png")
                row[f"{CLASS_NAMES[GGO]}_fraction"] = float((idx == GGO).mean())
                row[f"{CLASS_NAMES[CONSOLIDATION]}_fraction"] = float((idx == CONSOLIDATION).mean())
            rows.append(row)
    csv_path = output / "lesions.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def main(args: argparse.Namespace) -> int:
    """The ``predict`` command: 0 when some slice was predicted, 1 when none was (or writing failed),
    2 when refused before anything was written (one ``error:`` line on stderr each time)."""
    try:
        if args.batch_size < 1:  # the parser's type already refuses it; callers may build args by hand
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        device = resolve_device(args.device)
        single = load_exported(args.checkpoint, device, expect_task="single", role="--checkpoint")
        multi = (load_exported(args.multi_checkpoint, device, expect_task="multi", role="--multi-checkpoint")
                 if args.multi_checkpoint else None)
        csv_path = predict_folder(single, Path(args.input), Path(args.output), multi, device, args.batch_size,
                                  progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as exc:  # DataError included; predict_folder checks everything before it writes
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing into {args.output} failed ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 1
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    count = {k: sum(r["status"] == k for r in rows) for k in ("ok", "unreadable", "unsupported", "skipped")}
    print(f"[ssinfnet] {count['ok']} slices predicted; files unreadable {count['unreadable']}, "
          f"unsupported {count['unsupported']}, skipped {count['skipped']}; table: {csv_path}")
    if count["ok"] == 0:
        print(f"error: no slice was predicted (every supported file was unreadable or skipped); see {csv_path}",
              file=sys.stderr)
        return 1
    return 0
