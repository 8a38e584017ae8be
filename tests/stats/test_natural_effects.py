"""Natural direct and indirect effects against statsmodels' Mediation, closed forms and hand cases."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ssinfnet.stats import compare_methods as CM
from ssinfnet.stats import mediation as M
from ssinfnet.stats import natural_effects as NE
from ssinfnet.stats.simulation import simulate_cohort


@pytest.fixture(scope="module")
def cohort():
    # a = 0.03 per year of age, b = 0.8 log-odds per mediator unit, direct effects of age and gender
    return simulate_cohort(None, 500, {"m": {"age": 0.03}}, {"m": 0.8}, 2, {"age": 0.02, "male": 0.3}, seed=3)


KW = dict(covariates=["male"], contrast=(50, 60), seed=1)


@pytest.fixture(scope="module")
def reference(cohort):
    return NE.statsmodels_mediation(cohort, "age", "m", "severity_binary", n_rep=1500, **KW)


def test_matches_statsmodels_mediation(cohort, reference):
    """statsmodels' scheme (independent mediator draws): estimates and intervals agree within MC error."""
    r = NE.natural_effects(cohort, "age", ["m"], "severity_binary", n_rep=3000, mediator_draws="independent",
                           **KW).iloc[0]
    ref = reference
    for ours, row in (("nie", "ACME (treated)"), ("nde", "ADE (control)"), ("total", "Total effect")):
        lo, hi = ref.loc[row, "Lower CI bound"], ref.loc[row, "Upper CI bound"]
        sd = (hi - lo) / (2 * 1.96)  # spread of the draws; MC SE of a mean of 1500 draws is sd / 39
        assert r[ours] == pytest.approx(ref.loc[row, "Estimate"], abs=4 * sd * np.sqrt(1 / 1500 + 1 / 3000)), ours
        # a 2.5 % quantile of 1500 draws has an MC SE of about 0.07 sd (0.085 sd for the difference)
        assert r[f"{ours}_low"] == pytest.approx(lo, abs=0.35 * sd), ours
        assert r[f"{ours}_high"] == pytest.approx(hi, abs=0.35 * sd), ours
    assert r.prop_mediated == pytest.approx(ref.loc["Prop. mediated (treated)", "Estimate"], abs=0.05)


def test_common_draws_same_centre_narrower_interval(cohort, reference):
    r = NE.natural_effects(cohort, "age", ["m"], "severity_binary", n_rep=3000, **KW).iloc[0]
    ref = reference.loc["ACME (treated)"]
    sd = (ref["Upper CI bound"] - ref["Lower CI bound"]) / (2 * 1.96)
    assert r.nie == pytest.approx(ref["Estimate"], abs=4 * sd * np.sqrt(1 / 1500 + 1 / 3000))
    # statsmodels' independent draws add simulation noise to each draw: its interval is wider
    assert ref["Lower CI bound"] < r.nie_low < r.nie < r.nie_high < ref["Upper CI bound"]
    assert (r.nie_high - r.nie_low) < 0.8 * (ref["Upper CI bound"] - ref["Lower CI bound"])
    # the direct effect does not involve the mediator draws' difference: same interval as statsmodels
    nde = reference.loc["ADE (control)"]
    sd_nde = (nde["Upper CI bound"] - nde["Lower CI bound"]) / (2 * 1.96)
    assert r.nde_low == pytest.approx(nde["Lower CI bound"], abs=0.35 * sd_nde)


def test_coefficients_and_joint_significance_are_the_regressions(cohort):
    r = NE.natural_effects(cohort, "age", ["m", "null_1"], "severity_binary", n_rep=200, **KW).set_index("mediator")
    z = (cohort["age"] - 50) / 10
    X = sm.add_constant(pd.DataFrame({"z": z, "male": cohort["male"]}))
    med = sm.OLS(cohort["m"], X).fit()
    out = sm.Logit(cohort["severity_binary"], X.assign(m=cohort["m"])).fit(disp=0)
    assert r.loc["m", "a"] == pytest.approx(med.params["z"]) and r.loc["m", "p_a"] == pytest.approx(med.pvalues["z"])
    assert r.loc["m", "b"] == pytest.approx(out.params["m"]) and r.loc["m", "direct"] == pytest.approx(out.params["z"])
    assert r.loc["m", "p_nie"] == pytest.approx(max(med.pvalues["z"], out.pvalues["m"]))
    # a per 10 years = 10 x the per-year slope of the planted 0.03
    assert r.loc["m", "a"] == pytest.approx(0.3, abs=3 * med.bse["z"])
    assert r.loc["null_1", "nie_low"] < 0 < r.loc["null_1", "nie_high"]


def test_identity_link_nie_is_product_of_coefficients(cohort):
    """Linear outcome: every draw's NIE is exactly a_r * b_r, so the mean is a * b up to MC error."""
    r = NE.natural_effects(cohort, "age", ["m"], "severity_binary", link="identity", n_rep=4000, **KW).iloc[0]
    draws_sd = (r.nie_high - r.nie_low) / (2 * 1.96)
    assert r.nie == pytest.approx(r.a * r.b, abs=4 * draws_sd / np.sqrt(4000))
    assert r.nde == pytest.approx(r.direct, abs=4 * draws_sd / np.sqrt(4000) * 3)


def test_probit_matches_closed_form(cohort):
    """Probit: E[Phi(mu + b sigma e)] = Phi(mu / sqrt(1 + b^2 sigma^2)) gives the NIE at the estimates."""
    r = NE.natural_effects(cohort, "age", ["m"], "severity_binary", link="probit", n_rep=4000, **KW).iloc[0]
    z = (cohort["age"] - 50) / 10
    X = sm.add_constant(pd.DataFrame({"z": z, "male": cohort["male"]}))
    med = sm.OLS(cohort["m"], X).fit()
    out = sm.Probit(cohort["severity_binary"], X.assign(m=cohort["m"])).fit(disp=0)
    th, al, sigma = out.params, med.params, np.sqrt(med.scale)
    mu_m0 = al["const"] + al["male"] * cohort["male"]
    base = th["const"] + th["male"] * cohort["male"] + th["z"]
    scale = np.sqrt(1 + th["m"] ** 2 * sigma**2)
    nie = np.mean(stats.norm.cdf((base + th["m"] * (mu_m0 + al["z"])) / scale)
                  - stats.norm.cdf((base + th["m"] * mu_m0) / scale))
    half = (r.nie_high - r.nie_low) / 2
    assert r.nie == pytest.approx(nie, abs=0.05 * half)


def test_bootstrap_agrees_with_quasi_bayes(cohort):
    qb = NE.natural_effects(cohort, "age", ["m"], "severity_binary", n_rep=1000, **KW).iloc[0]
    bs = NE.natural_effects(cohort, "age", ["m"], "severity_binary", n_rep=400, method="bootstrap", **KW).iloc[0]
    half = (qb.nie_high - qb.nie_low) / 2
    assert bs.nie == pytest.approx(qb.nie, abs=0.25 * half)
    assert bs.nie_low == pytest.approx(qb.nie_low, abs=0.35 * half) and bs.method == "bootstrap"
    assert bs.note == ""


def test_by_exposure_family_contrasts_seeds_and_jobs(cohort):
    meds = ["m", "null_1", "null_2"]
    res = NE.natural_effects_by_exposure(cohort, ["age", "male"], meds, "severity_binary", n_rep=100,
                                         contrasts={"age": (50, 60)}, seed=4)
    assert list(res["x"]) == ["age"] * 3 + ["male"] * 3 and list(res["covariates"]) == ["male"] * 3 + ["age"] * 3
    assert list(res[["x0", "x1"]].itertuples(index=False, name=None)) == [(50.0, 60.0)] * 3 + [(0.0, 1.0)] * 3
    np.testing.assert_allclose(res["p_nie_adj"], multipletests(res["p_nie"], method="fdr_bh")[1])
    assert list(res["significant"]) == list(res["p_nie_adj"] < 0.05)
    assert res.attrs["family"]["size"] == 6 and res.attrs["family"]["over"] == "mediators x exposures"
    assert res.set_index(["x", "mediator"]).loc[("age", "m"), "significant"]
    # a row does not depend on its company, nor on the number of workers
    alone = NE.natural_effects(cohort, "age", ["null_2"], "severity_binary", n_rep=100, covariates=["male"],
                               contrast=(50, 60), seed=4).iloc[0]
    assert alone.nie_low == res.iloc[2].nie_low
    par = NE.natural_effects_by_exposure(cohort, ["age", "male"], meds, "severity_binary", n_rep=100,
                                         contrasts={"age": (50, 60)}, seed=4, n_jobs=2)
    pd.testing.assert_frame_equal(res, par)
    # the default contrast of a continuous exposure is its interquartile range
    ages = np.sort(cohort["age"].to_numpy())
    assert NE.default_contrast(cohort["age"]) == (ages[int(0.25 * 499)], ages[int(np.ceil(0.75 * 499))])
    assert NE.default_contrast([0, 0, 0, 0, 1, 2]) == (0.0, 1.0) and NE.default_contrast([0, 1, 1]) == (0.0, 1.0)


def test_missing_rows_and_failed_fit_reported():
    df = simulate_cohort(None, 200, {"m": {"age": 0.03}}, {"m": 0.8}, 0, {"age": 0.02}, seed=0)
    df.loc[[0, 1, 2], "m"] = np.nan
    r = NE.natural_effects(df, "age", ["m"], "severity_binary", n_rep=50).iloc[0]
    assert r.n == 197 and r.n_dropped == 3
    sep = pd.DataFrame({"x": np.arange(20.0), "m": np.r_[np.zeros(10), np.ones(10)] + np.arange(20) * 0.01})
    sep["y"] = (sep["x"] >= 10).astype(int)  # x separates y perfectly
    r = NE.natural_effects(sep, "x", ["m"], "y", n_rep=50).iloc[0]
    assert "fit failed" in r.note and np.isnan(r.nie) and np.isnan(r.p_nie)


@pytest.mark.parametrize("kwargs, match", [
    ({"link": "cloglog"}, "link"),
    ({"method": "bayes"}, "method"),
    ({"link": "probit", "method": "bootstrap"}, "probit"),
    ({"n_rep": 5}, "n_rep"),
    ({"alpha": 0.0}, "alpha"),
    ({"y": "m"}, "different columns"),
    ({"y": "n_diseases"}, "0/1"),
    ({"mediators": []}, "at least one"),
    ({"mediators": ["nope"]}, "not in the table"),
    ({"contrast": (50, 50)}, "contrast"),
    ({"mediator_draws": "antithetic"}, "mediator_draws"),
])
def test_bad_arguments(cohort, kwargs, match):
    args = {"x": "age", "mediators": ["m"], "y": "severity_binary", "n_rep": 20} | kwargs
    with pytest.raises(ValueError, match=match):
        NE.natural_effects(cohort, **args)


def test_by_exposure_bad_arguments(cohort):
    with pytest.raises(ValueError, match="contrasts"):
        NE.natural_effects_by_exposure(cohort, ["age"], ["m"], "severity_binary", contrasts={"bmi": (0, 1)})
    with pytest.raises(ValueError, match="family"):
        NE.natural_effects_by_exposure(cohort, ["age"], ["m"], "severity_binary", family="feature")
    with pytest.raises(ValueError, match="unexpected"):
        NE.natural_effects_by_exposure(cohort, ["age"], ["m"], "severity_binary", nrep=10)


def test_inconsistent_mediation_paper_misses_natural_finds():
    """A direct effect opposite to the indirect one hides the total effect: the paper's rule needs it."""
    df = simulate_cohort(None, 1500, {"m": {"age": 0.04}}, {"m": 0.8}, 0, {"age": -0.032}, seed=2)
    paper = M.mediation_by_exposure(df, ["age"], ["m"], "severity_binary", n_boot=0)
    nat = NE.natural_effects_by_exposure(df, ["age"], ["m"], "severity_binary", n_rep=300, contrasts={"age": (50, 60)})
    cmp = CM.compare_with_paper(paper, nat).iloc[0]
    assert cmp.natural_significant and not cmp.paper_significant and cmp.reason == "no total effect"
    assert cmp.nie_low > 0 and cmp.same_sign
    assert paper.iloc[0].p21_adj < 0.05 and paper.iloc[0].p32_adj < 0.05  # a and b are clear


def test_compare_reasons_on_a_constructed_table():
    base = {"x": "age", "p21_adj": 0.001, "p32_adj": 0.001, "indirect": 0.2, "covariates": ""}
    paper = pd.DataFrame([
        {**base, "mediator": "agree", "significant": True, "p11_adj": 0.01, "beta11": 1.0, "beta31": 0.5},
        {**base, "mediator": "total", "significant": False, "p11_adj": 0.3, "beta11": 0.1, "beta31": 0.05},
        {**base, "mediator": "scale", "significant": False, "p11_adj": 0.01, "beta11": 0.5, "beta31": 0.6},
        {**base, "mediator": "bh", "significant": True, "p11_adj": 0.01, "beta11": 1.0, "beta31": 0.5},
        {**base, "mediator": "cov", "significant": True, "p11_adj": 0.01, "beta11": 1.0, "beta31": 0.5}])
    natural = pd.DataFrame({"x": "age", "mediator": ["agree", "total", "scale", "bh", "cov"],
                            "significant": [True, True, True, False, True], "p_nie_adj": [0.01, 0.01, 0.01, 0.06, 0.01],
                            "nie": [0.02, 0.01, -0.01, 0.01, 0.01], "nie_low": 0.0, "nie_high": 0.03,
                            "covariates": ["", "", "", "", "male"]})
    out = CM.compare_with_paper(paper, natural)
    assert list(out["reason"]) == ["agree", "no total effect", "non-collapsible", "multiplicity", "different models"]
    assert list(out["same_sign"]) == [True, True, False, True, True]
    assert out.attrs["counts"]["multiplicity"] == 1
    with pytest.raises(ValueError, match="missing"):
        CM.compare_with_paper(paper.drop(columns="beta31"), natural)
    with pytest.raises(ValueError, match="share no"):
        CM.compare_with_paper(paper, natural.assign(x="male"))
