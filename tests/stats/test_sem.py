"""SEM: semopy on lavaan's published Political Democracy example, planted-coefficient recovery, OLS equality."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from matplotlib.figure import Figure

from ssinfnet.plots import stats as sem_plots
from ssinfnet.stats import sem
from ssinfnet.stats.simulation import simulate_cohort

# lavaan tutorial (https://lavaan.ugent.be/tutorial/sem.html), Bollen's Political Democracy model with
# six residual covariances: published estimates, to three decimals, and the chi-square test.
LAVAAN_PD = """
ind60 =~ x1 + x2 + x3
dem60 =~ y1 + y2 + y3 + y4
dem65 =~ y5 + y6 + y7 + y8
dem60 ~ ind60
dem65 ~ ind60 + dem60
y1 ~~ y5
y2 ~~ y4 + y6
y3 ~~ y7
y4 ~~ y8
y6 ~~ y8
"""
LAVAAN_ESTIMATES = {
    ("x2", "ind60"): 2.180, ("x3", "ind60"): 1.819,
    ("y2", "dem60"): 1.257, ("y3", "dem60"): 1.058, ("y4", "dem60"): 1.265,
    ("y6", "dem65"): 1.186, ("y7", "dem65"): 1.280, ("y8", "dem65"): 1.266,
    ("dem60", "ind60"): 1.483, ("dem65", "ind60"): 0.572, ("dem65", "dem60"): 0.837,
}

PLANTED_A = {"c1": {"age": 0.03, "n_diseases": 0.5}, "a1": {"age": 0.04}, "d1": {"n_diseases": 0.6}}
PLANTED_B = {"c1": 0.5, "a1": 0.4, "d1": 0.3}


def test_political_democracy_matches_lavaan():
    from semopy.examples import political_democracy

    _, est, fit = sem.fit_model(LAVAAN_PD, political_democracy.get_data())
    paths = {(r.lval, r.rval): float(r.Estimate) for r in est[est["op"] == "~"].itertuples()}
    for key, value in LAVAAN_ESTIMATES.items():
        assert paths[key] == pytest.approx(value, abs=2e-3), key
    assert fit["chi2"] == pytest.approx(38.125, abs=0.01)
    assert fit["DoF"] == 35


def test_build_description():
    desc = sem.build_description(["c1"], {"age": ["a1"], "n_diseases": ["d1"]})
    assert desc.splitlines() == [
        "c1 ~ age + n_diseases", "a1 ~ age", "d1 ~ n_diseases",
        "severity_binary ~ c1 + a1 + d1 + age + n_diseases"]
    assert sem.build_description(["c1"], {}, direct=False).splitlines()[-1] == "severity_binary ~ c1"
    with pytest.raises(ValueError, match="not exogenous"):
        sem.build_description(["c1"], {"gender": ["g1"]})
    with pytest.raises(ValueError, match="twice"):
        sem.build_description(["c1"], {"age": ["c1"]})
    with pytest.raises(ValueError, match="at least one mediator"):
        sem.build_description([], {})


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(None, 3000, PLANTED_A, PLANTED_B, 1, {"age": 0.01}, seed=11)


@pytest.fixture(scope="module")
def fitted(cohort):
    return sem.fit_mediation_sem(cohort, ["c1"], {"age": ["a1"], "n_diseases": ["d1"]},
                                 outcome="severity_latent", standardize=False, n_boot=20, seed=1)


def test_recovers_planted_paths(fitted):
    est = fitted.estimates.set_index(["lval", "rval"])["estimate"]
    for m, paths in PLANTED_A.items():
        for x, a in paths.items():
            assert est[(m, x)] == pytest.approx(a, rel=0.2), (m, x)
    for m, b in PLANTED_B.items():
        assert est[("severity_latent", m)] == pytest.approx(b, abs=0.1), m
    assert est[("severity_latent", "age")] == pytest.approx(0.01, abs=0.01)
    assert est[("severity_latent", "n_diseases")] == pytest.approx(0.0, abs=0.2)
    assert fitted.n == 3000 and fitted.n_dropped == 0
    assert fitted.fit_indices["DoF"] == 8 and fitted.fit_indices["chi2 p-value"] > 0.001


def test_ml_paths_equal_per_equation_ols(cohort, fitted):
    est = fitted.estimates.set_index(["lval", "rval"])["estimate"]
    equations = {"c1": ["age", "n_diseases"], "a1": ["age"], "d1": ["n_diseases"],
                 "severity_latent": ["c1", "a1", "d1", "age", "n_diseases"]}
    for dep, regs in equations.items():
        ols = sm.OLS(cohort[dep], sm.add_constant(cohort[regs])).fit()
        for r in regs:  # equal up to semopy's optimiser tolerance: 2 % of a standard error
            assert est[(dep, r)] == pytest.approx(ols.params[r], abs=0.02 * ols.bse[r]), (dep, r)


def test_indirect_effects_and_bootstrap(fitted):
    est = fitted.estimates.set_index(["lval", "rval"])["estimate"]
    ind = fitted.indirect.set_index(["x", "mediator"])
    assert set(ind.index) == {("age", "c1"), ("age", "a1"), ("age", "total"),
                              ("n_diseases", "c1"), ("n_diseases", "d1"), ("n_diseases", "total")}
    assert ind.loc[("age", "a1"), "indirect"] == pytest.approx(est[("a1", "age")] * est[("severity_latent", "a1")])
    assert ind.loc[("age", "total"), "indirect"] == pytest.approx(
        ind.loc[("age", "c1"), "indirect"] + ind.loc[("age", "a1"), "indirect"])
    truth = PLANTED_A["a1"]["age"] * PLANTED_B["a1"]
    assert ind.loc[("age", "a1"), "indirect"] == pytest.approx(truth, rel=0.3)
    assert fitted.n_boot_ok == 20
    assert (ind["ci_low"] <= ind["indirect"]).all() and (ind["indirect"] <= ind["ci_high"]).all()
    assert (ind["ci_low"] > 0).all() and np.allclose(ind["p_boot"], 2 / 21)


def test_standardized_seeded_and_missing_rows(cohort):
    df = cohort.iloc[:400].copy()
    df.loc[[0, 1], "a1"] = np.nan
    kw = dict(common=["c1"], specific={"age": ["a1"]}, outcome="severity_binary", n_boot=5, seed=3)
    r1 = sem.fit_mediation_sem(df, **kw)
    r2 = sem.fit_mediation_sem(df, **kw)
    assert r1.n == 398 and r1.n_dropped == 2
    pd.testing.assert_frame_equal(r1.indirect, r2.indirect)
    # standardised data: raw estimates equal semopy's standardised ones
    np.testing.assert_allclose(r1.estimates["estimate"], r1.estimates["std_estimate"], atol=5e-3)


def test_aliases_for_awkward_names(cohort):
    df = cohort.iloc[:300].rename(columns={"c1": "overall glcm-Idmn"})
    r = sem.fit_mediation_sem(df, ["overall glcm-Idmn"], {}, outcome="severity_latent")
    assert "overall glcm-Idmn" in set(r.estimates["rval"])


@pytest.mark.parametrize("kwargs, match", [
    ({"common": ["zz"]}, "not in the table"),
    ({"common": ["gender"]}, "numeric"),
    ({"common": ["const"]}, "constant"),
    ({"alpha": 0.0}, "alpha"),
    ({"n_boot": -2}, "n_boot"),
])
def test_bad_arguments(cohort, kwargs, match):
    df = cohort.iloc[:100].assign(const=1.0)
    args = {"common": ["c1"], "specific": {}} | kwargs
    with pytest.raises(ValueError, match=match):
        sem.fit_mediation_sem(df, **args)


def test_path_diagram(fitted):
    fig = sem_plots.sem_path_diagram(fitted)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == ""
    texts = {t.get_text() for t in ax.texts}
    assert {"age", "n_diseases", "c1", "a1", "d1", "severity_latent"} <= texts
    std = fitted.estimates["std_estimate"]
    assert {f"{v:.2f}" for v in std} <= texts  # every path is labelled with its standardised estimate


def test_mediator_groups():
    res = pd.DataFrame({
        "x": ["age"] * 4 + ["n_diseases"] * 4 + ["male"] * 2,
        "mediator": ["c", "a", "twin", "n", "c", "d", "twin", "n", "c", "g"],
        "significant": [True, True, True, False, True, True, True, False, True, True]})
    common, specific = sem.mediator_groups(res)
    assert common == ["c", "twin"] and specific == {"age": ["a"], "n_diseases": ["d"]}
    common, specific = sem.mediator_groups(res, kept=["c", "a", "d"])
    assert common == ["c"] and specific == {"age": ["a"], "n_diseases": ["d"]}
    # "g" is significant for male only: male is not exogenous here, so it is left out
    assert "g" not in common + specific["age"] + specific["n_diseases"]
    with pytest.raises(ValueError, match="no results"):
        sem.mediator_groups(res, exposures=("age", "bmi"))
    with pytest.raises(ValueError, match="missing"):
        sem.mediator_groups(res.drop(columns="significant"))


def test_phenotype_cohort_end_to_end_groups():
    from ssinfnet.stats import mediation
    from ssinfnet.stats import simulation

    df = simulation.phenotype_cohort(None, n=1521, n_null=4, seed=0)
    meds = [c for c in df.columns if c.startswith(("m_", "null_"))]
    res = mediation.mediation_by_exposure(df, ["age", "male", "n_diseases"], meds, "severity_binary", n_boot=0)
    sig = res[res.significant]
    kept, _ = mediation.correlation_filter(df, list(dict.fromkeys(sig.mediator)), 0.8, "larger_indirect",
                                           scores=sig.groupby("mediator")["indirect"].apply(lambda v: v.abs().max()))
    common, specific = sem.mediator_groups(res, kept=kept)
    assert common == ["m_common"] and specific == {"age": ["m_age"], "n_diseases": ["m_disease"]}
    fit = sem.fit_mediation_sem(df, common, specific)
    assert fit.fit_indices["DoF"] == 8 and fit.fit_indices["RMSEA"] < 0.05
