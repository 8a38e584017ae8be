"""Simulated cohorts: planted effects are recovered, intervals cover, nulls stay quiet, power grows."""

from pathlib import Path

import numpy as np
from realdata import real_data_root
import pandas as pd
import pytest
import statsmodels.api as sm
from matplotlib.figure import Figure
from scipy import stats

from ssinfnet.stats import simulation as S
from ssinfnet.stats.mediation import univariate_mediation
from ssinfnet.plots import stats as P


def _clinical_path() -> Path | None:
    root = real_data_root()
    if root is None:
        return None
    path = Path(root) / "iCTCF-HUST19-clinical" / "cleaned_cf_data.csv"
    return path if path.exists() else None


def _load_real_clinical(path: Path) -> pd.DataFrame:
    """Just what these tests need from the raw iCTCF table (the package's reader lives in ssinfnet.data)."""
    raw = pd.read_csv(path)
    diseases = raw["Underlying diseases"].fillna("No underlying disease").astype(str)
    n_dis = diseases.map(lambda s: 0 if s.strip() == "No underlying disease" else len([t for t in s.split(",") if t.strip()]))
    return pd.DataFrame({"patient_id": raw["Patient ID"], "age": raw["Age"].astype(float),
                         "male": (raw["Gender"] == "Male").astype(int), "n_diseases": n_dis})


def test_cohort_shape_truth_and_determinism():
    a, b = {"m": {"age": 0.03}, "a_only": {"n_diseases": 0.5}}, {"m": 0.8, "b_only": 0.4}
    df = S.simulate_cohort(None, 200, a, b, n_null=3, direct={"male": 0.2}, seed=4)
    assert list(df.columns) == ["patient_id", "age", "male", "gender", "n_diseases", "m", "a_only", "b_only",
                                "null_1", "null_2", "null_3", "severity_latent", "severity_binary"]
    assert df.attrs["synthetic"] and df.attrs["a_paths"] == a and df.attrs["covariates_from"] == "synthetic distributions"
    assert set(df["severity_binary"]) == {0, 1} and df["age"].between(18, 95).all()
    assert (df["gender"] == np.where(df["male"] == 1, "Male", "Female")).all()
    pd.testing.assert_frame_equal(df, S.simulate_cohort(None, 200, a, b, 3, {"male": 0.2}, seed=4))
    assert not df.equals(S.simulate_cohort(None, 200, a, b, 3, {"male": 0.2}, seed=5))
    assert S.true_indirect(a, b, "age") == {"m": 0.024, "a_only": 0.0, "b_only": 0.0}


def test_planted_paths_recovered_by_independent_regressions():
    df = S.simulate_cohort(None, 6000, {"m": {"age": 0.03}}, {"m": 0.8}, 0, {"age": 0.02}, seed=0)
    a = sm.OLS(df["m"], sm.add_constant(df[["age"]])).fit()
    assert abs(a.params["age"] - 0.03) < 4 * a.bse["age"]
    fit = sm.Logit(df["severity_binary"], sm.add_constant(df[["age", "m"]])).fit(disp=0)
    assert abs(fit.params["m"] - 0.8) < 4 * fit.bse["m"] and abs(fit.params["age"] - 0.02) < 4 * fit.bse["age"]
    probit = S.simulate_cohort(None, 6000, {"m": {"age": 0.03}}, {"m": 0.8}, 0, None, seed=0, noise="normal")
    fit = sm.Probit(probit["severity_binary"], sm.add_constant(probit[["age", "m"]])).fit(disp=0)
    assert abs(fit.params["m"] - 0.8) < 4 * fit.bse["m"]


@pytest.mark.parametrize("outcome, y", [("logistic", "severity_binary"), ("linear", "severity_latent")])
def test_mediation_recovers_planted_indirect_effect(outcome, y):
    df = S.simulate_cohort(None, 5000, {"m": {"age": 0.03}}, {"m": 0.8}, 2, {"age": 0.02}, seed=1)
    res = univariate_mediation(df, "age", ["m", "null_1", "null_2"], y, n_boot=200, outcome=outcome).set_index("mediator")
    assert res.loc["m", "indirect"] == pytest.approx(0.024, rel=0.15)
    assert res.loc["m", "ci_low"] <= 0.024 <= res.loc["m", "ci_high"]
    assert res.loc["m", "significant"] and not res.loc[["null_1", "null_2"], "significant"].any()


def test_coverage_near_nominal():
    cov = S.coverage_study(n_rep=60, n=150, n_boot=200, seed=0)
    assert len(cov) == 60 and (cov["truth"] == 0.03 * 0.8).all()
    covered = int(cov["covered"].sum())
    # two-sided binomial test of coverage = 0.95 at level 0.001: fails only if the intervals are miscalibrated
    assert stats.binomtest(covered, 60, 0.95).pvalue > 0.001, covered
    assert covered >= 51


def test_null_false_positive_rate_after_adjustment():
    fpr = S.null_false_positive_rate(n_rep=40, n=200, n_null=10, seed=0)
    assert len(fpr) == 40 and (fpr["n_tests"] == 10).all()
    # family-wise error under the complete null: <= 5 % + 3 binomial SE (sqrt(.05 * .95 / 40) = 0.034)
    assert fpr["any_false_positive"].mean() <= 0.05 + 3 * 0.034
    assert fpr["fp_rate"].mean() <= 0.05


def test_power_grows_with_sample_size():
    pw = S.power_curve([40, 400], n_rep=20, n_null=4, seed=0)
    assert list(pw["n"]) == [40, 400] and set(pw["rule"]) == {"paper"}
    assert pw.loc[1, "power"] >= 0.9 and pw.loc[1, "power"] > pw.loc[0, "power"]
    assert np.allclose(pw["se"], np.sqrt(pw["power"] * (1 - pw["power"]) / 20))


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 1}, "n must"),
    ({"noise": "cauchy"}, "noise"),
    ({"a_paths": {"m": {"bmi": 1.0}}}, "unknown covariate"),
    ({"direct": {"bmi": 1.0}}, "direct"),
    ({"a_paths": {"age": {"male": 1.0}}}, "clash"),
    ({"n_null": -1}, "n_null"),
    ({"mediator_sd": 0.0}, "mediator_sd"),
    ({"clinical": pd.DataFrame({"age": [50.0]})}, "missing column"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.simulate_cohort(**({"n": 10} | kwargs))


def test_study_bad_arguments():
    with pytest.raises(ValueError, match="sample_sizes"):
        S.power_curve([])
    with pytest.raises(ValueError, match="outcome"):
        S.coverage_study(n_rep=1, outcome="ordinal")
    with pytest.raises(ValueError, match="n_rep"):
        S.null_false_positive_rate(n_rep=0)
    with pytest.raises(ValueError, match="n_boot"):
        S.power_curve([50], rule="bootstrap", n_boot=0)


def test_plots():
    cov = S.coverage_study(n_rep=8, n=80, n_boot=50, seed=2)
    fig = P.coverage_plot(cov)
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == ""
    assert f"coverage {cov['covered'].mean():.2f}" in fig.axes[0].get_legend().get_texts()[0].get_text()
    pw = pd.DataFrame({"n": [50, 100, 50, 100], "power": [0.2, 0.5, 0.1, 0.4], "se": [0.05] * 4,
                       "rule": ["paper", "paper", "bootstrap", "bootstrap"]})
    fig = P.power_curve_plot(pw)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "sample size (patients)" and len(ax.get_legend().get_texts()) == 2


@pytest.mark.skipif(_clinical_path() is None, reason="real iCTCF clinical table not available")
def test_covariates_resampled_from_real_clinical_table():
    clinical = _load_real_clinical(_clinical_path())
    assert len(clinical) == 1521 and clinical["male"].sum() == 756 and (clinical["n_diseases"] == 0).sum() == 853
    df = S.simulate_cohort(clinical, 3000, {"m": {"age": 0.03}}, {"m": 0.8}, 1, {"age": 0.02}, seed=0)
    assert df.attrs["covariates_from"] == "resampled clinical rows"
    real_rows = set(map(tuple, clinical[["age", "male", "n_diseases"]].to_numpy(float)))
    assert set(map(tuple, df[["age", "male", "n_diseases"]].to_numpy(float))) <= real_rows
    assert df["age"].mean() == pytest.approx(clinical["age"].mean(), abs=1.5)
    res = univariate_mediation(df, "age", ["m", "null_1"], "severity_binary", n_boot=100).set_index("mediator")
    assert res.loc["m", "indirect"] == pytest.approx(0.024, rel=0.25) and res.loc["m", "significant"]


def test_phenotype_cohort_design_twins_and_truth():
    df = S.phenotype_cohort(None, n=3000, n_null=2, seed=0)
    assert [c for c in df.columns if c.startswith(("m_", "null_"))] == [
        "m_common", "m_age", "m_disease", "null_1", "null_2", "m_common_twin"]
    assert df.attrs["synthetic"] and df.attrs["design"] == S.PHENOTYPE_DESIGN and len(df) == 3000
    # twin = m_common + N(0, 0.4^2): the difference has SD 0.4 and the pair correlates above 0.8
    assert (df["m_common_twin"] - df["m_common"]).std() == pytest.approx(0.4, rel=0.05)
    assert df[["m_common", "m_common_twin"]].corr().iloc[0, 1] > 0.8
    # planted a paths, checked by an independent regression
    fit = sm.OLS(df["m_common"], sm.add_constant(df[["age", "n_diseases"]])).fit()
    assert abs(fit.params["age"] - 0.03) < 4 * fit.bse["age"] and abs(fit.params["n_diseases"] - 0.5) < 4 * fit.bse["n_diseases"]
    # twins come from their own stream: the cohort is the same with or without them
    base = S.simulate_cohort(None, 3000, S.PHENOTYPE_DESIGN["a_paths"], S.PHENOTYPE_DESIGN["b_paths"], 2,
                             S.PHENOTYPE_DESIGN["direct"], seed=0, intercept=0.5)
    pd.testing.assert_frame_equal(df.drop(columns="m_common_twin"), base, check_like=False)
    res = pd.DataFrame({"x": ["age", "n_diseases", "age", "male"], "mediator": ["m_common", "m_common", "m_common_twin", "m_age"]})
    assert list(S.with_truth(res)["truth"]) == pytest.approx([0.03 * 0.6, 0.5 * 0.6, 0.0, 0.0])
    with pytest.raises(ValueError, match="twin_sd"):
        S.phenotype_cohort(None, n=50, twin_sd=0)
    with pytest.raises(ValueError, match="unknown mediator"):
        S.phenotype_cohort(None, n=50, design={**S.PHENOTYPE_DESIGN, "twins": {"t": "m_nope"}})
    with pytest.raises(ValueError, match="missing"):
        S.with_truth(res.drop(columns="x"))


@pytest.mark.parametrize("outcome, y", [("linear", "severity_latent"), ("logistic", "severity_binary")])
def test_phenotype_cohort_recovery_with_adjustment(outcome, y):
    df = S.phenotype_cohort(None, n=4000, n_null=3, seed=1)
    meds = [c for c in df.columns if c.startswith(("m_", "null_"))]
    res = S.with_truth(univariate_mediation(df, "age", meds, y, covariates=["male", "n_diseases"], n_boot=0,
                                            outcome=outcome).assign(x="age")).set_index("mediator")
    if outcome == "linear":  # latent scale, omitted mediators independent given x: a*b exactly
        for m in ("m_common", "m_age"):
            assert res.loc[m, "indirect"] == pytest.approx(res.loc[m, "truth"], rel=0.2)
    assert res.loc[["m_common", "m_age"], "significant"].all()
    assert not res.loc[["m_disease", "null_1", "null_2", "null_3"], "significant"].any()
