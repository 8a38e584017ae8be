"""Multiple-mediator structural equation model (SSInfNet's lavaan model), fitted as lavaan would.

The model has two exogenous variables (age, number of underlying diseases), mediators that depend on
both (*common*), on one only (*specific* to age or to disease), and the binary severity::

    m_common   ~ age + n_diseases
    m_age      ~ age
    m_disease  ~ n_diseases
    severity   ~ m_common + m_age + m_disease (+ age + n_diseases, the direct paths)
    m_common ~~ m_age + m_disease;  m_age ~~ m_disease     (mediator residual covariances, free)

Mediator residual covariances are free (``mediator_covariances=True``): radiomic mediators share
unmodelled causes, and fixing their covariances at zero adds false restrictions that the fit indices
then blame on the paths (in lavaan syntax, ``m1 ~~ m2`` lines). The binary outcome is handled
explicitly (``outcome_model``):

* ``"probit"`` (the default for a 0/1 outcome): a threshold model, ``severity = 1[severity* > 0]`` with
  ``severity* = b'm + c'x + e``, ``e ~ N(0, 1)`` - lavaan's ``ordered=`` outcome in the theta
  parameterisation. A recursive model without latent variables factorises into the mediator block (fitted
  by semopy, maximum likelihood) and the outcome equation (a probit regression, statsmodels), the
  outcome's error being independent of the mediators'. Outcome paths and indirect effects ``a * b`` are
  on the latent probit scale (per SD of ``severity*``'s residual). semopy's own ordinal route
  (polychoric correlations) fails with numpy 2 (``np.ma.corrcoef(bias=...)``).
* ``"linear"``: the 0/1 outcome treated as continuous by semopy (a linear probability model). The
  consequences: outcome paths are differences in probability, fitted probabilities can leave [0, 1],
  the residual variance depends on the fitted probability, so the ML standard errors and the chi-square
  (which assume normality) are off; only the bootstrap intervals are trustworthy. A continuous outcome
  column always uses this.

Fit indices follow lavaan's definitions with ``fixed.x = TRUE`` (:func:`lavaan_fit_indices`): semopy
counts the exogenous variables' (co)variances as moments but not as parameters, which overstates the
degrees of freedom by ``k (k + 1) / 2`` (3 for two exogenous variables) and with them the p-value,
CFI, TLI and RMSEA. With the probit outcome and the direct paths in, the outcome equation is saturated,
so the mediator block's indices are the whole model's.

Indirect effects are products of paths with percentile bootstrap intervals (rows resampled with a
seeded ``numpy.random.Generator``, the whole model refitted). The refits compute the same maximum-
likelihood estimates in closed form (:func:`ssinfnet.stats.regression.sur` for the mediator block,
probit or least squares for the outcome): semopy's optimiser needs about a second per refit of a
five-mediator model, and its estimates equal these to its tolerance (``tests/stats/test_sem.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .regression import bootstrap_pvalue, fit_binary, sur

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OUTCOME_MODELS = ("auto", "probit", "linear")
_EST_COLUMNS = ["lval", "rval", "estimate", "std_estimate", "se", "z", "p"]


@dataclass
class SEMResult:
    """Output of :func:`fit_mediation_sem`.

    Attributes
    ----------
    description : str
        lavaan-style model description, with the table's column names.
    estimates : DataFrame
        Regression paths: ``lval`` (dependent), ``rval`` (regressor), ``estimate``, ``std_estimate``
        (fully standardised; for the probit outcome with ``Var(severity*) = Var(b'm + c'x) + 1``), ``se``,
        ``z``, ``p``.
    fit_indices : Series
        lavaan-style ``chi2``, ``DoF``, ``chi2 p-value``, ``CFI``, ``TLI``, ``RMSEA``, ``AIC``, ``BIC``,
        ``n``, semopy's ``DoF (semopy)``, and ``scope`` (which equations they test).
    indirect : DataFrame
        One row per (x, mediator) path and one ``mediator="total"`` row per x: ``a``, ``b``, ``indirect``,
        ``ci_low``, ``ci_high``, ``p_boot`` (NaN when ``n_boot=0``).
    groups : dict
        ``{"exogenous": [...], "common": [...], "specific": {x: [...]}, "outcome": str}`` for plotting.
    n, n_dropped : int
        Rows used, and rows dropped for a missing value.
    n_boot_ok : int
        Bootstrap refits that converged.
    covariances : DataFrame
        Mediator residual covariances: ``lval``, ``rval``, ``estimate``, ``se``, ``z``, ``p``, ``r``
        (as a correlation).
    outcome_model : str
        ``"probit"`` or ``"linear"``.
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
    covariances: pd.DataFrame | None = None
    outcome_model: str = "linear"


def build_description(
    common: Sequence[str],
    specific: Mapping[str, Sequence[str]],
    exogenous: Sequence[str] = ("age", "n_diseases"),
    outcome: str | None = "severity_binary",
    direct: bool = True,
    mediator_covariances: bool = True,
) -> str:
    """semopy (lavaan-style) description of the multiple-mediator model.

    Parameters
    ----------
    common : sequence of str, mediators regressed on every exogenous variable
    specific : mapping exogenous name -> sequence of str, mediators regressed on that variable only
    exogenous : sequence of str, default=("age", "n_diseases")
    outcome : str or None, default="severity_binary"; None leaves the outcome equation out (the mediator
        block alone)
    direct : bool, default=True, include the direct paths exogenous -> outcome
    mediator_covariances : bool, default=True, free the mediators' residual covariances (``~~`` lines)

    Returns
    -------
    str, one regression or covariance per line.
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
    names = [*exogenous, *mediators, *([outcome] if outcome else [])]
    if len(set(names)) != len(names):
        raise ValueError("exogenous, mediators and outcome must be different columns")
    lines = [f"{m} ~ {' + '.join(exogenous)}" for m in common]
    lines += [f"{m} ~ {k}" for k in exogenous for m in specific.get(k, ())]
    if outcome:
        lines.append(f"{outcome} ~ {' + '.join(mediators + (exogenous if direct else []))}")
    if mediator_covariances:
        lines += [f"{a} ~~ {b}" for i, a in enumerate(mediators) for b in mediators[i + 1:]]
    return "\n".join(lines)


def _aliases(names: Sequence[str]) -> dict[str, str]:
    # semopy's parser needs identifier-like names; radiomic names like "overall_glcm_Idmn" already are
    return {n: (n if _IDENT.match(n) else f"v{i}_") for i, n in enumerate(names)}


def fit_model(description: str, data: pd.DataFrame):
    """Fit a semopy model (ML, objective MLW) and return ``(model, model.inspect(std_est=True),
    semopy.calc_stats(model) as a Series)`` - semopy's own numbers (see :func:`lavaan_fit_indices`)."""
    import semopy

    model = semopy.Model(description)
    model.fit(data)
    est = model.inspect(std_est=True)
    stats_ = semopy.calc_stats(model).T.iloc[:, 0]
    return model, est, stats_


def lavaan_fit_indices(model, data: pd.DataFrame, exogenous: Sequence[str]) -> pd.Series:
    """Fit indices of a fitted semopy model as lavaan defines them (ML, ``fixed.x = TRUE``, N not N - 1).

    ``chi2 = N F`` with ``F = log|Sigma| - log|S| + tr(S Sigma^-1) - p`` (``S`` with divisor N);
    ``DoF = p (p + 1) / 2 - k (k + 1) / 2 - free parameters`` (k exogenous variables); the baseline
    model keeps the exogenous block and makes everything else uncorrelated; ``CFI``, ``TLI`` and
    ``RMSEA = sqrt(max(chi2 - DoF, 0) / (DoF N))`` from those; ``AIC``/``BIC`` from the normal
    log-likelihood. A saturated model (DoF 0) gets chi2 p-value NaN, CFI = TLI = 1, RMSEA = 0.
    """
    names = list(model.vars["observed"])
    exo = [x for x in exogenous if x in names]
    S = data[names].cov(ddof=0).to_numpy()
    sigma = model.calc_sigma()[0]
    n, p, k = len(data), len(names), len(exo)
    npar = len(model.param_vals)
    _, logdet_s = np.linalg.slogdet(S)
    _, logdet_sigma = np.linalg.slogdet(sigma)
    F = logdet_sigma - logdet_s + np.trace(S @ np.linalg.inv(sigma)) - p
    chi2 = max(n * F, 0.0)
    dof = p * (p + 1) // 2 - k * (k + 1) // 2 - npar
    ix = [names.index(x) for x in exo]
    endo = [i for i in range(p) if i not in ix]
    _, logdet_xx = np.linalg.slogdet(S[np.ix_(ix, ix)]) if k else (1.0, 0.0)
    chi2_b = n * (logdet_xx + np.sum(np.log(np.diag(S)[endo])) - logdet_s)
    dof_b = p * (p + 1) // 2 - k * (k + 1) // 2 - len(endo)
    if dof > 0:
        pval = float(stats.chi2.sf(chi2, dof))
        denom = max(chi2_b - dof_b, chi2 - dof, 0.0)
        cfi = 1.0 - max(chi2 - dof, 0.0) / denom if denom > 0 else 1.0
        tli = ((chi2_b / dof_b) - (chi2 / dof)) / ((chi2_b / dof_b) - 1.0)
        rmsea = float(np.sqrt(max(chi2 - dof, 0.0) / (dof * n)))
    else:
        pval, cfi, tli, rmsea = np.nan, 1.0, 1.0, 0.0
    loglik = -0.5 * n * (p * np.log(2 * np.pi) + logdet_sigma + np.trace(S @ np.linalg.inv(sigma)))
    return pd.Series({"chi2": chi2, "DoF": dof, "chi2 p-value": pval, "CFI": cfi, "TLI": tli, "RMSEA": rmsea,
                      "AIC": -2 * loglik + 2 * npar, "BIC": -2 * loglik + np.log(n) * npar,
                      "chi2 baseline": chi2_b, "DoF baseline": dof_b, "n": n,
                      "DoF (semopy)": p * (p + 1) // 2 - npar}, dtype=object)


def _semopy_tables(model, back):
    est = model.inspect(std_est=True).replace({"lval": back, "rval": back})
    est = est.rename(columns={"Estimate": "estimate", "Est. Std": "std_estimate", "Std. Err": "se",
                              "z-value": "z", "p-value": "p"})
    for c in ("estimate", "std_estimate", "se", "z", "p"):
        est[c] = pd.to_numeric(est[c], errors="coerce")
    reg = est[est["op"] == "~"][_EST_COLUMNS].reset_index(drop=True)
    cov = est[(est["op"] == "~~") & (est["lval"] != est["rval"])][["lval", "rval", "estimate", "se", "z", "p"]]
    var = {r.lval: r.estimate for r in est[(est["op"] == "~~") & (est["lval"] == est["rval"])].itertuples()}
    cov = cov.assign(r=[r.estimate / np.sqrt(var[r.lval] * var[r.rval]) for r in cov.itertuples()])
    return reg, cov.reset_index(drop=True)


def _probit_rows(data, outcome, regressors):
    X = np.column_stack([np.ones(len(data)), data[regressors].to_numpy()])
    fit = fit_binary(X, data[outcome].to_numpy(), "probit")
    b = np.asarray(fit.params)[1:]
    sd_star = np.sqrt(np.var(X[:, 1:] @ b) + 1.0)  # latent severity*: explained variance + residual 1
    std = b * data[regressors].std(ddof=0).to_numpy() / sd_star
    return pd.DataFrame({"lval": outcome, "rval": regressors, "estimate": b, "std_estimate": std,
                         "se": np.asarray(fit.bse)[1:], "z": np.asarray(fit.tvalues)[1:],
                         "p": np.asarray(fit.pvalues)[1:]})


def _fit(data, alias, spec, outcome_model):
    """One fit on aliased, prepared data: (estimates, covariances, fit indices, semopy model)."""
    import semopy

    common, specific, exogenous, outcome, direct, covs = spec
    a = {k: alias[k] for k in alias}
    back = {v: k for k, v in a.items()}
    block = build_description([a[m] for m in common], {a[k]: [a[m] for m in v] for k, v in specific.items()},
                              [a[x] for x in exogenous], a[outcome] if outcome_model == "linear" else None,
                              direct, covs)
    aliased = data.rename(columns=a)
    model = semopy.Model(block)
    model.fit(aliased)
    reg, cov = _semopy_tables(model, back)
    if outcome_model == "probit":
        mediators = list(common) + [m for x in exogenous for m in specific.get(x, ())]
        reg = pd.concat([reg, _probit_rows(data, outcome, mediators + (list(exogenous) if direct else []))],
                        ignore_index=True)
    fit = lavaan_fit_indices(model, aliased, [a[x] for x in exogenous])
    return reg, cov, fit, model


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


def _closed_form_paths(data, spec, outcome_model) -> dict[tuple[str, str], float]:
    """The same maximum-likelihood paths without semopy: SUR (or per-equation OLS when the mediator
    covariances are fixed at zero) for the mediator block, probit or OLS for the outcome equation."""
    common, specific, exogenous, outcome, direct, covs = spec
    mediators = list(common) + [m for x in exogenous for m in specific.get(x, ())]
    regs = {**{m: list(exogenous) for m in common}, **{m: [x] for x in exogenous for m in specific.get(x, ())}}
    n = len(data)
    designs = [np.column_stack([np.ones(n), data[regs[m]].to_numpy()]) for m in mediators]
    Y = data[mediators].to_numpy()
    beta = sur(Y, designs)[0] if covs else [np.linalg.lstsq(X, Y[:, j], rcond=None)[0] for j, X in enumerate(designs)]
    paths = {(m, r): float(v) for m, b in zip(mediators, beta) for r, v in zip(regs[m], b[1:])}
    out_regs = mediators + (list(exogenous) if direct else [])
    X = np.column_stack([np.ones(n), data[out_regs].to_numpy()])
    y = data[outcome].to_numpy()
    b = (np.asarray(fit_binary(X, y, "probit").params) if outcome_model == "probit"
         else np.linalg.lstsq(X, y, rcond=None)[0])
    paths.update({(outcome, r): float(v) for r, v in zip(out_regs, b[1:])})
    return paths


def _boot(resamples, data, spec, outcome_model, exogenous, mediators_of, outcome) -> list[list[float]]:
    """Indirect effects refitted on each resample (row indices); NaN rows for a degenerate resample."""
    out = []
    for idx in resamples:
        sample = data.iloc[idx].reset_index(drop=True)
        try:
            p = _closed_form_paths(sample, spec, outcome_model)
            out.append([d["indirect"] for d in _indirect_rows(p, exogenous, mediators_of, outcome)])
        except (np.linalg.LinAlgError, ValueError):  # count it, do not crash
            out.append([np.nan] * sum(len(v) + 1 for v in mediators_of.values()))
    return out


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
    outcome_model: str = "auto",
    mediator_covariances: bool = True,
    n_jobs: int = 1,
) -> SEMResult:
    """Fit the multiple-mediator SEM and bootstrap its indirect effects.

    Parameters
    ----------
    df : DataFrame with numeric columns for every variable (one row per patient)
    common, specific, exogenous, outcome, direct, mediator_covariances
        Model structure, see :func:`build_description`.
    standardize : bool, default=True
        z-score the exogenous variables and mediators (population SD), and a continuous outcome, so
        paths are in SD units; a probit outcome stays 0/1 (its latent scale is fixed by the model).
    n_boot : int, default=0
        Bootstrap refits for the indirect effects' percentile intervals (~15-50 ms each).
    seed : int, default=0
    alpha : float in (0, 1), default=0.05
    outcome_model : {"auto", "probit", "linear"}, default="auto"
        ``"auto"``: probit for a 0/1 outcome, linear otherwise (module docstring).
    n_jobs : int, default=1
        joblib workers for the bootstrap refits (results do not depend on it).

    Returns
    -------
    SEMResult
    """
    exogenous = list(exogenous)
    if outcome_model not in OUTCOME_MODELS:
        raise ValueError(f"outcome_model must be one of {OUTCOME_MODELS}, got {outcome_model!r}")
    description = build_description(common, specific, exogenous, outcome, direct, mediator_covariances)
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
    binary = set(data[outcome].unique()) <= {0.0, 1.0}
    if outcome_model == "auto":
        outcome_model = "probit" if binary else "linear"
    if outcome_model == "probit" and not binary:
        raise ValueError(f"outcome_model='probit' needs a 0/1 outcome, {outcome!r} is not")
    scaled = names[:-1] if outcome_model == "probit" else names
    if standardize:
        data[scaled] = (data[scaled] - data[scaled].mean()) / data[scaled].std(ddof=0)
    alias = _aliases(names)
    spec = (list(common), {k: list(v) for k, v in specific.items()}, exogenous, outcome, direct,
            mediator_covariances)
    reg, cov, fit_indices, model = _fit(data, alias, spec, outcome_model)
    fit_indices["scope"] = ("mediator equations (the probit outcome equation is saturated)"
                            if outcome_model == "probit" and direct else
                            "mediator equations only (the probit outcome equation is not tested)"
                            if outcome_model == "probit" else "all equations (linear probability outcome)")
    paths = {(r.lval, r.rval): r.estimate for r in reg.itertuples()}
    indirect = pd.DataFrame(_indirect_rows(paths, exogenous, mediators_of, outcome))
    indirect[["ci_low", "ci_high", "p_boot"]] = np.nan
    n_ok = 0
    if n_boot:
        rng = np.random.default_rng(seed)
        resamples = [rng.integers(0, len(data), len(data)) for _ in range(int(n_boot))]
        args = (data, spec, outcome_model, exogenous, mediators_of, outcome)
        if n_jobs == 1:
            draws = _boot(resamples, *args)
        else:
            from joblib import Parallel, delayed

            chunks = [c for c in np.array_split(np.arange(len(resamples)), 4 * abs(int(n_jobs))) if c.size]
            parts = Parallel(n_jobs=n_jobs)(delayed(_boot)([resamples[i] for i in c], *args) for c in chunks)
            draws = [row for part in parts for row in part]
        draws = np.asarray(draws, float)
        ok = np.all(np.isfinite(draws), axis=1)
        n_ok = int(ok.sum())
        if n_ok:
            indirect["ci_low"] = np.quantile(draws[ok], alpha / 2, axis=0)
            indirect["ci_high"] = np.quantile(draws[ok], 1 - alpha / 2, axis=0)
            indirect["p_boot"] = [bootstrap_pvalue(draws[ok, j]) for j in range(draws.shape[1])]
    groups = {"exogenous": exogenous, "common": list(common),
              "specific": {k: list(v) for k, v in specific.items()}, "outcome": outcome}
    return SEMResult(description, reg, fit_indices, indirect, groups, int(keep.sum()), int((~keep).sum()), n_ok,
                     model, cov, outcome_model)


def mediator_groups(
    results: pd.DataFrame, exposures: Sequence[str] = ("age", "n_diseases"), kept: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """Sort significant mediators into the SEM's groups: common to all exposures, or specific to one.

    Parameters
    ----------
    results : DataFrame with columns ``x``, ``mediator``, ``significant`` (stacked mediation results of
        several exposures, from the paper's rule or the natural-effect test)
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
