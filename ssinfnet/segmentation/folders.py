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
with the ``reason``. Every slice goes through :mod:`ssinfnet.segmentation.pipeline`: the input steps
(HU windowed, full-field slices cropped to the body, grey levels far from the training's re-windowed;
``--no-crop``, ``--no-rewindow``), the lung restriction (``--no-lung-mask``), the optional test-time flip
(``--flip``) and the out-of-distribution flag; the CSV records each, and one ``warning:`` line per file with flagged slices goes to stderr. It writes only into a new or empty folder or one it wrote before (marked by
``.ssinfnet-predict``), unless ``--overwrite``; everything is checked before the folder is made.
Exit codes: 0 some slice predicted, 1 nothing predicted (or writing failed), 2 refused (arguments,
device, models, inputs or output folder), with one ``error:`` line.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..data.classes import CLASS_NAMES, CONSOLIDATION, GGO, class_rgb
from ..data.io import DataError, IMAGE_SUFFIXES, read_image
from ..data.phantoms import LUNG_WINDOW, window_hu
from ..training.device import resolve_device
from ..training.export import LoadedModel, TASK_CLASSES, TASK_IN_CHANS, check_task, load_exported
from .pipeline import PredictOptions, model_reference, predict_slices
from .predict import predict_probabilities


DICOM_SUFFIXES = (".dcm", ".dicom")


NIFTI_SUFFIXES = (".nii", ".nii.gz")


SUPPORTED_SUFFIXES = IMAGE_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


OUTPUT_MARKER = ".ssinfnet-predict"  # in every folder predict writes into; such a folder may be rewritten


# ----------------------------------------------------------------------------- reading any input

def raw_slices(path: Path) -> list[tuple[str, np.ndarray, str]]:
    """(name, array, kind) triples of one input file: one for 2-D images and DICOM, one per axial
    slice for NIfTI volumes (or DICOM frames). ``kind`` is "uint8" for images (uint8 grey) and "hu"
    for DICOM/NIfTI (float Hounsfield units, the DICOM rescale applied); the input path
    (:func:`ssinfnet.data.inputs.prepare_slice`) windows HU. DataError naming the file when unreadable."""
    name = path.name
    low = name.lower()
    if low.endswith(NIFTI_SUFFIXES):
        from ..data.medseg import load_nifti

        vol = load_nifti(path)
        stem = name[: -len(".nii.gz")] if low.endswith(".nii.gz") else name[:-4]
        return [(f"{stem}_{k:03d}", np.asarray(vol[:, :, k].T, np.float64), "hu") for k in range(vol.shape[2])]
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
        if not np.isfinite(hu).all():
            raise DataError(f"{path}: DICOM values are not finite after the rescale")
        if hu.ndim == 3:  # multi-frame: one slice per frame, named like NIfTI slices
            return [(f"{path.stem}_{k:03d}", hu[k], "hu") for k in range(hu.shape[0])]
        return [(path.stem, hu, "hu")]
    return [(path.stem, read_image(path), "uint8")]


def read_slices(path: Path, window: tuple[float, float] = LUNG_WINDOW) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs of one input file (:func:`raw_slices`), HU windowed with ``window``
    (level, width); 8-bit images as read."""
    return [(n, window_hu(a, *window) if kind == "hu" else a) for n, a, kind in raw_slices(path)]


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
              f"{CLASS_NAMES[GGO]}_fraction", f"{CLASS_NAMES[CONSOLIDATION]}_fraction",
              # what the input path did and what it found (ssinfnet.segmentation.pipeline.SliceResult.record)
              "kind", "input_steps", "signature_distance_in", "signature_distance", "lung_fraction", "lung_restricted",
              "lesion_outside_lung", "lesion_removed", "infection_lung_fraction", "ood", "ood_reason", "warnings"]


def predict_folder(single: LoadedModel, inputs: Path, output: Path, multi: LoadedModel | None = None,
                   device: str = "cpu", batch_size: int = 8, progress: bool = True,
                   overwrite: bool = False, options: PredictOptions | None = None) -> Path:
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
    options : PredictOptions, optional
        Lung restriction and input steps (:mod:`ssinfnet.segmentation.pipeline`); default all on,
        compared with the single model's training reference.

    Returns
    -------
    Path
        ``output/lesions.csv``: columns :data:`CSV_FIELDS`, one row per slice (status ``ok``) and
        one per input file that gave no slice: ``unreadable`` (the reader's error), ``unsupported``
        (a file type predict does not read) or ``skipped`` (its map would replace another input's).
        Slice rows also say what the input path did (``input_steps``), how far the slice is from the
        training slices (``signature_distance_in`` / ``signature_distance``), what the lung restriction
        did, and whether the slice is out of distribution (``ood``, ``ood_reason``); see
        :meth:`ssinfnet.segmentation.pipeline.SliceResult.record`.

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
    options = PredictOptions() if options is None else options
    if options.reference is None:  # the model's training distribution, checked before anything is written
        options = replace(options, reference=model_reference(single))
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
            slices = raw_slices(entry.path)
        except DataError as exc:
            rows.append({**base, "status": "unreadable", "reason": str(exc)})
            continue
        tails = ("",) if multi is None else ("", "_classes", "_classes_rgb")
        targets = [entry.rel.parent / f"{n}{tail}.png" for n, _, _ in slices for tail in tails]
        clash = next((t for t in targets if t in written), None)
        if clash is not None:
            rows.append({**base, "status": "skipped",
                         "reason": f"its map {clash.as_posix()} is already written for {written[clash].as_posix()}; "
                                   f"rename one of the two"})
            continue
        try:
            results = predict_slices(single, [(a, kind) for _, a, kind in slices], options, device, batch_size,
                                     multi, names=[f"{entry.rel.as_posix()}:{n}" for n, _, _ in slices])
        except ValueError as exc:  # e.g. a slice too small for the input path
            rows.append({**base, "status": "unreadable", "reason": str(exc)})
            continue
        written.update({t: entry.rel for t in targets})
        folder = output / entry.rel.parent
        folder.mkdir(parents=True, exist_ok=True)
        for (name, img, _), res in zip(slices, results):
            p = res.prob
            Image.fromarray(np.round(p * 255).astype(np.uint8)).save(folder / f"{name}.png")
            row = {**base, "slice": name, "status": "ok", "reason": "", "height": img.shape[0],
                   "width": img.shape[1], "infection_fraction": float((p >= 0.5).mean()),
                   "infection_soft_sum": float(p.sum()), **res.record()}
            if res.classes is not None:
                idx = res.classes.argmax(0).astype(np.uint8)
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


def file_warnings(rows: list[dict]) -> list[str]:
    """One line per input file whose slices carry warnings or are out of distribution (rows of
    ``lesions.csv``): the file, how many of its slices, and the first slice's reasons."""
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok" and (r["ood"] == "yes" or r["warnings"]):
            by_file.setdefault(r["path"], []).append(r)
    lines = []
    for path, hit in by_file.items():
        n = sum(r["path"] == path and r["status"] == "ok" for r in rows)
        ood = [r for r in hit if r["ood"] == "yes"]
        first = (ood or hit)[0]
        what = "; ".join(x for x in (first["ood_reason"], first["warnings"]) if x)
        lines.append(f"{path}: {len(ood)} of {n} slice{'s' if n > 1 else ''} out of distribution"
                     f"{', ' + str(len(hit)) + ' with warnings' if len(hit) > len(ood) else ''} "
                     f"(e.g. {first['slice']}: {what})")
    return lines


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
        options = PredictOptions(lung_mask=not getattr(args, "no_lung_mask", False),
                                 crop=not getattr(args, "no_crop", False),
                                 rewindow=not getattr(args, "no_rewindow", False),
                                 flip=bool(getattr(args, "flip", False)))
        csv_path = predict_folder(single, Path(args.input), Path(args.output), multi, device, args.batch_size,
                                  progress=not args.no_progress, overwrite=args.overwrite, options=options)
    except ValueError as exc:  # DataError included; predict_folder checks everything before it writes
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: writing into {args.output} failed ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 1
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    count = {k: sum(r["status"] == k for r in rows) for k in ("ok", "unreadable", "unsupported", "skipped")}
    for line in file_warnings(rows):
        print(f"warning: {line}", file=sys.stderr)
    n_ood = sum(r["status"] == "ok" and r["ood"] == "yes" for r in rows)
    print(f"[ssinfnet] {count['ok']} slices predicted ({n_ood} out of distribution); files unreadable "
          f"{count['unreadable']}, unsupported {count['unsupported']}, skipped {count['skipped']}; table: {csv_path}")
    if count["ok"] == 0:
        print(f"error: no slice was predicted (every supported file was unreadable or skipped); see {csv_path}",
              file=sys.stderr)
        return 1
    return 0
