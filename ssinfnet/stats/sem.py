"""Multiple-mediator structural equation model (SSInfNet's lavaan model, fitted with semopy).

The model has two exogenous variables (age, number of underlying diseases), mediators that depend on
both (*common*), on one only (*specific* to age or to disease), and the outcome, binary severity::

    m_common   ~ age + n_diseases
    m_age      ~ age
    m_disease  ~ n_diseases
    severity   ~ m_common + m_age + m_disease (+ age + n_diseases, the direct paths)

Estimation is semopy's maximum likelihood (objective ``MLW``) on observed variables: the binary outcome
is treated as continuous (a linear probability model), as lavaan does for a numeric outcome. semopy's
``DEFINE(ordinal)`` route (polychoric correlations) fails with numpy 2 (``np.ma.corrcoef(bias=...)``),
so no probit/WLSMV alternative is offered. For this recursive model without latent variables and with
uncorrelated residuals, the ML path coefficients equal per-equation least squares.

Indirect effects are products of paths (``a * b`` for x -> m -> severity) with percentile bootstrap
intervals from refitting the model on rows resampled with a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class SEMResult:
    """Output of :func:`fit_mediation_sem`.

    Attributes
    ----------
    description : str
        semopy model description, with the table's column names.
    estimates : DataFrame
        Regression paths: ``lval`` (dependent), ``rval`` (regressor), ``estimate``, ``std_estimate``
        (semopy's fully standardised), ``se``, ``z``, ``p``.
    fit_indices : Series
        ``semopy.calc_stats`` (chi2, DoF, CFI, TLI, RMSEA, AIC, BIC, ...).
    indirect : DataFrame
        One row per (x, mediator) path and one ``mediator="total"`` row per x: ``a``, ``b``, ``indirect``,
        ``ci_low``, ``ci_high``, ``p_boot`` (NaN when ``n_boot=0``).
    groups : dict
        ``{"exogenous": [...], "common": [...], "specific": {x: [...]}, "outcome": str}`` for plotting.
    n, n_dropped : int
        Rows used, and rows dropped for a missing value.
    n_boot_ok : int
        Bootstrap refits that converged.
    """

    description: str
    estimates: pd.DataFrame
    fit_indices: pd.Series
    indirect: pd.DataFrame
    groups: dict
    n: int
    n_dropped: int
    n_boot_ok: int = 0
    model: object = field(default=None, repr=False)


def build_description(
    common: Sequence[str],
    specific: Mapping[str, Sequence[str]],
    exogenous: Sequence[str] = ("age", "n_diseases"),
    outcome: str = "severity_binary",
    direct: bool = True,
) -> str:
    """semopy (lavaan-style) description of the multiple-mediator model.

    Parameters
    ----------
    common : sequence of str
        Mediators regressed on every exogenous variable.
    specific : mapping exogenous name -> sequence of str
        Mediators regressed on that exogenous variable only.
    exogenous : sequence of str, default=("age", "n_diseases")
    outcome : str, default="severity_binary"
    direct : bool, default=True
        Include the direct paths exogenous -> outcome.

    Returns
    -------
    str, one regression per line.
    """
    exogenous = list(exogenous)
    common = list(common)
    bad = [k for k in specific if k not in exogenous]
    if bad:
        raise ValueError(f"specific: keys {bad} are not exogenous variables {exogenous}")
    mediators = common + [m for k in exogenous for m in specific.get(k, ())]
    if not mediators:
        raise ValueError("common/specific: the model needs at least one mediator")
    if len(set(mediators)) != len(mediators):
        raise ValueError("common/specific: a mediator is listed twice")
    names = [*exogenous, *mediators, outcome]
    if len(set(names)) != len(names):
        raise ValueError("exogenous, mediators and outcome must be different columns")
    lines = [f"{m} ~ {' + '.join(exogenous)}" for m in common]
    lines += [f"{m} ~ {k}" for k in exogenous for m in specific.get(k, ())]
    lines.append(f"{outcome} ~ {' + '.join(mediators + (exogenous if direct else []))}")
    return "\n".join(lines)


def _aliases(names: Sequence[str]) -> dict[str, str]:
    # semopy's parser needs identifier-like names; radiomic names like "overall_glcm_Idmn" already are
    return {n: (n if _IDENT.match(n) else f"v{i}_") for i, n in enumerate(names)}


def fit_model(description: str, data: pd.DataFrame):
    """Fit a semopy model (ML, objective MLW).

    Parameters
    ----------
    description : str
        semopy/lavaan syntax.
    data : DataFrame of the observed variables

    Returns
    -------
    model : semopy.Model
    estimates : DataFrame from ``model.inspect(std_est=True)``
    fit_indices : Series from ``semopy.calc_stats``
    """
    import semopy

    model = semopy.Model(description)
    model.fit(data)
    est = model.inspect(std_est=True)
    stats_ = semopy.calc_stats(model).T.iloc[:, 0]
    return model, est, stats_


def _paths(est: pd.DataFrame) -> dict[tuple[str, str], float]:
    reg = est[est["op"] == "~"]
    return {(r.lval, r.rval): float(r.Estimate) for r in reg.itertuples()}


def _indirect_rows(paths: Mapping[tuple[str, str], float], exogenous, mediators_of, outcome) -> list[dict]:
    rows = []
    for x in exogenous:
        total = 0.0
        for m in mediators_of[x]:
            a, b = paths[(m, x)], paths[(outcome, m)]
            rows.append({"x": x, "mediator": m, "a": a, "b": b, "indirect": a * b})
            total += a * b
        rows.append({"x": x, "mediator": "total", "a": np.nan, "b": np.nan, "indirect": total})
    return rows


def fit_mediation_sem(
    df: pd.DataFrame,
    common: Sequence[str],
    specific: Mapping[str, Sequence[str]],
    exogenous: Sequence[str] = ("age", "n_diseases"),
    outcome: str = "severity_binary",
    direct: bool = True,
    standardize: bool = True,
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
) -> SEMResult:
    """Fit the multiple-mediator SEM and bootstrap its indirect effects.

    Parameters
    ----------
    df : DataFrame with numeric columns for every variable (one row per patient)
    common, specific, exogenous, outcome, direct
        Model structure, see :func:`build_description`.
    standardize : bool, default=True
        z-score every variable first (population SD), so paths and indirect effects are in SD units and
        radiomic features of very different scales do not upset the optimiser.
    n_boot : int, default=0
        Bootstrap refits for the indirect effects' percentile intervals (each refit takes ~20-50 ms).
    seed : int, default=0
    alpha : float in (0, 1), default=0.05

    Returns
    -------
    SEMResult
    """
    from .regression import bootstrap_pvalue

    exogenous = list(exogenous)
    description = build_description(common, specific, exogenous, outcome, direct)
    mediators_of = {x: list(common) + list(specific.get(x, ())) for x in exogenous}
    names = [*exogenous, *common, *[m for k in exogenous for m in specific.get(k, ())], outcome]
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ValueError(f"df: column(s) {missing} not in the table")
    for c in names:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise ValueError(f"df: column {c!r} must be numeric, got {df[c].dtype}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if int(n_boot) < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    data = df[names].astype(float)
    keep = data.notna().all(axis=1)
    data = data[keep].reset_index(drop=True)
    if len(data) <= len(names):
        raise ValueError(f"df: only {len(data)} complete rows for {len(names)} variables")
    const = [c for c in names if data[c].std() == 0]
    if const:
        raise ValueError(f"df: column(s) {const} are constant")
    if standardize:
        data = (data - data.mean()) / data.std(ddof=0)
    alias = _aliases(names)
    back = {v: k for k, v in alias.items()}
    desc_alias = build_description(
        [alias[m] for m in common], {alias[k]: [alias[m] for m in v] for k, v in specific.items()},
        [alias[x] for x in exogenous], alias[outcome], direct)
    model, est, fit_indices = fit_model(desc_alias, data.rename(columns=alias))
    est = est.replace({"lval": back, "rval": back})
    reg = est[est["op"] == "~"].rename(columns={
        "Estimate": "estimate", "Est. Std": "std_estimate", "Std. Err": "se", "z-value": "z", "p-value": "p"})
    reg = reg[["lval", "rval", "estimate", "std_estimate", "se", "z", "p"]].copy()
    for c in ("estimate", "std_estimate", "se", "z", "p"):
        reg[c] = pd.to_numeric(reg[c], errors="coerce")
    indirect = pd.DataFrame(_indirect_rows(_paths(est), exogenous, mediators_of, outcome))
    indirect[["ci_low", "ci_high", "p_boot"]] = np.nan
    n_ok = 0
    if n_boot:
        import semopy

        rng = np.random.default_rng(seed)
        aliased = data.rename(columns=alias)
        draws = []
        for _ in range(int(n_boot)):
            sample = aliased.iloc[rng.integers(0, len(aliased), len(aliased))].reset_index(drop=True)
            try:
                m = semopy.Model(desc_alias)
                m.fit(sample)
                e = m.inspect().replace({"lval": back, "rval": back})
                draws.append([r["indirect"] for r in _indirect_rows(_paths(e), exogenous, mediators_of, outcome)])
            except (np.linalg.LinAlgError, ValueError):  # a degenerate resample: count it, do not crash
                draws.append([np.nan] * len(indirect))
        draws = np.asarray(draws, float)
        ok = np.all(np.isfinite(draws), axis=1)
        n_ok = int(ok.sum())
        if n_ok:
            indirect["ci_low"] = np.quantile(draws[ok], alpha / 2, axis=0)
            indirect["ci_high"] = np.quantile(draws[ok], 1 - alpha / 2, axis=0)
            indirect["p_boot"] = [bootstrap_pvalue(draws[ok, j]) for j in range(draws.shape[1])]
    groups = {"exogenous": exogenous, "common": list(common),
              "specific": {k: list(v) for k, v in specific.items()}, "outcome": outcome}
    return SEMResult(description, reg.reset_index(drop=True), fit_indices, indirect, groups,
                     int(keep.sum()), int((~keep).sum()), n_ok, model)


def mediator_groups(
    results: pd.DataFrame, exposures: Sequence[str] = ("age", "n_diseases"), kept: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """Sort significant mediators into the SEM's groups: common to all exposures, or specific to one.

    Parameters
    ----------
    results : DataFrame with columns ``x``, ``mediator``, ``significant`` (univariate mediation results
        of several exposures stacked, e.g. ``pd.concat`` of :func:`ssinfnet.stats.mediation.univariate_mediation`)
    exposures : the SEM's exogenous variables, default ("age", "n_diseases")
    kept : mediators surviving the correlation filter (default: all); others are left out

    Returns
    -------
    common : list of str, significant for every exposure (in first-seen order)
    specific : dict exposure -> list of str, significant for that exposure only
    """
    missing = [c for c in ("x", "mediator", "significant") if c not in results.columns]
    if missing:
        raise ValueError(f"results: missing column(s) {missing}")
    exposures = list(exposures)
    absent = [x for x in exposures if x not in set(results["x"])]
    if absent:
        raise ValueError(f"exposures: {absent} have no results")
    sig = results[results["significant"].astype(bool) & results["x"].isin(exposures)]
    if kept is not None:
        sig = sig[sig["mediator"].isin(list(kept))]
    order = list(dict.fromkeys(sig["mediator"]))
    of = {m: set(sig.loc[sig["mediator"] == m, "x"]) for m in order}
    common = [m for m in order if of[m] == set(exposures)]
    specific = {x: [m for m in order if of[m] == {x}] for x in exposures}
    return common, specific

