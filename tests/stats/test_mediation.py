"""Mediation regressions against hand computations and statsmodels; BH; bootstrap; correlation filter."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from matplotlib.figure import Figure
from statsmodels.stats.multitest import multipletests

from ssinfnet.stats import mediation as M, regression as REG
from ssinfnet.plots import stats as P


def _toy(n=400, seed=0, a=0.8, b=0.9, direct=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    m1 = a * x + 0.3 * z + rng.normal(size=n)
    m2 = rng.normal(size=n) * 1000.0  # large scale: slopes must still be right
    eta = -0.2 + direct * x + b * m1 + 0.2 * z
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"x": x, "z": z, "m1": m1, "m2": m2, "y": y, "ycont": eta + rng.normal(size=n)})


def test_hand_computed_six_rows():
    df = pd.DataFrame({"x": [0, 1, 2, 3, 4, 5.0], "m": [1, 0, 3, 2, 5, 4.0], "y": [1, 2, 2, 5, 6, 8.0]})
    r = M.univariate_mediation(df, "x", ["m"], "y", outcome="linear", n_boot=0).iloc[0]
    # centred sums by hand: Sxx = 17.5, Sxm = 14.5, Smm = 17.5, Sxy = 25, Smy = 19
    dx, dm, dy = (df[c] - df[c].mean() for c in ("x", "m", "y"))
    sums = [(dx * dx).sum(), (dx * dm).sum(), (dm * dm).sum(), (dx * dy).sum(), (dm * dy).sum()]
    assert sums == [17.5, 14.5, 17.5, 25.0, 19.0]
    # slopes: Sxy/Sxx, Sxm/Sxx; Cramer's rule with det = 17.5^2 - 14.5^2 = 96
    assert r.beta11 == pytest.approx(25 / 17.5)
    assert r.beta21 == pytest.approx(14.5 / 17.5)
    assert r.beta31 == pytest.approx((17.5 * 25 - 14.5 * 19) / 96) == 1.6875
    assert r.beta32 == pytest.approx((17.5 * 19 - 14.5 * 25) / 96) == -0.3125
    assert r.indirect == pytest.approx(14.5 / 17.5 * -0.3125)
    sxx = 17.5
    # t-test of beta11 by hand: residual variance with n - 2 = 4 degrees of freedom
    resid = dy - 25 / 17.5 * dx
    se = np.sqrt((resid**2).sum() / 4 / sxx)
    from scipy import stats

    assert r.p11 == pytest.approx(2 * stats.t.sf(abs(25 / 17.5) / se, 4))
    assert r.n == 6 and r.n_dropped == 0


@pytest.mark.parametrize("outcome", ["linear", "logistic"])
def test_against_statsmodels(outcome):
    df = _toy()
    y = "ycont" if outcome == "linear" else "y"
    res = M.univariate_mediation(df, "x", ["m1", "m2"], y, covariates=["z"], n_boot=0, outcome=outcome)
    fitter = sm.OLS if outcome == "linear" else sm.Logit
    kw = {} if outcome == "linear" else {"disp": 0}
    for r in res.itertuples():
        f1 = fitter(df[y], sm.add_constant(df[["x", "z"]])).fit(**kw)
        f2 = sm.OLS(df[r.mediator], sm.add_constant(df[["x", "z"]])).fit()
        f3 = fitter(df[y], sm.add_constant(df[["x", r.mediator, "z"]])).fit(**kw)
        got = [r.beta11, r.beta21, r.beta31, r.beta32, r.p11, r.p21, r.p31, r.p32]
        want = [f1.params["x"], f2.params["x"], f3.params["x"], f3.params[r.mediator],
                f1.pvalues["x"], f2.pvalues["x"], f3.pvalues["x"], f3.pvalues[r.mediator]]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


def test_missing_values_dropped_per_test_and_counted():
    df = _toy()
    df.loc[[0, 1, 2], "m1"] = np.nan
    df.loc[[5], "y"] = np.nan
    res = M.univariate_mediation(df, "x", ["m1", "m2"], "y", n_boot=0).set_index("mediator")
    assert res.loc["m1", "n_dropped"] == 4 and res.loc["m1", "n"] == 396
    assert res.loc["m2", "n_dropped"] == 1
    sub = df[["x", "m1", "y"]].dropna()
    f1 = sm.Logit(sub["y"], sm.add_constant(sub[["x"]])).fit(disp=0)
    assert res.loc["m1", "beta11"] == pytest.approx(f1.params["x"], rel=1e-6)


def test_adjusted_columns_are_bh_of_each_column():
    df = _toy()
    rng = np.random.default_rng(1)
    for j in range(6):
        df[f"n{j}"] = rng.normal(size=len(df))
    meds = ["m1", "m2"] + [f"n{j}" for j in range(6)]
    res = M.univariate_mediation(df, "x", meds, "y", n_boot=200)
    for col in ("p11", "p21", "p31", "p32", "p_indirect"):
        np.testing.assert_allclose(res[f"{col}_adj"], multipletests(res[col], method="fdr_bh")[1])
    np.testing.assert_allclose(res["p_adj"], res[["p11_adj", "p21_adj", "p32_adj"]].max(axis=1))
    expected = (res["p_adj"] < 0.05) & (res["beta11"].abs() > res["beta31"].abs())
    assert list(res["significant"]) == list(expected)
    assert res.set_index("mediator").loc["m1", "significant"]
    assert not res.set_index("mediator").loc[[f"n{j}" for j in range(6)], "significant"].any()


def test_bootstrap_weights_equal_resampled_rows():
    rng = np.random.default_rng(0)
    n = 50
    X = np.c_[np.ones(n), rng.normal(size=(n, 2))]
    y = X @ [0.5, 1.0, -2.0] + rng.normal(size=n)
    yb = (rng.random(n) < 1 / (1 + np.exp(-(X @ [0.0, 1.0, -1.0])))).astype(float)
    idx = rng.integers(0, n, size=(4, n))
    w = np.stack([np.bincount(i, minlength=n) for i in idx]).astype(float)
    got = REG.batched_ols(X, y, w)
    got_logit = REG.batched_logit(X, yb, w)
    for k in range(4):
        np.testing.assert_allclose(got[k], np.linalg.lstsq(X[idx[k]], y[idx[k]], rcond=None)[0], rtol=1e-8)
        ref = sm.Logit(yb[idx[k]], X[idx[k]]).fit(disp=0).params
        np.testing.assert_allclose(got_logit[k], ref, rtol=1e-6, atol=1e-8)
    wts = REG.bootstrap_weights(n, 7, np.random.default_rng(1))
    assert wts.shape == (7, n) and np.all(wts.sum(1) == n)


def test_bootstrap_interval_pvalue_and_seed():
    df = _toy()
    a = M.univariate_mediation(df, "x", ["m1", "m2"], "y", n_boot=300, seed=5).set_index("mediator")
    b = M.univariate_mediation(df, "x", ["m2", "m1"], "y", n_boot=300, seed=5).set_index("mediator")
    c = M.univariate_mediation(df, "x", ["m1"], "y", n_boot=300, seed=6).set_index("mediator")
    # seeded per mediator: same interval whatever the order or company
    assert a.loc["m1", "ci_low"] == b.loc["m1", "ci_low"] and a.loc["m1", "ci_high"] == b.loc["m1", "ci_high"]
    assert a.loc["m1", "ci_low"] != c.loc["m1", "ci_low"]
    par = M.univariate_mediation(df, "x", ["m1", "m2"], "y", n_boot=300, seed=5, n_jobs=2).set_index("mediator")
    pd.testing.assert_frame_equal(a, par)  # workers change nothing
    assert a.loc["m1", "ci_low"] < a.loc["m1", "indirect"] < a.loc["m1", "ci_high"]
    assert a.loc["m1", "ci_low"] > 0 and a.loc["m1", "p_indirect"] == pytest.approx(2 / 301)
    assert a.loc["m1", "n_boot_ok"] == 300
    assert a.loc["m2", "ci_low"] < 0 < a.loc["m2", "ci_high"] and a.loc["m2", "p_indirect"] > 0.05
    assert REG.bootstrap_pvalue(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 / 4)
    assert REG.bootstrap_pvalue(np.array([-1.0, 1.0] * 50)) == 1.0
    assert np.isnan(REG.bootstrap_pvalue(np.array([np.nan])))


def test_bootstrap_rule():
    df = _toy()
    res = M.univariate_mediation(df, "x", ["m1", "m2"], "y", n_boot=200, rule="bootstrap").set_index("mediator")
    np.testing.assert_allclose(res["p_adj"], res["p_indirect_adj"])
    assert res.loc["m1", "significant"] and not res.loc["m2", "significant"]


def test_separated_logistic_reported_not_raised():
    df = pd.DataFrame({"x": np.arange(20.0), "m": np.r_[np.zeros(10), np.ones(10)] + np.arange(20) * 0.01})
    df["y"] = (df["x"] >= 10).astype(int)  # x separates y perfectly
    res = M.univariate_mediation(df, "x", ["m"], "y", n_boot=10)
    assert "fit failed" in res.loc[0, "note"] and np.isnan(res.loc[0, "beta11"]) and not res.loc[0, "significant"]


@pytest.mark.parametrize("kwargs, match", [
    ({"x": "gender"}, "numeric"),
    ({"x": "nope"}, "not in the table"),
    ({"y": "ycont"}, "0/1"),
    ({"outcome": "probit"}, "outcome"),
    ({"alpha": 1.5}, "alpha"),
    ({"rule": "magic"}, "rule"),
    ({"mediators": []}, "at least one"),
    ({"mediators": ["m1", "m1"]}, "duplicates"),
    ({"n_boot": -1}, "n_boot"),
    ({"x": ["x", "z"]}, "one column"),
])
def test_bad_arguments(kwargs, match):
    df = _toy()
    df["gender"] = np.where(df["z"] > 0, "Male", "Female")
    args = {"x": "x", "mediators": ["m1"], "y": "y", "n_boot": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        M.univariate_mediation(df, **args)


def test_correlation_filter_keep_rules():
    rng = np.random.default_rng(0)
    a = rng.normal(size=300)
    df = pd.DataFrame({"a": a, "b": a + 0.1 * rng.normal(size=300), "c": rng.normal(size=300),
                       "d": -a + 0.1 * rng.normal(size=300)})
    scores = {"a": 0.1, "b": -0.5, "c": 0.05, "d": 0.2}
    kept, pairs = M.correlation_filter(df, ["a", "b", "c", "d"], 0.8, "larger_indirect", scores=scores)
    assert kept == ["b", "c"]  # |b| largest; a and d (r < -0.8 counts too) correlate with b
    assert set(pairs["dropped"]) == {"a", "d"} and set(pairs["kept"]) == {"b"}
    assert (pairs["r"].abs() > 0.8).all()
    kept, _ = M.correlation_filter(df, ["a", "b", "c", "d"], keep="first")
    assert kept == ["a", "c"]
    kept, _ = M.correlation_filter(df, ["a", "b", "c", "d"], keep="smaller_p", scores={"a": 0.3, "b": 0.2, "c": 0.9, "d": 0.01})
    assert kept == ["d", "c"]
    kept, _ = M.correlation_filter(df, ["a", "b", "c", "d"], keep=lambda u, v: max(u, v))
    assert kept == ["d", "c"]
    kept, pairs = M.correlation_filter(df, ["a", "b", "c", "d"], threshold=0.999, keep="first")
    assert kept == ["a", "b", "c", "d"] and pairs.empty
    with pytest.raises(ValueError, match="scores"):
        M.correlation_filter(df, ["a", "b"])
    with pytest.raises(ValueError, match="threshold"):
        M.correlation_filter(df, ["a", "b"], threshold=0, keep="first")
    with pytest.raises(ValueError, match="keep"):
        M.correlation_filter(df, ["a", "b"], keep="random")


def test_forest_plot_and_heatmap():
    df = _toy()
    res = pd.concat([M.univariate_mediation(df, x, ["m1", "m2"], "y", n_boot=50) for x in ("x", "z")])
    fig = P.forest_plot(res)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "" and ax.get_xlabel() == ax.get_xlabel().lower()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["m1 (x)", "m2 (x)", "m1 (z)", "m2 (z)"]
    fig = P.correlation_heatmap(df, ["x", "z", "m1", "m2"])
    image = fig.axes[1].images[0].get_array()
    assert image.shape == (4, 4) and np.allclose(np.diag(image), 1.0)
    labels = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert sorted(labels) == ["m1", "m2", "x", "z"] and abs(labels.index("x") - labels.index("m1")) == 1
    with pytest.raises(ValueError, match="results"):
        P.forest_plot(res.drop(columns="ci_low"))


@pytest.mark.parametrize("adjusted", [False, True])
def test_total_effects_against_statsmodels(adjusted):
    df = _toy()
    df.loc[[3, 4], "z"] = np.nan
    cov = ["x", "z"] if adjusted else []
    res = M.total_effects(df, ["x", "z"], "y", per={"x": 10}, covariates=cov).set_index(["x", "outcome"])
    for x in ("x", "z"):
        cols = [x] + [c for c in cov if c != x]
        sub = df[["y", "x", "z"]].dropna() if (x == "z" or adjusted) else df
        for outcome, fitter, kw in (("linear", sm.OLS, {}), ("logistic", sm.Logit, {"disp": 0})):
            f = fitter(sub["y"], sm.add_constant(sub[cols])).fit(**kw)
            r = res.loc[(x, outcome)]
            scale = 10 if x == "x" else 1
            lo, hi = f.conf_int(0.05).loc[x] * scale
            np.testing.assert_allclose([r.estimate, r.se, r.ci_low, r.ci_high, r.p],
                                       [f.params[x] * scale, f.bse[x] * scale, lo, hi, f.pvalues[x]], rtol=1e-6)
            assert r.n == len(sub) and r.n_dropped == len(df) - len(sub)
            if outcome == "logistic":
                assert r.odds_ratio == pytest.approx(np.exp(f.params[x] * scale)) and r.or_low == pytest.approx(np.exp(lo))
            else:
                assert np.isnan(r.odds_ratio)


def test_total_effects_hand_case_and_bad_arguments():
    df = pd.DataFrame({"x": [0, 1, 2, 3, 4, 5.0], "y": [1, 2, 2, 5, 6, 8.0]})
    r = M.total_effects(df, "x", "y", outcomes="linear").iloc[0]
    assert r.estimate == pytest.approx(25 / 17.5) and r.per == 1.0  # Sxy / Sxx, as in the six-row case above
    df = _toy()
    with pytest.raises(ValueError, match="outcomes"):
        M.total_effects(df, ["x"], "y", outcomes=["probit"])
    with pytest.raises(ValueError, match="per"):
        M.total_effects(df, ["x"], "y", per={"z": 10})
    with pytest.raises(ValueError, match="0/1"):
        M.total_effects(df, ["x"], "ycont")
    with pytest.raises(ValueError, match="not in the table"):
        M.total_effects(df, ["age"], "y")
    with pytest.raises(ValueError, match="at least one"):
        M.total_effects(df, [], "y")


def test_mediation_by_exposure_stacks_and_adjusts():
    df = _toy()
    res = M.mediation_by_exposure(df, ["x", "z"], ["m1", "m2"], "y", n_boot=0, family="exposure")
    assert list(res["x"]) == ["x", "x", "z", "z"] and list(res["covariates"]) == ["z", "z", "x", "x"]
    ref = M.univariate_mediation(df, "x", ["m1", "m2"], "y", covariates=["z"], n_boot=0)
    pd.testing.assert_frame_equal(res[res.x == "x"].drop(columns="covariates").reset_index(drop=True), ref)
    # the paper's family: every mediator x every exposure, each p column adjusted once over all rows
    fam = M.mediation_by_exposure(df, ["x", "z"], ["m1", "m2"], "y", n_boot=0)
    for col in ("p11", "p21", "p31", "p32"):
        np.testing.assert_allclose(fam[f"{col}_adj"], multipletests(fam[col], method="fdr_bh")[1])
        assert (fam[f"{col}_adj"] >= res[f"{col}_adj"] - 1e-12).all()  # a larger family never adjusts less
    np.testing.assert_allclose(fam["p_adj"], fam[["p11_adj", "p21_adj", "p32_adj"]].max(axis=1))
    assert fam.attrs["family"] == {"size": 4, "over": "mediators x exposures"}
    with pytest.raises(ValueError, match="family"):
        M.mediation_by_exposure(df, ["x"], ["m1"], "y", family="feature")
    plain = M.mediation_by_exposure(df, ["x", "z"], ["m1"], "y", adjust_for_others=False, n_boot=0)
    assert list(plain["covariates"]) == ["", ""]
    assert plain.loc[0, "beta21"] == pytest.approx(
        sm.OLS(df["m1"], sm.add_constant(df[["x"]])).fit().params["x"])
    with pytest.raises(ValueError, match="exposures"):
        M.mediation_by_exposure(df, [], ["m1"], "y")


def test_forest_plot_truth_markers():
    res = pd.DataFrame({"mediator": ["a", "b"], "x": ["age", "age"], "indirect": [0.1, 0.0],
                        "ci_low": [0.05, -0.1], "ci_high": [0.2, 0.1], "significant": [True, False],
                        "truth": [0.12, 0.0]})
    ax = P.forest_plot(res, truth="truth").axes[0]
    crosses = [line for line in ax.lines if line.get_marker() == "x"]
    assert [c.get_xdata()[0] for c in crosses] == [0.12, 0.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["planted"]
