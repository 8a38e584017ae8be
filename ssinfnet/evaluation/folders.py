"""Score a folder of prediction maps against a folder of ground-truth masks (``python -m ssinfnet evaluate``).

Predictions and GT are paired by file stem (``12.png`` <-> ``12.png``). Nothing is written into the
input folders; unpaired files are counted and listed, never dropped silently. Two protocols
(see :mod:`~ssinfnet.evaluation.paper_metrics`, :mod:`~ssinfnet.evaluation.infnet_metrics`):
``"infnet"`` (the Inf-Net MATLAB tool) and ``"paper"`` (per image at
one threshold, mean +/- 1.96 SE).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.io import DataError, list_images, open_image
from . import infnet_metrics, paper_metrics
from .imresize import imresize

PROTOCOLS = ("infnet", "paper")

#: Grey values of an 8-bit GT strictly between these count as "not binary" (JPEG keeps 0/255 masks
#: within [0, 15] and [240, 255] except for ringing along edges).
GREY_BAND = (16, 239)
#: The largest share of pixels in :data:`GREY_BAND` a GT may have. Measured on COVID-SemiSeg: its GT,
#: Edge, GT-1/GT-2 and Prior masks have none; re-saved as JPEG at quality 75 (PIL's default) at most
#: 2.1 % (the thin edge maps; test GT 1.5 %); the CT slices themselves at least 41 %.
MAX_GREY_SHARE = 0.05

EXIT_CODES = """exit codes:
  0  scored: the JSON result is printed (and written to --output)
  1  nothing could be scored: no prediction has a GT of the same name, or every metric is
     undefined (e.g. only empty GT under the paper protocol without --count-empty)
  2  bad arguments or data: a bad option value, a missing folder, --gt equal to --pred, an
     unreadable or non-binary GT image, --output inside an input folder"""


class NothingScored(DataError):
    """No image pair could be scored (no prediction has a GT of the same name)."""


def read_gt(path: Path | str) -> np.ndarray:
    """Read a binary GT mask with the Inf-Net tool's rule, as bool (H, W).

    1-bit PNGs are used as they are; otherwise the first channel of the raw 8-bit values is
    thresholded at > 128. Refused with :class:`DataError` naming the file: a palette PNG; 8-bit
    values within 0..15 other than all zeros (a label-index mask, which the rule would silently turn
    into all background); an image that is not binary, i.e. with more than :data:`MAX_GREY_SHARE` of
    its pixels in :data:`GREY_BAND` (a CT image or a soft map given as GT); 16-bit or float images.
    The Inf-Net tool thresholds whatever it is given; these checks only refuse what cannot be a mask.
    """
    path = Path(path)
    img = open_image(path)
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode == "P":
        raise DataError(f"{path}: palette (label-index) PNG given as binary GT; use the per-class "
                        f"GT folders (values 0/255) instead")
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        raise DataError(f"{path}: GT must be an 8-bit or 1-bit image, got mode {img.mode}")
    raw = np.asarray(img)
    first = raw if raw.ndim == 2 else raw[..., 0]
    values = np.unique(first)
    if 0 < values.max() <= GREY_BAND[0] - 1:
        raise DataError(f"{path}: looks like a label-index mask (values {values.tolist()}); "
                        f"binary GT must use 0 and 255 (> 128 is foreground)")
    grey = float(np.mean((first >= GREY_BAND[0]) & (first <= GREY_BAND[1])))
    if grey > MAX_GREY_SHARE:
        raise DataError(f"{path}: not a binary mask: {len(values)} distinct grey values, {100 * grey:.3g}% of "
                        f"pixels between {GREY_BAND[0]} and {GREY_BAND[1]} (binary GT holds 0 and 255; at most "
                        f"{100 * MAX_GREY_SHARE:.0f}% in between is tolerated). Is this an image folder?")
    return first > 128


def read_prediction(path: Path | str) -> np.ndarray:
    """Read the raw first channel of a prediction image: uint8, uint16 or bool (1-bit), shape (H, W)."""
    path = Path(path)
    img = open_image(path)
    if img.mode == "P":
        raise DataError(f"{path}: palette PNG given as a prediction map; save grey probability maps")
    if img.mode == "1":
        return np.asarray(img, dtype=bool)
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.uint16)
    if img.mode not in ("L", "LA", "RGB", "RGBA"):
        raise DataError(f"{path}: prediction must be an 8/16-bit or 1-bit image, got mode {img.mode}")
    raw = np.asarray(img)
    return raw if raw.ndim == 2 else np.ascontiguousarray(raw[..., 0])


def to_unit(raw: np.ndarray) -> np.ndarray:
    """MATLAB ``im2double``: uint8 / 255, uint16 / 65535, bool -> 0/1, floats unchanged; float64."""
    if raw.dtype == np.uint8:
        return raw.astype(np.float64) / 255.0
    if raw.dtype == np.uint16:
        return raw.astype(np.float64) / 65535.0
    return raw.astype(np.float64)


def prepare_prediction(raw: np.ndarray, gt_shape: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Resize a raw prediction to the GT size only when it differs, then convert to [0, 1] float64.

    Returns ``(map, resized)``. uint8 maps are resized as uint8 (rounded, as MATLAB); uint16 maps
    are resized in float64 and clipped to their range.
    """
    if tuple(raw.shape) == tuple(gt_shape):
        return to_unit(raw), False
    if raw.dtype == np.uint16:
        res = np.clip(imresize(raw.astype(np.float64), gt_shape), 0, 65535) / 65535.0
        return res, True
    return to_unit(imresize(raw, gt_shape)), True


def pair_files(pred_dir: Path | str, gt_dir: Path | str
               ) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair prediction and GT files by stem.

    Returns ``(pairs, pred_without_gt, gt_without_pred)`` with pairs ``(stem, pred_path, gt_path)``
    in natural order. Raises :class:`DataError` for a missing or empty folder or a stem that occurs
    twice in one folder.
    """
    out = []
    maps = []
    for folder, what in ((pred_dir, "predictions"), (gt_dir, "ground-truth masks")):
        files = list_images(folder, what)
        by_stem: dict[str, Path] = {}
        for f in files:
            if f.stem in by_stem:
                raise DataError(f"{folder}: two {what} share the name {f.stem!r} "
                                f"({by_stem[f.stem].name}, {f.name})")
            by_stem[f.stem] = f
        maps.append(by_stem)
    preds, gts = maps
    for stem, p in preds.items():
        if stem in gts:
            out.append((stem, p, gts[stem]))
    return out, [s for s in preds if s not in gts], [s for s in gts if s not in preds]


def _clean(obj):
    """Replace NaN/Inf by None so the result is strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def evaluate_folders(pred_dir: Path | str, gt_dir: Path | str, protocol: str = "infnet",
                     threshold: float = 0.5, ignore_empty: bool = True) -> dict:
    """Score every prediction that has a GT of the same stem.

    Parameters
    ----------
    pred_dir, gt_dir : folders of images (predictions: grey maps, 8/16-bit or 1-bit; GT: binary masks)
    protocol : {"infnet", "paper"}
        ``infnet``: min-max normalised maps, 256 thresholds (meanDic, Sm, meanEm, MAE, ...).
        ``paper``: maps used as probabilities (/255, no normalisation) at ``threshold``.
    threshold : float in [0, 1], default=0.5 (paper protocol only)
    ignore_empty : bool, default=True (paper protocol only; see :func:`ssinfnet.evaluation.paper_metrics.overlap_scores`)

    Returns
    -------
    dict (strict JSON: NaN written as null) with ``protocol``, ``counts`` (``scored``,
    ``pred_without_gt``, ``gt_without_pred``, ``empty_gt``, ``full_gt``, ``resized``), the lists of
    unpaired/resized stems, ``metrics`` and ``per_image``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    pairs, pred_only, gt_only = pair_files(pred_dir, gt_dir)
    if not pairs:
        raise NothingScored(f"{pred_dir}: no prediction has a ground-truth mask of the same name in {gt_dir} "
                            f"(predictions: {_examples(pred_only)}; GT: {_examples(gt_only)})")
    stems, maps, gts, resized = [], [], [], []
    for stem, p_path, g_path in pairs:
        gt = read_gt(g_path)
        m, was_resized = prepare_prediction(read_prediction(p_path), gt.shape)
        if was_resized:
            resized.append(stem)
        stems.append(stem)
        maps.append(m)
        gts.append(gt)
    counts = {"scored": len(stems), "pred_without_gt": len(pred_only), "gt_without_pred": len(gt_only),
              "empty_gt": sum(int(not g.any()) for g in gts), "full_gt": sum(int(g.all()) for g in gts),
              "resized": len(resized)}
    result = {"protocol": protocol, "pred_dir": str(pred_dir), "gt_dir": str(gt_dir), "counts": counts,
              "pred_without_gt": pred_only, "gt_without_pred": gt_only, "resized": resized}
    if protocol == "infnet":
        per = [infnet_metrics.infnet_image_scores(infnet_metrics.minmax_normalise(m), g) for m, g in zip(maps, gts)]
        result["metrics"] = infnet_metrics.infnet_summary(per)
        result["per_image"] = [{"image": s, "meanDic": float(np.mean(r["dice"])),
                                "maxDic": float(np.max(r["dice"])), "Sm": r["sm"], "meanEm": float(np.mean(r["em"])), "MAE": r["mae"],
                                "adpDice": r["adp_dice"]} for s, r in zip(stems, per)]
    else:
        table = paper_metrics.paper_scores(maps, gts, image_ids=stems, threshold=threshold,
                                     ignore_empty=ignore_empty)
        summary = paper_metrics.summarise(table)
        result["threshold"] = float(threshold)
        result["ignore_empty"] = bool(ignore_empty)
        result["metrics"] = {cls: {row.metric: {k: getattr(row, k) for k in
                                                ("mean", "se", "ci_low", "ci_high", "n", "n_excluded")}
                                   for row in grp.itertuples()}
                             for cls, grp in summary.groupby("class", sort=False)}
        result["per_image"] = table.to_dict(orient="records")
    return _clean(result)


def _examples(names: list[str], n: int = 3) -> str:
    """"2 files, e.g. 1, 10" for an error message."""
    text = f"{len(names)} file{'s' if len(names) != 1 else ''}"
    return text + (f", e.g. {', '.join(names[:n])}" if names else "")


COUNT_KEYS = ("n", "n_excluded", "n_images")  # numbers in ``metrics`` that are counts, not scores


def nothing_scored(result: dict) -> str | None:
    """Why a result of :func:`evaluate_folders` holds no number (every metric undefined), or None."""
    defined = []

    def walk(obj, key=None):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and key not in COUNT_KEYS:
            defined.append(obj)

    walk(result.get("metrics", {}))
    if defined:
        return None
    counts = result["counts"]
    if result["protocol"] == "paper" and result.get("ignore_empty") and counts["empty_gt"] == counts["scored"]:
        return (f"all {counts['scored']} GT masks are empty and the paper protocol leaves empty-GT images out "
                f"(--count-empty scores them)")
    return f"every metric is undefined for the {counts['scored']} image pairs"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``evaluate`` options (--pred, --gt, --protocol, --threshold, --count-empty, --output) and
    the exit codes (:data:`EXIT_CODES`) to the help."""
    parser.add_argument("--pred", required=True, type=Path, help="folder of prediction maps")
    parser.add_argument("--gt", required=True, type=Path, help="folder of binary ground-truth masks")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="infnet",
                        help="infnet: Inf-Net MATLAB tool rules; paper: per image at --threshold")
    parser.add_argument("--threshold", type=float, default=None,
                        help="paper protocol only: threshold in [0, 1] (default 0.5)")
    parser.add_argument("--count-empty", action="store_true",
                        help="paper protocol only: score empty-GT images (1 if nothing predicted, else 0) "
                             "instead of leaving them out")
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the JSON result to this new file (an existing file needs --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.epilog = EXIT_CODES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def check_arguments(args: argparse.Namespace) -> float:
    """Refuse option values that cannot be meant (ValueError naming the option); returns the threshold."""
    for opt, folder in (("--pred", args.pred), ("--gt", args.gt)):
        if not Path(folder).is_dir():
            raise ValueError(f"{opt} {folder}: no such folder")
    if Path(args.pred).resolve() == Path(args.gt).resolve():
        raise ValueError(f"--gt and --pred are the same folder ({args.gt}); a GT scored against itself "
                         f"says nothing about a method")
    if args.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {args.protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if args.protocol != "paper":
        given = [opt for opt, on in (("--threshold", args.threshold is not None),
                                     ("--count-empty", args.count_empty)) if on]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise ValueError(f"{' and '.join(given)} {verb} to the paper protocol only "
                             f"(--protocol {args.protocol} uses 256 thresholds and scores every pair)")
    threshold = 0.5 if args.threshold is None else args.threshold
    if not 0.0 <= threshold <= 1.0:  # also refuses nan
        raise ValueError(f"--threshold {args.threshold}: must be in [0, 1]")
    if args.output is not None and Path(args.output).is_dir():
        raise ValueError(f"--output {args.output}: is a folder; give a file name")
    if args.output is not None and Path(args.output).exists() and not getattr(args, "overwrite", False):
        raise ValueError(f"--output {args.output}: exists; give a new file name, or --overwrite to replace it")
    return threshold


def main(args: argparse.Namespace) -> int:
    """Run the evaluation and print the JSON result. Returns the exit code of :data:`EXIT_CODES`
    (0 scored, 1 nothing could be scored, 2 bad arguments or data) after one ``error:`` line on stderr."""
    try:
        threshold = check_arguments(args)
        result = evaluate_folders(args.pred, args.gt, protocol=args.protocol, threshold=threshold,
                                  ignore_empty=not args.count_empty)
    except NothingScored as exc:
        print(f"error: nothing could be scored: {exc}", file=sys.stderr)
        return 1
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    reason = nothing_scored(result)
    if reason is not None:
        print(f"error: nothing could be scored: {reason}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, allow_nan=False)
    if args.output is not None:
        out = Path(args.output).resolve()
        try:
            for folder in (args.pred, args.gt):
                if Path(folder).resolve() in out.parents:
                    raise DataError(f"{args.output}: refusing to write inside the input folder {folder}")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")
        except (DataError, OSError) as exc:
            print(f"error: {exc if isinstance(exc, DataError) else f'--output {args.output}: {exc.strerror}'}",
                  file=sys.stderr)
            return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(add_arguments(argparse.ArgumentParser(prog="ssinfnet evaluate")).parse_args()))
