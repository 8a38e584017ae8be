"""Chapter 5's decisive comparison: each claim as a paired bootstrap over test images and fine-tuning seeds.

Chapters 3 and 4 fine-tune the compared variants (``Profile.seed_variants``) with ``n_seeds`` seeds from one
pretraining (seed 0 is the model every chapter uses; seed k trains with the profile's seed + k). Here every
seed's model predicts the test slices and each image gets its Dice in the paper's protocol: per image at
threshold 0.5, images whose ground truth of the class is empty left out; the infection class for the
single-class models, GGO and consolidation separately for the multi-class ones. A claim "B beats A" is
then :func:`ssinfnet.evaluation.comparison.paired_bootstrap` of the per-image Dice of A and B, pooled
over the seeds at which neither training failed (:mod:`ssinfnet.segmentation.health`): the estimate is
the mean of B - A over those seeds and images, its interval resamples both.

The table (:data:`ssinfnet.evaluation.comparison.TABLE_COLUMNS`) has one row per claim and class; a
claim with no usable seed pair (or a variant the profile does not run) says "not estimable: <why>".
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...data.classes import CLASS_NAMES, CONSOLIDATION, GGO
from ...evaluation import paper_metrics as metrics
from ...evaluation.comparison import MIN_BOOT, NOT_ESTIMABLE, TABLE_COLUMNS, paired_bootstrap
from .variants import predict_variant

__all__ = ["Claim", "CLAIMS", "SeedComparison", "comparison_table", "per_image_dice", "run"]

#: The classes scored per task: the infection for single-class models, GGO and consolidation for multi.
TASK_CLASSES = {"single": ("infection",), "multi": (CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION])}


@dataclass(frozen=True)
class Claim:
    """One comparison: ``b`` is better than ``a`` on ``task`` (the estimate is B - A; "helps": B is better)."""

    claim: str
    task: str
    a: str
    b: str


#: The paper's claims and our ablations, B the side the paper (or the ablation) expects to win.
CLAIMS = (
    Claim("inpainting pretraining helps (single)", "single", "sinfnet", "ssinfnet"),
    Claim("encoder-only transfer helps (single)", "single", "sinfnet", "ssinfnet_encoder"),
    Claim("transferring the decoder too helps (single)", "single", "ssinfnet_encoder", "ssinfnet"),
    Claim("SSInfNet beats U-Net (single)", "single", "unet", "ssinfnet"),
    Claim("InfNet beats U-Net from scratch (single)", "single", "unet", "sinfnet"),
    Claim("inpainting pretraining helps (multi)", "multi", "multi_sinfnet", "multi_ssinfnet"),
)


def per_image_dice(scores: pd.DataFrame, cls: str, image_ids: Sequence[str]) -> np.ndarray:
    """The Dice of class ``cls`` of each image of ``image_ids`` (in that order; NaN where the class's ground
    truth is empty) from :func:`ssinfnet.evaluation.paper_metrics.paper_scores`'s table; ValueError naming the
    class or image when absent."""
    rows = scores[scores["class"] == cls].set_index("image").dice
    if rows.empty:
        raise ValueError(f"scores have no class {cls!r} (classes: {sorted(scores['class'].unique())})")
    missing = [i for i in image_ids if i not in rows.index]
    if missing:
        raise ValueError(f"scores of class {cls!r} lack {len(missing)} images (first: {missing[0]})")
    return rows.reindex(list(image_ids)).to_numpy(dtype=float)


def _names(pairs) -> str:
    return "; ".join(f"{v}@seed{k}" for v, k in pairs) if pairs else "none"


def comparison_table(claims: Sequence[Claim], scores: Mapping[tuple[str, str], Mapping[int, np.ndarray]],
                     failed: Mapping[str, set], n_seeds: int, *, n_boot: int, seed: int, level: float = 0.95,
                     note: str = "") -> pd.DataFrame:
    """One row per claim and class (columns :data:`~ssinfnet.evaluation.comparison.TABLE_COLUMNS`).

    Parameters
    ----------
    claims : the comparisons (:data:`CLAIMS`)
    scores : {(variant, class): {seed index k: per-image Dice, float (n_images,), same images in the same
        order for every variant and seed}}; a variant without entries was not run in this profile
    failed : {variant: seed indices whose training failed}
    n_seeds : seed indices 0 .. n_seeds - 1 are expected of every variant run
    n_boot, seed, level : of :func:`~ssinfnet.evaluation.comparison.paired_bootstrap` (n_boot raised to its
        minimum, 100, when smaller)
    note : appended to every row's note (e.g. the protocol)

    Seed k enters the pooled comparison when both variants trained it without failing. Raises ValueError
    naming the variant and seed when a seed's scores are missing or of another length.
    """
    if not (isinstance(n_seeds, int) and n_seeds >= 1):
        raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
    rows = []
    for c in claims:
        for cls in TASK_CLASSES[c.task]:
            row = {"claim": c.claim, "task": c.task, "class": cls, "model_a": c.a, "model_b": c.b, "level": level,
                   "n_seeds": 0, "seeds_failed": "none", "n_images": pd.NA, "seed_means": "",
                   "note": note, **dict.fromkeys(("estimate", "ci_low", "ci_high", "p_not_better"), np.nan)}
            absent = [v for v in (c.a, c.b) if (v, cls) not in scores]
            if absent:
                rows.append({**row, "verdict": f"{NOT_ESTIMABLE}: {' and '.join(absent)} not run in this profile"})
                continue
            per = {v: _check_seeds(scores[(v, cls)], v, cls, n_seeds) for v in (c.a, c.b)}
            bad = [(v, k) for k in range(n_seeds) for v in (c.a, c.b) if k in failed.get(v, set())]
            used = [k for k in range(n_seeds) if not any(k == j for _, j in bad)]
            row["seeds_failed"] = _names(bad)
            if not used:
                rows.append({**row, "verdict": f"{NOT_ESTIMABLE}: no seed at which both trainings passed "
                                               "their checks (seeds_failed names the failed ones)"})
                continue
            a = np.stack([per[c.a][k] for k in used])
            b = np.stack([per[c.b][k] for k in used])
            try:
                res = paired_bootstrap(a, b, n_boot=max(n_boot, MIN_BOOT), seed=seed, level=level)
            except ValueError as exc:  # fewer than 2 images scored by both
                rows.append({**row, "n_seeds": len(used), "verdict": f"{NOT_ESTIMABLE}: {exc}"})
                continue
            rows.append({**row, "estimate": res.estimate, "ci_low": res.ci_low, "ci_high": res.ci_high,
                         "n_seeds": res.n_seeds, "n_images": res.n_images, "p_not_better": res.p_not_better,
                         "seed_means": ";".join(f"{m:.4f}" for m in res.seed_means), "verdict": res.verdict,
                         "note": f"seeds {', '.join(map(str, used))}; {note}".rstrip("; ")})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype({"n_seeds": "Int64", "n_images": "Int64"})


def _check_seeds(by_seed: Mapping[int, np.ndarray], variant: str, cls: str, n_seeds: int) -> dict:
    missing = [k for k in range(n_seeds) if k not in by_seed]
    if missing:
        raise ValueError(f"scores of {variant} ({cls}) lack seed(s) {missing} of {n_seeds}")
    out = {k: np.asarray(by_seed[k], dtype=float) for k in range(n_seeds)}
    lengths = {k: v.shape for k, v in out.items()}
    if len(set(lengths.values())) != 1 or out[0].ndim != 1:
        raise ValueError(f"scores of {variant} ({cls}) must be 1-d and of one length for every seed; got {lengths}")
    return out


@dataclass
class SeedComparison:
    """Chapter 5's comparison: ``table`` (one row per claim and class, :func:`comparison_table`) and
    ``seeds`` (one row per compared variant and seed: task, variant, seed, val_dice, status, failed, and
    the mean test Dice of each scored class, NaN for a failed training)."""

    table: pd.DataFrame
    seeds: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """The table for the page: claim, class, B - A with its interval, seeds used / failed, verdict."""
        t = self.table
        ci = [f"{lo:+.3f} to {hi:+.3f}" if pd.notna(lo) else "" for lo, hi in zip(t.ci_low, t.ci_high)]
        return pd.DataFrame({"claim": t.claim, "class": t["class"], "B - A": t.estimate.round(3),
                             f"{t.level.iloc[0]:.0%} CI" if len(t) else "CI": ci, "seeds used": t.n_seeds,
                             "failed seeds": t.seeds_failed, "images": t.n_images, "verdict": t.verdict})


def protocol_note(n_boot: int) -> str:
    """What every row of the table was computed with, for its ``note``."""
    return (f"per-image Dice at 0.5 (paper protocol), empty ground truth left out; pretraining run once, seeds "
            f"re-run fine-tuning only; two-level bootstrap over seeds and images, {max(n_boot, MIN_BOOT)} resamples")


def run(ctx, reader: str, test, models: pd.DataFrame, single: Mapping, single_scores: Mapping,
        multi_scores: Mapping, stage1: str) -> SeedComparison:
    """Score every seed of the compared variants on ``test`` and build the comparison table.

    Seed 0 comes from chapter 5's own predictions (``models``: its models table with ``key`` and
    ``failed``; ``single_scores`` by variant, ``multi_scores`` by label); the extra seeds are read as
    ``model:<variant>@seed<k>`` by stage ``reader`` and predicted, the multi ones with ``single[stage1]``
    (the stage-1 test maps of seed 0) as priors. Bootstrap with the profile's ``n_boot`` and ``ctx.seed``.
    """
    from .evaluation import model_row  # evaluation imports this module

    ids = [s.slice_id for s in test]
    gts = {"single": [s.infection for s in test], "multi": [s.classes for s in test]}
    seed0 = models.set_index("variant")
    scores, failed, rows = {}, {}, []
    for task, names in (("single", ctx.profile.single_seed_variants), ("multi", ctx.profile.multi_seed_variants)):
        for name in names:
            key = seed0.loc[name, "key"]
            by_seed = {0: single_scores[key] if task == "single" else multi_scores[key]}
            health = {0: seed0.loc[name].to_dict()}
            for k in ctx.profile.extra_seeds:
                priors = single[stage1] if task == "multi" else None
                info, maps = predict_variant(ctx, reader, f"{name}@seed{k}", test, priors=priors)
                by_seed[k] = metrics.paper_scores(maps, gts[task], image_ids=ids)
                health[k] = model_row(name, name, info)
            failed[name] = {k for k, h in health.items() if h["failed"]}
            for k, table in by_seed.items():
                row = {"task": task, "variant": name, "seed": k, "training_seed": ctx.seed + k,
                       "val_dice": health[k]["val_dice"], "status": health[k]["status"], "failed": health[k]["failed"]}
                for cls in TASK_CLASSES[task]:
                    dice = per_image_dice(table, cls, ids)
                    scores.setdefault((name, cls), {})[k] = dice
                    row[f"test_dice_{cls}"] = (np.nan if row["failed"] or not np.isfinite(dice).any()
                                               else float(np.nanmean(dice)))
                rows.append(row)
    table = comparison_table(CLAIMS, scores, failed, ctx.profile.n_seeds, n_boot=ctx.profile.n_boot,
                             seed=ctx.seed, note=protocol_note(ctx.profile.n_boot))
    return SeedComparison(table, pd.DataFrame(rows))
