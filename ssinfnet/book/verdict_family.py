"""Many claims at once: which of chapter 5's verdicts hold when all its comparisons are read together.

Each interval of the verdict page is a 95 % interval for its own claim. Chapter 5 makes about twenty
comparisons, so even if no method changed anything, about one interval in twenty would exclude zero by
chance. The family here is every estimable row of chapter 5's ``comparisons`` table: the paper's claims,
the ablations, the oracle upper bounds, our own comparisons and, where a pair is compared on both, its
Dice and its AUC row (the cross-validation, severity and mediation claims are not in it). Every row gets a
two-sided bootstrap p-value (:func:`ssinfnet.evaluation.comparison.two_sided_p`) and Holm's step-down
adjustment over all of them (:func:`ssinfnet.stats.multiplicity.adjust_pvalues`), which holds under any
dependence between the rows and bounds the chance of any false "helps" or "hurts" in the family at about
5 % (about: percentile-bootstrap p-values are approximate). The per-claim verdicts stay as they are; this
says which of them survive the stricter reading. A run with too few resamples to reach Holm's threshold at
all says so instead of calling every verdict lost.
"""
from __future__ import annotations

import re

import pandas as pd

from ..evaluation.comparison import MIN_BOOT, two_sided_p, with_optional_columns
from ..stats.multiplicity import adjust_pvalues

__all__ = ["FAMILY_ALPHA", "family_table", "family_markdown", "resamples", "resolvable"]

#: The family-wise error rate Holm's adjustment is read at.
FAMILY_ALPHA = 0.05


def resamples(manifest: dict, comparisons: pd.DataFrame) -> int | None:
    """The bootstrap resamples behind ``comparisons``: the one count its rows' notes state (chapter 5 writes
    it there), else the run's ``n_boot`` parameter raised to the bootstrap's minimum, as chapter 5 raises it
    (the manifest's parameters are those of the last chapter run); None when neither says."""
    found = {int(m) for note in comparisons.get("note", pd.Series(dtype=str)).astype(str)
             for m in re.findall(r"(\d+) resamples", note)}
    if len(found) == 1:
        return found.pop()
    n = (manifest.get("parameters") or {}).get("n_boot")
    return max(int(n), MIN_BOOT) if isinstance(n, (int, float)) and n >= 1 else None


def resolvable(n_tests: int, n_boot: int, alpha: float = FAMILY_ALPHA) -> bool:
    """Whether Holm over ``n_tests`` p-values from ``n_boot`` resamples can fall below ``alpha`` at all: the
    smallest two-sided bootstrap p is 2 / (n_boot + 1), Holm multiplies the smallest by ``n_tests``."""
    return n_tests * 2 / (n_boot + 1) < alpha


def family_table(comparisons: pd.DataFrame, n_boot: int, alpha: float = FAMILY_ALPHA) -> pd.DataFrame:
    """One row per estimable comparison of ``comparisons`` (chapter 5's table; rows without a
    ``p_not_better`` are not tests and are left out): claim, class, metric, model_a, model_b, estimate,
    verdict, ``p`` (two-sided bootstrap), ``p_holm`` (Holm over those rows) and ``holds``: for a "helps" or
    "hurts" verdict whether ``p_holm`` < ``alpha`` (None when the family is not :func:`resolvable` with
    ``n_boot`` resamples); None for "no detectable difference". Most significant first."""
    t = with_optional_columns(comparisons[pd.to_numeric(comparisons["p_not_better"], errors="coerce").notna()])
    t["p"] = two_sided_p(t["p_not_better"].astype(float).to_numpy(), n_boot)
    t["p_holm"] = adjust_pvalues(t["p"].to_numpy(), method="holm")
    decided = t["verdict"].isin(["helps", "hurts"]) & resolvable(len(t), n_boot, alpha)
    t["holds"] = [bool(q < alpha) if d else None for q, d in zip(t["p_holm"], decided)]
    cols = ["claim", "class", "metric", "model_a", "model_b", "estimate", "verdict", "p", "p_holm", "holds"]
    return t.sort_values("p", kind="stable")[cols].reset_index(drop=True)


def _named(rows: pd.DataFrame) -> str:
    return "; ".join(f"{r['model_b']} vs {r['model_a']} [{r['class']}, {r['metric']}]: {r['verdict']}"
                     for r in rows.to_dict("records")) or "none"


def family_markdown(manifest: dict, comparisons: pd.DataFrame | None) -> list[str]:
    """Lines of the page's section on reading the claims together (none without comparisons; one sentence
    when the resample count is unknown or nothing is estimable)."""
    if comparisons is None or not len(comparisons):
        return []
    head = ["", "### Many claims at once", ""]
    n_boot = resamples(manifest, comparisons)
    if n_boot is None:
        return head + ["The run does not say how many bootstrap resamples chapter 5 drew, so its comparisons "
                       "are not adjusted for multiplicity here."]
    t = family_table(comparisons, n_boot)
    if t.empty:
        return head + ["Chapter 5 could estimate none of its comparisons: there is nothing to adjust."]
    decided = t[t["verdict"].isin(["helps", "hurts"])]
    text = (f"Each interval above is a 95% interval for its own claim. The family read together here is every "
            f"one of the {len(t)} estimable rows of chapter 5's comparisons table (the paper's claims, the "
            "ablations, the oracle upper bounds and ours; a pair compared on Dice and on AUC counts twice). "
            "Holm's method over their two-sided bootstrap p-values keeps the chance of any false \"helps\" or "
            f"\"hurts\" among them at about {FAMILY_ALPHA:.0%} (bootstrap p-values are approximate; the "
            f"smallest {n_boot:,} resamples can give is {2 / (n_boot + 1):.4f}). ")
    if not resolvable(len(t), n_boot):
        text += (f"With {n_boot:,} resamples and {len(t)} comparisons no adjusted p-value can fall below "
                 f"{FAMILY_ALPHA:.0%}: this run cannot tell which of its {len(decided)} detectable differences "
                 "hold family-wise (more resamples would; `n_boot`).")
    else:
        kept, lost = decided[decided["holds"].eq(True)], decided[decided["holds"].eq(False)]
        text += (f"Of the {len(decided)} comparisons with a detectable difference, {len(kept)} hold: "
                 f"{_named(kept)}. " + (f"These {len(lost)} do not: {_named(lost)}; their per-claim verdicts "
                                        "stand, but as single findings among many." if len(lost) else
                                        "None is lost."))
    lines = head + [text, "", "| B vs A | class | metric | B − A | verdict | p (two-sided) | p (Holm) | holds |",
                    "|---|---|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        holds = "—" if r["holds"] is None else ("yes" if r["holds"] else "no")
        if r["holds"] is None and r["verdict"] in ("helps", "hurts"):
            holds = "cannot tell"
        lines.append(f"| {r['model_b']} vs {r['model_a']} | {r['class']} | {r['metric']} | {r['estimate']:+.3f} | "
                     f"{r['verdict']} | {r['p']:.4f} | {r['p_holm']:.4f} | {holds} |")
    return lines
