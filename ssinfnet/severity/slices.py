"""Per-slice severity table of a test set, from saved or simulated predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.maps import load_maps, map_ids
from .lungs import LungParams, segment_lungs
from .restrict import restrict_to_lungs
from .scores import check_prob, regional_score, slice_record


# ----------------------------------------------------------------------------- test-slice severity


def simulated_prediction(mask, sigma: float = 2.0, seed: int = 0, noise: float = 0.2) -> np.ndarray:
    """A stand-in for a model's soft prediction: the ground-truth mask blurred, with seeded noise.

    Used only when no model prediction is available; every figure built on it must say so.

    Parameters
    ----------
    mask : array of bool, shape (H, W)
        Ground-truth infection.
    sigma : float, default 2.0
        Gaussian blur, pixels (soft, slightly spread edges like a network's output).
    seed : int, default 0
        Seed of the noise.
    noise : float, default 0.2
        Relative amplitude of smooth multiplicative noise (``blur * (1 + noise * n)``, n smooth with unit
        SD); 0 gives the plain blur.  Multiplicative, so an empty mask stays exactly 0.

    Returns
    -------
    ndarray of float32, shape (H, W), values in [0, 1]
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    p = m.astype(np.float64)
    p = ndi.gaussian_filter(p, sigma) if sigma > 0 else p
    if noise > 0:
        n = ndi.gaussian_filter(np.random.default_rng(seed).standard_normal(m.shape), max(sigma, 1.0))
        sd = n.std()
        p = p * (1 + noise * (n / sd if sd > 0 else n))
    return np.clip(p, 0.0, 1.0).astype(np.float32)


def find_predictions(npz_path, samples) -> tuple[list[np.ndarray] | None, str]:
    """Predictions of an earlier stage for ``samples`` if they exist and belong to these slices.

    Parameters
    ----------
    npz_path : path or None
        The artifact (e.g. ``ctx.artifact("05_evaluation", "test_predictions")``); None when absent.
    samples : sequence of Sample

    Returns
    -------
    predictions : list of float32 arrays, or None
        Probabilities (float32, (H, W), [0, 1]) aligned with ``samples``; None when there is no file or it holds *none* of these slice ids
        (written for another data root, e.g. the synthetic phantoms, in the same run folder).
    note : str
        Why the predictions are absent ("" when found), for the page to print.

    Raises
    ------
    ValueError
        The file holds some but not all of the slice ids, or a map is malformed (see
        the one map reader, :func:`ssinfnet.data.maps.load_maps`): a partial or broken artifact is an error, not a reason to fall back.
    """
    from pathlib import Path

    if npz_path is None or not Path(npz_path).is_file():
        return None, "no predictions recorded by the evaluation stage in this run folder"
    keys = map_ids(npz_path)
    if not any(s.slice_id in keys for s in samples):
        return None, (f"{Path(npz_path).name} holds none of these {len(samples)} slice ids "
                      "(written for another data root in this run folder)")
    return load_maps(npz_path, samples, kind="probability"), ""


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    den = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / den) if den else float("nan")


def severity_frame(samples, predictions, *, params: LungParams | None = None, zones: int = 3, restrict: bool = True):
    """Reference and predicted severity of labelled slices, with lung-mask quality, one row per slice.

    Two lung masks per slice: the *automatic* one (image only: what a deployed pipeline has) and the
    *reference* one (automatic ∪ ground-truth infection, so no labelled lesion falls outside the
    denominator).  Reference severity = ground truth over the reference mask; predicted severity =
    prediction over the automatic mask.  Slices whose automatic mask is flagged stay in the table with
    ``included`` False and a ``reason``.

    Parameters
    ----------
    samples : sequence of Sample
        Slices with ``infection`` (bool (H, W)); ``meta["lungs"]`` (true lungs, phantoms) is used when
        present.
    predictions : sequence of arrays (H, W)
        Soft infection predictions in [0, 1], aligned with ``samples``.
    params : LungParams, optional
        Lung segmentation parameters.
    zones : int, default 3
        Zones per lung of the regional CT severity score.
    restrict : bool, default True
        Confine each prediction to the automatic lung mask first
        (:func:`ssinfnet.severity.restrict.restrict_to_lungs`, what ``predict`` does). The ratio and the
        regional score count only lung pixels, so they are the same either way; the columns
        ``pred_outside_lung`` and ``pred_removed`` say how much predicted lesion lay outside the mask and
        how much the restriction removed.

    Returns
    -------
    frame : DataFrame
        Columns ``slice_id``, ``included``, ``reason``, ``lung_flags``, ``lung_fraction`` (automatic mask /
        image), ``gt_coverage`` (share of GT infection inside the automatic mask, NaN without infection),
        ``lung_dice`` (automatic vs true lungs, NaN when unknown), ``ratio_reference``,
        ``ratio_predicted``, ``ratio_gt_auto`` (GT over the automatic mask: the lung-mask effect alone),
        ``ctss_reference``, ``ctss_predicted`` (regional scores, 0..4*zones), ``pred_outside_lung`` and
        ``pred_removed`` (shares of the predicted lesion, probability >= 0.5, outside the automatic mask
        and removed by the restriction; NaN when nothing is predicted).
    masks : dict
        ``slice_id → (automatic LungMask, reference LungMask)``.
    """
    if len(samples) != len(predictions):
        raise ValueError(f"samples ({len(samples)}) and predictions ({len(predictions)}) differ in length")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    rows, masks = [], {}
    for s, pred in zip(samples, predictions):
        if s.infection is None:
            raise ValueError(f"{s.slice_id}: no ground-truth infection mask")
        gt = np.asarray(s.infection, bool)
        pred = check_prob(pred, gt.shape, name=f"prediction of {s.slice_id}")
        auto = segment_lungs(s.image, params=params)
        confined, _, info = restrict_to_lungs(pred, auto.mask)
        pred = confined if restrict and auto.mask.any() else pred
        ref = segment_lungs(s.image, params=params, include=gt)
        masks[s.slice_id] = (auto, ref)
        truth = s.meta.get("lungs") if isinstance(s.meta, dict) else None
        row = {"slice_id": s.slice_id, "included": auto.ok, "reason": "" if auto.ok else "lung mask flagged",
               "lung_flags": "; ".join(auto.flags), "lung_fraction": auto.area_fraction,
               "gt_coverage": float(auto.mask[gt].mean()) if gt.any() else float("nan"),
               "lung_dice": _dice(auto.mask, np.asarray(truth, bool)) if truth is not None else float("nan"),
               "pred_outside_lung": info["outside_share"],
               "pred_removed": info["removed_share"] if restrict and auto.mask.any() else 0.0}
        if auto.mask.any():
            row["ratio_reference"] = slice_record(gt.astype(float), ref.mask)["ratio"]
            row["ratio_predicted"] = slice_record(pred, auto.mask)["ratio"]
            row["ratio_gt_auto"] = slice_record(gt.astype(float), auto.mask)["ratio"]
            row["ctss_reference"] = regional_score(gt.astype(float), ref.labels, zones=zones)[0]
            row["ctss_predicted"] = regional_score(pred, auto.labels, zones=zones)[0]
        else:
            row.update(ratio_reference=np.nan, ratio_predicted=np.nan, ratio_gt_auto=np.nan,
                       ctss_reference=np.nan, ctss_predicted=np.nan)
        rows.append(row)
    return pd.DataFrame(rows), masks
