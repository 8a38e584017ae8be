"""Sensitivity to mediator-outcome confounding: closed forms, and recovery of a planted confounder's rho."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from ssinfnet.stats import natural_effects as NE
from ssinfnet.stats import sensitivity as S
from ssinfnet.stats.simulation import simulate_cohort
from ssinfnet.stats.validation import true_natural_effects, true_rho

KW = dict(covariates=["male"], contrast=(50, 60))


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(None, 800, {"m": {"age": 0.03}}, {"m": 0.6}, 1, {"age": 0.02, "male": 0.3}, seed=5,
                           noise="normal")


def _hand_fits(df):
    X = sm.add_constant(pd.DataFrame({"z": (df["age"] - 50) / 10, "male": df["male"]}))
    med = sm.OLS(df["m"], X).fit()
    out = sm.Probit(df["severity_binary"], X.assign(m=df["m"])).fit(disp=0)
    return X, med, out


def test_rho_zero_closed_form_and_curve(cohort):
    curve = S.rho_curve(cohort, "age", "m", "severity_binary", rhos=[-0.5, 0.0, 0.2, 0.5], n_rep=300, **KW)
    X, med, out = _hand_fits(cohort)
    sg = np.sqrt(med.scale) * out.params["m"]
    assert curve.attrs["rho_zero"] == pytest.approx(sg / np.sqrt(1 + sg**2))
    assert curve.attrs["r2_product"] == pytest.approx(curve.attrs["rho_zero"] ** 2)
    # at rho = 0 the curve is the probit NIE: Phi(mu / sqrt(1 + g^2 sigma^2)) averaged over patients
    th, al, sigma = out.params, med.params, np.sqrt(med.scale)
    base = th["const"] + th["male"] * cohort["male"] + th["z"]
    m0 = al["const"] + al["male"] * cohort["male"]
    v = np.sqrt(1 + th["m"] ** 2 * sigma**2)
    nie0 = np.mean(stats.norm.cdf((base + th["m"] * (m0 + al["z"])) / v) - stats.norm.cdf((base + th["m"] * m0) / v))
    at = curve.set_index("rho")
    assert at.loc[0.0, "nie"] == pytest.approx(nie0, rel=1e-10)
    ne = NE.natural_effects(cohort, "age", ["m"], "severity_binary", link="probit", n_rep=2000, **KW).iloc[0]
    assert ne.nie == pytest.approx(nie0, abs=0.05 * (ne.nie_high - ne.nie_low))
    # a positive residual correlation explains part of a positive effect away; past rho_zero it flips
    assert at.loc[-0.5, "nie"] > at.loc[0.0, "nie"] > at.loc[0.2, "nie"] and curve.attrs["rho_zero"] < 0.5
    assert at.loc[0.5, "nie"] < 0
    point = S.nie_at_rho(out.params[["const", "z", "m", "male"]].to_numpy()[None], al.to_numpy()[None], sigma,
                         cohort[["male"]].to_numpy(float), curve.attrs["rho_zero"])
    assert point[0] == pytest.approx(0.0, abs=1e-12)
    assert 0 < curve.attrs["rho_ci"] < curve.attrs["rho_zero"]
    assert (curve["nie_low"] <= curve["nie"]).all() and (curve["nie"] <= curve["nie_high"]).all()


def test_planted_confounder_recovered_at_true_rho():
    c, g = 0.8, 0.8
    df = simulate_cohort(None, 20000, {"m": {"age": 0.03}}, {"m": 0.6}, 0, {"age": 0.02}, seed=7, noise="normal",
                         confounders={"m": (c, g)})
    truth = true_natural_effects(df, "age", (50, 60), draws=50, seed=1).loc["m", "nie"]
    rho = true_rho(c, g)
    assert rho == pytest.approx(0.64 / 1.64)
    curve = S.rho_curve(df, "age", "m", "severity_binary", contrast=(50, 60), rhos=[0.0, round(rho, 4)], n_rep=300)
    at = curve.set_index("rho")
    assert at.loc[round(rho, 4), "nie_low"] <= truth <= at.loc[round(rho, 4), "nie_high"]
    assert at.loc[0.0, "nie_low"] > truth  # ignoring the confounder overstates the indirect effect


def test_null_mediator_rho_ci_zero_and_table(cohort):
    res = NE.natural_effects_by_exposure(cohort, ["age", "male"], ["m", "null_1"], "severity_binary", n_rep=50,
                                         contrasts={"age": (50, 60)})
    tab = S.sensitivity_table(cohort, res, "severity_binary", n_rep=200)
    assert list(zip(tab["x"], tab["mediator"])) == list(zip(res.loc[res.significant, "x"], res.loc[res.significant, "mediator"]))
    assert ("age", "m") in set(zip(tab["x"], tab["mediator"])) and (tab["note"] == "").all()
    every = S.sensitivity_table(cohort, res, "severity_binary", only_significant=False, n_rep=200).set_index(["x", "mediator"])
    assert every.loc[("age", "null_1"), "rho_ci"] == 0.0  # its interval includes zero already at rho = 0
    assert abs(every.loc[("age", "null_1"), "rho_zero"]) < 0.1


def test_bad_arguments(cohort):
    with pytest.raises(ValueError, match="rho must be"):
        S.nie_at_rho(np.zeros((1, 4)), np.zeros((1, 3)), 1.0, np.zeros((5, 1)), 1.0)
    with pytest.raises(ValueError, match="rhos"):
        S.rho_curve(cohort, "age", "m", "severity_binary", rhos=[0.0, 1.2])
    with pytest.raises(ValueError, match="n_rep"):
        S.rho_curve(cohort, "age", "m", "severity_binary", n_rep=0)
    with pytest.raises(ValueError, match="missing"):
        S.sensitivity_table(cohort, pd.DataFrame({"x": ["age"]}), "severity_binary")


def test_rho_curve_plot_marks_the_zero_crossing_and_labels_its_axes():
    from ssinfnet.plots.stats import rho_curve_plot

    rho = np.linspace(-0.9, 0.9, 7)
    curve = pd.DataFrame({"rho": rho, "nie": 0.05 - 0.1 * rho, "nie_low": 0.03 - 0.1 * rho,
                          "nie_high": 0.07 - 0.1 * rho})
    curve.attrs["rho_zero"] = 0.5
    other = curve.copy()
    other.attrs["rho_zero"] = -0.25
    fig = rho_curve_plot({"age / m": curve, "n_diseases / m": other}, ncols=3)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 2 and [ax.get_title() for ax in shown] == ["age / m", "n_diseases / m"]
    ax = shown[0]
    assert ax.get_xlabel() == "rho (mediator-outcome error correlation)"
    assert ax.get_ylabel() == "natural indirect effect (risk difference)"
    assert [t.get_text() for t in ax.texts] == ["NIE = 0 at rho = 0.50"]
    assert [t.get_text() for t in shown[1].texts] == ["NIE = 0 at rho = -0.25"]
    vertical = [line for line in ax.lines if list(line.get_xdata()) == [0.5, 0.5]]
    assert len(vertical) == 1
    # four curves on two columns: a 2 x 2 grid, all visible
    fig = rho_curve_plot({str(i): curve for i in range(4)}, ncols=2)
    assert len(fig.axes) == 4 and all(ax.get_visible() for ax in fig.axes)
    # three curves on two columns: the fourth panel is hidden
    fig = rho_curve_plot({str(i): curve for i in range(3)}, ncols=2)
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]


def test_rho_curve_plot_rejects_bad_input():
    from ssinfnet.plots.stats import rho_curve_plot

    curve = pd.DataFrame({"rho": [0.0, 0.5], "nie": [0.1, 0.0], "nie_low": [0.0, -0.1], "nie_high": [0.2, 0.1]})
    with pytest.raises(ValueError, match="nothing to plot"):
        rho_curve_plot({})
    with pytest.raises(ValueError, match=r"curves\['a'\]: attrs lack 'rho_zero'"):
        rho_curve_plot({"a": curve})
    curve.attrs["rho_zero"] = 0.5
    with pytest.raises(ValueError, match=r"curves\['a'\]: missing column\(s\) \['nie_low'\]"):
        rho_curve_plot({"a": curve.drop(columns="nie_low")})
    with pytest.raises(ValueError, match="ncols must be >= 1"):
        rho_curve_plot({"a": curve}, ncols=0)
