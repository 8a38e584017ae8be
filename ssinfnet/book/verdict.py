"""The book's verdict: each claim of the paper, our estimate with its interval, the paper's number, and
whether this run reproduces it. Everything is read from the run (manifest and artifacts), nothing typed in.

Claims that compare two trained models read chapter 5's ``comparisons`` CSV (per-image paired bootstrap
of ``model_b - model_a`` pooled over seeds; columns :data:`COMPARISON_COLUMNS`), located through the
manifest (whichever stage recorded an artifact named ``comparisons``). Cross-validation, severity and
mediation claims read what chapters 3, 4, 6 and 7 recorded in the manifest (and chapter 7's
``mediation`` CSV). The rules that turn an interval into a verdict are :func:`claim_verdict` and
:data:`RULES` (printed on the page).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..data.classes import CLASS_NAMES, CONSOLIDATION, GGO
from ..evaluation import published as pub
from ..evaluation.comparison import TABLE_COLUMNS, with_optional_columns

__all__ = ["COMPARISON_COLUMNS", "VERDICTS", "NOT_ON_DATA", "WITHOUT_BACKGROUND", "DICE_FOR_AUC", "EQUIVALENCE_MARGIN", "Claim",
           "CLAIMS", "RULES", "claim_verdict",
           "failed_models", "prior_folds_failed", "training_statuses", "find_artifact", "read_comparisons", "load_comparisons", "match_comparison", "pair_rows", "value_verdict",
           "wilson_interval"]

#: The columns chapter 5 writes to ``comparisons`` (one row per compared pair, class and metric).
COMPARISON_COLUMNS = list(TABLE_COLUMNS)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive at this budget"
NOT_RUN, NOT_ESTIMABLE, NOT_COMPARED = "not run in this profile", "not estimable (failed training)", \
    "not compared in this run"
#: A claim whose data the run's data root does not hold (chapter 7 without iCTCF CT images).
NOT_ON_DATA = "not tested: its data is not in this run"
#: Every verdict a claim can get.
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN, NOT_ON_DATA, NOT_ESTIMABLE, NOT_COMPARED)

#: Dice points within which two models count as "comparable" (the paper's "comparable" single models
#: differ by 0.01 F1, draft Table II).
EQUIVALENCE_MARGIN = 0.05

RULES = (
    f"**Paper claims an improvement** (B better than A): the interval above 0 (\"helps\") → *{REPRODUCED}*; "
    f"below 0 (\"hurts\") → *{NOT_REPRODUCED}*; containing 0 (\"no detectable difference\") → *{NOT_REPRODUCED}* "
    f"when its upper end lies below the paper's effect (the interval excludes it), otherwise *{INCONCLUSIVE}* "
    "(also when the paper prints no effect size to exclude).",
    f"**Paper claims comparable performance**: the interval inside ±{EQUIVALENCE_MARGIN} Dice → *{REPRODUCED}*; "
    f"entirely outside it (a clear difference either way) → *{NOT_REPRODUCED}*; otherwise *{INCONCLUSIVE}*.",
    f"**A printed value** (severity micro F1): the interval's lower end at or above it → *{REPRODUCED}*; its "
    f"upper end below it → *{NOT_REPRODUCED}*; otherwise *{INCONCLUSIVE}*; marked *not like-for-like* where "
    "data or reference labels differ.",
    f"A model whose training failed (chapter 5's \"not estimable\") → *{NOT_ESTIMABLE}*; a pair the profile "
    f"does not train → *{NOT_RUN}*; a pair the run trained but did not compare (no row, or no `comparisons` "
    f"artifact) → *{NOT_COMPARED}*; a claim on data the run's data root does not hold (iCTCF CT images for "
    f"the mediators) → *{NOT_ON_DATA}*.",
    f"**A claim on AUC** (single InfNets vs U-Net) is judged on chapter 5's AUC comparison of the pair; a run "
    f"that compared the pair on Dice only shows that row, and its verdict is at most *{INCONCLUSIVE}, not "
    "like-for-like*: a thresholded Dice difference neither shows nor rules out an AUC difference.",
)

_GGO, _CONS = CLASS_NAMES[GGO], CLASS_NAMES[CONSOLIDATION]
_OVERALL = "overall_with_background"
#: What a row says when the paper's overall (background averaged in) is met by ours without background.
WITHOUT_BACKGROUND = ("not like-for-like: ours is the mean of GGO and consolidation, the paper's overall also "
                      "averages background (J Transl Med Fig. 3D), so its gap is not used to reject the claim")
#: Class aliases accepted in the CSV, in order of preference, for each class a claim names.
CLASS_ALIASES = {"infection": ("infection", "overall", "all", ""), _GGO: (_GGO,), _CONS: (_CONS,),
                 _OVERALL: (_OVERALL, "overall", "overall_without_background")}


@dataclass(frozen=True)
class Claim:
    """One claim about two models: the paper says ``model_b`` is better than (``kind`` "improves") or
    comparable to (``kind`` "comparable") ``model_a`` on ``cls`` by ``metric`` ("dice": F1, or "auc");
    ``paper_effect``: the printed B - A in F1 (Dice) points (None: not printed); ``paper``: the printed
    numbers in words; ``differs``: what is not like-for-like ("" when nothing beyond the profile)."""

    key: str
    title: str
    kind: str
    task: str
    cls: str
    model_a: str
    model_b: str
    paper: str
    citation: str
    paper_effect: float | None = None
    differs: str = ""
    metric: str = "dice"


def _f(table, method, cls):
    return pub.lookup(table, method, cls).mean


_T2, _T3, _T5 = "Table II", "Table III", "Table V"
_D = "draft"
_ABS = pub.JTM_ABSTRACT[0].mean - pub.JTM_ABSTRACT[1].mean  # 0.63 - 0.55: the smaller of the two gaps
_ORACLE_GGO = _f(_T5, "SSInfNet", _GGO) - _f(_T3, "SSInfNet", _GGO)
_ORACLE_CONS = _f(_T5, "SSInfNet", _CONS) - _f(_T3, "SSInfNet", _CONS)
_SINGLE = _f(_T2, "SSInfNet", "infection") - _f(_T2, "SInfNet", "infection")
_NO_FOCAL = "the draft's multi models have neither focal loss nor Lookahead"
_BEATS_UNET = "SSInfNet and SInfNet both beat U-Net in overall AUC (values not printed)"
#: What an AUC claim's row says when the run compared its pair on Dice only; its verdict is then at best
#: "inconclusive ..., not like-for-like" (a Dice difference neither shows nor rules out an AUC difference).
DICE_FOR_AUC = ("this run has no AUC comparison of the pair, only Dice at 0.5; the paper's claim is on AUC, so "
                "the Dice row can neither reproduce nor reject it")
_AUC_DIFFERS = ("ours: the mean over test slices with infection of each slice's pixel AUC; the paper's \"overall "
                "AUC\" may pool pixels or images otherwise (not stated)")

CLAIMS: tuple[Claim, ...] = (
    Claim("single", "Single: SSInfNet vs SInfNet", "comparable", "single", "infection", "sinfnet", "ssinfnet",
          f"comparable: F1 {_f(_T2, 'SSInfNet', 'infection')} vs {_f(_T2, 'SInfNet', 'infection')}",
          f"{_D} {_T2}; J Transl Med Fig. 3B", _SINGLE),
    Claim("single_unet", "Single: SSInfNet vs U-Net (AUC)", "improves", "single", "infection", "unet", "ssinfnet",
          _BEATS_UNET, "J Transl Med Results, Fig. S4", differs=_AUC_DIFFERS, metric="auc"),
    Claim("single_unet_sinfnet", "Single: SInfNet vs U-Net (AUC)", "improves", "single", "infection", "unet",
          "sinfnet", _BEATS_UNET, "J Transl Med Results, Fig. S4", differs=_AUC_DIFFERS, metric="auc"),
    Claim("multi", "Multi: SSInfNet vs SInfNet, overall", "improves", "multi", _OVERALL, "multi_sinfnet",
          "multi_ssinfnet", f"overall F1 {pub.JTM_ABSTRACT[0].mean} vs {pub.JTM_ABSTRACT[1].mean} / "
          f"{pub.JTM_ABSTRACT[2].mean}", "J Transl Med abstract, Fig. 3D", _ABS,
          "the abstract does not say which baseline scored 0.55; the smaller gap is used"),
    Claim("multi_ggo", "Multi: SSInfNet vs SInfNet, GGO", "improves", "multi", _GGO, "multi_sinfnet", "multi_ssinfnet",
          "better (value not printed)", "J Transl Med Fig. 3D"),
    Claim("multi_cons", "Multi: SSInfNet vs SInfNet, consolidation", "improves", "multi", _CONS, "multi_sinfnet",
          "multi_ssinfnet", "better (value not printed)", "J Transl Med Fig. 3D"),
    Claim("multi_unet", "Multi: SSInfNet vs U-Net, overall", "improves", "multi", _OVERALL, "multi_unet",
          "multi_ssinfnet", f"overall F1 {pub.JTM_ABSTRACT[0].mean} vs ≤ {pub.JTM_ABSTRACT[1].mean}",
          "J Transl Med abstract, Fig. 3D", _ABS),
    Claim("ablation_inpainting", "Ablation: inpainting pretraining (multi)", "improves", "multi", _OVERALL,
          "multi_ssinfnet_no_inpainting", "multi_ssinfnet",
          pub.JTM_SUPPLEMENT_CLAIMS["Table S7"] + " (values not printed)", "J Transl Med Table S7"),
    Claim("ablation_focal", "Ablation: focal loss vs BCE (multi)", "improves", "multi", _OVERALL,
          "multi_ssinfnet_no_focal", "multi_ssinfnet", "focal loss improves (value not printed)",
          "J Transl Med Table S7"),
    Claim("ablation_lookahead", "Ablation: Lookahead vs plain SGD (multi)", "improves", "multi", _OVERALL,
          "multi_ssinfnet_no_lookahead", "multi_ssinfnet", "Lookahead improves (value not printed)",
          "J Transl Med Table S7"),
    Claim("fcn8s", "Multi: SSInfNet vs FCN8s, overall", "improves", "multi", _OVERALL, "multi_fcn8s", "multi_ssinfnet",
          pub.JTM_SUPPLEMENT_CLAIMS["Table S4"] + " (values not printed)", "J Transl Med Table S4",
          differs="the paper's FCN8 starts from pretrained weights; ours from scratch (no ImageNet weights offline)"),
    Claim("oracle_ggo", "Oracle prior (ground truth) vs stage-1 prior, GGO", "improves", "multi", _GGO,
          "multi_ssinfnet", "multi_ssinfnet_gt_prior",
          f"F1 {_f(_T5, 'SSInfNet', _GGO)} vs {_f(_T3, 'SSInfNet', _GGO)}", f"{_D} {_T5} vs {_T3}", _ORACLE_GGO,
          _NO_FOCAL),
    Claim("oracle_cons", "Oracle prior (ground truth) vs stage-1 prior, consolidation", "improves", "multi", _CONS,
          "multi_ssinfnet", "multi_ssinfnet_gt_prior",
          f"F1 {_f(_T5, 'SSInfNet', _CONS)} vs {_f(_T3, 'SSInfNet', _CONS)}", f"{_D} {_T5} vs {_T3}", _ORACLE_CONS,
          _NO_FOCAL),
    Claim("cutout40", "Data augmentation (cutout 0.4), single", "comparable", "single", "infection", "sinfnet",
          "sinfnet_cutout40", f"F1 {_f(_T2, 'SInfNet + data aug(0.4)', 'infection')} vs "
          f"{_f(_T2, 'SInfNet', 'infection')}", f"{_D} {_T2}",
          _f(_T2, "SInfNet + data aug(0.4)", "infection") - _f(_T2, "SInfNet", "infection")),
    Claim("cutout50", "Data augmentation (cutout 0.5), single", "comparable", "single", "infection", "sinfnet",
          "sinfnet_cutout50", f"F1 {_f(_T2, 'SInfNet + data aug(0.5)', 'infection')} vs "
          f"{_f(_T2, 'SInfNet', 'infection')}", f"{_D} {_T2}",
          _f(_T2, "SInfNet + data aug(0.5)", "infection") - _f(_T2, "SInfNet", "infection")),
    Claim("encoder_single", "Ours: encoder-only transfer vs scratch, single", "ours", "single", "infection", "sinfnet",
          "ssinfnet_encoder", "not in the paper (our addition)", "—"),
    Claim("encoder_multi", "Ours: encoder-only transfer vs scratch, multi", "ours", "multi", _OVERALL, "multi_sinfnet",
          "multi_ssinfnet_encoder", "not in the paper (our addition)", "—"),
)


def claim_verdict(kind: str, ci_verdict: str, ci_low: float, ci_high: float, paper_effect: float | None = None,
                  margin: float = EQUIVALENCE_MARGIN) -> str:
    """The claim's verdict from chapter 5's interval verdict (``ci_verdict``: "helps", "hurts", "no detectable
    difference" or "not estimable: ...") and the interval [``ci_low``, ``ci_high``] of B - A (Dice points).

    ``kind``: "improves" (the paper claims B > A, by ``paper_effect`` when printed), "comparable" (the paper
    claims |B - A| small; ``margin`` is the equivalence margin) or "ours" (no paper claim: the interval
    verdict itself is returned). Returns one of :data:`VERDICTS` (or the interval verdict for "ours").
    ValueError for an unknown ``kind`` or ``ci_verdict``.
    """
    text = str(ci_verdict).strip().lower()
    if text.startswith("not estimable") or text == "no estimate":
        return NOT_ESTIMABLE
    if text not in ("helps", "hurts", "no detectable difference"):
        raise ValueError(f"unknown interval verdict {ci_verdict!r} (helps, hurts, no detectable difference, "
                         "not estimable: ...)")
    if kind == "ours":
        return text
    if kind == "improves":
        if text == "helps":
            return REPRODUCED
        if text == "hurts" or (paper_effect is not None and ci_high < paper_effect):
            return NOT_REPRODUCED
        return INCONCLUSIVE
    if kind == "comparable":
        if -margin <= ci_low and ci_high <= margin:
            return REPRODUCED
        if ci_low > margin or ci_high < -margin:
            return NOT_REPRODUCED
        return INCONCLUSIVE
    raise ValueError(f"unknown claim kind {kind!r} (improves, comparable, ours)")


def value_verdict(ci_low: float, ci_high: float, paper_value: float) -> str:
    """A printed value (e.g. severity micro F1) against our interval: lower end at or above it →
    reproduced; upper end below it → not reproduced; otherwise inconclusive."""
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return NOT_ESTIMABLE
    if ci_low >= paper_value:
        return REPRODUCED
    return NOT_REPRODUCED if ci_high < paper_value else INCONCLUSIVE


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` items (NaNs when n < 1)."""
    if n < 1 or not math.isfinite(p):
        return float("nan"), float("nan")
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def find_artifact(manifest: dict, name: str) -> str | None:
    """The run-relative path any stage recorded for artifact ``name`` (None when none did)."""
    for stage in manifest.get("stages", {}).values():
        path = (stage.get("artifacts") or {}).get(name) if isinstance(stage, dict) else None
        if path:
            return str(path)
    return None


def read_comparisons(path: Path) -> pd.DataFrame:
    """Chapter 5's ``comparisons`` CSV; ValueError naming the file when columns are missing. A table written
    before an optional column existed (:data:`~ssinfnet.evaluation.comparison.OPTIONAL_COLUMNS`: ``metric``)
    gets it with the value it had then ("dice")."""
    table = with_optional_columns(pd.read_csv(path))
    missing = [c for c in COMPARISON_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: the comparisons table lacks column(s) {missing} (expected {COMPARISON_COLUMNS})")
    return table


def match_comparison(table: pd.DataFrame, claim: Claim) -> dict | None:
    """The row of ``table`` comparing the claim's models on its class and metric, oriented as B - A (a row
    written A - B is negated and its verdict flipped); None when there is none. A table without a ``metric``
    column compared Dice only."""
    if table is None or not len(table):
        return None
    table = with_optional_columns(table)
    table = table[table["metric"].astype(str).str.strip().str.lower() == claim.metric]
    cls = table["class"].fillna("").astype(str).str.strip().str.lower()
    for alias in CLASS_ALIASES.get(claim.cls, (claim.cls,)):
        for a, b, sign in ((claim.model_a, claim.model_b, 1), (claim.model_b, claim.model_a, -1)):
            hit = table[(table.model_a == a) & (table.model_b == b) & (cls == alias)]
            if len(hit):
                row = hit.iloc[0].to_dict()
                if sign < 0:
                    row.update(estimate=-row["estimate"], ci_low=-row["ci_high"], ci_high=-row["ci_low"],
                               verdict={"helps": "hurts", "hurts": "helps"}.get(row["verdict"], row["verdict"]),
                               note=f"{row.get('note') or ''} (written as {b} - {a}; sign flipped)".strip())
                return row
    return None


def _signed(v) -> str:
    return f"{v:+.3f}" if isinstance(v, (int, float)) and math.isfinite(v) else "—"


def _estimate_text(row: dict, reduced: bool) -> str:
    level = row.get("level")
    lv = f"{float(level):.0%}" if isinstance(level, (int, float)) and math.isfinite(level) else "?"
    mark = " ‡" if reduced else ""
    return f"{_signed(row['estimate'])} ({lv} CI {_signed(row['ci_low'])} to {_signed(row['ci_high'])}){mark}"


def _seeds_text(row: dict) -> str:
    failed = row.get("seeds_failed")
    nothing = failed in (None, 0, "0", "", "none") or (isinstance(failed, float) and (math.isnan(failed) or not failed))
    failed = "" if nothing else f", failed: {failed}"

    def num(v):
        return "?" if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
    seeds = num(row.get("n_seeds"))
    return f"{seeds} seed{'' if seeds == 1 else 's'} × {num(row.get('n_images'))} images{failed}"


def _seed_means(row: dict) -> str:
    vals = re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?|[-+]?\d+", str(row.get("seed_means") or ""))
    return ", ".join(_signed(float(v)) for v in vals) if vals else ""


def training_statuses(manifest: dict) -> dict[str, str]:
    """Every training status chapters 3, 4 and 5 recorded ("ok" or "failed: ..."): each model keyed by its
    variant (labels such as "multi_ssinfnet_gt_prior (oracle prior)" by their variant), each extra
    fine-tuning seed of chapters 3 and 4 as "variant@seedK" and each of their cross-validation folds as
    "variant/foldK" (runs that recorded them). A failure recorded by any chapter stands."""
    out: dict[str, str] = {}

    def put(key: str, status) -> None:
        if not (out.get(key, "").startswith("failed") and not str(status).startswith("failed")):
            out[key] = str(status)

    for stage in ("03_single", "04_multi", "05_evaluation"):
        entry = manifest.get("stages", {}).get(stage, {})
        for key, status in (entry.get("status") or {}).items():
            put(str(key).split(" (")[0], status)
        for variant, seeds in ((entry.get("seeds") or {}).get("status") or {}).items():
            for seed, status in (seeds or {}).items():
                put(f"{variant}@{seed}", status)
        for variant, folds in (entry.get("cross_validation_status") or {}).items():
            for fold, status in (folds or {}).items():
                put(f"{variant}/{fold}", status)
    return out


def prior_folds_failed(manifest: dict) -> list[str]:
    """The folds of chapter 3's cross-validated SSInfNet (whose out-of-fold maps are chapter 4's priors) that
    chapter 3 recorded as failed trainings, as "ssinfnet/fold<k> failed: <why>"; empty when none did or the
    run did not record their health."""
    return [f"{k} {v}" for k, v in training_statuses(manifest).items()
            if k.startswith("ssinfnet/fold") and v.startswith("failed")]


def failed_models(manifest: dict) -> dict[str, str]:
    """Variant -> status of the models chapters 3, 4 and 5 recorded as failed trainings ("failed: ...");
    labels such as "multi_ssinfnet_gt_prior (oracle prior)" are keyed by their variant (extra seeds and
    cross-validation folds are not models of their own here)."""
    return {k: v for k, v in training_statuses(manifest).items()
            if "@" not in k and "/" not in k and v.startswith("failed")}


def pair_rows(manifest: dict, comparisons: pd.DataFrame | None, reduced: bool) -> list[dict]:
    """One row per claim of :data:`CLAIMS`: claim, ours (B - A with its interval), seeds, paper, source, verdict,
    note; read from ``comparisons`` (None: absent). ``reduced`` marks our estimates with ‡ (a reduced schedule)."""
    params = manifest.get("parameters") or {}
    trained = set(params.get("single_variants") or ()) | set(params.get("multi_variants") or ())
    failed = failed_models(manifest)
    rows = []
    for c in CLAIMS:
        row = {"claim": c.title, "ours": "—", "seeds": "", "paper": c.paper, "source": c.citation,
               "verdict": "", "note": c.differs}
        missing = [m for m in (c.model_a, c.model_b) if params and m not in trained]
        hit = match_comparison(comparisons, c) if comparisons is not None else None
        other_metric = hit is None and c.metric != "dice" and comparisons is not None
        if other_metric:
            hit = match_comparison(comparisons, replace(c, metric="dice"))
            other_metric = hit is not None
        if hit is not None:
            # The paper's overall averages background in; a gap on that scale says nothing about ours without it.
            scale = c.cls == _OVERALL and str(hit.get("class", "")).strip().lower() == "overall_without_background"
            effect = None if scale else c.paper_effect
            row.update(ours=_estimate_text(hit, reduced), seeds=_seeds_text(hit),
                       verdict=claim_verdict(c.kind, hit["verdict"], hit["ci_low"], hit["ci_high"], effect))
            spread = _seed_means(hit)
            extra = [x for x in (f"seed means {spread}" if spread else "", str(hit.get("note") or "")
                                 if str(hit.get("note") or "") != "nan" else "", c.differs,
                                 WITHOUT_BACKGROUND if scale else "", DICE_FOR_AUC if other_metric else "") if x]
            if row["verdict"] == NOT_ESTIMABLE:
                extra.insert(0, str(hit["verdict"]))
                row["ours"] = "—"
            row["note"] = "; ".join(extra)
            if other_metric and row["verdict"] != NOT_ESTIMABLE:
                row.update(ours=f"Dice {row['ours']}", verdict=f"{INCONCLUSIVE}, not like-for-like")
        elif missing:
            row.update(verdict=NOT_RUN, note=f"the profile does not train {', '.join(missing)}")
        elif any(m in failed for m in (c.model_a, c.model_b)):
            row.update(verdict=NOT_ESTIMABLE, note="; ".join(f"{m} {failed[m]}" for m in (c.model_a, c.model_b)
                                                             if m in failed))
        else:
            row.update(verdict=NOT_COMPARED, note="no row in chapter 5's comparisons" if comparisons is not None
                       else "no comparisons artifact in this run")
        if c.kind == "ours" and row["verdict"] not in (NOT_RUN, NOT_COMPARED, NOT_ESTIMABLE):
            row["verdict"] = f"ours only: {row['verdict']}"
        rows.append(row)
    return rows


def load_comparisons(manifest: dict, run_dir: Path | None) -> tuple[pd.DataFrame | None, str]:
    """Chapter 5's comparisons of this run (None when absent) and a sentence for the page saying where they
    came from, or that the ``comparisons`` artifact is absent (or recorded but missing from ``run_dir``)."""
    rel = find_artifact(manifest, "comparisons")
    if rel is None:
        return None, ("**The `comparisons` artifact is absent from this run**: no chapter recorded per-seed paired "
                      f"comparisons, so the claims that compare two models read \"{NOT_COMPARED}\".")
    if run_dir is None or not (Path(run_dir) / rel).is_file():
        return None, (f"**The `comparisons` artifact is recorded at `{rel}` but the file is not in the run folder**; "
                      f"the claims that compare two models read \"{NOT_COMPARED}\".")
    table = read_comparisons(Path(run_dir) / rel)
    return table, (f"Pair comparisons: `{rel}` ({len(table)} rows): per-image paired bootstrap of B − A over the "
                   "test slices, pooled over training seeds (chapter 5).")
