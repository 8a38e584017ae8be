"""Simulation validation: planted truths by closed form, correlated and confounded mediators, error rates."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ssinfnet.stats import simulation as S
from ssinfnet.stats import validation as V


def test_truth_matches_probit_closed_form():
    # one mediator, probit noise: E[Phi(mu + b e)] = Phi(mu / sqrt(1 + b^2 sd^2)) for e ~ N(0, sd^2)
    df = S.simulate_cohort(None, 300, {"m": {"age": 0.03}, "a1": {"age": 0.02}}, {"m": 0.8}, 2, {"age": 0.02},
                           seed=1, noise="normal", intercept=0.3, mediator_sd=1.5)
    t = V.true_natural_effects(df, "age", (50, 60), draws=400, seed=0)
    c = 50 - df["age"].mean()
    v = np.sqrt(1 + 0.8**2 * 1.5**2)
    # a1 follows age in Y(x1, .): its mean term enters every potential outcome under x1
    base1 = 0.3 + 0.02 * (c + 10)
    p11 = stats.norm.cdf((base1 + 0.8 * 0.03 * (c + 10)) / v)
    p10 = stats.norm.cdf((base1 + 0.8 * 0.03 * c) / v)
    p00 = stats.norm.cdf((0.3 + 0.02 * c + 0.8 * 0.03 * c) / v)
    assert t.loc["m", "nie"] == pytest.approx(p11 - p10, abs=2e-3)
    assert t.loc["m", "nde"] == pytest.approx(p10 - p00, abs=2e-3)
    assert t.loc["a1", "nie"] == 0.0  # no b path: exactly zero, whatever the draws


def test_simulate_cohort_correlated_errors_and_confounder():
    corr = V._one_factor((0.8, 0.4), 4)
    np.testing.assert_allclose(corr[0], [1, 0.8, 0.4, 0])
    assert corr[1, 2] == pytest.approx(0.32) and corr[3, 3] == 1.0
    df = S.simulate_cohort(None, 20000, {"m": {"age": 0.03}, "c1": {"age": 0.03}, "c2": {}}, {"m": 0.8}, 1,
                           seed=0, mediator_corr=corr)
    resid = df[["m", "c1", "c2", "null_1"]] - np.outer(df["age"] - df["age"].mean(), [0.03, 0.03, 0, 0])
    np.testing.assert_allclose(resid.corr().to_numpy(), corr, atol=0.02)
    # the planted matrix rides in attrs without being deep-copied by every pandas operation
    frozen = df.attrs["mediator_corr"]
    assert df[["m"]].attrs["mediator_corr"] is frozen and np.array_equal(np.asarray(frozen), corr)
    assert frozen == S.FrozenMatrix(corr) and not frozen == S.FrozenMatrix(np.eye(4))
    ex = S.simulate_cohort(None, 20000, {"m": {}}, {}, 2, seed=0, mediator_corr=0.5)
    assert ex[["m", "null_1", "null_2"]].corr().to_numpy()[np.triu_indices(3, 1)] == pytest.approx([0.5] * 3, abs=0.02)
    # a confounder adds c^2 to the mediator's variance; it is not in the table
    conf = S.simulate_cohort(None, 20000, {"m": {}}, {"m": 0.0}, 0, seed=0, confounders={"m": (1.0, 2.0)})
    assert conf["m"].var() == pytest.approx(2.0, rel=0.05) and conf.attrs["confounders"] == {"m": (1.0, 2.0)}
    assert stats.pointbiserialr(conf["severity_binary"], conf["m"])[0] > 0.2  # b = 0, yet associated
    assert not any(c.startswith("u") for c in conf.columns)
    # independent errors keep the stream of earlier versions
    pd.testing.assert_frame_equal(S.simulate_cohort(None, 50, {"m": {"age": 0.03}}, {"m": 0.8}, 2, seed=3)[["m", "null_2"]],
                                  S.simulate_cohort(None, 50, {"m": {"age": 0.03}}, {"m": 0.8}, 2, seed=3,
                                                    mediator_corr=np.eye(3))[["m", "null_2"]])


@pytest.mark.parametrize("kwargs, match", [
    ({"mediator_corr": 1.5}, "positive definite|symmetric"),
    ({"mediator_corr": np.eye(2)}, "symmetric"),
    ({"mediator_corr": np.array([[1, 0.9, 0.9], [0.9, 1, -0.9], [0.9, -0.9, 1]])}, "positive definite"),
    ({"confounders": {"null_1": (1.0, 1.0)}}, "confounders"),
])
def test_simulate_cohort_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.simulate_cohort(None, 20, {"m": {"age": 0.03}}, {"m": 0.8}, 2, **kwargs)


def test_coverage_of_natural_indirect_effect_near_nominal():
    st = V.validation_study("independent", n_rep=60, n=300, n_draws=300, seed=1)
    m = st[st.mediator == "m"]
    assert len(m) == 60 and m["truth"].between(0.03, 0.07).all()
    # two-sided binomial test of coverage = 0.95 at level 0.001: fails only for miscalibrated intervals
    assert stats.binomtest(int(m["covered"].sum()), 60, 0.95).pvalue > 0.001
    summary = V.summarise_study(st).set_index(["quantity", "method"])
    assert summary.loc[("coverage", "natural effects"), "estimate"] == m["covered"].mean()
    assert summary.loc[("fdr", "natural effects"), "estimate"] <= 0.05 + 3 * summary.loc[("fdr", "natural effects"), "mc_se"] + 0.02
    assert summary.loc[("power", "natural effects"), "estimate"] == 1.0


def test_correlated_null_mediators_are_false_discoveries_for_both_methods():
    st = V.validation_study("correlated", n_rep=8, n=500, n_draws=50, seed=2)
    calls = st.groupby("mediator")[["natural_significant", "paper_significant", "error_r"]].mean()
    assert calls.loc["a_only_1", "error_r"] == 0.8 and (st.loc[st.mediator == "a_only_1", "truth"] == 0).all()
    assert calls.loc["a_only_1", "natural_significant"] >= 0.75 and calls.loc["a_only_1", "paper_significant"] >= 0.75
    summary = V.summarise_study(st).set_index(["quantity", "method"])
    assert summary.loc[("fdr", "natural effects"), "estimate"] > 0.4  # what no univariate method can remove


def test_confounded_mediator_undercovers_and_true_rho_repairs_it():
    st = V.validation_study("confounded", n_rep=30, n=500, n_draws=200, seed=3)
    s = V.summarise_study(st).set_index(["quantity", "method"])["estimate"]
    assert s[("coverage", "natural effects")] < 0.8 and s[("bias", "natural effects")] > 0
    assert s[("coverage_at_true_rho", "natural effects")] >= 0.8


def test_summarise_hand_case_and_bad_input():
    rows = []
    for rep, (cov, calls) in enumerate([(True, [True, True, False]), (False, [True, False, False])]):
        for j, m in enumerate(["m", "a", "b"]):
            rows.append({"scenario": "s", "rep": rep, "mediator": m, "null": m != "m", "covered": cov if m == "m" else np.nan,
                         "natural_significant": calls[j], "paper_significant": False, "nie": 0.1 + rep * 0.1, "truth": 0.1,
                         "covered_at_true_rho": np.nan})
    s = V.summarise_study(pd.DataFrame(rows)).set_index(["quantity", "method"])
    assert s.loc[("coverage", "natural effects"), "estimate"] == 0.5
    assert s.loc[("coverage", "natural effects"), "mc_se"] == pytest.approx(0.5 / np.sqrt(2))
    assert s.loc[("fdr", "natural effects"), "estimate"] == pytest.approx(0.25)  # FDPs 1/2 and 0
    assert s.loc[("fwer", "natural effects"), "estimate"] == 0.5 and s.loc[("power", "paper's rule"), "estimate"] == 0
    assert s.loc[("bias", "natural effects"), "estimate"] == pytest.approx(0.05)
    assert ("coverage_at_true_rho", "natural effects") not in s.index
    with pytest.raises(ValueError, match="missing"):
        V.summarise_study(pd.DataFrame(rows).drop(columns="null"))
    with pytest.raises(ValueError, match="scenario"):
        V.validation_study("tangled", n_rep=1)
    with pytest.raises(ValueError, match="attrs"):
        V.true_natural_effects(pd.DataFrame({"age": [1.0]}), "age", (0, 1))
