"""Chapter 3, stage 1: train the single-class (overall infection) variants and cross-validate them.

Reads the pretrained inpainter (chapter 2) and the validation split (chapter 1, or the same split
computed here); writes every variant's exported model, the held-out (out-of-fold) SSInfNet
probabilities of all training slices (the stage-1 priors of chapter 4) and the stage-1 model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ...data.maps import save_maps
from ...evaluation import published as pub
from ...training.distributed import on_main
from .. import artifacts
from ..projection import announce
from .variants import (cross_validate_variants, cv_summary, fit_seeds, fit_variants, fold_record, seed_record,
                       train_in_parallel, train_val_split)

STAGE = "03_single"


@dataclass
class SingleStage:
    """What chapter 3 shows: the split, the fits (variant -> FitResult), their summary, the
    cross-validation results and tables, where the stage-1 priors were written, and the comparison's
    extra fine-tuning seeds (``seed_fits``: (variant, k) -> FitResult; ``seeds``: one row per variant and
    seed, :func:`~ssinfnet.book.stages.variants.fit_seeds`)."""

    train_all: list
    train: list
    val: list
    split_source: str
    pretrained: Path
    fits: dict
    summary: pd.DataFrame
    cv_results: dict
    cv_scores: pd.DataFrame
    cv_table: pd.DataFrame
    priors_path: Path
    seed_fits: dict = field(default_factory=dict)
    seeds: pd.DataFrame | None = None

    def setup(self, ctx) -> pd.Series:
        """The data and schedule this stage ran with, for the page."""
        return pd.Series({"training slices": len(self.train), "validation slices": len(self.val),
                          "split": self.split_source, "image size (px)": ctx.profile.image_size,
                          "epochs (cap)": ctx.profile.finetune_epochs,
                          "early-stopping patience (epochs)": ctx.profile.patience or "none",
                          "steps per epoch (cap)": ctx.profile.max_steps_per_epoch or "all",
                          "pretrained inpainter": self.pretrained.relative_to(ctx.run_dir)})

    def cv_beside_published(self) -> pd.DataFrame:
        """The held-out Dice over all folds per cross-validated variant, beside what the paper says of its
        3-fold cross-validation (Table S2 of J Transl Med, whose values are not in the texts), labelled not
        like-for-like: the paper's folds pooled all its MedSeg images, ours are this run's labelled slices."""
        ours = self.cv_table[self.cv_table.fold == "all"].drop(columns="fold").reset_index(drop=True)
        folds = self.cv_table[self.cv_table.fold != "all"].fold.nunique()
        return ours.assign(**{"paper (J Transl Med Table S2)": "values not printed in the texts",
                              "paper says": pub.JTM_SUPPLEMENT_CLAIMS["Table S2"],
                              "like-for-like": f"no: {len(self.train_all)} labelled slices in "
                                               f"{folds} folds, not the paper's pooled images"})


def run(ctx, progress: bool = True) -> SingleStage:
    """Train (or load) ``ctx.profile.single_variants`` and the extra fine-tuning seeds of
    ``single_seed_variants``, cross-validate ``cv_variants``, save the SSInfNet out-of-fold priors and
    record the stage's artifacts (with each seed's health). Resumable: finished runs are loaded."""
    train_all = ctx.samples("train")
    tr_idx, va_idx, split_source = train_val_split(ctx, train_all, STAGE)
    train, val = [train_all[i] for i in tr_idx], [train_all[i] for i in va_idx]
    pretrained = artifacts.require(ctx, "inpainter", STAGE)
    announce(ctx, STAGE, len(train_all))

    train_in_parallel(ctx, ctx.profile.single_variants, train, val, train_all, init_weights=pretrained,
                      progress=progress)  # with fit_workers > 1; the calls below then load the finished runs
    fits, summary = fit_variants(ctx, ctx.profile.single_variants, train, val, init_weights=pretrained,
                                 progress=progress)
    seed_fits, seeds = fit_seeds(ctx, ctx.profile.single_seed_variants, train, val, init_weights=pretrained,
                                 progress=progress)
    cv_results, cv_scores = cross_validate_variants(ctx, ctx.profile.single_variants, train_all,
                                                    init_weights=pretrained, progress=progress)
    cv_table = cv_summary(cv_scores)
    priors_path = ctx.path("priors", "train_oof_ssinfnet.npz")
    on_main(save_maps, priors_path, train_all, cv_results["ssinfnet"].predictions)  # torchrun: process 0 writes
    artifacts.record(ctx, STAGE,
                     {**{f"model:{k}": f.export_path for k, f in fits.items()},
                      **{f"model:{v}@seed{k}": f.export_path for (v, k), f in seed_fits.items()},
                      "train_oof_priors": priors_path,
                      "stage1_model": fits["ssinfnet"].export_path},
                     validation=summary.set_index("variant").val_dice.round(4).to_dict(),
                     status=summary.set_index("variant").status.to_dict(), seeds=seed_record(ctx, seeds),
                     cross_validation=cv_table[cv_table.fold == "all"].set_index("variant").dice.round(4).to_dict(),
                     cross_validation_status=fold_record(cv_results))
    return SingleStage(train_all, train, val, split_source, pretrained, fits, summary, cv_results, cv_scores,
                       cv_table, priors_path, seed_fits, seeds)
