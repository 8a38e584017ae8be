"""SEM: lavaan's published Political Democracy example, an independent fit (SUR + OLS/probit), fit indices."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from matplotlib.figure import Figure

from ssinfnet.plots import stats as sem_plots
from ssinfnet.stats import sem
from ssinfnet.stats.simulation import simulate_cohort

# lavaan tutorial (https://lavaan.ugent.be/tutorial/sem.html), Bollen's Political Democracy model with
# six residual covariances: published estimates, to three decimals, and the fit measures.
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
LAVAAN_FIT = {"chi2": 38.125, "DoF": 35, "chi2 p-value": 0.329, "CFI": 0.995, "TLI": 0.993, "RMSEA": 0.035,
              "AIC": 3157.582, "BIC": 3229.424}

PLANTED_A = {"c1": {"age": 0.03, "n_diseases": 0.5}, "a1": {"age": 0.04}, "d1": {"n_diseases": 0.6}}
PLANTED_B = {"c1": 0.5, "a1": 0.4, "d1": 0.3}
EQUATIONS = {"c1": ["age", "n_diseases"], "a1": ["age"], "d1": ["n_diseases"]}
ERROR_CORR = np.array([[1, 0.5, 0.3], [0.5, 1, 0.4], [0.3, 0.4, 1]])


def _sur(df, equations):
    """Seemingly unrelated regressions by iterated feasible GLS (converges to maximum likelihood)."""
    names = list(equations)
    n = len(df)
    Y = df[names].to_numpy(float)
    Xs = [np.column_stack([np.ones(n), df[equations[k]].to_numpy(float)]) for k in names]
    off = np.cumsum([0] + [X.shape[1] for X in Xs])
    beta = [np.linalg.lstsq(X, Y[:, i], rcond=None)[0] for i, X in enumerate(Xs)]
    for _ in range(500):
        R = np.column_stack([Y[:, i] - X @ beta[i] for i, X in enumerate(Xs)])
        W = np.linalg.inv(R.T @ R / n)
        A, b = np.zeros((off[-1], off[-1])), np.zeros(off[-1])
        for i, Xi in enumerate(Xs):
            for j, Xj in enumerate(Xs):
                A[off[i]:off[i + 1], off[j]:off[j + 1]] = W[i, j] * Xi.T @ Xj
                b[off[i]:off[i + 1]] += W[i, j] * Xi.T @ Y[:, j]
        flat = np.linalg.solve(A, b)
        new = [flat[off[i]:off[i + 1]] for i in range(len(Xs))]
        done = max(np.abs(u - v).max() for u, v in zip(new, beta)) < 1e-13
        beta = new
        if done:
            break
    R = np.column_stack([Y[:, i] - X @ beta[i] for i, X in enumerate(Xs)])
    return {k: dict(zip(equations[k], beta[i][1:])) for i, k in enumerate(names)}, R.T @ R / n


def test_political_democracy_matches_lavaan():
    from semopy.examples import political_democracy

    data = political_democracy.get_data()
    model, est, fit = sem.fit_model(LAVAAN_PD, data)
    paths = {(r.lval, r.rval): float(r.Estimate) for r in est[est["op"] == "~"].itertuples()}
    for key, value in LAVAAN_ESTIMATES.items():
        assert paths[key] == pytest.approx(value, abs=2e-3), key
    assert fit["chi2"] == pytest.approx(38.125, abs=0.01) and fit["DoF"] == 35
    # our lavaan-style indices reproduce lavaan's published fit measures (no observed exogenous here)
    ours = sem.lavaan_fit_indices(model, data, exogenous=())
    for key, value in LAVAAN_FIT.items():
        assert float(ours[key]) == pytest.approx(value, abs=0.01 if key not in ("AIC", "BIC") else 0.05), key


def test_build_description():
    desc = sem.build_description(["c1"], {"age": ["a1"], "n_diseases": ["d1"]})
    assert desc.splitlines() == [
        "c1 ~ age + n_diseases", "a1 ~ age", "d1 ~ n_diseases",
        "severity_binary ~ c1 + a1 + d1 + age + n_diseases", "c1 ~~ a1", "c1 ~~ d1", "a1 ~~ d1"]
    assert sem.build_description(["c1"], {}, direct=False).splitlines()[-1] == "severity_binary ~ c1"
    assert "~~" not in sem.build_description(["c1", "c2"], {}, mediator_covariances=False)
    assert sem.build_description(["c1"], {}, outcome=None).splitlines() == ["c1 ~ age + n_diseases"]
    with pytest.raises(ValueError, match="not exogenous"):
        sem.build_description(["c1"], {"gender": ["g1"]})
    with pytest.raises(ValueError, match="twice"):
        sem.build_description(["c1"], {"age": ["c1"]})
    with pytest.raises(ValueError, match="at least one mediator"):
        sem.build_description([], {})


@pytest.fixture(scope="module")
def cohort():
    # mediator errors correlated (r 0.3-0.5), probit outcome noise: both outcome models are well defined
    return simulate_cohort(None, 3000, PLANTED_A, PLANTED_B, 1, {"age": 0.01}, seed=11, noise="normal",
                           mediator_corr=np.pad(ERROR_CORR, (0, 1)) + np.diag([0, 0, 0, 1]))


@pytest.fixture(scope="module")
def linear(cohort):
    return sem.fit_mediation_sem(cohort, ["c1"], {"age": ["a1"], "n_diseases": ["d1"]},
                                 outcome="severity_latent", standardize=False, n_boot=20, seed=1)


@pytest.fixture(scope="module")
def probit(cohort):
    return sem.fit_mediation_sem(cohort, ["c1"], {"age": ["a1"], "n_diseases": ["d1"]}, standardize=False)


def test_semopy_equals_independent_fit_linear(cohort, linear):
    """Mediator block = SUR (free residual covariances), outcome = OLS; chi2 = the SUR likelihood ratio."""
    est = linear.estimates.set_index(["lval", "rval"])
    assert linear.outcome_model == "linear"
    sur, resid_cov = _sur(cohort, EQUATIONS)
    for dep, regs in EQUATIONS.items():
        ols = sm.OLS(cohort[dep], sm.add_constant(cohort[regs])).fit()
        for r in regs:  # equal up to semopy's optimiser tolerance: 2 % of a standard error
            assert est.loc[(dep, r), "estimate"] == pytest.approx(sur[dep][r], abs=0.02 * ols.bse[r]), (dep, r)
    regs = ["c1", "a1", "d1", "age", "n_diseases"]
    ols = sm.OLS(cohort["severity_latent"], sm.add_constant(cohort[regs])).fit()
    for r in regs:
        assert est.loc[("severity_latent", r), "estimate"] == pytest.approx(ols.params[r], abs=0.02 * ols.bse[r]), r
    cov = linear.covariances.set_index(["lval", "rval"])
    names = list(EQUATIONS)
    for (i, j) in [(0, 1), (0, 2), (1, 2)]:
        key = (names[i], names[j]) if (names[i], names[j]) in cov.index else (names[j], names[i])
        assert cov.loc[key, "estimate"] == pytest.approx(resid_cov[i, j], rel=0.02)
        assert cov.loc[key, "r"] == pytest.approx(ERROR_CORR[i, j], abs=0.05)
    # the only restrictions are the two omitted a paths: chi2 is the SUR likelihood-ratio statistic
    X = sm.add_constant(cohort[["age", "n_diseases"]]).to_numpy()
    Y = cohort[names].to_numpy()
    R = Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]
    lr = len(cohort) * (np.linalg.slogdet(resid_cov)[1] - np.linalg.slogdet(R.T @ R / len(cohort))[1])
    fi = linear.fit_indices
    assert fi["DoF"] == 2 and fi["DoF (semopy)"] == 5  # semopy counts the 3 exogenous moments as free
    assert float(fi["chi2"]) == pytest.approx(lr, abs=0.05)
    assert fi["chi2 p-value"] > 0.001 and fi["RMSEA"] < 0.05 and fi["CFI"] > 0.99


def test_probit_outcome_equals_statsmodels_probit_and_recovers_b(cohort, probit):
    est = probit.estimates.set_index(["lval", "rval"])
    regs = ["c1", "a1", "d1", "age", "n_diseases"]
    ref = sm.Probit(cohort["severity_binary"], sm.add_constant(cohort[regs])).fit(disp=0)
    for r in regs:
        assert est.loc[("severity_binary", r), "estimate"] == pytest.approx(ref.params[r], rel=1e-6)
        assert est.loc[("severity_binary", r), "p"] == pytest.approx(ref.pvalues[r], rel=1e-6)
    # latent-scale paths: the planted b (probit errors N(0, 1)) within 4 standard errors
    for m, b in PLANTED_B.items():
        assert abs(est.loc[("severity_binary", m), "estimate"] - b) < 4 * ref.bse[m], m
    # fully standardised outcome paths use Var(severity*) = Var(linear predictor) + 1
    lin = sm.add_constant(cohort[regs]).to_numpy() @ ref.params.to_numpy()
    sd_star = np.sqrt(np.var(lin - ref.params["const"]) + 1)
    assert est.loc[("severity_binary", "c1"), "std_estimate"] == pytest.approx(
        ref.params["c1"] * cohort["c1"].std(ddof=0) / sd_star)
    ind = probit.indirect.set_index(["x", "mediator"])
    assert ind.loc[("age", "a1"), "indirect"] == pytest.approx(
        est.loc[("a1", "age"), "estimate"] * est.loc[("severity_binary", "a1"), "estimate"])
    assert ind.loc[("age", "a1"), "indirect"] == pytest.approx(0.04 * 0.4, rel=0.3)
    assert probit.fit_indices["DoF"] == 2 and "saturated" in probit.fit_indices["scope"]


def test_sur_and_closed_form_refits_equal_semopy(cohort, linear, probit):
    from ssinfnet.stats.regression import sur

    names = list(EQUATIONS)
    X = [sm.add_constant(cohort[EQUATIONS[k]]).to_numpy() for k in names]
    beta, cov = sur(cohort[names].to_numpy(), X)
    ref, ref_cov = _sur(cohort, EQUATIONS)
    for k, b in zip(names, beta):
        np.testing.assert_allclose(b[1:], list(ref[k].values()), rtol=1e-8)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-8)
    # identical designs: SUR is equation-by-equation OLS
    same = [sm.add_constant(cohort[["age", "n_diseases"]]).to_numpy()] * 3
    ols = np.linalg.lstsq(same[0], cohort[names].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(np.column_stack(sur(cohort[names].to_numpy(), same)[0]), ols, rtol=1e-8)
    with pytest.raises(ValueError, match="designs"):
        sur(cohort[names].to_numpy(), X[:2])
    # the bootstrap's closed-form refit reproduces semopy's paths (and probit's) on the full data
    for fit, model in ((linear, "linear"), (probit, "probit")):
        spec = (["c1"], {"age": ["a1"], "n_diseases": ["d1"]}, ["age", "n_diseases"], fit.groups["outcome"], True, True)
        paths = sem._closed_form_paths(cohort, spec, model)
        for r in fit.estimates.itertuples():
            assert paths[(r.lval, r.rval)] == pytest.approx(r.estimate, abs=0.02 * r.se), (model, r.lval, r.rval)


def test_zero_covariances_misfit_correlated_mediators(cohort, probit):
    fixed = sem.fit_mediation_sem(cohort, ["c1"], {"age": ["a1"], "n_diseases": ["d1"]}, mediator_covariances=False)
    assert fixed.fit_indices["DoF"] == 5 and fixed.covariances.empty
    assert fixed.fit_indices["chi2 p-value"] < 1e-6 and fixed.fit_indices["RMSEA"] > 0.1
    assert fixed.fit_indices["CFI"] < probit.fit_indices["CFI"]
    # a saturated mediator block (every mediator on both exposures) has no degrees of freedom
    sat = sem.fit_mediation_sem(cohort, ["c1", "a1", "d1"], {})
    assert sat.fit_indices["DoF"] == 0 and sat.fit_indices["CFI"] == 1.0 and np.isnan(sat.fit_indices["chi2 p-value"])


def test_bootstrap_intervals(linear):
    ind = linear.indirect.set_index(["x", "mediator"])
    assert set(ind.index) == {("age", "c1"), ("age", "a1"), ("age", "total"),
                              ("n_diseases", "c1"), ("n_diseases", "d1"), ("n_diseases", "total")}
    assert ind.loc[("age", "total"), "indirect"] == pytest.approx(
        ind.loc[("age", "c1"), "indirect"] + ind.loc[("age", "a1"), "indirect"])
    assert linear.n_boot_ok == 20
    assert (ind["ci_low"] <= ind["indirect"]).all() and (ind["indirect"] <= ind["ci_high"]).all()
    assert (ind["ci_low"] > 0).all() and np.allclose(ind["p_boot"], 2 / 21)


def test_standardized_seeded_and_missing_rows(cohort):
    df = cohort.iloc[:400].copy()
    df.loc[[0, 1], "a1"] = np.nan
    kw = dict(common=["c1"], specific={"age": ["a1"]}, n_boot=5, seed=3)
    r1 = sem.fit_mediation_sem(df, **kw)
    r2 = sem.fit_mediation_sem(df, **kw)
    assert r1.n == 398 and r1.n_dropped == 2 and r1.outcome_model == "probit" and r1.n_boot_ok == 5
    pd.testing.assert_frame_equal(r1.indirect, r2.indirect)
    pd.testing.assert_frame_equal(r1.indirect, sem.fit_mediation_sem(df, n_jobs=2, **kw).indirect)  # workers: same
    # standardised mediator equations: raw estimates equal semopy's standardised ones
    med = r1.estimates[r1.estimates["lval"] != "severity_binary"]
    np.testing.assert_allclose(med["estimate"], med["std_estimate"], atol=5e-3)
    lpm = sem.fit_mediation_sem(df, outcome_model="linear", **kw)
    assert lpm.outcome_model == "linear" and lpm.fit_indices["scope"].startswith("all equations")


def test_aliases_for_awkward_names(cohort):
    df = cohort.iloc[:300].rename(columns={"c1": "overall glcm-Idmn"})
    r = sem.fit_mediation_sem(df, ["overall glcm-Idmn", "a1"], {}, outcome="severity_latent")
    assert "overall glcm-Idmn" in set(r.estimates["rval"]) and "overall glcm-Idmn" in set(r.covariances["lval"])


@pytest.mark.parametrize("kwargs, match", [
    ({"common": ["zz"]}, "not in the table"),
    ({"common": ["gender"]}, "numeric"),
    ({"common": ["const"]}, "constant"),
    ({"alpha": 0.0}, "alpha"),
    ({"n_boot": -2}, "n_boot"),
    ({"outcome_model": "logit"}, "outcome_model"),
    ({"outcome_model": "probit", "outcome": "severity_latent"}, "0/1"),
])
def test_bad_arguments(cohort, kwargs, match):
    df = cohort.iloc[:100].assign(const=1.0)
    args = {"common": ["c1"], "specific": {}} | kwargs
    with pytest.raises(ValueError, match=match):
        sem.fit_mediation_sem(df, **args)


def test_path_diagram(probit):
    fig = sem_plots.sem_path_diagram(probit)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == ""
    texts = {t.get_text() for t in ax.texts}
    assert {"age", "n_diseases", "c1", "a1", "d1", "severity_binary"} <= texts
    assert {f"{v:.2f}" for v in probit.estimates["std_estimate"]} <= texts  # every path carries its label


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
    assert fit.fit_indices["DoF"] == 2 and fit.fit_indices["RMSEA"] < 0.05 and fit.outcome_model == "probit"
