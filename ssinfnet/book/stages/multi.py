"""Chapter 4, stage 2: pretrain on image and prior, train the multi-class (GGO / consolidation) variants.

Reads the held-out stage-1 priors of the training slices and the stage-1 model (chapter 3) and the
validation split (chapter 1, or the same split computed here). Pretrains the two-channel inpainter
and coach on the unlabelled pool (half of chapter 2's cap) with the stage-1 model's predictions as
priors, then trains and cross-validates the profile's multi variants. Writes every multi variant's
exported model and the multi pretraining's inpainter and coach. The test split is not read.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...data.classes import CLASS_NAMES, CONSOLIDATION, GGO
from ...data.maps import load_maps
from ...pretraining import inpainting as pretrain
from .. import artifacts
from ..projection import announce
from ..verdict import prior_folds_failed
from .variants import (cross_validate_variants, cv_summary, fit_seeds, fit_variants, fold_record, predict_with,
                       seed_record, train_in_parallel, train_val_split)

STAGE = "04_multi"


@dataclass
class MultiStage:
    """What chapter 4 shows.

    ``train_all`` / ``train`` / ``val``: the labelled training slices and their split (``split_source``
    says where it came from); ``priors``: the out-of-fold stage-1 probability map of every slice of
    ``train_all`` (float32 (H, W) in [0, 1], aligned with it); ``stage1_model``: the path of the stage-1
    model that predicted the pool's priors; ``pool_counts``: the pretraining pool's composition;
    ``pretrain_config`` / ``pretrain_history``: the multi pretraining's configuration and per-step and
    per-epoch losses (``ssinfnet.training.loop`` history columns); ``pretrained``: its exported
    ``{"inpainter": path, "coach": path}``; ``fits`` (variant -> FitResult) and ``summary`` (one row
    per variant); ``cv_results`` / ``cv_scores`` / ``cv_table``: cross-validation of the variants the
    profile cross-validates (empty when none is); ``seed_fits`` ((variant, k) -> FitResult) and ``seeds``
    (one row per variant and seed): the comparison's extra fine-tuning seeds.
    """

    train_all: list
    train: list
    val: list
    split_source: str
    priors: list[np.ndarray]
    stage1_model: Path
    pool_counts: dict
    pretrain_config: pretrain.PretrainConfig
    pretrain_history: pd.DataFrame
    pretrained: dict[str, Path]
    fits: dict
    summary: pd.DataFrame
    cv_results: dict
    cv_scores: pd.DataFrame
    cv_table: pd.DataFrame
    seed_fits: dict = field(default_factory=dict)
    seeds: pd.DataFrame | None = None

    def setup(self, ctx) -> pd.Series:
        """The data and schedule this stage ran with, for the page."""
        return pd.Series({"training slices": len(self.train), "validation slices": len(self.val),
                          "split": self.split_source,
                          "stage-1 model": self.stage1_model.relative_to(ctx.run_dir),
                          "epochs (cap)": ctx.profile.multi_epochs,
                          "early-stopping patience (epochs)": ctx.profile.patience or "none"})


def pool_limit(profile) -> int | None:
    """The multi pretraining's pool cap: half of the profile's ``unlabelled_limit`` (None: the whole pool)."""
    return None if profile.unlabelled_limit is None else profile.unlabelled_limit // 2


def pretrain_on_priors(ctx, stage1_model: Path, progress: bool = True):
    """Pretrain the two-channel (image + prior) inpainter and coach, or resume/load them.

    The pool is :func:`ssinfnet.pretraining.inpainting.pretraining_pool` capped by :func:`pool_limit`;
    its priors are ``stage1_model``'s predictions; the loader is the configuration's
    (:func:`~ssinfnet.pretraining.inpainting.pool_loader`). Trains in ``pretrain/multi/`` and exports
    there. Returns (config, TrainResult, {"inpainter": path, "coach": path}, pool counts).
    """
    pool, pool_counts = pretrain.pretraining_pool(ctx.data, ctx.profile, seed=ctx.seed,
                                                  limit=pool_limit(ctx.profile))
    announce(ctx, STAGE, len(ctx.samples("train")), len(pool))  # projected training time, measured now
    pool_priors = predict_with(stage1_model, pool, ctx.device)
    mcfg = pretrain.config_from_profile(ctx.profile, with_prior=True)
    loader = pretrain.pool_loader(pool, mcfg, seed=ctx.seed, priors=pool_priors)
    folder = ctx.path("pretrain", "multi")
    models, result = pretrain.pretrain(mcfg, loader, device=ctx.device, seed=ctx.seed, run_dir=folder,
                                       progress=progress)
    saved = pretrain.save_pretrained(models, mcfg, folder, mcfg.image_size)
    return mcfg, result, saved, pool_counts


def _cv_record(cv_table: pd.DataFrame) -> dict:
    """{variant label: {class: held-out Dice over all folds}} for the manifest (chapter 5's recap)."""
    if not len(cv_table):
        return {}
    overall = cv_table[cv_table.fold == "all"]
    return {v: rows.set_index("class").dice.round(4).to_dict() for v, rows in overall.groupby("variant", sort=False)}


def run(ctx, progress: bool = True) -> MultiStage:
    """Pretrain on image and prior, train (or load) ``ctx.profile.multi_variants`` with the out-of-fold
    stage-1 priors and the extra fine-tuning seeds of ``multi_seed_variants`` (the same pretraining and
    priors), cross-validate those in ``cv_variants`` and record the stage's artifacts
    (``model:{variant}``, ``model:{variant}@seed{k}``, ``multi_inpainter``, ``multi_coach``) with the
    validation Dice, the pool, each seed's health and the held-out Dice per class of the cross-validated
    variants (chapter 5's recap). Resumable: finished runs are loaded.

    Raises :class:`ssinfnet.book.artifacts.MissingArtifact` naming chapter 3 when its priors or
    stage-1 model are not in the run folder.
    """
    train_all = ctx.samples("train")
    priors_path = artifacts.require(ctx, "train_oof_priors", STAGE)
    stage1_model = artifacts.require(ctx, "stage1_model", STAGE)
    priors = load_maps(priors_path, train_all, kind="probability")
    failed_folds = prior_folds_failed(ctx.manifest())
    if failed_folds:
        warnings.warn(f"{STAGE}: the out-of-fold priors ({priors_path.name}) of some training slices come from "
                      f"cross-validation folds whose training failed ({'; '.join(failed_folds)}); this chapter's "
                      "models train on them and the audit says so", stacklevel=2)
    tr_idx, va_idx, split_source = train_val_split(ctx, train_all, STAGE)
    train, val = [train_all[i] for i in tr_idx], [train_all[i] for i in va_idx]

    mcfg, presult, pretrained, pool_counts = pretrain_on_priors(ctx, stage1_model, progress=progress)
    train_in_parallel(ctx, ctx.profile.multi_variants, train, val, train_all, init_weights=pretrained["inpainter"],
                      priors_train=[priors[i] for i in tr_idx], priors_val=[priors[i] for i in va_idx],
                      priors=priors, progress=progress)  # with fit_workers > 1; the calls below load the runs
    fits, summary = fit_variants(ctx, ctx.profile.multi_variants, train, val,
                                 init_weights=pretrained["inpainter"],
                                 priors_train=[priors[i] for i in tr_idx], priors_val=[priors[i] for i in va_idx],
                                 progress=progress)
    seed_fits, seeds = fit_seeds(ctx, ctx.profile.multi_seed_variants, train, val,
                                 init_weights=pretrained["inpainter"], priors_train=[priors[i] for i in tr_idx],
                                 priors_val=[priors[i] for i in va_idx], progress=progress)
    cv_results, cv_scores = cross_validate_variants(ctx, ctx.profile.multi_variants, train_all,
                                                    init_weights=pretrained["inpainter"], priors=priors,
                                                    progress=progress)
    cv_table = cv_summary(cv_scores, classes=(CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION])) if len(cv_scores) else cv_scores
    artifacts.record(ctx, STAGE,
                     {**{f"model:{k}": f.export_path for k, f in fits.items()},
                      **{f"model:{v}@seed{k}": f.export_path for (v, k), f in seed_fits.items()},
                      "multi_inpainter": pretrained["inpainter"], "multi_coach": pretrained["coach"]},
                     validation=summary.set_index("label").val_dice.round(4).to_dict(),
                     status=summary.set_index("label").status.to_dict(), pool=pool_counts,
                     seeds=seed_record(ctx, seeds),
                     cross_validation=_cv_record(cv_table), cross_validation_status=fold_record(cv_results),
                     prior_folds_failed=failed_folds)
    return MultiStage(train_all, train, val, split_source, priors, stage1_model, pool_counts, mcfg,
                      presult.history, pretrained, fits, summary, cv_results, cv_scores, cv_table, seed_fits, seeds)
