"""Validation of the natural-effect analysis by simulation: coverage, false discoveries, what it cannot fix.

Each scenario of :data:`SCENARIOS` simulates cohorts (:func:`ssinfnet.stats.simulation.simulate_cohort`)
with a binary outcome, one planted mediator ``m`` of age, five mediators ``a_only_*`` that depend on age
but not on the outcome, and five pure nulls:

* ``"independent"``: every mediator's error is independent (the earlier simulation's assumption);
* ``"correlated"``: the errors of ``a_only_1 ... a_only_5`` correlate with that of ``m`` at
  r = 0.8, 0.6, 0.4, 0.2, 0 (one-factor structure), as radiomic features that survive the |r| > 0.8
  filter still do; their true indirect effect is 0, but a univariate analysis sees ``m``'s effect through
  them: a false discovery that no single-mediator method can tell from a real one;
* ``"confounded"``: an unmeasured N(0, 1) factor raises both ``m`` (loading 0.6) and the latent
  severity (0.6), probit errors, so the residual correlation is rho = 0.36 / 1.36 = 0.265; the NIE
  estimate is biased and its interval under-covers, while the interval recomputed at the true rho by
  :mod:`ssinfnet.stats.sensitivity` covers.

The truth of each replicate is the sample-average natural indirect effect given the cohort's covariates
(what the quasi-Bayesian interval targets), computed from the planted model by integrating its noise
(``truth_draws`` Monte Carlo draws per patient, common to every counterfactual). The analysis adjusts for
``male`` and ``n_diseases``, as the chapter adjusts each exposure for the others; one replicate's family
is its 11 candidate mediators (Benjamini-Hochberg over them), for the natural test and the paper's rule.

Measured with 1,000 replicates per scenario (n = 500, 500 draws, seed 2024; Monte Carlo SE in brackets):
coverage of the 95 % NIE interval 0.937 (0.008) independent, 0.946 (0.007) correlated, 0.512 (0.016)
confounded and 0.944 (0.007) there at the true rho; FDR of the natural test 0.014 (0.003), FWER 0.028
(0.005) independent, but FDR 0.737 and FWER 1.00 correlated, where ``a_only_1 ... a_only_4``
(r = 0.8, 0.6, 0.4, 0.2) are called in 100 %, 98 %, 72 % and 21 % of cohorts by either method.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special

from .mediation import univariate_mediation
from .multiplicity import adjust_pvalues, error_rates
from .natural_effects import natural_effects
from .sensitivity import _draws, _fits, nie_at_rho
from .simulation import COVARIATES, _rep_seeds, simulate_cohort

_R = (0.8, 0.6, 0.4, 0.2, 0.0)
_BASE = {"a_paths": {"m": {"age": 0.03}, **{f"a_only_{i + 1}": {"age": 0.03} for i in range(5)}},
         "b_paths": {"m": 0.8}, "n_null": 5, "direct": {"age": 0.02}, "intercept": 0.5}


def _one_factor(r: tuple[float, ...], k: int) -> np.ndarray:
    """Error correlations: mediator 0 with mediator 1 + i at r[i], those among themselves r[i] r[j]."""
    load = np.zeros(k)
    load[0] = 1.0
    load[1:1 + len(r)] = r
    corr = np.outer(load, load)
    np.fill_diagonal(corr, 1.0)
    return corr


#: The planted designs (paths per year of age; ``track``: mediators whose intervals are checked).
SCENARIOS = {
    "independent": {**_BASE, "noise": "logistic", "link": "logit", "mediator_corr": 0.0, "confounders": None},
    "correlated": {**_BASE, "noise": "logistic", "link": "logit", "mediator_corr": _one_factor(_R, 11),
                   "confounders": None},
    "confounded": {**_BASE, "noise": "normal", "link": "probit", "mediator_corr": 0.0,
                   "confounders": {"m": (0.6, 0.6)}},
}
STUDY_COLUMNS = ["scenario", "rep", "mediator", "error_r", "truth", "null", "nie", "nie_low", "nie_high", "covered",
                 "p_nie", "natural_significant", "paper_significant", "covered_at_true_rho"]


def true_rho(c: float, g: float, mediator_sd: float = 1.0) -> float:
    """Residual correlation of mediator and probit outcome created by a confounder with loadings c, g."""
    return c * g / np.sqrt((c**2 + mediator_sd**2) * (g**2 + 1.0))


def true_natural_effects(df: pd.DataFrame, x: str, contrast: tuple[float, float], draws: int = 200,
                         seed: int = 0) -> pd.DataFrame:
    """Sample-average natural effects of every planted mediator of a :func:`simulate_cohort` table.

    For mediator ``j`` (its univariate estimand: the other mediators follow the exposure),
    ``NIE_j = E[Y(x1, M_j(x1), M_-j(x1))] - E[Y(x1, M_j(x0), M_-j(x1))]`` and
    ``NDE_j = E[Y(x1, M_j(x0), M_-j(x1))] - E[Y(x0, M(x0))]``, the other covariates at their observed
    values; expectations over the planted noise by ``draws`` shared draws per patient.

    Returns a DataFrame indexed by mediator with ``nie`` and ``nde`` (probability scale).
    """
    at = df.attrs
    need = ("a_paths", "b_paths", "direct", "noise", "mediator_corr", "mediator_sd", "confounders")
    if not all(k in at for k in need):
        raise ValueError("df: not a simulate_cohort table (its attrs lack the planted model)")
    a_paths, b_paths, conf = at["a_paths"], at["b_paths"], at["confounders"]
    meds = list(dict.fromkeys([*a_paths, *b_paths]))
    k_all = len(np.asarray(at["mediator_corr"]))
    n = len(df)
    means = {c: df[c].to_numpy(float).mean() for c in COVARIATES}
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(np.asarray(at["mediator_corr"], float))
    err = at["mediator_sd"] * (rng.standard_normal((draws, n, k_all)) @ chol.T)[..., :len(meds)]
    u = {m: rng.standard_normal((draws, n)) for m in conf}
    cdf = special.expit if at["noise"] == "logistic" else special.ndtr
    intercept = float(at.get("intercept", 0.0))

    def centred(c, t):
        return (t - means[c]) if c == x else (df[c].to_numpy(float) - means[c])

    def mediator(j, m, t):
        v = err[..., j].copy()
        for c, a in a_paths.get(m, {}).items():
            v += a * centred(c, t)
        if m in conf:
            v += conf[m][0] * u[m]
        return v

    def risk(t, ms):
        eta = np.full((draws, n), intercept)
        for c, d in at["direct"].items():
            eta += d * centred(c, t)
        for m, v in ms.items():
            eta += b_paths.get(m, 0.0) * v
        for m in conf:
            eta += conf[m][1] * u[m]
        return float(cdf(eta).mean())

    x0, x1 = contrast
    m_at = {t: {m: mediator(j, m, t) for j, m in enumerate(meds)} for t in (x0, x1)}
    r11, r00 = risk(x1, m_at[x1]), risk(x0, m_at[x0])
    rows = {}
    for m in meds:
        r10 = risk(x1, {**m_at[x1], m: m_at[x0][m]})
        rows[m] = {"nie": r11 - r10, "nde": r10 - r00}
    return pd.DataFrame.from_dict(rows, orient="index")


def validation_study(
    scenario: str = "independent",
    n_rep: int = 200,
    n: int = 500,
    n_draws: int = 500,
    contrast: tuple[float, float] = (50.0, 60.0),
    alpha: float = 0.05,
    seed: int = 0,
    clinical: pd.DataFrame | None = None,
    truth_draws: int = 100,
) -> pd.DataFrame:
    """Simulate ``n_rep`` cohorts of a scenario and analyse each with both methods.

    Parameters
    ----------
    scenario : one of :data:`SCENARIOS`
    n_rep : int >= 1, default=200
        Replicates (Monte Carlo SE of a coverage near 0.95: 0.22 / sqrt(n_rep)).
    n : int, default=500, patients per cohort
    n_draws : int >= 10, default=500, quasi-Bayesian draws for the interval of ``m``
    contrast : age values compared (years), default 50 vs 60
    alpha : float, default=0.05, interval level and FDR level
    seed : int, default=0
    clinical : DataFrame, optional, covariates resampled from it (default: synthetic covariates)
    truth_draws : int, default=100, noise draws per patient for the truth

    Returns
    -------
    pandas.DataFrame, one row per (replicate, mediator) with ``STUDY_COLUMNS``: ``error_r`` (error
    correlation with ``m``), ``truth`` and ``null`` (truth = 0), ``nie`` and interval (``m`` only),
    ``covered``, ``p_nie``, the two methods' calls (BH over the replicate's 11 mediators) and, in the
    confounded scenario, ``covered_at_true_rho``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {tuple(SCENARIOS)}, got {scenario!r}")
    if int(n_draws) < 10:
        raise ValueError(f"n_draws must be >= 10, got {n_draws}")
    sc = SCENARIOS[scenario]
    covs = ["male", "n_diseases"]
    rows = []
    for rep, s in enumerate(_rep_seeds(seed, n_rep)):
        df = simulate_cohort(clinical, n, sc["a_paths"], sc["b_paths"], sc["n_null"], sc["direct"], seed=int(s),
                             intercept=sc["intercept"], noise=sc["noise"], mediator_corr=sc["mediator_corr"],
                             confounders=sc["confounders"])
        meds = [*dict.fromkeys([*sc["a_paths"], *sc["b_paths"]]), *[f"null_{i + 1}" for i in range(sc["n_null"])]]
        truth = true_natural_effects(df, "age", contrast, truth_draws, seed=int(s) + 1)["nie"]
        tests = natural_effects(df, "age", meds, "severity_binary", covs, contrast, sc["link"], n_rep=0)
        ivl = natural_effects(df, "age", ["m"], "severity_binary", covs, contrast, sc["link"], n_rep=n_draws,
                              seed=int(s), alpha=alpha).iloc[0]
        paper = univariate_mediation(df, "age", meds, "severity_binary", covs, n_boot=0, alpha=alpha)
        nat_sig = adjust_pvalues(tests["p_nie"].to_numpy(), "bh") < alpha
        corr = np.asarray(df.attrs["mediator_corr"])
        rho_cov = np.nan
        if sc["confounders"]:
            c, g = sc["confounders"]["m"]
            head, C, med, out = _fits(df, "age", "m", "severity_binary", covs, contrast)
            th, al = _draws(med, out, int(n_draws), int(s))
            lo, hi = np.quantile(nie_at_rho(th, al, np.sqrt(med.scale), C, true_rho(c, g)), [alpha / 2, 1 - alpha / 2])
            rho_cov = bool(lo <= truth["m"] <= hi)
        for j, m in enumerate(meds):
            t = float(truth.get(m, 0.0))
            row = {"scenario": scenario, "rep": rep, "mediator": m,
                   "error_r": float(corr[0, j]) if j < len(corr) else 0.0, "truth": t, "null": abs(t) < 1e-12,
                   "nie": np.nan, "nie_low": np.nan, "nie_high": np.nan, "covered": np.nan,
                   "p_nie": float(tests["p_nie"].iloc[j]), "natural_significant": bool(nat_sig[j]),
                   "paper_significant": bool(paper["significant"].iloc[j]), "covered_at_true_rho": np.nan}
            if m == "m":
                row.update(nie=ivl.nie, nie_low=ivl.nie_low, nie_high=ivl.nie_high,
                           covered=bool(ivl.nie_low <= t <= ivl.nie_high), covered_at_true_rho=rho_cov)
            rows.append(row)
    out = pd.DataFrame(rows, columns=STUDY_COLUMNS)
    out.attrs.update(scenario=scenario, n=n, n_draws=n_draws, contrast=contrast, alpha=alpha, synthetic=True)
    return out


def summarise_study(study: pd.DataFrame) -> pd.DataFrame:
    """Coverage, false discovery rate, family-wise error and power of a :func:`validation_study`, with MC SEs.

    Returns one row per (scenario, quantity, method): ``estimate``, ``mc_se`` (binomial SE for
    proportions, SD / sqrt(R) for the mean false discovery proportion), ``n_rep``. Quantities:
    ``coverage`` (interval of ``m`` contains the truth), ``coverage_at_true_rho`` (confounded only),
    ``bias`` (mean NIE - truth of ``m``, with its SE), ``fdr``, ``fwer``, ``power``.
    """
    need = ["scenario", "rep", "mediator", "null", "covered", "natural_significant", "paper_significant"]
    missing = [c for c in need if c not in study.columns]
    if missing:
        raise ValueError(f"study: missing column(s) {missing}")
    rows = []
    for sc, part in study.groupby("scenario", sort=False):
        R = part["rep"].nunique()

        def prop(v, what, method=""):
            v = np.asarray(v, float)
            v = v[np.isfinite(v)]
            if v.size:
                p = v.mean()
                rows.append({"scenario": sc, "quantity": what, "method": method, "estimate": p,
                             "mc_se": np.sqrt(p * (1 - p) / v.size), "n_rep": v.size})

        m = part[part["mediator"] == "m"]
        prop(m["covered"], "coverage", "natural effects")
        prop(m["covered_at_true_rho"], "coverage_at_true_rho", "natural effects")
        d = (m["nie"] - m["truth"]).to_numpy(float)
        rows.append({"scenario": sc, "quantity": "bias", "method": "natural effects", "estimate": d.mean(),
                     "mc_se": d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan, "n_rep": len(d)})
        for method, col in (("natural effects", "natural_significant"), ("paper's rule", "paper_significant")):
            rates = pd.DataFrame([error_rates(g[col], g["null"]) for _, g in part.groupby("rep")])
            fdp = rates["fdp"].to_numpy(float)
            rows.append({"scenario": sc, "quantity": "fdr", "method": method, "estimate": fdp.mean(),
                         "mc_se": fdp.std(ddof=1) / np.sqrt(R) if R > 1 else np.nan, "n_rep": R})
            prop(rates["any_false"], "fwer", method)
            prop(rates["power"], "power", method)
    return pd.DataFrame(rows)
