"""Multiple testing over the whole family: hand-computed Benjamini-Hochberg, statsmodels, error rates."""

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from ssinfnet.stats import multiplicity as MT

# six p-values; sorted 0.005, 0.01, 0.03, 0.04, 0.2, 0.5 -> p * 6 / rank = .03, .03, .06, .06, .24, .5
P = [0.005, 0.01, 0.03, 0.04, 0.2, 0.5]
BH = [0.03, 0.03, 0.06, 0.06, 0.24, 0.5]


def _table():
    # two exposures x three mediators: one family of six tests
    return pd.DataFrame({"x": ["age"] * 3 + ["male"] * 3, "mediator": ["a", "b", "c"] * 2, "p": P})


def test_bh_hand_computed_and_statsmodels():
    np.testing.assert_allclose(MT.adjust_pvalues(P, "bh"), BH)
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.01, 5)])
    for ours, theirs in (("bh", "fdr_bh"), ("by", "fdr_by"), ("holm", "holm"), ("bonferroni", "bonferroni")):
        np.testing.assert_allclose(MT.adjust_pvalues(p, ours), multipletests(p, method=theirs)[1])
    np.testing.assert_allclose(MT.adjust_pvalues(p, "none"), p)


def test_nan_is_not_a_test():
    adj = MT.adjust_pvalues([0.01, np.nan, 0.04], "bonferroni")
    assert np.isnan(adj[1]) and list(adj[[0, 2]]) == pytest.approx([0.02, 0.08])  # family of 2, not 3


def test_family_over_all_rows_versus_within_exposure():
    fam = MT.adjust_family(_table(), "p")
    np.testing.assert_allclose(fam["p_adj"], BH)
    assert fam.attrs["family"] == {"size": 6, "method": "bh", "within": None}
    # within each exposure: age .005 .01 .03 -> .015 .015 .03; male .04 .2 .5 -> .12 .3 .5
    per = MT.adjust_family(_table(), "p", within="x")
    np.testing.assert_allclose(per["p_adj"], [0.015, 0.015, 0.03, 0.12, 0.3, 0.5])
    # the per-exposure family calls three mediators at 0.05, the whole family two
    assert (per["p_adj"] < 0.05).sum() == 3 and (fam["p_adj"] < 0.05).sum() == 2


def test_bad_input():
    with pytest.raises(ValueError, match="adjust must be one of"):
        MT.adjust_pvalues(P, "magic")
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        MT.adjust_pvalues([0.5, 1.5])
    with pytest.raises(ValueError, match="columns"):
        MT.adjust_family(_table(), "q")
    with pytest.raises(ValueError, match="within"):
        MT.adjust_family(_table(), "p", within="bmi")
    with pytest.raises(ValueError, match="equal length"):
        MT.error_rates([True], [True, False])


def test_error_rates_hand_case():
    r = MT.error_rates([True, True, False, True, False], [False, True, True, False, False])
    assert r == {"n_tests": 5, "n_null": 2, "n_called": 3, "false": 1, "fdp": pytest.approx(1 / 3),
                 "any_false": True, "power": pytest.approx(2 / 3)}
    r = MT.error_rates([False, False], [True, True])
    assert r["fdp"] == 0.0 and not r["any_false"] and np.isnan(r["power"])
