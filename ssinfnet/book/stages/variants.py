"""Training, cross-validating and predicting the profile's variants: what the stages of chapters 3-5 share.

Each function takes the run context (:class:`ssinfnet.book.context.RunContext`) and writes under its
run folder (``finetune/<variant>/``, ``cv/<variant>/``). Training is resumable: a finished variant is
loaded, not retrained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ...data.sample import Sample
from ...segmentation.fit import FitResult, oracle_priors
from ...segmentation.crossval import cross_validate, fold_jobs
from ...segmentation.parallel import FitJob, train_jobs
from ...segmentation.predict import predict_samples
from ...segmentation.variants import pretrained_variant_config
from ...training.distributed import launched, on_main
from ...training.export import load_exported


def seed_folder(ctx, name: str, k: int = 0) -> Path:
    """The run folder of fine-tuning seed ``k`` of variant ``name``: ``finetune/<name>/`` for seed 0 (the
    model every chapter uses), ``finetune/<name>/seed<k>/`` for the comparison's extra seeds."""
    if not (isinstance(k, int) and k >= 0):
        raise ValueError(f"seed index must be an integer >= 0, got {k!r}")
    return ctx.path("finetune", name) if k == 0 else ctx.path("finetune", name, f"seed{k}")


def variant_job(ctx, name: str, train: Sequence[Sample], val: Sequence[Sample], *,
                init_weights: str | Path | None = None, priors_train=None, priors_val=None,
                seed_index: int = 0) -> FitJob:
    """The fit of variant ``name``'s fine-tuning seed ``seed_index`` (arguments as :func:`fit_variants`),
    not yet run: its configuration (with ``init_weights`` when inpainting-initialised; ValueError when
    those are missing), seed ``ctx.seed + seed_index``, folder :func:`seed_folder` and, for a multi variant
    that is not the oracle, the priors."""
    cfg = pretrained_variant_config(name, ctx.profile, init_weights)
    if cfg.init == "inpainting" and init_weights is None:
        raise ValueError(f"variant {name!r} needs init_weights (pretrained inpainter)")
    return FitJob(cfg, train, val, ctx.seed + seed_index, seed_folder(ctx, name, seed_index),
                  priors_train if cfg.takes_priors else None, priors_val if cfg.takes_priors else None)


def fit_variants(ctx, names: Sequence[str], train: Sequence[Sample], val: Sequence[Sample], *,
                 init_weights: str | Path | None = None, priors_train=None, priors_val=None,
                 progress: bool = True, seed_index: int = 0) -> tuple[dict[str, FitResult], pd.DataFrame]:
    """Train (or load) each named variant on ``train``, selecting on ``val``.

    ``seed_index`` k trains fine-tuning seed k (training seed ``ctx.seed + k``, folder :func:`seed_folder`);
    0, the default, is the model every chapter uses.

    Inpainting-initialised variants get ``init_weights``; multi variants get ``priors_train`` /
    ``priors_val``, except the oracle, which :func:`~ssinfnet.segmentation.fit.fit` builds from the masks. Returns the fits and a
    summary table (variant, label, best epoch, validation Dice, epochs run and why training stopped
    ("patience", "cap", or None without a patience), ``late_gain`` (how much the best validation Dice rose in
    the last 5 validated epochs,
    :func:`~ssinfnet.segmentation.health.late_gain`), ``status`` ("ok" or "failed: <reasons>", :mod:`ssinfnet.segmentation.health`),
    trainable parameters, transfer counts).
    """
    fits, rows = {}, []
    for name in names:
        job = variant_job(ctx, name, train, val, init_weights=init_weights, priors_train=priors_train,
                          priors_val=priors_val, seed_index=seed_index)
        cfg, res = job.cfg, job.run(ctx.device, progress=progress)
        fits[name] = res
        rows.append({"variant": name, "label": cfg.label,
                     "init": "inpainting" if cfg.init == "inpainting" else "scratch",
                     "network": cfg.network, "loss": cfg.loss, "optimizer": cfg.optimizer, "cutout": cfg.cutout,
                     "best_epoch (1-based)": None if res.best is None else res.best[0] + 1,
                     "val_dice": float("nan") if res.best is None else res.best[1],
                     "epochs_run": res.record["epochs_run"], "stop": res.record["stop"],
                     "late_gain": res.record.get("late_gain"), "status": res.health.status,
                     "parameters_M": round(sum(p.numel() for p in res.model.parameters()) / 1e6, 2),
                     "copied_tensors": None if res.transfer is None else len(res.transfer.copied)})
    return fits, pd.DataFrame(rows)


def fit_seeds(ctx, names: Sequence[str], train: Sequence[Sample], val: Sequence[Sample], *,
              init_weights: str | Path | None = None, priors_train=None, priors_val=None,
              progress: bool = True) -> tuple[dict[tuple[str, int], FitResult], pd.DataFrame]:
    """Train (or load) the comparison's extra fine-tuning seeds of ``names`` (``ctx.profile.extra_seeds``).

    Seed k of a variant trains with seed ``ctx.seed + k`` in ``finetune/<variant>/seed<k>/`` from the same
    data, split, priors and pretrained ``init_weights`` as seed 0: pretraining is not re-run. Resumable
    like :func:`fit_variants`. Returns ({(variant, k): FitResult}, one row per variant and seed with
    ``seed`` (k), ``training_seed`` and :func:`fit_variants`'s columns, ``status`` recording its health).
    """
    fits, tables = {}, []
    for k in ctx.profile.extra_seeds:
        got, table = fit_variants(ctx, names, train, val, init_weights=init_weights, priors_train=priors_train,
                                  priors_val=priors_val, progress=progress, seed_index=k)
        fits.update({(name, k): f for name, f in got.items()})
        tables.append(table.assign(seed=k, training_seed=ctx.seed + k))
    columns = ["variant", "label", "seed", "training_seed", "best_epoch (1-based)", "val_dice", "epochs_run", "stop",
               "late_gain", "status"]
    return fits, (pd.concat(tables, ignore_index=True)[columns] if tables else pd.DataFrame(columns=columns))


def seed_record(ctx, table: pd.DataFrame) -> dict:
    """What the manifest says of the extra seeds: how they were run and each one's health
    (``{variant: {"seed<k>": status}}``) from :func:`fit_seeds`'s table."""
    return {"n_seeds": ctx.profile.n_seeds, "training_seeds": [ctx.seed + k for k in range(ctx.profile.n_seeds)],
            "pretraining": f"run once (seed {ctx.seed}); the extra seeds re-run fine-tuning only",
            "status": {v: {f"seed{int(r.seed)}": r.status for r in rows.itertuples()}
                       for v, rows in table.groupby("variant", sort=False)}}


def fold_record(results: dict) -> dict:
    """What the manifest says of each cross-validation fold's health: ``{variant: {"fold<k>": status}}`` from
    :func:`cross_validate_variants`'s results."""
    return {v: {f"fold{int(r.fold)}": str(r.status) for r in res.fits.itertuples()} for v, res in results.items()}


def cross_validate_variants(ctx, names: Sequence[str], samples: Sequence[Sample], *, init_weights=None,
                            priors=None, progress: bool = True):
    """Grouped k-fold CV (``ctx.profile.cv_folds``) of each named variant present in
    ``ctx.profile.cv_variants``; returns ({name: CVResult}, per-image held-out scores with a variant column)."""
    results, tables = {}, []
    for name in names:
        if name not in ctx.profile.cv_variants:
            continue
        cfg, cv_priors = _cv_setup(ctx, name, init_weights, priors)
        res = cross_validate(cfg, samples, ctx.profile.cv_folds, device=ctx.device, seed=ctx.seed,
                             run_dir=ctx.path("cv", name), priors=cv_priors,
                             val_fraction=ctx.profile.val_fraction, progress=progress)
        results[name] = res
        t = res.scores.copy()
        t.insert(0, "variant", cfg.label)
        tables.append(t)
        on_main(t.to_csv, ctx.path("cv", f"{name}_scores.csv"), index=False)  # torchrun: process 0 writes
    return results, (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame())


def _cv_setup(ctx, name: str, init_weights, priors):
    """Variant ``name``'s configuration for cross-validation and the priors its folds take (None for a
    single-class variant or the oracle)."""
    cfg = pretrained_variant_config(name, ctx.profile, init_weights)
    return cfg, priors if cfg.takes_priors else None


def train_in_parallel(ctx, names: Sequence[str], train: Sequence[Sample], val: Sequence[Sample],
                      samples: Sequence[Sample], *, init_weights=None, priors_train=None, priors_val=None,
                      priors=None, progress: bool = True) -> dict[str, float]:
    """Train a chapter's fits in ``ctx.profile.fit_workers`` processes before its code loads them.

    The fits are those :func:`fit_variants` (``names``), :func:`fit_seeds` (those of ``names`` in
    ``seed_variants``) and :func:`cross_validate_variants` (those in ``cv_variants``, on ``samples``
    with ``priors``) make with the same arguments, so those calls afterwards find every run finished
    (:func:`ssinfnet.segmentation.parallel.train_jobs`). Does nothing with one worker, or under
    ``torchrun`` (the processes there already share each fit). Returns {run: seconds} of the fits
    trained here.
    """
    if ctx.profile.fit_workers == 1 or launched() is not None:
        return {}
    common = {"init_weights": init_weights, "priors_train": priors_train, "priors_val": priors_val}
    jobs = [variant_job(ctx, name, train, val, **common) for name in names]
    jobs += [variant_job(ctx, name, train, val, seed_index=k, **common)
             for k in ctx.profile.extra_seeds for name in names if name in ctx.profile.seed_variants]
    for name in names:
        if name in ctx.profile.cv_variants:
            cfg, cv_priors = _cv_setup(ctx, name, init_weights, priors)
            jobs += [job for job, _ in fold_jobs(cfg, samples, ctx.profile.cv_folds, seed=ctx.seed,
                                                  run_dir=ctx.path("cv", name), priors=cv_priors,
                                                  val_fraction=ctx.profile.val_fraction)]
    return train_jobs(jobs, device=ctx.device, workers=ctx.profile.fit_workers, progress=progress)


def cv_summary(scores: pd.DataFrame, classes: Sequence[str] = ("infection",)) -> pd.DataFrame:
    """Mean per-image Dice/IoU/recall/precision of held-out images per variant and fold, and over folds."""
    keep = scores[scores["class"].isin(classes)]
    per_fold = keep.groupby(["variant", "class", "fold"])[["dice", "iou", "recall", "precision"]].mean()
    overall = keep.groupby(["variant", "class"])[["dice", "iou", "recall", "precision"]].mean()
    overall["fold"] = "all"
    return pd.concat([per_fold.reset_index(), overall.reset_index()], ignore_index=True)


def predict_with(path: str | Path, samples: Sequence[Sample], device: str, priors=None,
                 flip: bool = False) -> list[np.ndarray]:
    """Load an exported model and predict ``samples`` (maps at each slice's own size; ``flip``: average
    with the left-right mirror's logits, :func:`~ssinfnet.segmentation.predict.predict_probabilities`).

    The model must be a single (infection) segmentation model, or a multi one when ``priors`` are
    given; a pretraining export (inpainter, coach) is refused with a DataError naming the file.
    """
    task = "single" if priors is None else "multi"
    return predict_samples(load_exported(path, device, expect_task=task), samples, device=device, priors=priors,
                           flip=flip)


def predict_variant(ctx, reader: str, name: str, samples: Sequence[Sample], priors=None) -> tuple[dict, list[np.ndarray]]:
    """Predict ``samples`` with the exported model of variant ``name``, read by stage ``reader``.

    A multi-class model trained with the oracle prior (read from the exported model itself) gets the
    ground-truth infection masks as priors, any other multi model ``priors``. The profile's
    ``test_time_flip`` says whether each map is flip-averaged. Returns (what the
    exported model says of itself: its ``extra`` (label, task, val_dice, health, ...) with ``network``
    (registry name) and ``task``; the maps).
    """
    from ..artifacts import require

    path = require(ctx, f"model:{name}", reader)
    loaded = load_exported(path, ctx.device, expect_task=("single", "multi"))
    task = loaded.task
    if task == "multi" and loaded.extra.get("prior_source") == "ground_truth":
        priors = oracle_priors(samples)
    maps = predict_samples(loaded, samples, device=ctx.device, priors=priors if task == "multi" else None,
                           flip=ctx.profile.test_time_flip)
    return {"label": name, **loaded.extra, "network": loaded.name, "task": task}, maps


def cost_models(ctx) -> dict[str, tuple[str, dict]]:
    """The networks of this profile as (registry name, constructor kwargs), for :func:`ssinfnet.training.cost.cost_table`."""
    infnet = ctx.profile.infnet_kwargs()
    base = ctx.profile.baseline_kwargs
    return {"InfNet (single)": ("infnet", infnet),
            "InfNet (multi)": ("infnet_multi", infnet),
            "U-Net (single)": ("unet", base.get("unet", {})),
            "U-Net (multi)": ("unet_multi", base.get("unet_multi", {})),
            "FCN8s (multi)": ("fcn8s", base.get("fcn8s", {}))}


def train_val_split(ctx, samples: Sequence[Sample], reader: str) -> tuple[list[int], list[int], str]:
    """The training/validation split chapter 1 saved (``split_manifest``), or, when that chapter has not
    run in this run folder, the same deterministic split computed in memory (not written: chapter 1
    is the file's one writer). Returns (train indices, validation indices, where it came from)."""
    from ...data import splits
    from ..artifacts import optional

    path = optional(ctx, "split_manifest", reader)
    if path is not None:
        tr, va = splits.load_split(samples, path)
        return tr, va, f"read from {path.relative_to(ctx.run_dir)}"
    tr, va = splits.validation_split(samples, fraction=ctx.profile.val_fraction, seed=ctx.seed)
    return tr, va, "computed in memory (chapter 1 has not run in this run folder; the same rule and seed)"
