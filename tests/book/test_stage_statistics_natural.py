"""Chapter 7's counterfactual part (ssinfnet.book.stages.natural) on small simulated cohorts and known tables."""
import json

import numpy as np
import pandas as pd
import pytest

from ssinfnet.book.stages import natural
from ssinfnet.stats import mediation
from ssinfnet.stats.simulation import simulate_cohort

EXPOSURES = ["age", "male", "n_diseases"]
MEDIATORS = ["m", "null_1", "null_2", "null_3"]


@pytest.fixture(scope="module")
def cohort():
    # m carries age's effect (a = 0.04 per year, b = 1.0); three pure nulls
    return simulate_cohort(None, 600, {"m": {"age": 0.04}}, {"m": 1.0}, 3, {"age": 0.01}, seed=3)


@pytest.fixture(scope="module")
def analysed(cohort):
    paper = mediation.mediation_by_exposure(cohort, EXPOSURES, MEDIATORS, "severity_binary", n_boot=0)
    return paper, natural.analyse(cohort, EXPOSURES, MEDIATORS, paper, n_rep=200, seed=0)


def test_analyse_finds_the_planted_mediator_in_one_family(analysed):
    paper, nat = analysed
    res = nat.natural
    assert len(res) == 12 and nat.family_size == 12
    assert nat.family_line(4, 3) == ("Benjamini-Hochberg over one family of 4 candidate mediators x 3 exposures = "
                                     "12 tests (the paper's rule is adjusted over the same family)")
    hit = res[(res.x == "age") & (res.mediator == "m")].iloc[0]
    assert hit.significant and hit.nie_low > 0 and (hit.x0, hit.x1) == natural.CONTRASTS["age"]
    assert hit.nie + hit.nde == pytest.approx(hit.total, abs=1e-9)
    assert not res[res.mediator.str.startswith("null_")].significant.any()
    assert nat.reported()[["x", "mediator"]].values.tolist() == res.loc[res.significant, ["x", "mediator"]].values.tolist()
    # the comparison pairs every row; the sensitivity table has one row per reported mediator
    assert len(nat.comparison) == 12 and set(nat.comparison.reason) <= {"agree", "no total effect", "non-collapsible",
                                                                        "multiplicity"}
    assert len(nat.disagreements()) == int((~nat.comparison.agree).sum())
    assert nat.sensitivity[["x", "mediator"]].values.tolist() == res.loc[res.significant, ["x", "mediator"]].values.tolist()
    # rho curves: the reported rows, largest |NIE| first, each crossing zero at its rho_zero
    assert list(nat.curves) == [f"{r.x} / {r.mediator}" for r in
                                res[res.significant].assign(a=lambda d: -d.nie.abs()).sort_values("a").itertuples()]
    curve = nat.curves["age / m"]
    row = nat.sensitivity.set_index(["x", "mediator"]).loc[("age", "m")]
    assert curve.attrs["rho_zero"] == pytest.approx(row.rho_zero)
    at0 = curve.loc[curve.rho.abs() < 1e-9, "nie"].item()
    assert at0 == pytest.approx(row.nie_probit, rel=1e-6)


def test_validation_table_formats_estimates_with_their_monte_carlo_se():
    summary = pd.DataFrame([
        ("independent", "coverage", "natural effects", 0.95, 0.0154),
        ("independent", "fdr", "natural effects", 0.014, 0.003),
        ("independent", "fdr", "paper's rule", 0.02, 0.004),
        ("independent", "fwer", "natural effects", 0.028, 0.005),
        ("confounded", "coverage", "natural effects", 0.512, 0.016),
        ("confounded", "coverage_at_true_rho", "natural effects", 0.944, np.nan),
    ], columns=["scenario", "quantity", "method", "estimate", "mc_se"]).assign(n_rep=1000)
    val = natural.Validation(pd.DataFrame(), summary, 1000, 500, 500)
    table = val.table()
    assert table.index.tolist() == ["independent", "confounded"] and table.index.name == "scenario"
    assert list(table.columns) == list(natural.VALIDATION_COLUMNS.values())
    assert table.loc["independent", "coverage"] == "0.95 ± 0.02"
    assert table.loc["independent", "FDR (paper's rule)"] == "0.02 ± 0.00"
    assert table.loc["independent", "coverage at the true rho"] == ""
    assert table.loc["confounded", "coverage at the true rho"] == "0.94 ± 0.00"
    assert table.loc["confounded", "FWER (natural)"] == ""
    assert val.value("confounded", "coverage") == (0.512, 0.016)
    with pytest.raises(KeyError, match="no 'power' of 'natural effects' in scenario 'independent'"):
        val.value("independent", "power")


def test_validate_runs_every_scenario_and_refuses_no_replicates():
    val = natural.validate(2, n_draws=20, seed=1, n=150)
    assert (val.n_rep, val.n, val.n_draws) == (2, 150, 20)
    assert val.study.groupby("scenario", sort=False).rep.nunique().to_dict() == {
        "independent": 2, "correlated": 2, "confounded": 2}
    assert set(val.summary.quantity) >= {"coverage", "coverage_at_true_rho", "fdr", "fwer", "power"}
    with pytest.raises(ValueError, match="n_rep must be >= 1, got 0"):
        natural.validate(0, n_draws=20)


def test_manifest_summary_is_plain_json(analysed):
    _, nat = analysed
    summary = pd.DataFrame([("independent", "coverage", "natural effects", 0.9, np.nan)],
                           columns=["scenario", "quantity", "method", "estimate", "mc_se"])
    out = natural.manifest_summary(nat, natural.Validation(pd.DataFrame(), summary, 1, 500, 20))
    assert json.loads(json.dumps(out)) == out
    assert out["family_size"] == 12 and out["natural_significant"]["age"] >= 1
    assert out["validation"] == {"independent/coverage/natural effects": [0.9, None]}
    assert sum(out["disagreements"].values()) == 12
