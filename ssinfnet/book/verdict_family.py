"""Many claims at once: which of chapter 5's verdicts hold when all its comparisons are read together.

Each interval of the verdict page is a 95 % interval for its own claim. Chapter 5 makes about twenty
comparisons, so even if no method changed anything, about one interval in twenty would exclude zero by
chance. Here every estimable comparison gets a two-sided bootstrap p-value
(:func:`ssinfnet.evaluation.comparison.two_sided_p`) and Holm's step-down adjustment over all of them
(:func:`ssinfnet.stats.multiplicity.adjust_pvalues`), which bounds the chance of any false "helps" or
"hurts" in the whole family at 5 %. The per-claim verdicts stay as they are; this says which of them would
survive the stricter reading.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..evaluation.comparison import MIN_BOOT, two_sided_p
from ..stats.multiplicity import adjust_pvalues

__all__ = ["FAMILY_ALPHA", "family_table", "family_markdown", "resamples"]

#: The family-wise error rate Holm's adjustment is read at.
FAMILY_ALPHA = 0.05


def resamples(manifest: dict, comparisons: pd.DataFrame) -> int | None:
    """The bootstrap resamples behind ``comparisons``: the run's ``n_boot`` parameter (raised to the
    bootstrap's minimum, as chapter 5 does), else the count its rows' notes state; None when neither says."""
    n = (manifest.get("parameters") or {}).get("n_boot")
    if isinstance(n, (int, float)) and n >= 1:
        return max(int(n), MIN_BOOT)
    found = {int(m) for note in comparisons.get("note", pd.Series(dtype=str)).astype(str)
             for m in re.findall(r"(\d+) resamples", note)}
    return found.pop() if len(found) == 1 else None


def family_table(comparisons: pd.DataFrame, n_boot: int, alpha: float = FAMILY_ALPHA) -> pd.DataFrame:
    """One row per estimable comparison of ``comparisons`` (chapter 5's table; rows without a
    ``p_not_better`` are not tests and are left out): claim, class, metric, estimate, verdict, ``p`` (two-sided
    bootstrap), ``p_holm`` (Holm over those rows) and ``holds`` (True / False for a "helps" or "hurts" verdict:
    whether ``p_holm`` < ``alpha``; None for "no detectable difference"), most significant first."""
    t = comparisons[pd.to_numeric(comparisons["p_not_better"], errors="coerce").notna()].copy()
    if "metric" not in t.columns:
        t["metric"] = "dice"
    t["p"] = two_sided_p(t["p_not_better"].astype(float).to_numpy(), n_boot)
    t["p_holm"] = adjust_pvalues(t["p"].to_numpy(), method="holm")
    decided = t["verdict"].isin(["helps", "hurts"])
    t["holds"] = [bool(q < alpha) if d else None for q, d in zip(t["p_holm"], decided)]
    cols = ["claim", "class", "metric", "estimate", "verdict", "p", "p_holm", "holds"]
    return t.sort_values("p", kind="stable")[cols].reset_index(drop=True)


def family_markdown(manifest: dict, comparisons: pd.DataFrame | None) -> list[str]:
    """Lines of the page's section on reading the claims together (none without comparisons or a known
    resample count)."""
    if comparisons is None or not len(comparisons):
        return []
    n_boot = resamples(manifest, comparisons)
    if n_boot is None:
        return ["", "### Many claims at once", "", "The run does not say how many bootstrap resamples chapter 5 "
                "drew, so its comparisons are not adjusted for multiplicity here."]
    t = family_table(comparisons, n_boot)
    decided = t[t["holds"].notna()]
    kept, lost = decided[decided["holds"].astype(bool)], decided[~decided["holds"].astype(bool)]
    floor = 2 / (n_boot + 1)

    def names(rows):
        return "; ".join(f"{r['claim']} [{r['class']}]" for r in rows.to_dict("records")) or "none"

    lines = ["", "### Many claims at once", "",
             f"Each interval above is a 95% interval for its own claim. Read together, the {len(t)} estimable "
             f"comparisons of chapter 5 are adjusted by Holm's method (two-sided bootstrap p-values, the smallest "
             f"a run of {n_boot:,} resamples can give being {floor:.4f}), which keeps the chance of any false "
             f"\"helps\" or \"hurts\" among them at {FAMILY_ALPHA:.0%}. Of the {len(decided)} comparisons with a "
             f"detectable difference, {len(kept)} hold: {names(kept)}. "
             + (f"These {len(lost)} do not: {names(lost)}; their per-claim verdicts stand, but as single "
                "findings among many." if len(lost) else "None is lost."), "",
             "| claim | class | metric | B − A | verdict | p (two-sided) | p (Holm) | holds |", "|---|---|---|---|---|---|---|---|"]
    for r in t.to_dict("records"):
        holds = "—" if r["holds"] is None else ("yes" if r["holds"] else "no")
        lines.append(f"| {r['claim']} | {r['class']} | {r['metric']} | {r['estimate']:+.3f} | {r['verdict']} | "
                     f"{r['p']:.4f} | {r['p_holm']:.4f} | {holds} |")
    return lines
