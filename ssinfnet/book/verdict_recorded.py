"""The verdict's claims that do not compare two models' test scores: cross-validation consistency
(chapters 3 and 4), severity agreement (chapter 6) and mediators found (chapter 7), read from what those
chapters recorded in the run manifest (and chapter 7's ``mediation`` CSV)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.classes import CLASS_NAMES, GGO
from ..evaluation import published as pub
from .verdict import (CLAIMS, INCONCLUSIVE, NOT_COMPARED, NOT_ESTIMABLE, NOT_ON_DATA, NOT_REPRODUCED, NOT_RUN,
                      REPRODUCED, find_artifact, match_comparison, prior_folds_failed, training_statuses, value_verdict,
                      wilson_interval)

__all__ = ["cv_row", "severity_row", "mediation_row", "other_rows", "SEVERITY_KEY", "MEDIATION_EXPOSURES"]

#: The agreement chapter 6 records that matches the paper's Table VI (ratio binned with the paper's bins).
SEVERITY_KEY = "ratio, paper bins"
#: Exposure column -> words, for the exposures the paper reports mediators of.
MEDIATION_EXPOSURES = {"age": "age", "n_diseases": "underlying diseases"}

_CV_PAIRS = (("single", "03_single", "sinfnet", "ssinfnet", "infection"),
             ("multi", "04_multi", "multi_sinfnet", "multi_ssinfnet", CLASS_NAMES[GGO]))


def _row(claim, ours, paper, source, verdict, note="", seeds="") -> dict:
    return {"claim": claim, "ours": ours, "seeds": seeds, "paper": paper, "source": source, "verdict": verdict,
            "note": note}


def _cv_value(recorded, cls: str) -> float | None:
    """Chapter 3 records {variant: Dice}, chapter 4 {variant: {class: Dice}}."""
    if isinstance(recorded, dict):
        recorded = recorded.get(cls)
    return None if recorded is None else float(recorded)


def cv_row(manifest: dict, comparisons: pd.DataFrame | None, task: str) -> dict:
    """Cross-validation consistency of ``task`` ("single" / "multi"): do the held-out folds rank SInfNet
    and SSInfNet as the test split does (sign of the CV difference = sign of chapter 5's estimate)?"""
    _, stage, a, b, cls = next(p for p in _CV_PAIRS if p[0] == task)
    table = "Table S2" if task == "single" else "Table S3"
    claim = f"Cross-validation consistency, {task}"
    paper = pub.JTM_SUPPLEMENT_CLAIMS[table] + "; consistent with the test split (values not printed)"
    cv = manifest.get("stages", {}).get(stage, {}).get("cross_validation") or {}
    va, vb = _cv_value(cv.get(a), cls), _cv_value(cv.get(b), cls)
    shown = ", ".join(f"{m} {v:.3f}" for m, v in ((a, va), (b, vb)) if v is not None) or "none"
    ours = f"held-out Dice ({cls}): {shown}"
    note = ("folds over our labelled training slices; the paper pooled all its MedSeg images into 3 folds: "
            "not like-for-like")
    if va is None or vb is None:
        who = [m for m, v in ((a, va), (b, vb)) if v is None]
        planned = set((manifest.get("parameters") or {}).get("cv_variants") or ())
        outside = [m for m in who if m not in planned]
        if outside:
            return _row(claim, ours, paper, f"J Transl Med {table}", NOT_RUN,
                        f"the profile does not cross-validate {', '.join(outside)} (`cv_variants`); {note}")
        return _row(claim, ours, paper, f"J Transl Med {table}", NOT_COMPARED,
                    f"chapter {stage[:2]} recorded no cross-validation of {', '.join(who)}; {note}")
    failed = [f"{k} {st}" for k, st in training_statuses(manifest).items()
              if "/" in k and k.split("/")[0] in (a, b) and st.startswith("failed")]
    failed += prior_folds_failed(manifest) if task == "multi" else []  # the multi folds' priors
    if failed:
        return _row(claim, ours, paper, f"J Transl Med {table}", NOT_ESTIMABLE,
                    f"a fold's training failed ({'; '.join(failed)}): its held-out Dice is not a result; {note}")
    claim_ = next(c for c in CLAIMS if (c.model_a, c.model_b, c.cls) == (a, b, cls))
    test = match_comparison(comparisons, claim_) if comparisons is not None else None
    cv_diff = vb - va
    if test is None or not isinstance(test.get("estimate"), (int, float)):
        return _row(claim, ours + f" (B − A {cv_diff:+.3f})", paper, f"J Transl Med {table}", INCONCLUSIVE,
                    "no test-split comparison of the pair to check against; " + note)
    same = (cv_diff > 0) == (test["estimate"] > 0)
    return _row(claim, ours + f" (B − A {cv_diff:+.3f}; test {test['estimate']:+.3f})", paper,
                f"J Transl Med {table}", REPRODUCED if same else NOT_REPRODUCED,
                ("same" if same else "opposite") + " ranking in the folds and on the test split; no interval for "
                "the folds (one split); " + note)


def _severity_reference(scored: str | None):
    """The draft Table VI micro F1 of the model chapter 6 scored (``scored``: our variant), SSInfNet's when the
    table prints none for it."""
    rows = [p for p in pub.DRAFT_TABLE_VI if p.metric == "micro_f1"]
    return next((p for p in rows if scored and p.ours == scored), pub.lookup("Table VI", "SSInfNet", "severity",
                                                                          "micro_f1"))


def severity_row(manifest: dict, reduced: bool) -> dict:
    """Severity agreement (chapter 6) against the draft's Table VI micro F1 of the same model (the one chapter 6
    scored; SSInfNet when the table prints none for it)."""
    rec = manifest.get("stages", {}).get("06_severity") or {}
    scored = str(rec.get("predictions") or "").split(" ")[0] or None  # "sinfnet_cutout40 prediction" -> variant
    paper = _severity_reference(scored)
    claim, source = "Severity from the segmentation (micro F1)", f"draft {paper.table}"
    others = ", ".join(f"{p.method} {p.mean}" for p in pub.DRAFT_TABLE_VI
                       if p.metric == "micro_f1" and p.method in ("SSInfNet", "SInfNet") and p is not paper)
    words = f"micro F1 {paper.mean} for {paper.method}" + (f" ({others})" if others else "")
    if not rec:
        return _row(claim, "—", words, source, NOT_RUN, "chapter 6 did not run in this run folder")
    if rec.get("prediction_source") == "simulated":
        return _row(claim, "—", words, source, NOT_ESTIMABLE,
                    "chapter 6 scored a SIMULATED stand-in: chapter 5 handed on no usable single model")
    agree = (rec.get("agreement") or {}).get(SEVERITY_KEY) or {}
    f1 = agree.get("micro_f1")
    n = int(rec.get("n_slices", 0)) - int(rec.get("n_flagged", 0))
    if f1 is None or n < 1:
        return _row(claim, "—", words, source, NOT_ESTIMABLE, "chapter 6 recorded no paper-bins agreement")
    low, high = wilson_interval(float(f1), n)
    mark = " ‡" if reduced else ""
    return _row(claim, f"{f1:.3f} (95% CI {low:.3f} to {high:.3f}, Wilson){mark}", words, source,
                value_verdict(low, high, paper.mean) + ", not like-for-like",
                f"ours: {scored or 'the handed-on model'}'s predicted vs ground-truth infection ratio on single test "
                "slices (image-derived reference); the paper: iCTCF patients' clinical grades",
                seeds=f"{n} slices")


def _significant(run_dir: Path | None, rel: str | None) -> pd.DataFrame | None:
    if run_dir is None or rel is None or not (Path(run_dir) / rel).is_file():
        return None
    table = pd.read_csv(Path(run_dir) / rel)
    missing = [c for c in ("mediator", "x", "significant") if c not in table.columns]
    if missing:
        raise ValueError(f"{Path(run_dir) / rel}: the mediation table lacks column(s) {missing}")
    return table


def mediation_row(manifest: dict, run_dir: Path | None) -> dict:
    """Mediators found (chapter 7): significant mediators of age and of underlying diseases on the measured
    iCTCF phenotypes, against the paper's 37 significant GGO phenotypes and 5 / 3 kept mediators."""
    m = pub.JTM_MEDIATION
    claim, source = "Mediators found (age, underlying diseases → severity)", "J Transl Med Results, Figs. 4 and 6"
    paper = (f"{m['significant_ggo'].mean:.0f} of 68 GGO phenotypes significant; kept {m['kept_age'].mean:.0f} "
             f"(age), {m['kept_diseases'].mean:.0f} (diseases); {m['patients'].mean:.0f} patients")
    rec = manifest.get("stages", {}).get("07_radiomics_mediation")
    if not rec:
        return _row(claim, "—", paper, source, NOT_RUN, "chapter 7 did not run in this run folder")
    if rec.get("cohort_source") != "images":
        return _row(claim, "—", paper, source, NOT_ON_DATA,
                    "no iCTCF CT images in this run: chapter 7's phenotypes are SIMULATED with planted paths, so "
                    "they test the method, not the paper's finding")
    table = _significant(run_dir, find_artifact(manifest, "mediation"))
    if table is None:
        return _row(claim, "—", paper, source, NOT_ESTIMABLE, "chapter 7's mediation table is not in the run folder")
    sig = table[table.significant.astype(bool)]
    counts = {x: sig[sig.x == x].mediator.nunique() for x in MEDIATION_EXPOSURES}
    candidates = table.mediator.nunique()
    ggo = sig[sig.mediator.astype(str).str.startswith(CLASS_NAMES[GGO] + "_")].mediator.nunique()
    patients = (rec.get("ictcf_images") or {}).get("patients")
    kept = rec.get("kept_mediators") or []
    ours = (f"{', '.join(f'{w}: {counts[x]}' for x, w in MEDIATION_EXPOSURES.items())} significant of {candidates} "
            f"candidates ({CLASS_NAMES[GGO]}: {ggo}); kept after the filter: {len(kept)}")
    if all(counts.values()):
        verdict = REPRODUCED
    elif patients is not None and patients < m["patients"].mean:
        verdict = INCONCLUSIVE
    else:
        verdict = NOT_REPRODUCED
    note = (f"{patients} patients with images" if patients is not None else "patients not recorded") + \
        "; significance by counterfactual indirect effects with the paper's rule alongside (chapter 7)"
    return _row(claim, ours, paper, source, verdict, note, seeds=f"{patients} patients" if patients else "")


def other_rows(manifest: dict, run_dir: Path | None, comparisons: pd.DataFrame | None, reduced: bool) -> list[dict]:
    """The rows of cross-validation (single, multi), severity and mediation, in that order."""
    return [cv_row(manifest, comparisons, "single"), cv_row(manifest, comparisons, "multi"),
            severity_row(manifest, reduced), mediation_row(manifest, run_dir)]
