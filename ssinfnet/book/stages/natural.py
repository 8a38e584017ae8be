"""Chapter 7's counterfactual mediation: natural effects, the paper's rule beside them, sensitivity, validation.

The paper calls a feature a mediator by comparing logistic coefficients across nested models
(:mod:`ssinfnet.stats.mediation`). The chapter reports, beside that rule and labelled as the paper's method,

* the natural indirect and direct effects of every (exposure, candidate mediator) on binary severity, as
  risk differences for the contrasts of :data:`CONTRASTS`, with quasi-Bayesian intervals
  (:func:`ssinfnet.stats.natural_effects.natural_effects_by_exposure`; the test of ``NIE = 0`` adjusted by
  Benjamini-Hochberg once over the whole family, features x exposures);
* where and why the two calls differ (:func:`ssinfnet.stats.compare_methods.compare_with_paper`);
* how strong an unmeasured mediator-outcome confounder would have to be to explain each reported
  indirect effect away (Imai et al.'s rho, :mod:`ssinfnet.stats.sensitivity`), with the NIE against rho
  for the largest ones (:data:`RHO_CURVES`);
* a simulation validation of the intervals and error rates (:mod:`ssinfnet.stats.validation`, every
  scenario of :data:`~ssinfnet.stats.validation.SCENARIOS`).

Sizes come from the profile: ``n_boot`` quasi-Bayesian draws for every interval, ``simulation_replicates``
replicates per validation scenario (1,000 in ``paper``; ``cpu`` and ``smoke`` run fewer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...stats import compare_methods, natural_effects, sensitivity, validation

#: Exposure contrasts (x0, x1) of the natural effects: age 50 vs 60 years, female vs male, 0 vs 1 disease.
CONTRASTS = {"age": (50.0, 60.0), "male": (0.0, 1.0), "n_diseases": (0.0, 1.0)}

#: joblib workers over (exposure, mediator) pairs (results do not depend on it).
N_JOBS = 2

#: The reported mediators with the largest |NIE| whose rho curves are drawn.
RHO_CURVES = 6

#: Patients per simulated cohort of the validation study.
VALIDATION_N = 500

#: The quantities of the validation table, in order: summarise_study's (quantity, method) -> column.
VALIDATION_COLUMNS = {("coverage", "natural effects"): "coverage", ("coverage_at_true_rho", "natural effects"):
                      "coverage at the true rho", ("fdr", "natural effects"): "FDR (natural)",
                      ("fdr", "paper's rule"): "FDR (paper's rule)", ("fwer", "natural effects"): "FWER (natural)",
                      ("fwer", "paper's rule"): "FWER (paper's rule)", ("power", "natural effects"): "power (natural)",
                      ("power", "paper's rule"): "power (paper's rule)"}


@dataclass
class NaturalMediation:
    """Output of :func:`analyse`.

    ``natural``: one row per (exposure, mediator), :data:`ssinfnet.stats.natural_effects.RESULT_COLUMNS`
    plus ``covariates``, ``p_nie_adj``, ``significant``; ``attrs["family"]`` gives the family.
    ``comparison``: :func:`ssinfnet.stats.compare_methods.compare_with_paper` of the paper's table and
    ``natural``. ``sensitivity``: :func:`ssinfnet.stats.sensitivity.sensitivity_table` of the significant
    rows. ``curves``: "x / mediator" -> :func:`ssinfnet.stats.sensitivity.rho_curve` for up to
    :data:`RHO_CURVES` significant rows with the largest |NIE|.
    """

    natural: pd.DataFrame
    comparison: pd.DataFrame
    sensitivity: pd.DataFrame
    curves: dict

    @property
    def family_size(self) -> int:
        """Tests in the multiple-testing family (candidate mediators x exposures, failed fits excluded)."""
        return int(self.natural.attrs["family"]["size"])

    def family_line(self, n_mediators: int, n_exposures: int) -> str:
        """The multiple-testing family in words, for the page."""
        return (f"Benjamini-Hochberg over one family of {n_mediators} candidate mediators x {n_exposures} "
                f"exposures = {self.family_size} tests (the paper's rule is adjusted over the same family)")

    def reported(self) -> pd.DataFrame:
        """The significant rows: exposure, mediator, NIE and NDE with intervals, proportion mediated, p."""
        cols = ["x", "mediator", "nie", "nie_low", "nie_high", "nde", "nde_low", "nde_high", "prop_mediated",
                "p_nie_adj"]
        return self.natural.loc[self.natural.significant, cols].reset_index(drop=True)

    def disagreements(self) -> pd.DataFrame:
        """The rows where the paper's rule and the natural-effect test call differently, with the reason."""
        cols = ["x", "mediator", "paper_significant", "natural_significant", "reason", "p11_adj", "beta11",
                "beta31", "p_nie_adj", "nie"]
        return self.comparison.loc[~self.comparison.agree, cols].reset_index(drop=True)


def analyse(table: pd.DataFrame, exposures, mediators, paper: pd.DataFrame, y: str = "severity_binary",
            n_rep: int = 1000, seed: int = 0) -> NaturalMediation:
    """Natural effects of ``exposures`` on ``y`` through each of ``mediators`` (one at a time, each exposure
    adjusted for the others), compared with the paper's rule, and their sensitivity to confounding.

    ``table``: one row per patient; ``paper``: :func:`ssinfnet.stats.mediation.mediation_by_exposure` of the
    same table, exposures and mediators; ``n_rep`` (>= 10): quasi-Bayesian draws for every interval.
    """
    natural = natural_effects.natural_effects_by_exposure(
        table, exposures, mediators, y, contrasts={x: CONTRASTS[x] for x in exposures if x in CONTRASTS},
        n_rep=n_rep, seed=seed, n_jobs=N_JOBS)
    comparison = compare_methods.compare_with_paper(paper, natural)
    sens = sensitivity.sensitivity_table(table, natural, y, n_rep=n_rep, seed=seed)
    top = natural[natural.significant].assign(_a=lambda d: -d.nie.abs()).sort_values("_a", kind="stable")
    curves = {}
    for r in top.head(RHO_CURVES).itertuples(index=False):
        cov = [c for c in str(r.covariates).split("+") if c]
        curves[f"{r.x} / {r.mediator}"] = sensitivity.rho_curve(table, r.x, r.mediator, y, cov, (r.x0, r.x1),
                                                                 n_rep=n_rep, seed=seed)
    return NaturalMediation(natural, comparison, sens, curves)


@dataclass
class Validation:
    """Output of :func:`validate`: ``study`` (one row per scenario, replicate and mediator,
    :data:`ssinfnet.stats.validation.STUDY_COLUMNS`), ``summary`` (:func:`summarise_study`: scenario,
    quantity, method, estimate, mc_se, n_rep), ``n_rep`` replicates per scenario of ``n`` patients,
    ``n_draws`` quasi-Bayesian draws per interval."""

    study: pd.DataFrame
    summary: pd.DataFrame
    n_rep: int
    n: int
    n_draws: int

    def table(self) -> pd.DataFrame:
        """One row per scenario, one column per quantity of :data:`VALIDATION_COLUMNS`, each
        ``"estimate ± MC SE"`` (two decimals; empty where the scenario has no such quantity)."""
        s = self.summary.assign(text=[f"{e:.2f} ± {m:.2f}" for e, m in zip(self.summary.estimate,
                                                                            self.summary.mc_se.fillna(0.0))])
        wide = s.set_index(["scenario", "quantity", "method"]).text.unstack(["quantity", "method"])
        out = pd.DataFrame(index=list(dict.fromkeys(self.summary.scenario)))
        for key, name in VALIDATION_COLUMNS.items():
            out[name] = wide[key] if key in wide.columns else ""
        return out.fillna("").rename_axis("scenario")

    def value(self, scenario: str, quantity: str, method: str = "natural effects") -> tuple[float, float]:
        """(estimate, Monte Carlo SE) of one quantity; KeyError naming it when absent."""
        row = self.summary[(self.summary.scenario == scenario) & (self.summary.quantity == quantity)
                           & (self.summary.method == method)]
        if row.empty:
            raise KeyError(f"no {quantity!r} of {method!r} in scenario {scenario!r}")
        return float(row.estimate.iloc[0]), float(row.mc_se.iloc[0])


def validate(n_rep: int, n_draws: int, seed: int = 0, clinical: pd.DataFrame | None = None,
             n: int = VALIDATION_N) -> Validation:
    """:func:`ssinfnet.stats.validation.validation_study` of every scenario (``n_rep`` >= 1 cohorts of
    ``n`` patients each, covariates resampled from ``clinical``; ``n_draws`` >= 10) and its summary."""
    if int(n_rep) < 1:
        raise ValueError(f"n_rep must be >= 1, got {n_rep}")
    study = pd.concat([validation.validation_study(sc, n_rep=int(n_rep), n=n, n_draws=int(n_draws), seed=seed,
                                                   clinical=clinical) for sc in validation.SCENARIOS],
                      ignore_index=True)
    return Validation(study, validation.summarise_study(study), int(n_rep), int(n), int(n_draws))


def manifest_summary(nat: NaturalMediation, val: Validation) -> dict:
    """What the run manifest records of the counterfactual analysis (plain numbers, JSON-ready)."""
    counts = nat.natural.groupby("x", sort=False).significant.sum()
    return {"natural_significant": {str(k): int(v) for k, v in counts.items()}, "family_size": nat.family_size,
            "disagreements": nat.comparison.attrs["counts"],
            "validation": {f"{r.scenario}/{r.quantity}/{r.method}": [round(float(r.estimate), 4),
                                                                     None if np.isnan(r.mc_se) else round(float(r.mc_se), 4)]
                           for r in val.summary.itertuples()},
            "validation_replicates": val.n_rep}
