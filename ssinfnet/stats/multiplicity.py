"""Multiple testing over a whole family of tests, and the error rates a simulation checks.

SSInfNet tests every radiomic feature (204 per patient: 68 in each of three regions) as a mediator of
every exposure (age, gender, number of underlying diseases): one family of 204 × 3 = 612 hypotheses.
Adjusting within one exposure at a time (as an earlier version of this package did) controls the error
rate of three separate families, not of the claims the paper makes together. :func:`adjust_family`
adjusts once over all rows of a stacked results table (optionally within groups, when asked).

The adjustments are statsmodels' :func:`statsmodels.stats.multitest.multipletests`; this module only
handles NaN (a failed fit is not a test: it stays NaN and does not enlarge the family) and names.

:func:`error_rates` turns significance calls and the planted truth of a simulated cohort into the false
discovery proportion, the family-wise error (any false call) and the power of one replicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

#: our names -> statsmodels' ``multipletests`` methods
METHODS = {"bh": "fdr_bh", "by": "fdr_by", "holm": "holm", "bonferroni": "bonferroni", "none": None}


def adjust_pvalues(p: Sequence[float], method: str = "bh") -> np.ndarray:
    """Adjust p-values for multiple testing; NaN entries stay NaN and do not count as tests.

    Parameters
    ----------
    p : array-like of float in [0, 1] (or NaN), any shape (flattened for the adjustment)
    method : {"bh", "by", "holm", "bonferroni", "none"}, default="bh"
        ``"bh"``: Benjamini-Hochberg step-up (false discovery rate under independence or positive
        dependence); ``"by"``: Benjamini-Yekutieli (any dependence); ``"holm"``/``"bonferroni"``:
        family-wise error rate.

    Returns
    -------
    ndarray of the same shape as ``p``.
    """
    if method not in METHODS:
        raise ValueError(f"adjust must be one of {tuple(METHODS)}, got {method!r}")
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    q = p[ok]
    if np.any((q < 0) | (q > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    if q.size == 0 or method == "none":
        out[ok] = q
        return out
    out[ok] = multipletests(q, method=METHODS[method])[1]
    return out


def adjust_family(
    results: pd.DataFrame,
    columns: str | Sequence[str],
    method: str = "bh",
    within: str | Sequence[str] | None = None,
    suffix: str = "_adj",
) -> pd.DataFrame:
    """Adjust p-value columns over the whole family of rows of a results table.

    Parameters
    ----------
    results : DataFrame, one row per test (e.g. (exposure, mediator) pairs stacked)
    columns : str or sequence of str
        p-value columns; each is adjusted on its own, over all rows, into ``<column><suffix>``.
    method : {"bh", "by", "holm", "bonferroni", "none"}, default="bh"
    within : column name(s), optional
        Adjust separately within each group of these columns instead (e.g. ``"x"`` reproduces a
        per-exposure adjustment). Default None: one family of all rows.
    suffix : str, default="_adj"

    Returns
    -------
    pandas.DataFrame, a copy with the adjusted columns added (or replaced); ``attrs["family"]`` records
    the family size (non-NaN p-values of the first column) and the grouping.
    """
    columns = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in columns if c not in results.columns]
    if missing or not columns:
        raise ValueError(f"columns: {missing or columns} not in the results table")
    groups = [within] if isinstance(within, str) else list(within or [])
    absent = [g for g in groups if g not in results.columns]
    if absent:
        raise ValueError(f"within: column(s) {absent} not in the results table")
    out = results.copy()
    for col in columns:
        adj = np.full(len(out), np.nan)
        if groups:
            for _, idx in out.groupby(groups, sort=False).indices.items():
                adj[idx] = adjust_pvalues(out[col].to_numpy()[idx], method)
        else:
            adj = adjust_pvalues(out[col].to_numpy(), method)
        out[f"{col}{suffix}"] = adj
    out.attrs.update(results.attrs)
    out.attrs["family"] = {"size": int(np.isfinite(out[columns[0]].to_numpy(float)).sum()), "method": method,
                           "within": groups or None}
    return out


def error_rates(significant: Sequence[bool], null: Sequence[bool]) -> dict:
    """Error rates of one set of calls against the truth (one simulated replicate).

    Parameters
    ----------
    significant : bool array, the calls (one per hypothesis)
    null : bool array, True where the hypothesis is truly null (no planted effect)

    Returns
    -------
    dict with ``n_tests``, ``n_null``, ``n_called``, ``false`` (false discoveries), ``fdp`` (false
    discovery proportion, 0 when nothing is called, so its mean over replicates is the FDR),
    ``any_false`` (family-wise error, bool) and ``power`` (share of non-null hypotheses called; NaN
    when every hypothesis is null).
    """
    sig = np.asarray(significant, dtype=bool)
    nul = np.asarray(null, dtype=bool)
    if sig.shape != nul.shape or sig.ndim != 1:
        raise ValueError(f"significant and null must be 1-D of equal length, got {sig.shape} and {nul.shape}")
    called = int(sig.sum())
    false = int((sig & nul).sum())
    n_alt = int((~nul).sum())
    return {"n_tests": int(sig.size), "n_null": int(nul.sum()), "n_called": called, "false": false,
            "fdp": false / called if called else 0.0, "any_false": false > 0,
            "power": float((sig & ~nul).sum() / n_alt) if n_alt else np.nan}
