"""Paired bootstrap of a Dice difference: known differences give known verdicts and intervals."""
import numpy as np
import pytest

from ssinfnet.evaluation.comparison import paired_bootstrap, verdict


def test_a_constant_improvement_is_found_exactly():
    a = np.linspace(0.2, 0.8, 40)
    res = paired_bootstrap(a, a + 0.05, n_boot=500)
    assert res.estimate == pytest.approx(0.05)
    assert res.ci_low == pytest.approx(0.05) and res.ci_high == pytest.approx(0.05)
    assert res.verdict == "helps" and res.p_not_better == 0.0


def test_noise_around_zero_is_no_detectable_difference_and_the_interval_is_about_right():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.3, 0.7, 200)
    d = rng.normal(0, 0.1, 200)
    res = paired_bootstrap(a, a + d, n_boot=4000, seed=2)
    se = d.std(ddof=1) / np.sqrt(len(d))  # the normal-theory interval the bootstrap should approximate
    assert res.ci_low == pytest.approx(d.mean() - 1.96 * se, abs=0.25 * se)
    assert res.ci_high == pytest.approx(d.mean() + 1.96 * se, abs=0.25 * se)
    assert res.verdict == "no detectable difference"


def test_seeds_pool_and_their_spread_widens_the_interval():
    a = np.tile(np.linspace(0.3, 0.7, 30), (3, 1))
    b = a + np.array([[-0.10], [0.0], [0.10]])  # the seeds disagree; images agree within a seed
    two_level = paired_bootstrap(a, b, n_boot=2000, seed=0)
    images_only = paired_bootstrap(a, b, n_boot=2000, seed=0, resample_seeds=False)
    assert two_level.estimate == pytest.approx(0.0, abs=1e-12)
    assert two_level.seed_means == pytest.approx((-0.1, 0.0, 0.1))
    assert images_only.ci_high - images_only.ci_low < 1e-9  # per-image means are all exactly 0
    assert two_level.ci_high - two_level.ci_low > 0.05
    assert "3 seeds x 30 images" in two_level.describe("SInfNet", "SSInfNet")


def test_hurts_nan_images_and_bad_input():
    a = np.array([0.5, 0.6, np.nan, 0.7, 0.4])
    res = paired_bootstrap(a, a - 0.1, n_boot=200)
    assert res.n_images == 4 and res.verdict == "hurts"
    assert verdict(float("nan"), 1.0) == "no estimate"
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(np.zeros(3), np.zeros(3), n_boot=10)
    with pytest.raises(ValueError, match="at least 2 images"):
        paired_bootstrap([np.nan, 0.5], [0.5, np.nan])
