"""Grouped k-fold cross-validation of a segmentation variant (one fit per fold, scores on the held-out fold)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..data.sample import Sample
from ..data.splits import grouped_kfold, validation_split
from .fit import priors_for, scores_table
from .parallel import FitJob
from .predict import predict_samples
from .variants import SegConfig


# ------------------------------------------------------------------------------------------ CV

@dataclass
class CVResult:
    """Outcome of :func:`cross_validate`.

    ``scores``: paper-protocol rows (``fold, image, class, dice, iou, recall, precision, auc``) of
    every held-out image; ``predictions``: out-of-fold probability maps in the order of the input
    samples (each predicted by the fold that held it out: honest stage-1 priors);
    ``fold``: int array, the fold that held out each sample; ``fits``: per-fold
    ``{"fold", "n_train", "n_val", "n_test", "best_epoch", "val_dice", "status", "export_path"}`` rows
    (``status``: "ok" or "failed: <why>", the fold's health, :mod:`ssinfnet.segmentation.health`).
    """

    scores: pd.DataFrame
    predictions: list[np.ndarray]
    fold: np.ndarray
    fits: pd.DataFrame


def cross_validate(cfg: SegConfig, samples: Sequence[Sample], k: int, *, device: str | torch.device, seed: int,
                   run_dir: str | Path, priors: Sequence[np.ndarray] | None = None, val_fraction: float = 0.2,
                   progress: bool = True) -> CVResult:
    """Grouped k-fold cross-validation of ``cfg``; validation split carved inside each fold's training part.

    Parameters
    ----------
    cfg : SegConfig
    samples : sequence of Sample
        Labelled slices; groups (``group_id``) never straddle folds
        (:func:`ssinfnet.data.splits.grouped_kfold`).
    k : int >= 2
    device, seed : as in :func:`fit`; fold ``f`` trains with ``seed + f``.
    run_dir : str or Path
        Fold ``f`` runs in ``run_dir/fold<f>`` (resumable).
    priors : sequence of float arrays (H, W), optional
        Stage-1 maps aligned with ``samples`` (multi, ``prior_source="predicted"``); they should be
        out-of-fold predictions themselves.
    val_fraction : float in (0, 1)
        Share of each fold's training part used for model selection.
    progress : bool

    Returns
    -------
    CVResult
    """
    samples = list(samples)
    all_priors = priors_for(cfg, samples, priors, "priors")
    plan = fold_jobs(cfg, samples, k, seed=seed, run_dir=run_dir, priors=priors, val_fraction=val_fraction)
    predictions: list[np.ndarray | None] = [None] * len(samples)
    fold_of = np.full(len(samples), -1, dtype=np.int64)
    tables, fits = [], []
    for f, (job, held_idx) in enumerate(tqdm(plan, desc=f"cv {cfg.label}", disable=not progress)):
        res = job.run(device, progress=progress)
        held = [samples[i] for i in held_idx]
        held_priors = None if all_priors is None else [all_priors[i] for i in held_idx]
        probs = predict_samples(res.model, held, cfg.image_size, device, held_priors, cfg.batch_size)
        for i, p in zip(held_idx, probs):
            predictions[i] = p
            fold_of[i] = f
        table = scores_table(cfg.task, probs, held)
        table.insert(0, "fold", f)
        tables.append(table)
        fits.append({"fold": f, "n_train": len(job.train), "n_val": len(job.val), "n_test": len(held_idx),
                     "best_epoch": None if res.best is None else res.best[0],
                     "val_dice": float("nan") if res.best is None else res.best[1],
                     "status": (res.record or {}).get("status", "unknown"), "export_path": str(res.export_path)})
    return CVResult(pd.concat(tables, ignore_index=True), predictions, fold_of, pd.DataFrame(fits))


def fold_jobs(cfg: SegConfig, samples: Sequence[Sample], k: int, *, seed: int, run_dir: str | Path,
              priors: Sequence[np.ndarray] | None = None, val_fraction: float = 0.2) -> list[tuple[FitJob, list[int]]]:
    """The fits of :func:`cross_validate` (same arguments), without training: one
    (:class:`~ssinfnet.segmentation.parallel.FitJob`, held-out sample indices) per fold. Fold ``f``'s
    job trains on the fold's training part less a validation share (``validation_split`` with seed
    ``seed + f``), with seed ``seed + f``, in ``run_dir/fold<f>``."""
    samples = list(samples)
    all_priors = priors_for(cfg, samples, priors, "priors")
    plan = []
    for f, (train_idx, held_idx) in enumerate(grouped_kfold(samples, k=k, seed=seed)):
        part = [samples[i] for i in train_idx]
        tr, va = validation_split(part, fraction=val_fraction, seed=seed + f)
        tr_idx, va_idx = [train_idx[i] for i in tr], [train_idx[i] for i in va]

        def pick(idx):
            return [all_priors[i] for i in idx] if cfg.takes_priors else None

        job = FitJob(cfg, [samples[i] for i in tr_idx], [samples[i] for i in va_idx], seed + f,
                     Path(run_dir) / f"fold{f}", pick(tr_idx), pick(va_idx))
        plan.append((job, list(held_idx)))
    return plan
