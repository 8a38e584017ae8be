"""Chapter 5's decisive comparison: each claim as a paired bootstrap over test images and fine-tuning seeds.

Chapters 3 and 4 fine-tune the main compared variants (``Profile.seed_variants``) with ``n_seeds`` seeds from
one pretraining (seed 0 is the model every chapter uses; seed k trains with the profile's seed + k). Here
every seed's model predicts the test slices and each image gets its Dice in the paper's protocol: per image
at threshold 0.5, images whose ground truth of the class is empty left out; the infection class for the
single-class models; GGO, consolidation or their per-image mean (:data:`OVERALL`) for the multi-class
ones. The paper's claim that both single InfNets beat U-Net is about AUC, so those two pairs are also compared
on each image's pixel AUC of the probability map (threshold-free; images whose ground truth is empty left
out). A claim "B beats A" (:data:`CLAIMS`) is then :func:`ssinfnet.evaluation.comparison.paired_bootstrap`
of the per-image scores of A and B, pooled over the seeds both were trained with (seed 0 alone for the
ablations, which have no extra seeds) at which neither training failed (:mod:`ssinfnet.segmentation.health`):
the estimate is the mean of B - A over those seeds and images, its interval resamples both.

The table (:data:`ssinfnet.evaluation.comparison.TABLE_COLUMNS`) has one row per claim and class of the
variants the profile trains; a claim with no usable seed says "not estimable: <why>".
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

__all__ = ["Claim", "CLAIMS", "METRICS", "SeedComparison", "comparison_table", "per_image_scores", "score_key", "run"]

_GGO, _CONS = CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION]
#: The multi-class "overall": the per-image mean of the GGO and consolidation Dice (background left out,
#: unlike the paper's overall; :func:`ssinfnet.evaluation.paper_metrics.paper_scores`).
OVERALL = "overall_without_background"
#: The per-image scores a claim can compare (columns of :func:`ssinfnet.evaluation.paper_metrics.paper_scores`).
METRICS = ("dice", "auc")


@dataclass(frozen=True)
class Claim:
    """One comparison: ``b`` is better than ``a`` on ``task`` (the estimate is B - A; "helps": B is better),
    scored on each of ``classes`` by the per-image ``metric`` (one of :data:`METRICS`)."""

    claim: str
    task: str
    a: str
    b: str
    classes: tuple = ("infection",)
    metric: str = "dice"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"claim {self.claim!r}: metric must be one of {METRICS}, got {self.metric!r}")


#: The paper's claims and ablations, and ours, B the side the paper (or the ablation) expects to win.
CLAIMS = (
    Claim("inpainting pretraining helps (single)", "single", "sinfnet", "ssinfnet"),
    Claim("encoder-only transfer helps (single)", "single", "sinfnet", "ssinfnet_encoder"),
    Claim("transferring the decoder too helps (single)", "single", "ssinfnet_encoder", "ssinfnet"),
    Claim("SSInfNet beats U-Net (single)", "single", "unet", "ssinfnet"),
    Claim("InfNet beats U-Net from scratch (single)", "single", "unet", "sinfnet"),
    Claim("SSInfNet beats U-Net in AUC (single)", "single", "unet", "ssinfnet", metric="auc"),
    Claim("InfNet beats U-Net from scratch in AUC (single)", "single", "unet", "sinfnet", metric="auc"),
    Claim("cutout 40 % augmentation helps (single)", "single", "sinfnet", "sinfnet_cutout40"),
    Claim("cutout 50 % augmentation helps (single)", "single", "sinfnet", "sinfnet_cutout50"),
    Claim("inpainting pretraining helps (multi)", "multi", "multi_sinfnet", "multi_ssinfnet", (_GGO, _CONS, OVERALL)),
    Claim("ablation: inpainting helps (multi)", "multi", "multi_ssinfnet_no_inpainting", "multi_ssinfnet", (OVERALL,)),
    Claim("ablation: focal loss helps (multi)", "multi", "multi_ssinfnet_no_focal", "multi_ssinfnet", (OVERALL,)),
    Claim("ablation: Lookahead helps (multi)", "multi", "multi_ssinfnet_no_lookahead", "multi_ssinfnet", (OVERALL,)),
    Claim("SSInfNet beats U-Net (multi)", "multi", "multi_unet", "multi_ssinfnet", (OVERALL,)),
    Claim("SSInfNet beats FCN8s (multi)", "multi", "multi_fcn8s", "multi_ssinfnet", (OVERALL,)),
    Claim("encoder-only transfer helps (multi)", "multi", "multi_sinfnet", "multi_ssinfnet_encoder", (OVERALL,)),
    Claim("the oracle prior helps (upper bound, multi)", "multi", "multi_ssinfnet", "multi_ssinfnet_gt_prior",
          (_GGO, _CONS)),
)


def per_image_scores(scores: pd.DataFrame, cls: str, image_ids: Sequence[str], metric: str = "dice") -> np.ndarray:
    """The ``metric`` (one of :data:`METRICS`) of class ``cls`` of each image of ``image_ids`` (in that order;
    NaN where the class's ground truth is empty) from :func:`ssinfnet.evaluation.paper_metrics.paper_scores`'s
    table; ValueError naming the metric, class or image when absent."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    rows = scores[scores["class"] == cls].set_index("image")[metric]
    if rows.empty:
        raise ValueError(f"scores have no class {cls!r} (classes: {sorted(scores['class'].unique())})")
    missing = [i for i in image_ids if i not in rows.index]
    if missing:
        raise ValueError(f"scores of class {cls!r} lack {len(missing)} images (first: {missing[0]})")
    return rows.reindex(list(image_ids)).to_numpy(dtype=float)


def score_key(variant: str, cls: str, metric: str = "dice") -> tuple:
    """The key of ``variant``'s scores of ``cls`` by ``metric`` in :func:`comparison_table`'s ``scores``:
    (variant, class) for Dice, (variant, class, metric) otherwise."""
    return (variant, cls) if metric == "dice" else (variant, cls, metric)


def _names(pairs) -> str:
    return "; ".join(f"{v}@seed{k}" for v, k in pairs) if pairs else "none"


def comparison_table(claims: Sequence[Claim], scores: Mapping[tuple[str, str], Mapping[int, np.ndarray]],
                     failed: Mapping[str, set], *, n_boot: int, seed: int, level: float = 0.95,
                     note: str = "") -> pd.DataFrame:
    """One row per claim and class (columns :data:`~ssinfnet.evaluation.comparison.TABLE_COLUMNS`; ``metric``
    is the claim's).

    Parameters
    ----------
    claims : the comparisons (:data:`CLAIMS`); a claim naming a variant without scores (one the profile does
        not train) gets no row
    scores : {:func:`score_key` (variant, class[, metric]): {seed index k: per-image score, float (n_images,), the
        same images in the same order for every variant and seed}}; every variant has seed 0, the compared ones
        also their extra seeds
    failed : {variant: seed indices whose training failed}
    n_boot, seed, level : of :func:`~ssinfnet.evaluation.comparison.paired_bootstrap` (n_boot raised to its
        minimum, 100, when smaller)
    note : appended to every row's note (e.g. the protocol); a callable is given the claim's metric

    A claim is pooled over the seeds both variants were trained with (seed 0 alone when one of them has no
    extra seeds), less those at which either training failed (``seeds_failed``); with none left its verdict is
    "not estimable: ...". Raises ValueError naming the variant when its seed 0 is missing or its seeds'
    scores differ in length.
    """
    rows = []
    for c in claims:
        for cls in c.classes:
            keys = {v: score_key(v, cls, c.metric) for v in (c.a, c.b)}
            if any(k not in scores for k in keys.values()):
                continue
            text = note(c.metric) if callable(note) else note
            row = {"claim": c.claim, "task": c.task, "class": cls, "metric": c.metric, "model_a": c.a,
                   "model_b": c.b, "level": level, "n_seeds": 0, "seeds_failed": "none", "n_images": pd.NA,
                   "seed_means": "", "note": text,
                   **dict.fromkeys(("estimate", "ci_low", "ci_high", "p_not_better"), np.nan)}
            per = {v: _check_seeds(scores[keys[v]], v, cls) for v in (c.a, c.b)}
            both = sorted(set(per[c.a]) & set(per[c.b]))
            bad = [(v, k) for k in both for v in (c.a, c.b) if k in failed.get(v, set())]
            used = [k for k in both if all(j != k for _, j in bad)]
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
            which = f"seeds {', '.join(map(str, used))}" if len(both) > 1 else "seed 0 only (no extra seeds)"
            rows.append({**row, "estimate": res.estimate, "ci_low": res.ci_low, "ci_high": res.ci_high,
                         "n_seeds": res.n_seeds, "n_images": res.n_images, "p_not_better": res.p_not_better,
                         "seed_means": ";".join(f"{m:.4f}" for m in res.seed_means), "verdict": res.verdict,
                         "note": f"{which}; {text}".rstrip("; ")})
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    return table.astype({"n_seeds": "Int64", "n_images": "Int64"})


def _check_seeds(by_seed: Mapping[int, np.ndarray], variant: str, cls: str) -> dict:
    if 0 not in by_seed:
        raise ValueError(f"scores of {variant} ({cls}) lack seed 0 (seeds given: {sorted(by_seed)})")
    out = {k: np.asarray(v, dtype=float) for k, v in by_seed.items()}
    lengths = {k: v.shape for k, v in out.items()}
    if len(set(lengths.values())) != 1 or out[0].ndim != 1:
        raise ValueError(f"scores of {variant} ({cls}) must be 1-d and of one length for every seed; got {lengths}")
    return out


@dataclass
class SeedComparison:
    """Chapter 5's comparison: ``table`` (one row per claim and class, :func:`comparison_table`) and
    ``seeds`` (one row per compared variant and seed: task, variant, seed, val_dice, status, failed, and
    the mean test score of each scored class and metric, ``test_<metric>_<class>``, NaN for a failed training)."""

    table: pd.DataFrame
    seeds: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """The table for the page: claim, class, metric, B - A with its interval, seeds used / failed, verdict."""
        t = self.table
        ci = [f"{lo:+.3f} to {hi:+.3f}" if pd.notna(lo) else "" for lo, hi in zip(t.ci_low, t.ci_high)]
        return pd.DataFrame({"claim": t.claim, "class": t["class"], "metric": t.metric, "B - A": t.estimate.round(3),
                             f"{t.level.iloc[0]:.0%} CI" if len(t) else "CI": ci, "seeds used": t.n_seeds,
                             "failed seeds": t.seeds_failed, "images": t.n_images, "verdict": t.verdict})


def protocol_note(n_boot: int, metric: str = "dice") -> str:
    """What a row comparing ``metric`` was computed with, for its ``note``."""
    score = {"dice": "per-image Dice at 0.5 (paper protocol)",
             "auc": "per-image pixel AUC of the probability map (no threshold)"}[metric]
    return (f"{score}, empty ground truth left out; pretraining run once, seeds re-run fine-tuning only; two-level "
            f"bootstrap over seeds and images, {max(n_boot, MIN_BOOT)} resamples")


def run(ctx, reader: str, test, models: pd.DataFrame, single: Mapping, single_scores: Mapping,
        multi_scores: Mapping, stage1: str) -> SeedComparison:
    """Score every seed of the variants :data:`CLAIMS` names on ``test`` and build the comparison table.

    Seed 0 of every variant of the profile comes from chapter 5's own predictions (``models``: its models table with ``key`` and
    ``failed``; ``single_scores`` by variant, ``multi_scores`` by label); the extra seeds are read as
    ``model:<variant>@seed<k>`` (the profile's ``single_seed_variants`` and ``multi_seed_variants``) by stage
    ``reader`` and predicted, the multi ones with ``single[stage1]``
    (the stage-1 test maps of seed 0) as priors. Bootstrap with the profile's ``n_boot`` and ``ctx.seed``.
    """
    from .evaluation import model_row  # evaluation imports this module

    ids = [s.slice_id for s in test]
    gts = {"single": [s.infection for s in test], "multi": [s.classes for s in test]}
    scored = {task: sorted({(cls, c.metric) for c in CLAIMS if c.task == task for cls in c.classes}) for task in gts}
    seed0 = models.set_index("variant")
    compared = {v for c in CLAIMS for v in (c.a, c.b)}
    scores, failed, rows = {}, {}, []
    for task, names, extra in (("single", ctx.profile.single_variants, ctx.profile.single_seed_variants),
                               ("multi", ctx.profile.multi_variants, ctx.profile.multi_seed_variants)):
        for name in (n for n in names if n in compared):
            key = seed0.loc[name, "key"]
            by_seed = {0: single_scores[key] if task == "single" else multi_scores[key]}
            health = {0: seed0.loc[name].to_dict()}
            for k in ctx.profile.extra_seeds if name in extra else ():
                priors = single[stage1] if task == "multi" else None
                info, maps = predict_variant(ctx, reader, f"{name}@seed{k}", test, priors=priors)
                by_seed[k] = metrics.paper_scores(maps, gts[task], image_ids=ids)
                health[k] = model_row(name, name, info)
            failed[name] = {k for k, h in health.items() if h["failed"]}
            for k, table in by_seed.items():
                row = {"task": task, "variant": name, "seed": k, "training_seed": ctx.seed + k,
                       "val_dice": health[k]["val_dice"], "status": health[k]["status"], "failed": health[k]["failed"]}
                for cls, metric in scored[task]:
                    values = per_image_scores(table, cls, ids, metric)
                    scores.setdefault(score_key(name, cls, metric), {})[k] = values
                    row[f"test_{metric}_{cls}"] = (np.nan if row["failed"] or not np.isfinite(values).any()
                                                   else float(np.nanmean(values)))
                rows.append(row)
    table = comparison_table(CLAIMS, scores, failed, n_boot=ctx.profile.n_boot, seed=ctx.seed,
                             note=lambda metric: protocol_note(ctx.profile.n_boot, metric))
    return SeedComparison(table, pd.DataFrame(rows))
